"""The ``.mlops/`` artifact store: the facade steps and executors hold.

Layout (see docs/store.md; each kind of record has its module in this package)::

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
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from mlops_sessions.records import blessings as blessing_records
from mlops_sessions.records import builds as build_records
from mlops_sessions.records import deployments as deployment_records
from mlops_sessions.records import runs as run_records
from mlops_sessions.records.io import (
    Record,
    RecordError,
    ensure_dir,
    read_log,
    require_record,
    write_json_atomic,
    write_text_atomic,
)

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

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # --- layout -------------------------------------------------------------------
    @property
    def runs(self) -> Path:
        return run_records.runs_dir(self.root)

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

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
        marker = self.root / "store.json"
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
        return run_records.load_run(self.root, run_id)

    # --- cache --------------------------------------------------------------------
    def cached_run(self, step: str, key: str) -> Record | None:
        """The run recorded for key, only if the run itself is complete and present."""
        run_id = run_records.cached_run_id(self.root, step, key)
        return None if run_id is None else self.load_run(run_id)

    def record_cache(self, step: str, key: str, run_id: str, *, model: str = "") -> None:
        run_records.record_cache(self.root, step, key, run_id, model=model)

    # --- blessing -----------------------------------------------------------------
    def blessed(self, model: str) -> Record | None:
        return blessing_records.blessed(self.root, model)

    def bless(self, model: str, record: Mapping[str, Any]) -> Record:
        return blessing_records.bless(self.root, model, record)

    def blessings(self, model: str) -> list[Record]:
        return blessing_records.blessings(self.root, model)
