"""How every record under ``.mlops/`` is written and read: the bottom of the records layer.

* Writes are atomic: a temp file in the same directory, fsync, rename. A reader sees the old
  record or the new one, never half of one.
* :func:`read_record` is the ONE reader of a JSON record file. A missing file is ``None``; a
  file that is not a JSON object (truncated, hand-edited, a directory in its place) is a
  :class:`RecordError` that names the file and the fix — never a ``JSONDecodeError``
  traceback.
* :func:`read_log` is the ONE reader of an append-only ``.jsonl`` log. Policy for torn
  lines: a torn LAST line (a writer killed mid-line; the only line an appender can leave
  half-written) is skipped; a bad line anywhere else means the file was damaged by
  something other than an interrupted append, and is a :class:`RecordError`.
* :func:`append_and_point` is the ONE "append a JSON line to a log, then point ``latest``
  at it" operation, under a lock file so two writers never interleave.
* :func:`now` is the ONE timestamp format of every record: UTC ISO-8601 with milliseconds
  and a ``Z`` suffix (``2026-12-01T14:45:59.123Z``), which sorts as text.
* Every record written carries ``schema`` (:data:`SCHEMA`), the version of its format.

Imports only the standard library and :mod:`mlops_sessions.errors`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mlops_sessions.errors import StepError

# Version of the record formats; bumped when a reader must tell old records from new.
SCHEMA = 1

Record = dict[str, Any]


class RecordError(StepError):
    """A record under ``.mlops/`` (or its path) is damaged; the message names file and fix."""


def now() -> str:
    """The timestamp of every record: UTC, ISO-8601, milliseconds, 'Z'."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def stamped(data: Mapping[str, Any]) -> Record:
    """data with the record format version first (an explicit ``schema`` in data wins)."""
    return {"schema": SCHEMA, **data}


# --- paths ---------------------------------------------------------------------------------
def ensure_dir(path: Path) -> Path:
    """mkdir -p, but a file where a directory belongs is a RecordError naming it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise RecordError(_not_a_dir(path)) from None
    except NotADirectoryError:
        raise RecordError(_not_a_dir(_first_file(path))) from None
    if not path.is_dir():
        raise RecordError(_not_a_dir(path))
    return path


def _first_file(path: Path) -> Path:
    for parent in reversed([path, *path.parents]):
        if parent.exists() and not parent.is_dir():
            return parent
    return path


def _not_a_file(path: Path) -> str:
    return f"{path} is a directory where the store expects a file; move or delete it and re-run"


def _not_a_dir(path: Path) -> str:
    return f"{path} is a file where the store expects a directory; move or delete it and re-run"


# --- writes --------------------------------------------------------------------------------
def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to path via a temp file in the same directory and an atomic rename."""
    _write_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    _write_atomic(path, text)


