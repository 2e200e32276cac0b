"""Image records: ``builds/<image>/{build,scan,latest}.json`` and their ``*.jsonl`` histories.

``<image>`` is the key under ``images:`` in mlops.yaml. Three kinds of record:

* ``build``  — a local build (``build.json``, history ``build-history.jsonl``);
* ``scan``   — the image checks' verdict (``scan.json``, ``scan-history.jsonl``);
* ``latest`` — the pushed image render and deploy pin by digest (``latest.json``,
  history ``history.jsonl``): ``{"image": "repo@sha256:...", "model_hash", "run_id",
  "git_commit", ...}``.

Plus ``wheels/<digest>/`` at the store's top: hermetic builds' downloaded wheels, with a
``complete.json`` written last.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlops_sessions.cachefile import read_json_entry
from mlops_sessions.records.io import (
    Record,
    append_and_point,
    now,
    read_log,
    read_record,
    stamped,
    write_json_atomic,
)

KINDS = ("build", "scan", "latest")
WHEELS_COMPLETE = "complete.json"


def builds_dir(root: Path) -> Path:
    return root / "builds"


def build_dir(root: Path, image: str) -> Path:
    return builds_dir(root) / image


def record_path(root: Path, image: str, kind: str) -> Path:
    return build_dir(root, image) / f"{kind}.json"


def history_path(root: Path, image: str, kind: str) -> Path:
    name = "history.jsonl" if kind == "latest" else f"{kind}-history.jsonl"
    return build_dir(root, image) / name


def wheels_dir(root: Path) -> Path:
    return root / "wheels"


def wheel_set_dir(root: Path, digest: str) -> Path:
    """Where the wheels of one requirement set (its digest) are kept."""
    return wheels_dir(root) / digest[:24]


def wheels_complete(directory: Path, digest: str) -> bool:
    """Whether directory holds the complete download of the wheel set digest.

    Its ``complete.json`` is a cache entry: a damaged one is a warning and a fresh download.
    """
    marker = read_json_entry(
        directory / WHEELS_COMPLETE,
        what="wheel cache marker",
        valid=lambda d: d.get("digest") == digest,
    )
    return marker is not None


def mark_wheels_complete(directory: Path, digest: str, python: str) -> None:
    """Written last into a wheel set's staging directory: the download is complete."""
    write_json_atomic(
        directory / WHEELS_COMPLETE,
        stamped({"digest": digest, "python": python, "downloaded_at": now()}),
    )


def images(root: Path) -> list[str]:
    """Names of the images with records, sorted."""
    directory = builds_dir(root)
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.iterdir() if p.is_dir())


def _fix(root: Path, image: str, kind: str) -> str:
    redo = {"build": "mlops build", "scan": "mlops scan", "latest": "mlops push"}[kind]
    return f"delete {record_path(root, image, kind)} and re-run `{redo}`"


def record(root: Path, image: str, kind: str, data: Mapping[str, Any]) -> Record:
    """Append data to the kind's history and make it the kind's current record."""
    written = stamped(data)
    append_and_point(history_path(root, image, kind), record_path(root, image, kind), written)
    return written


def load_record(root: Path, image: str, kind: str) -> Record | None:
    return read_record(record_path(root, image, kind), fix=_fix(root, image, kind))


def load_history(root: Path, image: str, kind: str) -> list[Record]:
    """Every record of one kind for one image, oldest first."""
    path = history_path(root, image, kind)
    return read_log(path, fix=f"remove the damaged line from {path}, or delete the file")
