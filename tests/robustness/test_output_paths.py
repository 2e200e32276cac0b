"""Class of failure: a command that writes files ends in a traceback or leaves a half-written
output when its target is in the way, cannot be written, or the disk fills (issue 21).

Every writing command (render --out, make -o, ci -o, eject, init) meets every fault: a file
where a directory is wanted, a directory where a file is wanted, a read-only location, a
full disk. Each must answer with one line naming the path, exit non-zero, and leave what
was there as it was. Read-only and full disks are real tmpfs mounts when this machine
lets the test mount one; otherwise the full disk is ENOSPC injected at the one write
helper (mlops_sessions.console.output) and the read-only case is skipped.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mlops_sessions.console import output
from mlops_sessions.frontends import cli
from tests.conftest import REPO

DIGEST = "sha256:" + "b" * 64


def _snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under root with its content (None for a directory)."""
    if not root.exists():
        return {}
    if root.is_file():
        return {".": root.read_bytes()}
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with images and deployments: the repository's example pipeline, copied."""
    root = tmp_path_factory.mktemp("outputs") / "project"
    root.mkdir()
    shutil.copy(REPO / "mlops.yaml", root / "mlops.yaml")
    for needed in ("requirements.lock", "requirements.in", "examples", "dockerfiles"):
        source = REPO / needed
        if source.is_dir():
            shutil.copytree(source, root / needed)
        elif source.exists():
            shutil.copy(source, root / needed)
    return root


# Command -> argv writing to TARGET (a directory for render/init/eject, a file otherwise).
def _render(project: Path, target: Path) -> list[str]:
    cfg = str(project / "mlops.yaml")
    return ["render", "-c", cfg, "--out", str(target), "--image", f"serve=reg.example/s@{DIGEST}"]


def _make(project: Path, target: Path) -> list[str]:
    return ["make", "-c", str(project / "mlops.yaml"), "-o", str(target)]


def _ci(project: Path, target: Path) -> list[str]:
    return ["ci", "github", "-c", str(project / "mlops.yaml"), "-o", str(target)]


def _init(project: Path, target: Path) -> list[str]:
    return ["init", str(target)]


COMMANDS: dict[str, tuple[Callable[[Path, Path], list[str]], str]] = {
    "render": (_render, "dir"),
    "make": (_make, "file"),
    "ci": (_ci, "file"),
    "init": (_init, "dir"),
}


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse's own refusal of an argument: usage + one line
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    return code, err


def _one_line_naming(err: str, path: Path) -> str:
    assert "Traceback" not in err
    first = err.strip().splitlines()[0]
    assert str(path) in err or path.name in first, err
    return first


@pytest.mark.parametrize("command", list(COMMANDS))
def test_wrong_kind_of_path_in_the_way(
    command: str, project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build, wants = COMMANDS[command]
    target = tmp_path / "target"
    if wants == "dir":
        target.write_text("a file where a directory is wanted\n")
    else:
        target.mkdir()
        (target / "keep.txt").write_text("kept\n")
    before = _snapshot(tmp_path)
    code, err = _run(build(project, target), capsys)
    assert code != 0
    _one_line_naming(err, target)
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_file_in_the_parent_path(
    command: str, project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build, _ = COMMANDS[command]
    blocker = tmp_path / "blocker"
    blocker.write_text("x\n")
    target = blocker / "sub" / "out"
    code, err = _run(build(project, target), capsys)
    assert code != 0
    first = _one_line_naming(err, target)
    assert str(blocker) in first
    assert blocker.read_text() == "x\n"


def test_init_over_a_file_inside_the_project(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`model` is a file where the scaffold puts a folder: nothing at all is written."""
    target = tmp_path / "p"
    target.mkdir()
    (target / "model").write_text("mine\n")
    before = _snapshot(target)
    code, err = _run(["init", str(target)], capsys)
    assert code != 0
    assert "model is a file" in err and "Traceback" not in err
    assert _snapshot(target) == before


# --- read-only and full file systems ---------------------------------------------------


def _mount_tmpfs(where: Path, options: str) -> bool:
    mount = shutil.which("mount")
    if mount is None or os.geteuid() != 0:
        return False
    done = subprocess.run(
        [mount, "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


@pytest.fixture
def small_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A 32 KiB file system (real tmpfs), or ENOSPC injected at the write helper."""
    where = tmp_path / "small"
    where.mkdir()
    if _mount_tmpfs(where, "size=32k"):
        try:
            yield where
        finally:
            subprocess.run(["umount", str(where)], check=False)
        return
    real_fdopen = os.fdopen

    class FullFile:
        def __init__(self, fd: int) -> None:
            self.inner = real_fdopen(fd, "wb")

        def __enter__(self) -> FullFile:
            return self

        def __exit__(self, *exc: object) -> None:
            self.inner.close()

        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(output.os, "fdopen", lambda fd, mode: FullFile(fd))
    yield where


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "ro"
    where.mkdir()
    if not _mount_tmpfs(where, "size=64k,ro"):
        if os.geteuid() == 0:
            pytest.skip("cannot mount a read-only tmpfs here, and root ignores permissions")
        where.chmod(0o555)
        yield where
        where.chmod(0o755)
        return
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_full_disk(
    command: str,
    project: Path,
    small_disk: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    build, wants = COMMANDS[command]
    filler = small_disk / "filler"
    with contextlib.suppress(OSError):  # most of the disk, as on a full machine
        filler.write_bytes(b"\0" * (28 * 1024))
    target = small_disk / ("out" if wants == "dir" else "out.txt")
    before = _snapshot(small_disk)
    code, err = _run(build(project, target), capsys)
    assert code != 0, err
    first = _one_line_naming(err, target)
    assert "no space left" in first
    after = _snapshot(small_disk)
    assert after == before, "a half-written output was left behind"


@pytest.mark.parametrize("command", list(COMMANDS))
def test_read_only_location(
    command: str, project: Path, read_only: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build, wants = COMMANDS[command]
    target = read_only / ("out" if wants == "dir" else "out.txt")
    code, err = _run(build(project, target), capsys)
    assert code != 0
    first = _one_line_naming(err, target)
    assert "writ" in first  # 'not writable' / 'read-only': the reason, with the fix
    assert _snapshot(read_only) == {}


def test_eject_into_a_file_where_dockerfiles_go(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "ejecting"
    shutil.copytree(project, copy)
    shutil.rmtree(copy / "dockerfiles", ignore_errors=True)
    (copy / "dockerfiles").write_text("not a folder\n")
    code, err = _run(["eject", "-c", str(copy / "mlops.yaml")], capsys)
    assert code != 0
    first = _one_line_naming(err, copy / "dockerfiles")
    assert "is a file" in first
    assert (copy / "dockerfiles").read_text() == "not a folder\n"


def test_a_successful_render_replaces_every_file(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The all-or-nothing writer still writes: a second render over the first works."""
    out = tmp_path / "r"
    assert cli.main(_render(project, out)) == 0
    first = _snapshot(out)
    assert cli.main(_render(project, out)) == 0
    assert _snapshot(out) == first
    assert not [p for p in out.rglob(".*.tmp")], "staging files left behind"
    capsys.readouterr()
