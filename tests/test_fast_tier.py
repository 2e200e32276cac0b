"""The fast tier's watch (tests/fast_tier.py) on a tiny generated suite, in a real pytest.

A ``-m "not slow"`` run lists the unmarked test over the limit (name and seconds) under
the heading and nothing else, and still passes; a run that keeps the slow tests lists
nothing. The limit is lowered through the environment so no test here sleeps for seconds.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.fast_tier import LIMIT_ENV

REPO = Path(__file__).resolve().parent.parent
SUITE = """\
import time
import pytest

def test_quick():
    pass

def test_sleepy():
    time.sleep(0.3)

def test_sleepy_setup_only(sleepy_fixture):
    pass

@pytest.fixture
def sleepy_fixture():
    time.sleep(0.3)

@pytest.mark.slow
def test_marked_slow():
    time.sleep(0.3)
"""


def _pytest(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PYTEST")},
        "PYTHONPATH": str(REPO),
        LIMIT_ENV: "0.2",
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",  # a bare pytest starts in a fraction of a second
    }
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.fast_tier", "-p", "no:cacheprovider",
         "-o", "markers=slow: slow", "-q", *args, str(directory)],
        cwd=directory, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_a_not_slow_run_lists_unmarked_tests_over_the_limit(tmp_path: Path) -> None:
    (tmp_path / "test_generated.py").write_text(SUITE)
    result = _pytest(tmp_path, "-m", "not slow")
    assert result.returncode == 0, result.stdout + result.stderr  # it reports, never fails
    out = result.stdout
    assert "unmarked tests slower than 0.2 s" in out, out
    listed = re.findall(r"^\s*(\d+\.\d+)s  (\S+)$", out, flags=re.MULTILINE)
    assert [name for _, name in listed] == ["test_generated.py::test_sleepy"], out
    assert 0.3 <= float(listed[0][0]) < 5, listed


def test_a_run_with_the_slow_tests_lists_nothing(tmp_path: Path) -> None:
    (tmp_path / "test_generated.py").write_text(SUITE)
    result = _pytest(tmp_path, "-k", "sleepy or marked")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout and "slower than" not in result.stdout, result.stdout
