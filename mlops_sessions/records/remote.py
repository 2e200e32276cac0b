"""The shared store: ``.mlops/`` mirrored in object storage, with the local store as its cache.

The records layer stays stdlib-only: it talks to a :class:`Remote` (a Protocol: get, put
with a condition, list, delete, upload/download a file), which an executor implements over
S3 (``executors/s3/store.py``, joined to this protocol by ``console/shared_store.py``) and
the steps inject into :class:`~.store.Store`.

Layout under the remote's prefix (keys mirror the local store where they can)::

    runs/<run-id>/model.tar.gz     the SavedModel directory, one archive
    runs/<run-id>/model.json       {"sha256", "bytes"} of the archive; written after it
    runs/<run-id>/run.json         written after both: a run is trusted only once it exists
    runs/<run-id>/eval/<eval-id>/  metrics.json, report.md, report.html, then verdict.json
    cache/train/<key>.json         train key -> run id (If-None-Match: the first run wins)
    cache/evaluate/<key>.json      evaluation inputs -> the verdict to reuse
    models/<model>/blessed.json    THE pointer: moved only by a conditional write
    models/<model>/blessings/<at>-<hash>.json   one object per blessing, never overwritten
    builds/... deployments/...     pushed by ``mlops store push``: records as files, each
                                   line of a .jsonl log as its own content-addressed object

Guarantees (docs/store.md "The shared store"):

* Objects are written whole or not at all (an S3 PUT that dies leaves no object), and
  every object carries its sha256 in its metadata; a read that does not match is refused.
  The model archive is checked against ``model.json`` before it is unpacked.
* Order of writes: model archive, model.json, run.json, cache pointer; eval files, then
  verdict.json, then the evaluation cache pointer; blessing: run and evaluation first, then
  the pointer, then the blessing's log object. A reader that finds a pointer finds what it
  points at complete.
* The blessed pointer moves with ``If-Match`` (the ETag read) or ``If-None-Match: *`` (no
  pointer yet). A blesser judged against baseline B; if the pointer no longer names B it
  raises :class:`BlessConflict` with the new pointer, and the step re-judges.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from mlops_sessions.cachefile import parse_json_entry
from mlops_sessions.records import blessings as blessing_records
from mlops_sessions.records import evaluations as evaluation_records
from mlops_sessions.records import keys
from mlops_sessions.records import runs as run_records
from mlops_sessions.records.io import (
    Record,
    RecordError,
    append_and_point,
    ensure_dir,
    lock_path,
    locked,
    read_log,
    read_record,
    write_json_atomic,
)

# The layout is the key table's (records/keys.py): the remote's keys are the local store's
# relative paths.
MODEL_ARCHIVE = keys.MODEL_ARCHIVE
MODEL_MANIFEST = keys.MODEL_MANIFEST
REMOTE_MARKER = keys.REMOTE_MARKER
# verdict.json goes last. The drift reference (evaluate.drift) travels with its evaluation:
# a serve image built on another machine counts live inputs against it.
EVAL_FILES = keys.EVAL_FILES
# How often a conditional write of the blessed pointer is retried after losing to a writer
# that blessed the SAME baseline again (a different run raises BlessConflict at once).
POINTER_RETRIES = 8
# The record folders mirrored file by file (a .json replaces, a .jsonl log adds lines).
_MIRRORED = (keys.BUILDS, keys.DEPLOYMENTS)
# Timestamp fields that order a log's lines (first one present wins).
_TIME_FIELDS = ("blessed_at", "built_at", "pushed_at", "scanned_at", "at", "created_at")


class RemoteError(RecordError):
    """The remote store refused or damaged something; the message names object and fix."""


class RemoteUnavailable(RemoteError):
    """The remote store cannot be reached (or keeps failing); never a silent local run."""


class PreconditionFailed(Exception):
    """A conditional write lost: the object changed (If-Match) or exists (If-None-Match)."""


class BlessConflict(Exception):
    """Another pipeline moved the blessed pointer away from the baseline this one judged."""

    def __init__(self, model: str, current: Record) -> None:
        super().__init__(f"the blessed pointer of {model} moved to run {current.get('run_id')}")
        self.model = model
        self.current = current


@dataclass(frozen=True)
class RemoteObject:
    key: str
    data: bytes
    etag: str


@dataclass(frozen=True)
class Listed:
    key: str
    size: int
    modified: str  # ISO-8601


class Remote(Protocol):
    """Object storage as the shared store needs it (console/shared_store.py over S3).

    Keys are relative to the remote's prefix. Errors: :class:`RemoteUnavailable` after the
    implementation's retries, :class:`RemoteError` for refusals and checksum mismatches,
    :class:`PreconditionFailed` for a lost conditional write.
    """

    url: str  # s3://bucket/prefix, for messages

    def get(self, key: str) -> RemoteObject | None: ...

    def put(
        self, key: str, data: bytes, *, if_match: str | None = None, if_none_match: bool = False
    ) -> str: ...

    def upload_file(self, key: str, path: Path, sha256: str) -> None: ...

    def download_file(self, key: str, dest: Path) -> int: ...

    def list(self, prefix: str) -> list[Listed]: ...

    def delete(self, keys: Iterable[str]) -> None: ...


def _dumps(data: Mapping[str, Any]) -> bytes:
    return (json.dumps(dict(data), indent=2, sort_keys=True, default=str) + "\n").encode()


def _loads(obj: RemoteObject, url: str) -> Record:
    try:
        data = json.loads(obj.data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        data = None
    if not isinstance(data, dict):
        raise RemoteError(
            f"{url}/{obj.key} is not a JSON record; delete it from the remote "
            "(`mlops store gc` never does) and re-run the step that writes it"
        )
    return data


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class RemoteSync:
    """What the Store does through a Remote; the local store root is its cache."""

    def __init__(self, root: Path, remote: Remote) -> None:
        self.root = Path(root)
        self.remote = remote
        self.downloaded = 0  # bytes read from the remote by this process (figures, --json)

    # --- small helpers ----------------------------------------------------------------
    def _get(self, key: str) -> RemoteObject | None:
        obj = self.remote.get(key)
        if obj is not None:
            self.downloaded += len(obj.data)
        return obj

    def _get_record(self, key: str) -> tuple[Record, str] | None:
        obj = self._get(key)
        return None if obj is None else (_loads(obj, self.remote.url), obj.etag)

    def _rel(self, path: Path) -> str:
        """The key of a file under the store root (the inverse of keys.local)."""
        return PurePosixPath(path.relative_to(self.root)).as_posix()

    def _tmp(self) -> Path:
        return ensure_dir(keys.local(self.root, keys.TMP))

    def _pull_file(self, key: str) -> bool:
        """Copy a remote record into the local cache at the same relative path."""
        obj = self._get(key)
        if obj is None:
            return False
        target = keys.local(self.root, key)
        ensure_dir(target.parent)
        _write_bytes_atomic(target, obj.data)
        return True

    # --- runs -------------------------------------------------------------------------
    def push_run(self, run_id: str) -> None:
        """Upload a complete local run: archive, manifest, then run.json (trusted last)."""
        run_dir = run_records.run_dir(self.root, run_id)
        record = run_records.load_run(self.root, run_id)
        if record is None:
            raise RecordError(f"run {run_id} is not in {self.root}; nothing to push")
        if self.remote.get(keys.run_file(run_id)) is not None:
            return  # already there, complete (run.json is the last object written)
        model_dir = run_dir / str(record.get("model_dir", keys.MODEL_DIR))
        if model_dir.is_dir():
            with tempfile.TemporaryDirectory(dir=self._tmp()) as tmp:
                archive = Path(tmp) / MODEL_ARCHIVE
                _archive(model_dir, archive)
                digest = sha256_file(archive)
                self.remote.upload_file(keys.model_archive(run_id), archive, digest)
                manifest = {"sha256": digest, "bytes": archive.stat().st_size}
                self.remote.put(keys.model_manifest(run_id), _dumps(manifest))
        self.remote.put(keys.run_file(run_id), _dumps(record))

    def fetch_run(self, run_id: str) -> Record | None:
        """run.json of a remote run into the local cache (the model stays remote)."""
        found = self._get_record(keys.run_file(run_id))
        if found is None:
            return None
        record, _ = found
        run_dir = run_records.run_dir(self.root, run_id)
        if (run_dir / keys.RUN_FILE).is_file():
            return run_records.load_run(self.root, run_id)
        marker = {"run_id": run_id, "url": self.remote.url}
        if run_dir.is_dir():
            # Its evaluations were pulled first: the marker, then run.json (which makes the
            # run visible) go into place one atomic file at a time.
            write_json_atomic(run_dir / REMOTE_MARKER, marker)
            write_json_atomic(run_dir / keys.RUN_FILE, record)
            return record
        stage = self._tmp() / f"{run_id}.pull-{uuid.uuid4().hex[:8]}"
        stage.mkdir()
        try:
            write_json_atomic(stage / REMOTE_MARKER, marker)
            write_json_atomic(stage / keys.RUN_FILE, record)
            ensure_dir(run_dir.parent)
            try:
                os.replace(stage, run_dir)
            except OSError:
                if not (run_dir / keys.RUN_FILE).is_file():  # not a concurrent pull of the same
                    raise
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        return record

    def model_is_remote(self, run_id: str) -> bool:
        return (run_records.run_dir(self.root, run_id) / REMOTE_MARKER).is_file()

    def ensure_model(self, run_id: str, model_dir_name: str = keys.MODEL_DIR) -> Path:
        """The run's local model directory, downloading and checking it first if needed."""
        run_dir = run_records.run_dir(self.root, run_id)
        model_dir = run_dir / model_dir_name
        if (model_dir / "saved_model.pb").is_file() or not self.model_is_remote(run_id):
            return model_dir
        manifest = self._get_record(keys.model_manifest(run_id))
        if manifest is None:
            raise RemoteError(
                f"{self.remote.url}/{keys.run(run_id)} has no model ({MODEL_MANIFEST} is "
                "missing); retrain with `mlops train --force`"
            )
        expected = str(manifest[0].get("sha256", ""))
        with tempfile.TemporaryDirectory(dir=self._tmp()) as tmp:
            archive = Path(tmp) / MODEL_ARCHIVE
            self.downloaded += self.remote.download_file(keys.model_archive(run_id), archive)
            got = sha256_file(archive)
            if got != expected:
                raise RemoteError(
                    f"{self.remote.url}/{keys.model_archive(run_id)} does not match its sha256 "
                    f"(expected {expected[:12]}, got {got[:12]}: an interrupted or damaged "
                    f"upload); nothing was installed. Retrain with `mlops train --force`"
                )
            unpacked = Path(tmp) / "unpacked"
            _extract(archive, unpacked)
            with locked(lock_path(model_dir)):
                if not (model_dir / "saved_model.pb").is_file():
                    os.replace(unpacked, model_dir)
        (run_dir / REMOTE_MARKER).unlink(missing_ok=True)
        return model_dir

    # --- cache pointers ---------------------------------------------------------------
    def _get_cache_entry(self, key: str, fields: tuple[str, ...]) -> Record | None:
        """A shared cache pointer, or None: a damaged one is a warned miss and is deleted
        (a cache only saves work; the next complete run shares a good one)."""
        obj = self._get(key)
        if obj is None:
            return None
        entry = parse_json_entry(
            obj.data,
            where=f"{self.remote.url}/{key}",
            what="shared cache entry",
            valid=lambda data: all(isinstance(data.get(f), str) and data[f] for f in fields),
        )
        if entry is None:
            self.remote.delete([key])
        return entry

    def fetch_cached_run(self, step: str, key: str) -> Record | None:
        found = self._get_cache_entry(keys.cache_entry(step, key), ("run_id",))
        if found is None:
            return None
        run = self.fetch_run(str(found["run_id"]))
        if run is None:
            return None
        model = str(run.get("model", ""))
        run_records.write_cache(self.root, step, key, {"run_id": run["run_id"]}, model=model)
        return run

    def push_cache(self, step: str, key: str) -> None:
        entry = run_records.read_cache(self.root, step, key)
        if entry is None:
            return
        # The first complete run of a key stays the shared one; a second trainer's run is
        # kept too (runs/<id>/), only not pointed at.
        with contextlib.suppress(PreconditionFailed):
            self.remote.put(keys.cache_entry(step, key), _dumps(entry), if_none_match=True)

    # --- evaluations ------------------------------------------------------------------
    def fetch_evaluation(self, run_id: str, eval_id: str, *, reports: bool = False) -> bool:
        """verdict.json + metrics.json (+ the reports) of a remote evaluation, cached."""
        local = keys.local(self.root, keys.evaluation(run_id, eval_id))
        if (local / keys.VERDICT).is_file() and (local / keys.METRICS).is_file():
            return True
        names = [
            keys.VERDICT,
            keys.METRICS,
            keys.DRIFT_REFERENCE,  # when evaluate.drift wrote one
            *((keys.REPORT_MD, keys.REPORT_HTML) if reports else ()),
        ]
        blobs = {}
        for name in names:
            obj = self._get(keys.evaluation_file(run_id, eval_id, name))
            if obj is None:
                if name in (keys.VERDICT, keys.METRICS):
                    return False
                continue
            blobs[name] = obj.data
        stage = self._tmp() / f"{eval_id}.pull-{uuid.uuid4().hex[:8]}"
        stage.mkdir()
        try:
            for name, data in blobs.items():
                _write_bytes_atomic(stage / name, data)
            ensure_dir(local.parent)
            if not local.exists():
                os.replace(stage, local)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        return True

    def push_evaluation(self, run_id: str, eval_id: str) -> None:
        local = keys.local(self.root, keys.evaluation(run_id, eval_id))
        for name in keys.EVAL_PUBLISH_ORDER:  # verdict last: it makes the eval complete
            if (local / name).is_file():
                self.remote.put(
                    keys.evaluation_file(run_id, eval_id, name), (local / name).read_bytes()
                )

    def fetch_evaluation_file(self, run_id: str, eval_id: str, name: str) -> bool:
        """One file of a remote evaluation into the local cache (e.g. the model signature,
        written after the evaluation was complete); False when the remote has none."""
        key = keys.evaluation_file(run_id, eval_id, name)
        if keys.local(self.root, key).is_file():
            return True
        return self._pull_file(key)

    def push_evaluation_file(self, run_id: str, eval_id: str, name: str) -> None:
        """Upload one file of a complete local evaluation (one added after it was pushed)."""
        key = keys.evaluation_file(run_id, eval_id, name)
        self.remote.put(key, keys.local(self.root, key).read_bytes())

    def fetch_evaluation_cache(self, key: str) -> None:
        entry = self._get_cache_entry(
            keys.cache_entry(evaluation_records.STEP, key), ("run_id", "eval_id")
        )
        if entry is None:
            return
        run_id, eval_id = str(entry.get("run_id", "")), str(entry.get("eval_id", ""))
        if run_id and eval_id and self.fetch_evaluation(run_id, eval_id, reports=True):
            self.fetch_run(run_id)
            target = run_records.cache_entry(self.root, evaluation_records.STEP, key)
            write_json_atomic(target, entry)

    # --- blessings --------------------------------------------------------------------
    def blessed(self, model: str) -> Record | None:
        """The remote's pointer (authoritative), cached as the local blessed.json."""
        found = self._get_record(keys.blessed(model))
        if found is None:
            return None
        record = found[0]
        local = blessing_records.blessed_file(self.root, model)
        if read_record(local) != record:
            write_json_atomic(local, record)
        return record

    def bless(self, model: str, record: Record, expected_run: str | None) -> Record:
        """Move the remote pointer to record, if it still names expected_run (see module)."""
        run_id = str(record["run_id"])
        self.push_run(run_id)
        if record.get("eval_id"):
            self.push_evaluation(run_id, str(record["eval_id"]))
        key = keys.blessed(model)
        for _ in range(POINTER_RETRIES):
            found = self._get_record(key)
            current_run = None if found is None else str(found[0].get("run_id"))
            if found is not None and current_run not in (expected_run, run_id):
                raise BlessConflict(model, found[0])
            try:
                if found is None:
                    self.remote.put(key, _dumps(record), if_none_match=True)
                else:
                    self.remote.put(key, _dumps(record), if_match=found[1])
            except PreconditionFailed:
                continue  # someone wrote in between: read again, judge who it was
            break
        else:
            raise RemoteError(
                f"{self.remote.url}/{key} kept changing during {POINTER_RETRIES} attempts to "
                "bless; re-run `mlops evaluate`"
            )
        self.remote.put(_log_key(keys.blessing_objects(model), record), _dumps(record))
        local = blessing_records
        append_and_point(
            local.log_file(self.root, model), local.blessed_file(self.root, model), record
        )
        return record

    def blessings(self, model: str) -> list[Record]:
        """The remote's blessing objects merged into the local log; the merged log."""
        self._merge_log(
            f"{keys.blessing_objects(model)}/", blessing_records.log_file(self.root, model)
        )
        return blessing_records.blessings(self.root, model)

    # --- logs, listings, push/pull of whole trees ------------------------------------
    def _merge_log(self, prefix: str, log: Path) -> int:
        """Union of the remote's line objects under prefix and the local log; new lines."""
        # Line objects are named by their content: those the local log holds are not read.
        known = {_log_key(prefix.rstrip("/"), line) for line in read_log(log)}
        remote_lines = []
        for item in self.remote.list(prefix):
            if item.key in known:
                continue
            obj = self._get(item.key)
            if obj is not None:
                remote_lines.append(_loads(obj, self.remote.url))
        return merge_log_lines(log, remote_lines)

    def remote_run_ids(self) -> list[str]:
        """Complete remote runs (those whose run.json is there), sorted."""
        ids = set()
        for item in self.remote.list(f"{keys.RUNS}/"):
            if keys.is_run_file(item.key):
                ids.add(keys.parts(item.key)[1])
        return sorted(ids)

    def pull_index(self) -> dict[str, int]:
        """Every run.json, evaluation verdict/metrics, blessing and record of the remote
        (no models): what lineage and status need to answer for every machine."""
        counts = {"runs": 0, "evaluations": 0, "files": 0, "log_lines": 0}
        listing = self.remote.list("")
        for item in listing:
            parts = keys.parts(item.key)
            if keys.is_run_file(item.key):
                if not run_records.run_file(self.root, parts[1]).is_file():
                    self.fetch_run(parts[1])
                    counts["runs"] += 1
            elif keys.is_verdict(item.key):
                if not keys.local(self.root, item.key).is_file():
                    counts["evaluations"] += int(self.fetch_evaluation(parts[1], parts[3]))
            elif (
                parts[0] in _MIRRORED
                and f"{keys.LOG_OBJECTS_SUFFIX}/" not in item.key
                and _newer_than_local(item, keys.local(self.root, item.key))
            ):
                # A pointer record (latest.json, a revision moving from progressing to
                # rolled-out) is rewritten in place: a newer one replaces the local copy.
                counts["files"] += int(self._pull_file(item.key))
        logs: dict[str, list[Record]] = {}
        known: dict[str, set[str]] = {}
        for item in listing:
            head, sep, _ = item.key.rpartition(f"{keys.LOG_OBJECTS_SUFFIX}/")
            if sep and keys.parts(head)[0] in _MIRRORED:
                if head not in known:
                    local = read_log(keys.local(self.root, head))
                    known[head] = {_log_key(keys.log_objects(head), line) for line in local}
                if item.key in known[head]:
                    continue
                obj = self._get(item.key)
                if obj is not None:
                    logs.setdefault(head, []).append(_loads(obj, self.remote.url))
        for head, lines in logs.items():
            counts["log_lines"] += merge_log_lines(keys.local(self.root, head), lines)
        models = {keys.parts(i.key)[1] for i in listing if i.key.startswith(f"{keys.MODELS}/")}
        for model in models:
            self.blessed(model)
            counts["log_lines"] += self._merge_log(
                f"{keys.blessing_objects(model)}/", blessing_records.log_file(self.root, model)
            )
        return counts

    def push_all(self) -> dict[str, int]:
        """Upload what the remote lacks: runs, evaluations, train/evaluate cache pointers,
        blessing log lines, image and deploy records (never the blessed pointer: it moves
        only through a judged bless)."""
        counts = {"runs": 0, "evaluations": 0, "files": 0, "log_lines": 0}
        remote_keys = {item.key for item in self.remote.list("")}
        for record in run_records.list_runs(self.root):
            run_id = str(record["run_id"])
            if self.model_is_remote(run_id):
                continue  # came from the remote
            if keys.run_file(run_id) not in remote_keys:
                self.push_run(run_id)
                counts["runs"] += 1
            for evaluation in evaluation_records.evaluations(self.root, run_id):
                verdict = keys.evaluation_file(run_id, evaluation.eval_id, keys.VERDICT)
                if verdict not in remote_keys:
                    self.push_evaluation(run_id, evaluation.eval_id)
                    counts["evaluations"] += 1
        for step in ("train", evaluation_records.STEP):
            directory = run_records.cache_dir(self.root, step)
            for entry in sorted(directory.glob("*.json")) if directory.is_dir() else []:
                if self._rel(entry) not in remote_keys:
                    self.push_cache(step, entry.stem)
        models = keys.local(self.root, keys.MODELS)
        for log in sorted(models.glob(f"*/{keys.BLESSINGS_LOG}")) if models.is_dir() else []:
            counts["log_lines"] += self._push_log(
                log, keys.blessing_objects(log.parent.name), remote_keys
            )
        for top in _MIRRORED:
            directory = keys.local(self.root, top)
            for path in sorted(directory.rglob("*")) if directory.is_dir() else []:
                if not path.is_file() or path.name.startswith("."):
                    continue
                rel = self._rel(path)
                if path.suffix == ".jsonl":
                    counts["log_lines"] += self._push_log(path, keys.log_objects(rel), remote_keys)
                elif path.suffix == ".json" and rel not in remote_keys:
                    self.remote.put(rel, path.read_bytes())
                    counts["files"] += 1
        return counts

    def push_records(self, paths: Iterable[Path]) -> int:
        """Upload these image or deploy records (files under the store root) as push_all
        would: a ``.json`` record replaces the remote's copy, a ``.jsonl`` history adds the
        lines the remote lacks. Objects written."""
        written = 0
        for path in paths:
            if not path.is_file():
                continue
            rel = self._rel(path)
            if path.suffix == ".jsonl":
                known = {item.key for item in self.remote.list(f"{keys.log_objects(rel)}/")}
                written += self._push_log(path, keys.log_objects(rel), known)
            elif path.suffix == ".json":
                self.remote.put(rel, path.read_bytes())
                written += 1
        return written

    def prune(self, run_ids: Iterable[str]) -> int:
        """Delete runs from the remote: the cache pointers naming them first (a reader never
        finds a pointer to a run that is going), then their objects. Objects deleted."""
        doomed = set(run_ids)
        if not doomed:
            return 0
        pointers = []
        for item in self.remote.list(f"{keys.CACHE}/"):
            found = self._get_record(item.key)
            if found is not None and str(found[0].get("run_id")) in doomed:
                pointers.append(item.key)
        self.remote.delete(pointers)
        objects = [
            i.key for run_id in sorted(doomed) for i in self.remote.list(f"{keys.run(run_id)}/")
        ]
        self.remote.delete(objects)
        return len(pointers) + len(objects)

    def _push_log(self, log: Path, prefix: str, remote_keys: set[str]) -> int:
        pushed = 0
        for line in read_log(log):
            key = _log_key(prefix, line)
            if key not in remote_keys:
                self.remote.put(key, _dumps(line))
                pushed += 1
        return pushed


