"""TensorFlow's native start-up notices stay out of a step's output unless asked for.

The lines come from C++ straight to file descriptor 2, so the check runs real processes
that import the real TensorFlow and reads what reached their stderr.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from mlops_sessions.executors.tf.quiet import is_noise
from tests.conftest import clean_env

IMPORT_AND_SAY = (
    "import sys\n"
    "from mlops_sessions.executors.tf.quiet import import_tensorflow\n"
    "tf = import_tensorflow()\n"
    "print(int(tf.constant(1) + 1))\n"
    "print('after import', file=sys.stderr)\n"
)


def _stderr_of(**env: str) -> str:
    # Without the outer process's TF_CPP_MIN_LOG_LEVEL: an earlier test may have set it in
    # this pytest process, and a user's own value means "leave TensorFlow's output alone".
    environment = {k: v for k, v in clean_env(**env).items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_AND_SAY],
        capture_output=True,
        text=True,
        timeout=180,
        env=environment,
        check=True,
    )
    assert done.stdout.strip() == "2"
    return done.stderr


@pytest.mark.parametrize(
    ("line", "noise"),
    [
        (
            "I0000 00:00:1796136628.884442   20763 port.cc:153] oneDNN custom operations are on.",
            True,
        ),
        ("W0000 00:00:1796136628.884442   20763 cpu_feature_guard.cc:227] optimized", True),
        (
            "WARNING: All log messages before absl::InitializeLog() is called are written to "
            "STDERR",
            True,
        ),
        ("E0000 00:00:1796136628.884442   20763 cuda_dnn.cc:8] could not load libcudnn", False),
        ("Traceback (most recent call last):", False),
        ("ImportError: libcuda.so.1: cannot open shared object file", False),
    ],
)
def test_only_info_and_warning_notices_count_as_noise(line: str, noise: bool) -> None:
    assert is_noise(line) is noise


@pytest.mark.slow
def test_import_is_quiet_by_default_and_verbose_keeps_everything() -> None:
    quiet = _stderr_of()
    assert [line for line in quiet.splitlines() if is_noise(line)] == []
    assert "after import" in quiet, "stderr written after the import must still arrive"
    verbose = _stderr_of(MLOPS_VERBOSE="1")
    assert "after import" in verbose
    # Whatever TensorFlow prints on its own is kept with --verbose: every quiet line is there.
    assert set(quiet.splitlines()) <= set(verbose.splitlines())
