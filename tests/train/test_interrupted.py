"""A training killed with SIGKILL leaves nothing a later run could reuse; the next run
cleans its leftovers from .mlops/tmp and trains fresh."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

Factory = Callable[..., Any]


@pytest.mark.slow
def test_killed_run_is_not_reused(toy_project: Factory, capsys: pytest.CaptureFixture[str]) -> None:
    # Slow on purpose: 8 epochs with a 0.5 s pause each, so there is time to kill it midway.
    project = toy_project(params={"epochs": 8, "sleep": 0.5})
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlops_sessions", "train", "-c", str(project.config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    seen = []
    deadline = time.monotonic() + 120
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # plain progress lines: stdout is a pipe, not a TTY
            seen.append(line)
            if "[toy] epoch 2/8" in line:
                break
            assert time.monotonic() < deadline, "training never reached epoch 2"
        else:
            pytest.fail("mlops train ended before epoch 2:\n" + "".join(seen))
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL

    # What the killed run left: a staging dir under tmp/, nothing under runs/, no cache entry.
    leftovers = project.tmp_entries()
    assert len(leftovers) == 1 and (leftovers[0] / ".mlops-owner.json").is_file()
    assert project.runs() == []
    assert not (project.store / "cache" / "train").exists()

    code, result, err = project.train(capsys=capsys)
    assert code == 0, err
    (summary,) = result["runs"]
    assert summary["reused"] is False
    assert "removed 1 leftover(s) of interrupted runs" in err
    assert project.tmp_entries() == []
    (run,) = project.runs()
    assert run["run_id"] == summary["run_id"] and run["status"] == "complete"
    assert len(run["history"]["loss"]) == 8
    assert (project.store / "runs" / run["run_id"] / "model" / "saved_model.pb").is_file()
