"""Progressive delivery when the analysis misbehaves, against kmock's Kubernetes emulator
with a fake live analysis: Prometheus errors, a canary without traffic, a resume that
does not match, a rollback racing the driver.

The happy paths (first deploy, promotion, abort on a failing canary, promote and abort
from another process, status, the Lease against a second deploy, the same build again)
run against the real API server in tests/kube/test_rollout_real.py, judged on real
traffic. What stays here needs verdicts chosen by the test (tests/rollout/fakes
.FakeAnalysis: the gate's own decide() on numbers the test chose); the API server plays
no part in the fault. Intervals are one second.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from mlops_sessions.errors import MlopsError
from mlops_sessions.planning.live_analysis import Outcome
from mlops_sessions.records import rollouts
from mlops_sessions.steps import abort as abort_step
from mlops_sessions.steps import deploy as deploy_step
from mlops_sessions.steps import rollback as rollback_step
from tests.rollout.conftest import (
    cli_args,
    deployment,
    history,
    image,
    rollout_state,
    vs_routes,
    weights,
)
from tests.rollout.fakes import FakeAnalysis

BAD_AT_STEP_2 = {1: {"error_rate": 0.2}}


def deploy(project: Any, fake: FakeAnalysis | None = None, *rest: str) -> int:
    return deploy_step.run(cli_args(project, "deploy", *rest), analyse=fake or FakeAnalysis())


def first_release(project: Any, cluster: Any) -> str:
    ref = project.build("v1", "model-aaa")
    assert deploy(project) == 0
    return ref


def probe(cluster: Any) -> Any:
    return lambda: {"routes": vs_routes(cluster), "canary": deployment(cluster, "canary")}


def store_target(project: Any) -> Path:
    return rollouts.target_dir(project.root / ".mlops", "digits", "kmock", "ml")


def json_in(out: str) -> Any:
    """The one JSON document in out (the driving thread's summary may print beside it)."""
    start = out.index("{\n")
    return json.JSONDecoder().raw_decode(out[start:])[0]


def wait_for(predicate: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def background_deploy(project: Any, fake: FakeAnalysis) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []

    def run() -> None:
        try:
            result.append(deploy(project, fake))
        except MlopsError as exc:
            result.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def at_step(cluster: Any, step: int, revision: int = 2) -> bool:
    state = rollout_state(cluster)
    return (
        state is not None
        and state["revision"] == revision
        and state["step"] >= step
        and state["step_started_at"] is not None
    )


@pytest.mark.slow
def test_rollback_during_a_rollout_aborts_it_first(cluster, project, capsys) -> None:
    old = first_release(project, cluster)
    project.build("v2", "model-bbb")
    project.rollout(steps="[100]", interval="0.5s")
    assert deploy(project) == 0  # revision 2: v2 promoted
    project.build("v3", "model-ccc")
    project.rollout(steps="[10, 50, 100]", interval="5s")
    thread, result = background_deploy(project, FakeAnalysis())
    wait_for(lambda: at_step(cluster, 0, revision=3))
    assert rollback_step.run(cli_args(project, "rollback")) == 0
    thread.join(30)
    assert result == [1]  # the rollout of revision 3 was aborted
    assert "first aborted the rollout of revision 3" in capsys.readouterr().err
    state = rollout_state(cluster)
    assert state is not None and state["phase"] == "aborted" and state["revision"] == 3
    # then the rollback: back to revision 1's build, recorded as revision 4
    assert image(cluster, "stable") == old
    current, records = history(cluster)
    assert current == "4" and records[4]["source"] == "rollback"


@pytest.mark.slow
def test_prometheus_errors_beyond_the_limit_abort(cluster, project, capsys) -> None:
    first_release(project, cluster)
    project.build("v2", "model-bbb")
    capsys.readouterr()
    assert deploy(project, FakeAnalysis(outcome=Outcome.ERROR)) == 1
    assert "4 Prometheus errors in a row (error_limit 3)" in capsys.readouterr().err
    assert weights(cluster) == {"stable": 100, "canary": 0}


def test_a_canary_without_traffic_is_never_promoted(cluster, project, capsys) -> None:
    first_release(project, cluster)
    project.build("v2", "model-bbb")
    project.rollout(steps="[100]", interval="0.3s")
    capsys.readouterr()
    assert deploy(project, FakeAnalysis(requests=0)) == 1
    assert "4 inconclusive windows in a row" in capsys.readouterr().err
    state = rollout_state(cluster)
    assert state is not None and state["phase"] == "aborted"


@pytest.mark.slow
def test_resume_refuses_a_different_canary_or_spec(cluster, project) -> None:
    first_release(project, cluster)
    project.build("v2", "model-bbb")
    project.rollout(steps="[10, 50, 100]", interval="3s")
    thread, _ = background_deploy(project, FakeAnalysis())
    wait_for(lambda: at_step(cluster, 0))
    with pytest.raises(MlopsError, match="is in progress at step 1/3, driven by"):
        deploy(project)
    project.build("v3", "model-ccc")
    with pytest.raises(MlopsError, match=r"refusing to resume .*runs sha256:"):
        deploy(project, FakeAnalysis(), "--resume")
    assert abort_step.run(cli_args(project, "abort")) == 0
    thread.join(30)