def _newer_than_local(item: Listed, local: Path) -> bool:
    """The remote object was written after the local copy (or there is none).

    Compares the store's LastModified with the file's mtime; a local copy written later
    (a record kept while the remote was down, not pushed yet) is left alone.
    """
    try:
        mtime = local.stat().st_mtime
    except FileNotFoundError:
        return True
    try:
        modified = datetime.fromisoformat(item.modified.replace("Z", "+00:00"))
    except ValueError:
        return False  # no usable time: keep what is here (`store pull` never loses it)
    if modified.tzinfo is None:
        modified = modified.replace(tzinfo=timezone.utc)
    return modified.timestamp() > mtime


def _log_key(prefix: str, line: Mapping[str, Any]) -> str:
    """Content-addressed name of one log line: ordered by its time, equal lines collide."""
    when = next((str(line[f]) for f in _TIME_FIELDS if line.get(f)), "0")
    stamp = "".join(ch for ch in when if ch.isalnum())
    digest = hashlib.sha256(json.dumps(dict(line), sort_keys=True, default=str).encode())
    return f"{prefix}/{stamp}-{digest.hexdigest()[:16]}.json"


def merge_log_lines(log: Path, lines: list[Record]) -> int:
    """Append to log the lines it lacks, ordered by time; returns how many were added."""
    if not lines:
        return 0
    with locked(lock_path(log)):
        have = {_canonical(r) for r in read_log(log)}
        new = [r for r in lines if _canonical(r) not in have]
        new.sort(key=lambda r: _log_key("", r))
        if not new:
            return 0
        ensure_dir(log.parent)
        merged = sorted([*read_log(log), *new], key=lambda r: _log_key("", r))
        _write_bytes_atomic(
            log,
            b"".join(json.dumps(r, sort_keys=True, default=str).encode() + b"\n" for r in merged),
        )
        return len(new)


def _canonical(record: Mapping[str, Any]) -> str:
    return json.dumps(dict(record), sort_keys=True, default=str)


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    ensure_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _archive(model_dir: Path, archive: Path) -> None:
    """A deterministic tar.gz of the model directory (sorted, no owners or times)."""

    def clean(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        return info

    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(model_dir.rglob("*")):
            tar.add(
                path, arcname=path.relative_to(model_dir).as_posix(), recursive=False, filter=clean
            )


def _extract(archive: Path, dest: Path) -> None:
    dest.mkdir()
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            parts = PurePosixPath(member.name).parts
            if (
                member.name.startswith("/")
                or ".." in parts
                or not (member.isfile() or member.isdir())
            ):
                raise RemoteError(f"refusing model archive member {member.name!r}")
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:  # members were checked above
            tar.extractall(dest)
