"""The rollout driver on the real API server, with a fake live analysis: Prometheus errors,
a canary without traffic, a resume that does not match, a rollback racing the driver, and
the test router following the VirtualService step by step.

The analysis is tests/rollout/fakes.FakeAnalysis (the gate's own decide() on numbers the
test chose), so each verdict comes exactly when the test wants it; everything on the
cluster is real: the objects, the rollout ConfigMap, the Lease and the Deployment
controller. The promotion and abort judged on real traffic are in test_rollout_real.py.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from typing import Any

import pytest

from mlops_sessions.errors import MlopsError
from mlops_sessions.planning.live_analysis import Outcome
from mlops_sessions.steps import abort as abort_step
from mlops_sessions.steps import deploy as deploy_step
from mlops_sessions.steps import rollback as rollback_step
from tests.kube.rollout_fixtures import cluster, project
from tests.rollout.conftest import (
    cli_args,
    history,
    image,
    rollout_state,
    weights,
)
from tests.rollout.fakes import FakeAnalysis
from tests.rollout.router import Router, vs_reader
from tests.rollout.test_router import backend

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
__all__ = ["cluster", "project"]  # the real control plane's, for tests/rollout's tests

BAD_AT_STEP_2 = {1: {"error_rate": 0.2}}


def deploy(project: Any, fake: FakeAnalysis | None = None, *rest: str) -> int:
    return deploy_step.run(cli_args(project, "deploy", *rest), analyse=fake or FakeAnalysis())


def first_release(project: Any, cluster: Any) -> str:
    ref = project.build("v1", "model-aaa")
    assert deploy(project) == 0
    return ref


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


def test_a_rollout_s_traffic_follows_its_virtual_service(cluster, project) -> None:
    """Through a real progressive deploy: at each step's window the router, reading the
    VirtualService from the real API server, sends the step's share and the A/B cohort to
    the canary."""
    project.build("v1", "model-aaa")
    assert deploy_step.run(cli_args(project, "deploy"), analyse=FakeAnalysis()) == 0
    project.build("v2", "model-bbb")
    with backend("stable") as stable_url, backend("canary") as canary_url:
        router = Router(
            vs_reader(str(cluster.kubeconfig), "digits", cluster.namespace),
            {"stable": stable_url, "canary": canary_url},
            refresh_s=0.0,
        )
        seen: list[tuple[Counter[str], Counter[str]]] = []

        def send() -> None:
            plain = router.load(100, "/v1/models/digits:predict", lambda i: b"{}")
            cohort = router.load(
                10, "/v1/models/digits:predict", lambda i: b"{}",
                headers=lambda i: {"x-digits-canary": "always"},
            )  # fmt: skip
            answered = [json.loads(s.body)["track"] for s in plain]
            assert answered == [s.subset for s in plain]  # it reached that backend
            seen.append((Counter(s.subset for s in plain), Counter(s.subset for s in cohort)))

        fake = FakeAnalysis(probe=send)
        assert deploy_step.run(cli_args(project, "deploy"), analyse=fake) == 0
        assert [dict(plain) for plain, _ in seen] == [
            {"stable": 90, "canary": 10},
            {"stable": 50, "canary": 50},
            {"canary": 100},
        ]
        assert all(cohort == {"canary": 10} for _, cohort in seen)
        # Promoted: everything to stable, and the A/B route is gone with the canary.
        with router.serve() as url:
            import urllib.request

            request = urllib.request.Request(
                url + "/v1/models/digits:predict", data=b"{}",
                headers={"x-digits-canary": "always"}, method="POST",
            )  # fmt: skip
            with urllib.request.urlopen(request, timeout=5) as answer:
                assert answer.headers["X-Routed-To"] == "stable"
