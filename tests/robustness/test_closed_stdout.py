"""Class of failure: a reader that closes the output early (`mlops config | head -c0`) turns
into a traceback (issue 21).

Every command of the pipeline table runs, as a user runs it, with its standard output
connected to a pipe whose reader is already gone. Whatever the command does (prints a
result, or stops with its own error), stderr holds no traceback and no "Exception ignored"
report of the interpreter's flush at exit; a command that had something to print ends with
141 (128 + SIGPIPE), the status documented in mlops_sessions/console/output.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlops_sessions import pipeline
from tests.conftest import REPO, clean_env

DIGEST = "sha256:" + "a" * 64
EXAMPLE = str(REPO / "mlops.yaml")
# Per command: arguments that get it as far as it can go on this machine without a
# cluster, a registry or a trained model ('{tmp}' is the test's directory). Commands that
# need more stop with their own one-line error, which must not become a traceback either.
ARGUMENTS: dict[str, list[str]] = {
    "validate": [],
    "config": [],
    "schema": [],
    "test": ["-k", "no_test_has_this_name"],
    "train": ["--dry-run"],
    "evaluate": [],
    "lineage": ["HEAD"],
    "store": ["status"],
    "serve": ["--model-dir", "{tmp}/no-model"],
    "build": ["-c", EXAMPLE, "--dry-run"],
    "scan": ["-c", EXAMPLE, "--dry-run"],
    "push": ["-c", EXAMPLE, "--dry-run"],
    "eject": ["--dry-run"],
    "ci": ["github", "-o", "{tmp}/ci.yml"],
    "make": ["-o", "{tmp}/mlops.mk"],
    "render": [
        "-c",
        EXAMPLE,
        "--out",
        "{tmp}/rendered",
        "--image",
        f"serve=reg.example/s@{DIGEST}",
    ],
    "fetch-model": ["--uri", "s3://bucket/m.tgz", "--sha256", "a" * 64, "--dest", "{tmp}/fm"],
    "deploy": ["-c", EXAMPLE, "--dry-run", "--image", f"serve=reg.example/s@{DIGEST}"],
    "promote": [],
    "abort": [],
    "rollback": ["--dry-run"],
    "status": [],
    "init": ["{tmp}/new-project"],
}
# Commands that print their result on this machine (the others stop early with an error).
PRINTS = {
    "validate",
    "config",
    "schema",
    "train",
    "store",
    "scan",
    "eject",
    "ci",
    "make",
    "render",
    "init",
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scaffolded project, the directory every command runs in."""
    root = tmp_path_factory.mktemp("closed-stdout")
    done = subprocess.run(
        [sys.executable, "-m", "mlops_sessions", "init", str(root / "p")],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return root / "p"


COMMANDS = [step.name for step in pipeline.commands()]


def test_the_table_of_arguments_names_real_commands() -> None:
    """A command added to the pipeline table runs here too (with no arguments until it
    gets a row above); a row for a command that is gone is an error."""
    assert set(ARGUMENTS) <= set(COMMANDS)


def _closed_pipe_run(cwd: Path, argv: list[str]) -> subprocess.CompletedProcess[str]:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the command writes a byte
    try:
        return subprocess.run(
            [sys.executable, "-m", "mlops_sessions", *argv],
            cwd=cwd,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(KUBECONFIG=str(cwd / "no-kubeconfig"), MLOPS_STORE_ENDPOINT=""),
            timeout=240,
            check=False,
        )
    finally:
        os.close(write_end)


@pytest.mark.parametrize("command", [*COMMANDS, "--help", "--version"])
def test_closed_stdout_is_a_quiet_exit(command: str, project: Path, tmp_path: Path) -> None:
    arguments = ARGUMENTS.get(command, [])
    argv = [command, *(arg.replace("{tmp}", str(tmp_path)) for arg in arguments)]
    done = _closed_pipe_run(project, argv)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "Exception ignored" not in done.stderr, done.stderr[-3000:]
    assert "BrokenPipeError" not in done.stderr, done.stderr[-3000:]
    # A command that printed ends with 141; one that stopped first, with its own error.
    # argparse's --help and --version exit 0 when their text fit in the pipe's buffer.
    allowed = (0, 141) if command.startswith("--") else (1, 2, 141)
    assert done.returncode in allowed, (done.returncode, done.stderr[-2000:])
    if command in PRINTS:
        assert done.returncode == 141, (done.returncode, done.stderr[-2000:])
    if done.returncode == 141:
        assert done.stderr == "", done.stderr[-2000:]


def test_stdout_on_a_full_device_is_one_line(project: Path) -> None:
    """Not a closed pipe but a write that fails (/dev/full): one line, status 1."""
    if not Path("/dev/full").exists():
        pytest.skip("/dev/full is not available here")
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "mlops_sessions", "schema"],
            cwd=project,
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
            timeout=120,
            check=False,
        )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "no space left" in lines[0] and lines[0].startswith("mlops schema: ")


def test_head_reads_a_prefix_and_the_command_is_quiet(project: Path) -> None:
    """The shell's way: `mlops schema | head -1` prints the first line, nothing else."""
    shell = shutil.which("sh")
    if shell is None:
        pytest.skip("no POSIX shell")
    done = subprocess.run(
        [shell, "-c", f"'{sys.executable}' -m mlops_sessions schema | head -1"],
        cwd=project,
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=120,
        check=False,
    )
    assert done.stdout == "{\n"
    assert done.stderr == ""
