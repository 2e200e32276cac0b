"""`mlops deploy` with the real live analysis (executors.observe.prometheus), no fake: what the
driver does when Prometheus cannot be asked, and when a real Prometheus has no traffic
of the canary to show. (Judging real traffic of real `mlops serve` processes routed by
tests/rollout/router.py is the analysis's end-to-end test.)"""

from __future__ import annotations

import pytest

from mlops_sessions.steps import deploy as deploy_step
from tests.kube.rollout_fixtures import cluster, project
from tests.rollout.conftest import cli_args, rollout_state, weights
from tests.rollout.fakes import FakeAnalysis

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
__all__ = ["cluster", "project"]  # the real control plane's, for tests/rollout's tests


@pytest.mark.slow
def test_an_unreachable_prometheus_aborts_after_error_limit(cluster, project, capsys) -> None:
    project.build("v1", "model-aaa")
    assert deploy_step.run(cli_args(project, "deploy"), analyse=FakeAnalysis()) == 0
    project.build("v2", "model-bbb")
    project.rollout(steps="[100]", interval="0.5s", prometheus="http://127.0.0.1:9")
    capsys.readouterr()
    assert deploy_step.run(cli_args(project, "deploy")) == 1  # the real analyser
    err = capsys.readouterr().err
    assert "4 Prometheus errors in a row (error_limit 3)" in err
    assert weights(cluster) == {"stable": 100, "canary": 0}
    state = rollout_state(cluster)
    assert state is not None and state["phase"] == "aborted"
    assert {m["outcome"] for m in state["measurements"]} == {"error"}
    # The same window was asked each time: an error never moves the window on.
    assert len({(m["window"]["start"], m["window"]["end"]) for m in state["measurements"]}) == 1


@pytest.mark.slow
def test_a_canary_without_traffic_in_a_real_prometheus_is_never_promoted(
    cluster, project, prometheus, capsys
) -> None:
    project.build("v1", "model-aaa")
    assert deploy_step.run(cli_args(project, "deploy"), analyse=FakeAnalysis()) == 0
    project.build("v2", "model-bbb")
    project.rollout(steps="[100]", interval="0.5s", prometheus=prometheus.url)
    capsys.readouterr()
    assert deploy_step.run(cli_args(project, "deploy")) == 1
    assert "4 inconclusive windows in a row (inconclusive_limit 3)" in capsys.readouterr().err
    state = rollout_state(cluster)
    assert state is not None and state["phase"] == "aborted"
    assert {m["judged"] for m in state["measurements"]} == {"inconclusive"}
    assert weights(cluster) == {"stable": 100, "canary": 0}
