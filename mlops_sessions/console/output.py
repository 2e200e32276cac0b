"""The one way a command writes what it was asked to produce, and how it leaves a closed stdout.

Files (``render --out``, ``make -o``, ``ci -o``, ``init``, ``eject``, generated files):
:func:`write_files` checks every target before it writes any (a file where a directory is
wanted, a directory where a file is wanted, a directory it may not write), stages each
file's text in a temporary file beside its target and only then renames them into place.
A full disk or a refused write therefore surfaces while staging, before any target has
changed, and the user gets one line with the path and the fix (:class:`OutputError`),
never a traceback and never a half-written output.

Standard output: a reader that stops early (``mlops config | head -1``) closes the pipe.
:func:`quiet_stdout` points the stream at /dev/null so nothing is reported at exit; the CLI
then exits with 141 (128 + SIGPIPE), what a shell reports for a tool killed by SIGPIPE, so
``set -o pipefail`` scripts still see that the output was cut short.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from mlops_sessions.errors import StepError

# The exit status of a command whose reader closed its standard output.
BROKEN_PIPE_EXIT = 128 + 13

# errno -> (what happened, the fix); the path is put in front by describe().
_REASONS: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("no space left on the device", "free some space or write somewhere else"),
    errno.EDQUOT: ("the disk quota is exhausted", "free some space or write somewhere else"),
    errno.EACCES: ("permission denied", "choose a location you can write, or fix its permissions"),
    errno.EPERM: ("operation not permitted", "choose a location you can write"),
    errno.EROFS: ("the file system is read-only", "write to a writable location"),
    errno.ENOTDIR: (
        "a part of the path is a file, not a directory",
        "remove or rename that file, or choose another path",
    ),
    errno.EISDIR: ("it is a directory", "name a file, not a directory"),
    errno.ENAMETOOLONG: ("the name is too long", "choose a shorter path"),
    errno.EIO: ("input/output error", "check the device, or write somewhere else"),
}


class OutputError(StepError):
    """A command's output could not be written; the message names the path and the fix."""


def describe(exc: OSError, path: Path | str | None = None) -> str:
    """One line for an OSError met while writing: the path, what happened, the fix."""
    where = path if path is not None else exc.filename
    reason, fix = _REASONS.get(exc.errno or 0, (exc.strerror or str(exc), ""))
    what = f"cannot write {where}" if where is not None else "cannot write the output"
    return f"{what}: {reason}" + (f"; {fix}" if fix else "")


def check_directory(
    directory: Path, what: str = "output directory", shown: Path | None = None
) -> None:
    """Refuse, with the fix, a directory that cannot be created or written.

    Walks up to the first part of the path that exists: it must be a directory that this
    user may write into (the rest is created below it). Messages name shown (the file
    that was asked for) when given, else the directory.
    """
    named = shown if shown is not None else directory
    probe = directory
    while True:
        if probe.exists() or probe.is_symlink():
            break
        if probe.parent == probe:
            return
        probe = probe.parent
    if not probe.is_dir():
        if probe == named:
            raise OutputError(
                f"cannot write {named}: it is a file, but the {what} must be a directory; "
                "remove or rename it, or choose another path"
            )
        raise OutputError(
            f"cannot write {named}: {probe} is a file, not a directory; "
            "remove or rename it, or choose another path"
        )
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(
            f"cannot write {named}: {probe} is not writable; "
            "choose a location you can write, or fix its permissions"
        )


def check_file(path: Path) -> None:
    """Refuse a file target that is a directory, or whose directory cannot be written."""
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a directory; name a file to write")
    check_directory(path.parent, "directory of the output file", shown=path)
    if path.exists() and not os.access(path.parent, os.W_OK | os.X_OK):
        raise OutputError(
            f"cannot replace {path}: its directory is not writable; "
            "choose a location you can write, or fix its permissions"
        )


def write_files(files: Mapping[Path, str | bytes]) -> None:
    """Write every file or none: check all, stage all beside their targets, then rename.

    A failure while checking or staging leaves every target as it was. The renames that
    follow are metadata operations within one directory each, which a full disk does not
    stop.
    """
    for path in files:
        check_file(path)
    # The folders this call creates, deepest first: removed again if it fails.
    created = sorted(
        {folder for path in files for folder in path.parents if not folder.exists()},
        key=lambda folder: len(folder.parts),
        reverse=True,
    )
    staged: list[tuple[str, Path]] = []
    current: Path | None = None
    try:
        for path, content in files.items():
            current = path
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            staged.append((tmp, path))
            data = content.encode("utf-8") if isinstance(content, str) else content
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            if path.exists():
                # Keep the mode of a file that is replaced (a generated script stays runnable).
                os.chmod(tmp, path.stat().st_mode & 0o7777)
            else:
                os.chmod(tmp, 0o666 & ~current_umask())
        for tmp, path in staged:
            current = path
            os.replace(tmp, path)
    except OSError as exc:
        for tmp, _ in staged:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        for folder in created:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise OutputError(describe(exc, current)) from None


def write_text(path: Path, text: str) -> None:
    """Write one file completely or not at all (see :func:`write_files`)."""
    write_files({path: text})


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def quiet_stdout() -> None:
    """After a reader closed our stdout: send what is still buffered to /dev/null, so the
    interpreter's flush at exit reports nothing."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass  # stdout has no descriptor (a test's StringIO): nothing will flush to a pipe
