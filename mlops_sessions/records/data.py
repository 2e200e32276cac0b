"""Cached copies of object-storage data inputs: ``data/<sha256>/<file name>``.

An ``s3://`` entry under ``data:`` in mlops.yaml is downloaded once into this
content-addressed cache (by :mod:`mlops_sessions.executors.s3.data`) and read from here by
every later run: the directory is the object's sha256, the file keeps the key's last
segment (``digits.csv.gz``), so code that looks at the suffix (pandas' compression
inference) sees what it would see with a local file. A copy is placed by rename after its
sha256 was checked, so a file here is complete; temporary files of a download live beside
it as ``.<name>.fetch-*`` and are never read. A download holds the object's lock
(``data/.<sha256>.lock``) from before its temp file exists until its copy is in place.

:func:`sweep` is ``mlops store gc``'s part here: copies no declared entry uses, temp files
of downloads that are not running, and empty directories and lock files left behind go;
anything whose lock is held (a download in progress) is skipped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from mlops_sessions.records.io import lock_path, try_locked, unlink_held_lock

FALLBACK_NAME = "object"
UNUSED_LOCK = "unused lock file"
FETCH_MARK = ".fetch-"  # in the name of a download's temp file: ``.<name>.fetch-*``


def data_dir(root: Path) -> Path:
    return root / "data"


def object_file(root: Path, sha256: str, uri: str) -> Path:
    """Where the checked copy of the object uri with this sha256 lives in the store."""
    return data_dir(root) / sha256 / file_name(uri)


def file_name(uri: str) -> str:
    """The file name a copy of uri gets: the key's last segment (never '', '.' or '..')."""
    name = PurePosixPath(uri.rstrip("/")).name if "/" in uri.removeprefix("s3://") else ""
    return name if name not in ("", ".", "..") and "\\" not in name else FALLBACK_NAME


@dataclass
class Sweep:
    """What :func:`sweep` removed (or, dry, would remove) from the data cache."""

    removed: list[dict[str, object]] = field(default_factory=list)  # path, bytes, why
    skipped: list[dict[str, str]] = field(default_factory=list)  # path, why
    kept: list[str] = field(default_factory=list)  # copies a declared entry uses

    @property
    def freed_bytes(self) -> int:
        return sum(int(str(r["bytes"])) for r in self.removed)

    def as_dict(self) -> dict[str, object]:
        return {
            "removed": sorted(self.removed, key=lambda r: str(r["path"])),
            "skipped": self.skipped,
            "kept": self.kept,
            "freed_bytes": self.freed_bytes,
        }


def sweep(root: Path, keep: Collection[tuple[str, str]], *, dry_run: bool = False) -> Sweep:
    """Clean ``data/`` of the store at root, keeping every (sha256, file name) in keep.

    Each object directory is handled under its lock, taken without waiting: a locked one
    belongs to a running download and is skipped whole. Removed: copies not in keep, temp
    files (``.<name>.fetch-*``), then the directory when empty and its lock file; lock
    files whose directory is gone. dry_run removes nothing and creates no lock file.
    """
    found = Sweep()
    base = data_dir(root)
    if not base.is_dir():
        return found
    for directory in sorted(p for p in base.iterdir() if p.is_dir() and _is_object_dir(p)):
        lock = lock_path(directory)
        had_lock = lock.exists()
        with _free(lock, dry_run) as free:
            if not free:
                found.skipped.append({"path": str(directory), "why": "a download is running"})
                continue
            _sweep_object(directory, keep, found, dry_run=dry_run)
            if not dry_run and (not had_lock or not directory.exists()):
                # Still held: a waiting download re-checks and locks a new file (records.io).
                unlink_held_lock(lock)  # gc leaves no lock file of its own behind
                if had_lock:
                    found.removed.append({"path": str(lock), "bytes": 0, "why": UNUSED_LOCK})
    for lock in sorted(base.glob(".*.lock")):
        directory = base / lock.name[1 : -len(".lock")]
        if directory.exists() and not (dry_run and _gone(directory, found)):
            continue
        with _free(lock, dry_run) as free:
            if not free or (directory.exists() and not dry_run):
                continue  # in use: a download is about to create its directory
            found.removed.append({"path": str(lock), "bytes": 0, "why": UNUSED_LOCK})
            if not dry_run:
                unlink_held_lock(lock)
    return found


def _sweep_object(
    directory: Path, keep: Collection[tuple[str, str]], found: Sweep, *, dry_run: bool
) -> None:
    left = 0
    for child in sorted(directory.iterdir()):
        if child.is_file() and not child.is_symlink() and (directory.name, child.name) in keep:
            found.kept.append(str(child))
            left += 1
            continue
        why = "interrupted download" if FETCH_MARK in child.name else "not declared"
        found.removed.append({"path": str(child), "bytes": _size(child), "why": why})
        if not dry_run:
            _remove(child)
    if left == 0:
        found.removed.append({"path": str(directory), "bytes": 0, "why": "empty directory"})
        if not dry_run:
            with contextlib.suppress(OSError):
                directory.rmdir()


def _gone(directory: Path, found: Sweep) -> bool:
    return any(r["path"] == str(directory) for r in found.removed)


def _is_object_dir(path: Path) -> bool:
    return not path.name.startswith(".") and not path.is_symlink()


@contextlib.contextmanager
def _free(lock: Path, dry_run: bool) -> Iterator[bool]:
    """Whether nobody holds lock (taken until the block ends); dry, a missing lock file is
    free and is not created."""
    if dry_run and not lock.exists():
        yield True
        return
    with try_locked(lock) as free:
        yield free


def _size(path: Path) -> int:
    try:
        if path.is_dir() and not path.is_symlink():
            return sum(p.lstat().st_size for p in path.rglob("*") if not p.is_dir())
        return path.lstat().st_size
    except OSError:
        return 0


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
