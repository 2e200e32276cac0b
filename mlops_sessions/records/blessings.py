"""Blessings: ``models/<model>/blessed.json`` (the current one) and ``blessings.jsonl``.

A model is blessed when its evaluation passes the gate. Every blessing is appended to the
log and becomes the pointer, in one locked :func:`~mlops_sessions.records.io.append_and_point`,
so two evaluations blessing the same model at once leave a log and a pointer that agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlops_sessions.records import keys
from mlops_sessions.records.io import Record, append_and_point, read_log, read_record, stamped


def model_dir(root: Path, model: str) -> Path:
    return keys.local(root, keys.model(model))


def blessed_file(root: Path, model: str) -> Path:
    return keys.local(root, keys.blessed(model))


def log_file(root: Path, model: str) -> Path:
    return keys.local(root, keys.blessings_log(model))


def _fix(root: Path, model: str) -> str:
    return (
        f"delete {blessed_file(root, model)} and re-bless the model with "
        f"`mlops evaluate {model} --force`"
    )


def blessed(root: Path, model: str) -> Record | None:
    """The model's current blessing, or None when it was never blessed."""
    return read_record(blessed_file(root, model), fix=_fix(root, model))


def blessings(root: Path, model: str) -> list[Record]:
    """Every blessing of the model, oldest first."""
    return read_log(
        log_file(root, model),
        fix=f"remove the damaged line from {log_file(root, model)}, or delete the file "
        "(past blessings are then forgotten)",
    )


def bless(root: Path, model: str, record: Mapping[str, Any]) -> Record:
    """Record a blessing; returns the record as written."""
    written = stamped(record)
    append_and_point(log_file(root, model), blessed_file(root, model), written)
    return written
