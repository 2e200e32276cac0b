"""Progress output: rich on a terminal, plain lines otherwise."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from mlops_sessions.executors.tf.progress import (
    PlainReporter,
    RichReporter,
    format_metrics,
    reporter_for,
)

Factory = Callable[..., Any]


class TerminalBuffer(io.StringIO):
    """An in-memory stream that says it is a terminal, as a pty does."""

    def isatty(self) -> bool:
        return True


def test_reporter_follows_the_stream() -> None:
    assert isinstance(reporter_for("m", io.StringIO()), PlainReporter)
    assert isinstance(reporter_for("m", TerminalBuffer()), RichReporter)


def test_plain_lines() -> None:
    out = io.StringIO()
    reporter = PlainReporter("digits", out)
    reporter.train_begin(3, 10)
    reporter.epoch_end(0, {"loss": 0.5, "accuracy": 0.8})
    reporter.epoch_end(1, {"loss": float("nan")})
    reporter.close()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[digits] epoch 1/3  loss 0.5000  accuracy 0.8000  (")
    assert lines[1].startswith("[digits] epoch 2/3  loss nan")


def test_rich_display_shows_epochs_and_metrics() -> None:
    out = TerminalBuffer()
    reporter = RichReporter("digits", out)
    reporter.train_begin(2, 4)
    for step in range(4):
        reporter.batch_end(step, {"loss": 1.0 - step / 10})
    reporter.epoch_end(0, {"loss": 0.25, "accuracy": 0.9})
    reporter.epoch_end(1, {"loss": 0.125, "accuracy": 0.95})
    reporter.close()
    text = out.getvalue()
    assert "digits epochs" in text and "2/2" in text
    assert "loss 0.1250" in text and "accuracy 0.9500" in text


def test_format_metrics_skips_non_numbers() -> None:
    assert format_metrics({"loss": 0.5, "note": "x", "inf": float("inf")}) == "loss 0.5000  inf inf"


@pytest.mark.slow
def test_mlops_train_on_a_real_terminal_uses_rich(toy_project: Factory) -> None:
    project = toy_project()
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlops_sessions", "train", "-c", str(project.config)],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        close_fds=True,
        env={**os.environ, "COLUMNS": "120", "TERM": "xterm-256color"},
    )
    os.close(follower)
    chunks = []
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1.0)
            if ready:
                try:
                    data = os.read(leader, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        os.close(leader)
    text = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, text
    assert "toy epochs" in text and "2/2" in text and "━" in text  # a rich progress bar
    assert "[toy] epoch 1/2" not in text  # not the plain CI lines
    assert "created run" in text
