"""Interrupting the process that drives a rollout: SIGKILL then --resume, SIGTERM (a CI
job cancelled mid-rollout), on the real API server, with the fake analysis in a real
subprocess: the Lease of a killed driver expires on the real server's clock.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from mlops_sessions.errors import MlopsError
from mlops_sessions.steps import deploy as deploy_step
from tests.conftest import REPO, clean_env
from tests.deploy.conftest import FAST_API
from tests.kube.rollout_fixtures import cluster, project
from tests.rollout.conftest import cli_args, deployment, history, image, rollout_state, weights
from tests.rollout.fakes import FakeAnalysis

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
__all__ = ["cluster", "project"]  # the real control plane's, for tests/rollout's tests


def driver(project: Any, cluster: Any, fake: dict[str, Any], *rest: str) -> subprocess.Popen[str]:
    """`mlops deploy` in a process of its own, analysed by FakeAnalysis(**fake)."""
    env = clean_env(KUBECONFIG=str(cluster.kubeconfig), PYTHONPATH=str(REPO))
    return subprocess.Popen(
        [sys.executable, "-m", "tests.rollout.fakes", str(project.config), json.dumps(fake),
         *rest, *FAST_API],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_until(
    cluster: Any, predicate: Any, proc: subprocess.Popen[str], timeout: float = 40
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = rollout_state(cluster)
        if state is not None and state["revision"] == 2 and predicate(state):
            return
        if proc.poll() is not None:
            raise AssertionError(f"the driver exited early: {proc.communicate()}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"timed out; driver said: {proc.communicate()}")


@pytest.mark.slow
def test_a_driver_killed_with_sigkill_is_resumed_and_promotes(cluster, project, capsys) -> None:
    project.build("v1", "model-aaa")
    assert deploy_step.run(cli_args(project, "deploy"), analyse=FakeAnalysis()) == 0
    new = project.build("v2", "model-bbb")
    project.rollout(steps="[10, 50, 100]", interval="1.5s")
    proc = driver(project, cluster, {}, "--lease-margin", "1")
    # Killed while step 2 is being judged: the split says 50 %, the lease is held.
    wait_until(cluster, lambda s: s["step"] == 1 and s["step_started_at"] is not None, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)  # reaps it and closes its pipes
    assert weights(cluster) == {"stable": 50, "canary": 50}
    assert cluster.get("coordination.k8s.io/v1/leases", "digits-mlops-deploy") is not None
    # A plain deploy does not start over: it names abort (and --resume once the lease of
    # the dead driver has expired).
    with pytest.raises(MlopsError, match=r"`mlops abort digits`"):
        deploy_step.run(cli_args(project, "deploy"), analyse=FakeAnalysis())
    capsys.readouterr()
    fake = FakeAnalysis()
    code = deploy_step.run(cli_args(project, "deploy", "--resume"), analyse=fake)
    assert code == 0, capsys.readouterr().err
    # It went on from step 2 (re-judging its window), not from step 1.
    assert [w.step for w in fake.windows] == [1, 2]
    assert image(cluster, "stable") == new
    assert weights(cluster) == {"stable": 100, "canary": 0}
    current, records = history(cluster)
    assert current == "2" and records[2]["status"] == "rolled-out"
    state = rollout_state(cluster)
    assert state is not None and state["phase"] == "promoted"
    assert len(state["measurements"]) == 3


def test_sigterm_mid_rollout_leaves_100_percent_stable_recorded(cluster, project) -> None:
    old = project.build("v1", "model-aaa")
    assert deploy_step.run(cli_args(project, "deploy"), analyse=FakeAnalysis()) == 0
    project.build("v2", "model-bbb")
    project.rollout(steps="[10, 50, 100]", interval="3s")
    proc = driver(project, cluster, {})
    wait_until(cluster, lambda s: s["step_started_at"] is not None, proc)
    assert weights(cluster) == {"stable": 90, "canary": 10}
    os.kill(proc.pid, signal.SIGTERM)  # what a CI runner does to a cancelled job
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err
    assert "SIGTERM received: the rollout will abort" in err
    assert "interrupted by SIGTERM: aborted" in err
    assert weights(cluster) == {"stable": 100, "canary": 0}
    assert image(cluster, "stable") == old
    assert deployment(cluster, "canary")["spec"]["replicas"] == 0
    current, records = history(cluster)
    assert current == "1" and records[2]["status"] == "failed"
    assert records[2]["reason"] == "interrupted by SIGTERM: aborted"
    state = rollout_state(cluster)
    assert state is not None and state["phase"] == "aborted" and state["ended_by"] == "signal"
    # The lease was released: the next deploy need not wait.
    assert cluster.get("coordination.k8s.io/v1/leases", "digits-mlops-deploy") is None


@pytest.mark.slow
def test_abort_after_the_driver_was_killed_takes_over_once_its_lease_expires(
    cluster, project
) -> None:
    from mlops_sessions.steps import abort as abort_step

    old = project.build("v1", "model-aaa")
    assert deploy_step.run(cli_args(project, "deploy"), analyse=FakeAnalysis()) == 0
    project.build("v2", "model-bbb")
    project.rollout(steps="[10, 50, 100]", interval="3s")
    proc = driver(project, cluster, {}, "--lease-margin", "1")
    wait_until(cluster, lambda s: s["step_started_at"] is not None, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    assert weights(cluster) == {"stable": 90, "canary": 10}
    started = time.monotonic()
    assert abort_step.run(cli_args(project, "abort")) == 0
    # It waited for the dead driver's lease (rollout_timeout 8s + margin 1s), no longer,
    # then aborted (a real rollout of the canary to 0 replicas).
    assert time.monotonic() - started < 20
    assert weights(cluster) == {"stable": 100, "canary": 0}
    assert image(cluster, "stable") == old
    assert deployment(cluster, "canary")["spec"]["replicas"] == 0
    current, records = history(cluster)
    assert current == "1" and records[2]["status"] == "failed"
    assert records[2]["reason"].startswith("aborted by mlops abort")
