"""Reading cache entries: files that only save work, so damage costs a warning and a miss.

Two kinds of file live under ``.mlops/`` and beside it, and they fail differently:

* a **record** (a run, a verdict, a blessing, a deploy revision) is history that nothing
  can re-create; a damaged one stops the step with the file and the fix
  (:func:`mlops_sessions.records.io.read_record`);
* a **cache entry** (the train cache, the test-pass cache, the evaluation reuse, the file
  hash memo, the nox install stamp, the schema verdict) is a shortcut to work that can be
  done again. A damaged one — empty, truncated, not JSON, JSON of the wrong shape, a
  directory where the file belongs, unreadable — must never block the pipeline.

This module reads cache entries. On damage it prints ONE warning line naming the file (once
per file and process), removes the entry so the step's write can put a good one in its
place, and answers "miss". Only the standard library: every layer may use it, down to
:mod:`mlops_sessions.hashing`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Files warned about in this process: a step that reads one entry several times warns once.
_warned: set[str] = set()


def read_json_entry(
    path: Path, *, what: str, valid: Callable[[Any], bool] | None = None
) -> dict[str, Any] | None:
    """The JSON object in the cache entry at path, or None for a miss.

    A missing file is a quiet miss. Anything else that is not a JSON object accepted by
    valid (the entry's shape: the fields its reader needs) is a damaged entry: warned
    about, dropped, a miss. what names the cache in the warning ("train cache entry").
    """
    raw = _read(path, what)
    if raw is None:
        return None
    data, why = _parse(raw, valid)
    if data is None:
        _damaged(path, what, why)
    return data


def parse_json_entry(
    raw: bytes, *, where: str, what: str, valid: Callable[[Any], bool] | None = None
) -> dict[str, Any] | None:
    """The JSON object of a cache entry read from elsewhere (the shared store's objects),
    or None: damage is warned about naming where, and the caller removes the entry."""
    data, why = _parse(raw, valid)
    if data is None:
        _warn(where, what, why)
    return data


def _parse(raw: bytes, valid: Callable[[Any], bool] | None) -> tuple[dict[str, Any] | None, str]:
    """(the entry, "") or (None, why it is damaged)."""
    if not raw.strip():
        return None, "empty"
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None, "not valid JSON: truncated or overwritten"
    if not isinstance(data, dict):
        return None, f"holds a JSON {type(data).__name__}, not an object"
    if valid is not None and not valid(data):
        return None, "lacks the fields this version reads"
    return data, ""


def read_text_entry(path: Path, *, what: str, valid: Callable[[str], bool]) -> str | None:
    """The text of the cache entry at path, or None for a miss (damage as above)."""
    raw = _read(path, what)
    if raw is None:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        _damaged(path, what, "not text")
        return None
    if not valid(text):
        _damaged(path, what, "not in the format this version writes")
        return None
    return text


def marker_present(path: Path, *, what: str) -> bool:
    """Whether the empty marker file at path is there (its presence is the cached answer).

    A marker with content or a directory in its place was not written by us: it is
    dropped with a warning and counts as absent, so the answer is worked out afresh.
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        return False
    except OSError:
        return False  # an unreachable cache directory: the answer is simply worked out again
    if path.is_dir():
        _damaged(path, what, "a directory where an empty marker file belongs")
        return False
    if info.st_size:
        _damaged(path, what, "a marker file that is not empty")
        return False
    return True


def drop(path: Path) -> None:
    """Remove a cache entry, whatever is in its place; a failure only leaves it there."""
    with contextlib.suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def _read(path: Path, what: str) -> bytes | None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None  # a file where a parent directory belongs: the write reports that path
    except IsADirectoryError:
        _damaged(path, what, "a directory where the entry's file belongs")
        return None
    except OSError as exc:
        _damaged(path, what, f"cannot be read: {exc.strerror}")
        return None
    if not raw.strip():
        _damaged(path, what, "empty")
        return None
    return raw


def _damaged(path: Path, what: str, why: str) -> None:
    """Warn (once per file) that the entry at path is damaged, and remove it."""
    _warn(os.fspath(path), what, why)
    drop(path)


def _warn(where: str, what: str, why: str) -> None:
    if where not in _warned:
        _warned.add(where)
        print(
            f"warning: ignoring the damaged {what} {where} ({why}); "
            "it only saves work, so it is removed and written again",
            file=sys.stderr,
            flush=True,
        )