def _write_atomic(path: Path, text: str) -> None:
    ensure_dir(path.parent)
    if path.is_dir():
        raise RecordError(_not_a_file(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def locked(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive flock on lock_file (created if needed) for the block.

    Writers that could collide (two blessings of one model, two cache pointer updates, two
    appends to one log) take the same lock; readers never need it because every pointer
    and record file is replaced atomically.
    """
    ensure_dir(lock_file.parent)
    while True:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        if _still_the_file(fd, lock_file):
            break
        os.close(fd)  # removed while we waited (a lock no one used, swept): lock the new one
    try:
        yield
    finally:
        os.close(fd)  # closing releases the lock


@contextlib.contextmanager
def try_locked(lock_file: Path) -> Iterator[bool]:
    """Take lock_file's exclusive flock without waiting: yields False when someone holds it.

    For sweepers (``mlops store gc``): what is locked is in use and is skipped. A lock taken
    here may be unlinked by the holder (:func:`unlink_held_lock`) before the block ends;
    :func:`locked` notices a lock file that was removed while it waited and locks anew.
    """
    ensure_dir(lock_file.parent)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield _still_the_file(fd, lock_file)
    finally:
        os.close(fd)


def unlink_held_lock(lock_file: Path) -> None:
    """Remove a lock file while holding its lock (from :func:`try_locked`): a waiter on the
    old file re-checks and locks a new one, so no two holders ever overlap."""
    with contextlib.suppress(FileNotFoundError):
        lock_file.unlink()


def _still_the_file(fd: int, lock_file: Path) -> bool:
    try:
        here = os.stat(lock_file)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (held.st_dev, held.st_ino)


def append_line(log: Path, data: Mapping[str, Any]) -> None:
    """Append one JSON line to log (callers hold the log's lock).

    A torn last line left by a killed writer is cut off first: appending after it would turn
    a skippable torn tail into a bad line in the middle of the log.
    """
    ensure_dir(log.parent)
    line = (json.dumps(dict(data), sort_keys=True, default=str) + "\n").encode("utf-8")
    with open(log, "a+b") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size:
            handle.seek(max(0, size - 1))
            if handle.read(1) != b"\n":
                handle.seek(0)
                content = handle.read()
                handle.truncate(content.rfind(b"\n") + 1)
                handle.seek(0, os.SEEK_END)
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def append_and_point(log: Path, pointer: Path, data: Mapping[str, Any]) -> None:
    """Append data to the log, then make pointer hold it: the one 'history + latest' write.

    Under the log's lock, so two writers leave the log and the pointer agreeing on the same
    newest record. The log is written first: a crash between the two leaves the history one
    record ahead of the pointer, never a pointer to something the history does not hold.
    """
    with locked(lock_path(log)):
        # Refused before the append, so a pointer that cannot be written leaves no log
        # line behind either.
        if pointer.is_dir():
            raise RecordError(_not_a_file(pointer))
        append_line(log, data)
        write_json_atomic(pointer, dict(data))


def lock_path(path: Path) -> Path:
    return path.parent / f".{path.name}.lock"


# --- reads ---------------------------------------------------------------------------------
def read_record(path: Path, *, fix: str = "") -> Record | None:
    """The JSON object in path; None when there is no such file.

    Anything else that is not a JSON object is a RecordError naming the file and the fix
    (fix: what the user should do, e.g. "run `mlops train --force`").
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        raise RecordError(_not_a_dir(_first_file(path.parent))) from None
    except IsADirectoryError:
        raise RecordError(
            f"{path} is a directory where the store expects a record file; {_fix(path, fix)}"
        ) from None
    except OSError as exc:
        raise RecordError(
            f"cannot read the record {path} ({exc.strerror}); {_fix(path, fix)}"
        ) from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise RecordError(f"{path} is not valid JSON (truncated?); {_fix(path, fix)}") from None
    if not isinstance(data, dict):
        raise RecordError(f"{path} holds {type(data).__name__}, not a record; {_fix(path, fix)}")
    return data


def require_record(path: Path, *, fix: str = "") -> Record:
    """read_record for a record that must exist."""
    data = read_record(path, fix=fix)
    if data is None:
        raise RecordError(f"{path} is missing; {_fix(path, fix)}")
    return data


def read_log(path: Path, *, fix: str = "") -> list[Record]:
    """Records of an append-only .jsonl log, oldest first; a missing file is an empty log.

    A torn last line is skipped (see the module docstring); any other bad line raises.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    except NotADirectoryError:
        raise RecordError(_not_a_dir(_first_file(path.parent))) from None
    except IsADirectoryError:
        raise RecordError(
            f"{path} is a directory where the store expects a log file; {_fix(path, fix)}"
        ) from None
    except OSError as exc:
        raise RecordError(
            f"cannot read the log {path} ({exc.strerror}); {_fix(path, fix)}"
        ) from None
    lines = raw.split(b"\n")
    out: list[Record] = []
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            data = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            data = None
        if isinstance(data, dict):
            out.append(data)
        elif number == last and not raw.endswith(b"\n"):
            continue  # torn by a writer killed mid-line: the record was never complete
        else:
            raise RecordError(
                f"{path}: line {number + 1} is not a JSON record (the log is damaged); "
                f"{_fix(path, fix)}"
            )
    return out


def _fix(path: Path, fix: str) -> str:
    return fix or f"delete {path} (the store re-creates it) and re-run"
