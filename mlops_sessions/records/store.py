"""The ``.mlops/`` artifact store: the facade steps and executors hold.

Layout (see docs/store.md; the keys are records/keys.py's, each kind of record has its
module in this package)::

    .mlops/
      store.json               layout version marker
      runs/<run-id>/           one training run; the directory appears only when complete
        run.json               key, params, seed, inputs, lineage, history, status   (runs)
        model/                 the exported SavedModel
        eval/<eval-id>/        verdict.json, metrics.json, report.md, report.html (evaluations)
      cache/train/<key>.json   train cache key -> run id                            (runs)
      cache/evaluate/<key>.json  evaluation inputs -> the verdict to reuse    (evaluations)
      cache/test/<key>.json    a passing test run to reuse                          (runs)
      cache/filehash.json      (path, size, mtime) -> sha256 of input files         (runs)
      models/<model>/blessed.json + blessings.jsonl                           (blessings)
      builds/<image>/{build,scan,latest}.json + *history.jsonl                   (builds)
      deployments/<model>/<context>--<namespace>/revisions/rNNNNNN.json
                                                 + events.jsonl             (deployments)
      tmp/                     staging area; anything here is incomplete by definition

A step writes into ``tmp/`` and renames into place, so an interrupted step never leaves a
half-written artifact in a place a later step trusts.

With a remote (``store.remote``; a :class:`~.remote.Remote` injected by the steps) the
store reads through it and writes to it (:mod:`.remote`): the local directory is its cache,
a run pulled from it has its model downloaded only when :meth:`Store.ensure_model` is
called, and the blessed pointer is the remote's. ``offline=True`` keeps the remote out of
it: the local cache answers alone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from mlops_sessions.records import blessings as blessing_records
from mlops_sessions.records import builds as build_records
from mlops_sessions.records import deployments as deployment_records
from mlops_sessions.records import evaluations as evaluation_records
from mlops_sessions.records import keys
from mlops_sessions.records import runs as run_records
from mlops_sessions.records.io import (
    Record,
    RecordError,
    ensure_dir,
    read_log,
    require_record,
    stamped,
    write_json_atomic,
    write_text_atomic,
)
from mlops_sessions.records.remote import REMOTE_MARKER, Remote, RemoteError, RemoteSync

__all__ = [
    "LAYOUT_VERSION",
    "RecordError",
    "Store",
    "read_json",
    "read_json_lines",
    "write_json_atomic",
    "write_text_atomic",
]

LAYOUT_VERSION = 1


def read_json(path: Path) -> Record:
    """A record that must exist; a missing or damaged one is a RecordError naming it."""
    return require_record(path)


def read_json_lines(path: Path) -> list[Record]:
    """An append-only log (torn last line skipped, any other bad line a RecordError)."""
    return read_log(path)


class Store:
    """Paths and atomic operations on one project's artifact store."""

    def __init__(self, root: Path, remote: Remote | None = None, *, offline: bool = False) -> None:
        self.root = Path(root)
        # A configured remote that this process must not contact (--offline).
        self.offline = offline and remote is not None
        self.sync = RemoteSync(self.root, remote) if remote is not None and not offline else None

    @property
    def remote_url(self) -> str | None:
        return self.sync.remote.url if self.sync is not None else None

    @property
    def downloaded(self) -> int:
        """Bytes this process read from the remote store."""
        return self.sync.downloaded if self.sync is not None else 0

    # --- layout -------------------------------------------------------------------
    @property
    def runs(self) -> Path:
        return run_records.runs_dir(self.root)

    @property
    def tmp(self) -> Path:
        return keys.local(self.root, keys.TMP)

    def run_dir(self, run_id: str) -> Path:
        return run_records.run_dir(self.root, run_id)

    def cache_entry(self, step: str, key: str) -> Path:
        return run_records.cache_entry(self.root, step, key)

    def model_dir(self, model: str) -> Path:
        return blessing_records.model_dir(self.root, model)

    def builds(self) -> Path:
        return build_records.builds_dir(self.root)

    def deployments(self) -> Path:
        return deployment_records.deployments_dir(self.root)

    # --- staging ------------------------------------------------------------------
    @contextlib.contextmanager
    def staging(self, final: Path) -> Iterator[Path]:
        """Yield an empty directory; on success it is renamed to final, on error removed.

        The rename is atomic on one filesystem (tmp/ lives inside the store for that reason).
        """
        ensure_dir(self.tmp)
        self._ensure_marker()
        stage = self.tmp / f"{final.name}.{uuid.uuid4().hex[:8]}"
        stage.mkdir()
        try:
            yield stage
            ensure_dir(final.parent)
            if final.is_dir():
                shutil.rmtree(final)
            elif final.exists():
                raise RecordError(
                    f"{final} is a file where the store expects a directory; "
                    "move or delete it and re-run"
                )
            os.replace(stage, final)
        finally:
            if stage.exists():
                shutil.rmtree(stage, ignore_errors=True)

    def _ensure_marker(self) -> None:
        marker = keys.local(self.root, keys.STORE_MARKER)
        if not marker.exists():
            write_json_atomic(marker, {"layout": LAYOUT_VERSION})
        gitignore = self.root / ".gitignore"
        if not gitignore.exists():
            write_text_atomic(
                gitignore, "# mlops-sessions artifact store; not for version control\n*\n"
            )

    # --- runs -------------------------------------------------------------------------
    def list_runs(self) -> list[Record]:
        """Every complete run's run.json, oldest first."""
        return run_records.list_runs(self.root)

    def load_run(self, run_id: str) -> Record | None:
        record = run_records.load_run(self.root, run_id)
        if record is None and self.sync is not None:
            record = self.sync.fetch_run(run_id)
        return record

    def model_available(self, run: Mapping[str, Any]) -> bool:
        """The run's SavedModel is here, or on the remote to download when needed."""
        run_dir = self.run_dir(str(run["run_id"]))
        if (run_dir / str(run.get("model_dir", "model")) / "saved_model.pb").is_file():
            return True
        return self.sync is not None and (run_dir / REMOTE_MARKER).is_file()

    def ensure_model(self, run: Mapping[str, Any]) -> Path:
        """The run's local model directory; a model still on the remote is downloaded
        (sha256-checked) now — the lazy half of reusing a remote run."""
        run_id = str(run["run_id"])
        name = str(run.get("model_dir", "model"))
        if self.sync is not None:
            return self.sync.ensure_model(run_id, name)
        model_dir = self.run_dir(run_id) / name
        if self.offline and (self.run_dir(run_id) / REMOTE_MARKER).is_file():
            raise RecordError(
                f"the model of run {run_id} is on the remote store only (not downloaded "
                "yet); run without --offline to fetch it"
            )
        return model_dir

    # --- cache --------------------------------------------------------------------
    def cached_run(self, step: str, key: str) -> Record | None:
        """The run recorded for key, only if the run itself is complete and present.

        With a remote, a local miss of the train cache asks the remote (run.json only).
        """
        run_id = run_records.cached_run_id(self.root, step, key)
        run = None if run_id is None else self.load_run(run_id)
        if run is None and self.sync is not None and step == "train":
            run = self.sync.fetch_cached_run(step, key)
        return run

    def record_cache(self, step: str, key: str, run_id: str, *, model: str = "") -> None:
        run_records.record_cache(self.root, step, key, run_id, model=model)
        if self.sync is not None and step == "train":
            self.sync.push_run(run_id)
            self.sync.push_cache(step, key)

    # --- evaluations --------------------------------------------------------------
    def fetch_evaluation(self, run_id: str, eval_id: str) -> None:
        """Bring one evaluation's verdict and metrics into the cache (no-op when local)."""
        if self.sync is not None:
            self.sync.fetch_evaluation(run_id, eval_id)

    def model_signature(self, run_id: str, eval_id: str) -> Path | None:
        """The gate's signature of a run's model made by evaluation eval_id (evaluate.sign),
        fetched from the remote when only there; None when that evaluation signed nothing."""
        path = keys.local(self.root, keys.model_signature(run_id, eval_id))
        if not path.is_file() and self.sync is not None:
            self.sync.fetch_evaluation_file(run_id, eval_id, keys.MODEL_SIGNATURE)
        return path if path.is_file() else None

    def share_model_signature(self, run_id: str, eval_id: str) -> None:
        """Upload a signature written into an evaluation that is already on the remote."""
        if self.sync is not None:
            self.sync.push_evaluation_file(run_id, eval_id, keys.MODEL_SIGNATURE)

    def cached_evaluation(self, key: str) -> evaluation_records.Evaluation | None:
        found = evaluation_records.cached_evaluation(self.root, key)
        if found is None and self.sync is not None:
            self.sync.fetch_evaluation_cache(key)
            found = evaluation_records.cached_evaluation(self.root, key)
        return found

    def record_evaluation(
        self,
        key: str,
        model: str,
        run_id: str,
        eval_id: str,
        inputs: Record,
        also: Sequence[str] = (),
    ) -> None:
        """Point cache key (and the keys in ``also``) at an evaluation; push all with a remote."""
        keys = [key, *also]
        for each in keys:
            evaluation_records.record_evaluation(self.root, each, model, run_id, eval_id, inputs)
        if self.sync is not None:
            self.sync.push_run(run_id)
            self.sync.push_evaluation(run_id, eval_id)
            for each in keys:
                self.sync.push_cache(evaluation_records.STEP, each)

    # --- image and deploy records ---------------------------------------------------
    def publish(self, paths: Sequence[Path]) -> str | None:
        """Share freshly written image or deploy records through the remote, so another
        machine's render, deploy or rollback sees them without ``mlops store push``.

        The records are already safe here; a remote that fails now is not the step's
        failure: the warning returned says so and names the fix (None when published or
        when there is no remote)."""
        if self.sync is None:
            return None
        try:
            self.sync.push_records(paths)
        except RemoteError as exc:
            return (
                f"warning: the records were kept in {self.root} but not shared through "
                f"{self.sync.remote.url} ({exc}); run `mlops store push` when it answers"
            )
        return None

    # --- blessing -----------------------------------------------------------------
    def blessed(self, model: str) -> Record | None:
        """The current blessing; with a remote, the remote's pointer (it is authoritative)."""
        if self.sync is not None:
            return self.sync.blessed(model)
        return blessing_records.blessed(self.root, model)

    def bless(
        self, model: str, record: Mapping[str, Any], *, expected_run: str | None = None
    ) -> Record:
        """Record a blessing. With a remote the pointer moves only if it still names
        expected_run (the baseline the gate judged against; None: no blessing yet) —
        otherwise :class:`~.remote.BlessConflict`."""
        if self.sync is not None:
            return self.sync.bless(model, stamped(record), expected_run)
        return blessing_records.bless(self.root, model, record)

    # --- pruning ----------------------------------------------------------------------
    def protected_runs(self) -> dict[str, str]:
        """Runs gc must never delete, with why: ever blessed, deployed, or in a pushed image."""
        keep: dict[str, str] = {}
        models = {str(r.get("model")) for r in self.list_runs()}
        models_dir = keys.local(self.root, keys.MODELS)
        if models_dir.is_dir():
            models |= {p.name for p in models_dir.iterdir() if p.is_dir()}
        by_hash = {str(r.get("model_hash")): str(r["run_id"]) for r in self.list_runs()}
        for model in sorted(models):
            current = blessing_records.blessed(self.root, model)
            for record in [
                *blessing_records.blessings(self.root, model),
                *([current] if current else []),
            ]:
                keep[str(record.get("run_id"))] = "blessed"
            for _, revision in deployment_records.revisions_of_model(self.root, model):
                lineage = revision.get("lineage") or {}
                if lineage.get("run_id"):
                    keep[str(lineage["run_id"])] = "deployed"
                canary = by_hash.get(str(lineage.get("canary_model_hash")))
                if canary:
                    keep[canary] = "deployed"
        for image in build_records.images(self.root):
            for kind in ("latest", "build"):
                for record in build_records.load_history(self.root, image, kind):
                    if record.get("run_id"):
                        keep.setdefault(str(record["run_id"]), f"in image {image}")
        return keep

    def prune_runs(self, run_ids: list[str]) -> int:
        """Delete runs here and (with a remote) there; cache pointers to them go first."""
        removed = self.sync.prune(run_ids) if self.sync is not None else 0
        doomed = set(run_ids)
        for step in ("train", evaluation_records.STEP):
            directory = run_records.cache_dir(self.root, step)
            for entry in sorted(directory.glob("*.json")) if directory.is_dir() else []:
                try:
                    data = run_records.read_cache(self.root, step, entry.stem)
                except RecordError:
                    continue
                if data is not None and str(data.get("run_id")) in doomed:
                    entry.unlink(missing_ok=True)
        for run_id in sorted(doomed):
            run_dir = self.run_dir(run_id)
            if run_dir.is_dir():
                # Out of runs/ in one rename first, so no reader sees a half-deleted run.
                ensure_dir(self.tmp)
                aside = self.tmp / f"{run_id}.gc-{uuid.uuid4().hex[:8]}"
                os.replace(run_dir, aside)
                shutil.rmtree(aside, ignore_errors=True)
                removed += 1
        return removed

    # --- the shared store as a whole ------------------------------------------------------
    def pull(self) -> dict[str, int]:
        """Every record of the remote (runs' metadata, evaluations, blessings, image and
        deploy records; no models) into the local cache; counts of what was new."""
        return self.sync.pull_index() if self.sync is not None else {}

    def push(self) -> dict[str, int]:
        """What the remote lacks of the local store (never the blessed pointer)."""
        return self.sync.push_all() if self.sync is not None else {}

    def blessings(self, model: str) -> list[Record]:
        if self.sync is not None:
            return self.sync.blessings(model)
        return blessing_records.blessings(self.root, model)
