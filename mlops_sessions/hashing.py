"""Content hashes for cache keys: files, directories, and data that may be large.

Large data files are re-hashed only when their size or mtime changed: a small side table
(``.mlops/cache/filehash.json``) remembers (size, mtime_ns) -> sha256, the way DVC and
make-like tools avoid re-reading unchanged inputs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from mlops_sessions.cachefile import read_json_entry

# Git's view of the files under a directory (``gitinfo.list_files``): None when the
# directory is not in a checkout (or is ignored), and the tree is walked instead.
ListFiles = Callable[[Path], list[Path] | None]

_CHUNK = 1 << 20
_SKIP_DIRS = {
    "__pycache__",
    ".git",
    ".mlops",
    ".nox",
    ".venv",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def sha256_json(data: object) -> str:
    return sha256_text(json.dumps(data, sort_keys=True, separators=(",", ":"), default=str))


class FileHashCache:
    """sha256 of files, memoised on (path, size, mtime_ns) and persisted between runs.

    list_files is git's view of a code directory, given by whoever reads git (the drivers
    pass ``gitinfo.list_files``), so hashing itself runs no git; without it a code tree is
    walked, skipping caches and virtualenvs.
    """

    def __init__(self, table: Path | None, list_files: ListFiles | None = None) -> None:
        self.table = table
        self.list_files = list_files
        self.entries: dict[str, list[object]] = {}
        self.hashed = 0  # files actually read (tests use this to prove the cache works)
        if table is not None:
            # A memo, not a record: a damaged table only costs re-hashing (warned, dropped).
            self.entries = read_json_entry(table, what="file hash memo", valid=_memo_rows) or {}
        self._dirty = False

    def file(self, path: Path) -> str:
        stat = path.stat()
        key = str(path.resolve())
        entry = self.entries.get(key)
        if (
            isinstance(entry, list)
            and len(entry) == 3
            and entry[0] == stat.st_size
            and entry[1] == stat.st_mtime_ns
        ):
            return str(entry[2])
        digest = sha256_file(path)
        self.hashed += 1
        self.entries[key] = [stat.st_size, stat.st_mtime_ns, digest]
        self._dirty = True
        return digest

    def tree(self, directory: Path, *, git_aware: bool = True) -> str:
        """Hash of a directory: relative names and contents of its files.

        git_aware (for code): only the files git would track there — every file when the
        directory is not in a checkout or is ignored. Off (for data): every file, since an
        ignored data file still changes the result.
        """
        files = _files_under(directory, self.list_files) if git_aware else _walk(directory, skip=())
        return _tree_digest(directory, files, self.file)

    def path(self, target: Path) -> str:
        return self.tree(target) if target.is_dir() else self.file(target)

    def save(self) -> None:
        if self.table is not None and self._dirty:
            # A memo that cannot be saved (a file where the store should be, a read-only
            # checkout) only costs re-hashing next time; the step that writes a record
            # there reports the path.
            with contextlib.suppress(OSError):
                _save_memo(self.table, self.entries)
            self._dirty = False


def _memo_rows(table: dict[str, object]) -> bool:
    """Every row of the memo is [size, mtime_ns, sha256], as :meth:`FileHashCache.file` writes."""
    return all(isinstance(row, list) and len(row) == 3 for row in table.values())


def _save_memo(table: Path, entries: dict[str, list[object]]) -> None:
    """Write the memo table by temp file + rename. Not through records.io: hashing sits
    below the records layer (the import contract), and the memo is not a record — a
    reader drops a damaged table and re-hashes."""
    table.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{table.name}.", suffix=".tmp", dir=table.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(entries, handle, sort_keys=True)
        os.replace(tmp, table)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def sha256_dir(directory: Path) -> str:
    """Hash of every file under directory, walking the file system (no git, no memo):
    for artifacts such as a SavedModel, where every file counts."""
    files = sorted(p for p in directory.rglob("*") if p.is_file())
    return _tree_digest(directory, files, sha256_file)


def _tree_digest(directory: Path, files: Iterable[Path], file_hash: Callable[[Path], str]) -> str:
    # One line per file, 'relative/path NUL sha256 LF', in path order: names and contents
    # both count, and the result does not depend on the walk order.
    digest = hashlib.sha256()
    for rel, path in sorted((p.relative_to(directory).as_posix(), p) for p in files):
        digest.update(rel.encode() + b"\0" + file_hash(path).encode() + b"\n")
    return digest.hexdigest()


def _files_under(directory: Path, list_files: ListFiles | None) -> Iterable[Path]:
    listed = list_files(directory) if list_files is not None else None
    if listed is not None:
        return [p for p in listed if not (_SKIP_DIRS & set(p.relative_to(directory).parts))]
    return _walk(directory, skip=_SKIP_DIRS)


def _walk(directory: Path, skip: Iterable[str]) -> list[Path]:
    skipped = set(skip)
    found: list[Path] = []
    for base, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if d not in skipped)
        found.extend(Path(base) / name for name in files)
    return sorted(found)
