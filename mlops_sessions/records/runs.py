"""Training runs and the train cache: ``runs/<run-id>/run.json`` and ``cache/<step>/<key>.json``.

A run directory appears (by rename from ``tmp/``) only when the run is complete, with its
``run.json``. The cache maps a step's input key to the run (or result) it produced; the
pointer is written under the model's lock, after the run is in place, so it never names a
run that is not there.

Run ids are ``<UTC yyyymmddThhmmssZ>-<6 random hex>-<key[:8]>``: sortable by time, unique
between two trainings started in the same second (two ``mlops train --force`` in one
checkout), and ending with the cache key's prefix so lineage finds a run by its key.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mlops_sessions.cachefile import read_json_entry
from mlops_sessions.records.io import (
    SCHEMA,
    Record,
    RecordError,
    ensure_dir,
    lock_path,
    locked,
    now,
    read_record,
    stamped,
    write_json_atomic,
)


def runs_dir(root: Path) -> Path:
    return root / "runs"


def run_dir(root: Path, run_id: str) -> Path:
    return runs_dir(root) / run_id


RUN_FILE = "run.json"
# What training produced, as run.json repeats it (the rest comes from the plan).
OUTCOME_FIELDS = ("model_hash", "weights_hash", "signature", "history", "warnings")


def run_file(root: Path, run_id: str) -> Path:
    return run_dir(root, run_id) / RUN_FILE


def write_completed_run(
    directory: Path,
    fields: Mapping[str, Any],
    outcome: Mapping[str, Any],
    *,
    started_at: str,
    clock: float,
    environment: Mapping[str, Any],
) -> Record:
    """Write the run.json of a completed run into directory and return it.

    The one writer of run.json: a local or container run writes it into its staging
    directory (renamed into ``runs/`` afterwards), a Kubernetes training pod into the
    staging directory of the store it publishes from. fields is what the plan says (run id,
    ``TrainPlan.run_fields()``, the plan's ``lineage``); outcome what training produced
    (:data:`OUTCOME_FIELDS`); environment where and with what it ran. started_at is the
    timestamp and clock the ``time.monotonic()`` reading taken when training started.
    """
    finished_at = now()
    record: Record = {
        "schema": SCHEMA,
        **fields,
        "status": "complete",
        "started_at": started_at,
        "finished_at": finished_at,
        "duration_s": round(time.monotonic() - clock, 3),
        **{name: outcome[name] for name in OUTCOME_FIELDS},
        "lineage": {
            **dict(fields.get("lineage") or {}),
            "model_hash": outcome["model_hash"],
            "environment": dict(environment),
        },
    }
    write_json_atomic(directory / RUN_FILE, record)
    return record


def new_run_id(root: Path, key: str, now: datetime | None = None) -> str:
    """A run id no other run (finished or still training) has."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    while True:
        run_id = f"{stamp}-{os.urandom(3).hex()}-{key[:8]}"
        if not run_dir(root, run_id).exists():
            return run_id


def run_fix(root: Path, run_id: str) -> str:
    return f"delete {run_dir(root, run_id)}, or run `mlops train --force` to re-create the run"


def load_run(root: Path, run_id: str) -> Record | None:
    """run.json of a complete run; None when there is no such run."""
    return read_record(run_file(root, run_id), fix=run_fix(root, run_id))


def list_runs(root: Path) -> list[Record]:
    """Every complete run's run.json, oldest first (a damaged one is a RecordError)."""
    directory = runs_dir(root)
    if not directory.is_dir():
        return []
    out = []
    for child in sorted(directory.iterdir()):
        record = load_run(root, child.name) if child.is_dir() else None
        if record is not None:
            out.append(record)
    out.sort(key=lambda r: (str(r.get("finished_at", "")), str(r.get("run_id", ""))))
    return out


def set_aside_damaged(root: Path, step: str, key: str, tmp: Path) -> Path | None:
    """Move the run the cache names for key out of runs/ if its run.json is damaged.

    Returns where it went (under tmp, which later steps never read), or None when there
    was nothing to move (a damaged cache entry, or a run that is fine or gone).
    """
    try:
        run_id = cached_run_id(root, step, key)
    except RecordError:
        return None
    if run_id is None:
        return None
    try:
        load_run(root, run_id)
        return None
    except RecordError:
        pass
    ensure_dir(tmp)
    target = tmp / f"{run_id}.damaged-{os.urandom(3).hex()}"
    try:
        os.replace(run_dir(root, run_id), target)
    except OSError:
        return None
    return target


# --- cache ---------------------------------------------------------------------------------
def cache_dir(root: Path, step: str) -> Path:
    return root / "cache" / step


def cache_entry(root: Path, step: str, key: str) -> Path:
    return cache_dir(root, step) / f"{key}.json"


def file_hash_table(root: Path) -> Path:
    """The (path, size, mtime) -> sha256 table that makes re-hashing inputs cheap."""
    return root / "cache" / "filehash.json"


def read_cache(
    root: Path, step: str, key: str, *, fields: tuple[str, ...] = ("run_id",)
) -> Record | None:
    """The cache entry of key (None: a miss). A cache entry, not a record: a damaged one
    (or one without the named string fields) is a warning and a miss (:mod:`.cachefile`)."""
    return read_json_entry(
        cache_entry(root, step, key),
        what=f"{step} cache entry",
        valid=lambda data: all(isinstance(data.get(f), str) and data[f] for f in fields),
    )


def cached_run_id(root: Path, step: str, key: str) -> str | None:
    entry = read_cache(root, step, key)
    run_id = entry.get("run_id") if entry is not None else None
    return str(run_id) if run_id else None


def write_cache(root: Path, step: str, key: str, data: Record, *, model: str = "") -> None:
    """Point key at data, under the model's (or the step's) lock."""
    entry = cache_entry(root, step, key)
    guard = model_lock(root, model) if model else lock_path(entry)
    with locked(guard):
        write_json_atomic(entry, stamped({**data, "key": key}))


def record_cache(root: Path, step: str, key: str, run_id: str, *, model: str = "") -> None:
    write_cache(root, step, key, {"run_id": run_id}, model=model)


def model_lock(root: Path, model: str) -> Path:
    """The lock file two writers of one model's records take (bless, cache pointers)."""
    return root / "models" / model / ".lock"


def cancelled_file(root: Path, run_id: str) -> Path:
    """``cancelled/<run-id>.json``: a training that was stopped (a Kubernetes Job deleted on
    Ctrl-C). Outside ``runs/``: nothing a later step trusts, only what happened."""
    return root / "cancelled" / f"{run_id}.json"


def record_cancelled(root: Path, run_id: str, record: Record) -> Path:
    path = cancelled_file(root, run_id)
    ensure_dir(path.parent)
    write_json_atomic(path, stamped({**record, "run_id": run_id, "status": "cancelled"}))
    return path
