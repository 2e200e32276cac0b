"""Progressive delivery against kmock's Kubernetes emulator, with a fake live analysis.

The real `kubernetes` client talks to the emulator over HTTP; the tests/deploy controller
thread reports rollouts in .status. The analysis is tests/rollout/fakes.FakeAnalysis: the
gate's own decide() on numbers the test chose. Intervals are one second.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from mlops_sessions.errors import MlopsError
from mlops_sessions.executors.kube.lease import DeployLocked
from mlops_sessions.planning.live_analysis import Outcome
from mlops_sessions.records import rollouts
from mlops_sessions.steps import abort as abort_step
from mlops_sessions.steps import deploy as deploy_step
from mlops_sessions.steps import promote as promote_step
from mlops_sessions.steps import rollback as rollback_step
from mlops_sessions.steps import status as status_step
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


def test_a_first_deploy_goes_straight_to_stable(cluster, project) -> None:
    ref = first_release(project, cluster)
    assert image(cluster, "stable") == ref
    assert weights(cluster) == {"stable": 100, "canary": 0}
    assert [r["name"] for r in vs_routes(cluster)] == ["weighted"]
    assert deployment(cluster, "canary")["spec"]["replicas"] == 0
    current, records = history(cluster)
    assert current == "1" and records[1]["status"] == "rolled-out"
    assert rollout_state(cluster) is None


@pytest.mark.slow
def test_a_healthy_canary_steps_through_and_is_promoted(cluster, project, capsys) -> None:
    old = first_release(project, cluster)
    new = project.build("v2", "model-bbb")
    fake = FakeAnalysis(probe=probe(cluster))
    assert deploy(project, fake) == 0, capsys.readouterr().err
    # Each step was judged once, on a window that starts at its own weight change.
    assert [w.step for w in fake.windows] == [0, 1, 2]
    assert [w.weight for w in fake.windows] == [10, 50, 100]
    for seen, window in zip(fake.seen, fake.windows, strict=True):
        routes = seen["routes"]
        # While a step is judged: A/B cohort to the canary, the rest split by the step.
        assert routes[0]["name"] == "ab-canary"
        assert routes[0]["match"] == [{"headers": {"x-digits-canary": {"exact": "always"}}}]
        split = {d["destination"]["subset"]: d["weight"] for d in routes[1]["route"]}
        assert split == {"stable": 100 - window.weight, "canary": window.weight}
        assert seen["canary"]["spec"]["replicas"] == 1
        assert seen["canary"]["spec"]["template"]["spec"]["containers"][0]["image"] == new
        assert window.seconds == pytest.approx(1.0)
    state = rollout_state(cluster)
    assert state is not None
    starts = [m["window"]["start"] for m in state["measurements"]]
    assert starts == sorted(starts)
    # Promoted: stable runs the new build, all traffic on it, the canary at 0.
    assert image(cluster, "stable") == new != old
    assert weights(cluster) == {"stable": 100, "canary": 0}
    assert [r["name"] for r in vs_routes(cluster)] == ["weighted"]
    assert deployment(cluster, "canary")["spec"]["replicas"] == 0
    current, records = history(cluster)
    assert current == "2"
    record = records[2]
    assert record["status"] == "rolled-out"
    assert record["rollout"]["phase"] == "promoted"
    assert len(record["rollout"]["measurements"]) == 3
    assert state["phase"] == "promoted" and state["settled"]
    report = (store_target(project) / "r000002" / "report.md").read_text()
    assert report.startswith("## ✅ digits: rollout PROMOTED")
    assert report.count("| `error_rate` |") == 3


@pytest.mark.slow
def test_a_bad_canary_is_aborted_with_the_failure_first(cluster, project, capsys) -> None:
    old = first_release(project, cluster)
    project.build("v2", "model-bbb")
    capsys.readouterr()
    code = deploy(project, FakeAnalysis(canary=BAD_AT_STEP_2))
    err = capsys.readouterr().err
    assert code == 1
    failure = err.split("mlops deploy: digits: ", 1)[1].splitlines()[0]
    assert failure.startswith("error_rate = 0.2 (bound <= 0.01; regression <= 0.005) at step 2/3")
    assert "(canary 50%), window" in failure and "above the maximum 0.01" in failure
    # 100 % stable, the canary back to 0 (and to the build that runs), stable untouched.
    assert weights(cluster) == {"stable": 100, "canary": 0}
    assert [r["name"] for r in vs_routes(cluster)] == ["weighted"]
    assert image(cluster, "stable") == old
    assert deployment(cluster, "canary")["spec"]["replicas"] == 0
    current, records = history(cluster)
    assert current == "1"
    assert records[2]["status"] == "failed" and records[2]["restored_to"] == 1
    assert records[2]["reason"] == failure
    judged = [m["judged"] for m in records[2]["rollout"]["measurements"]]
    assert judged == ["passed", "failed"]
    report = (store_target(project) / "r000002" / "report.md").read_text()
    assert report.startswith("## ❌ digits: rollout ABORTED")
    assert f"- **{failure}**" in report


def test_the_same_build_again_writes_nothing(cluster, project) -> None:
    first_release(project, cluster)
    before = cluster.request_count()
    assert deploy(project) == 0
    assert cluster.writes(before) == []


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


def test_promote_skips_the_remaining_steps(cluster, project, capsys) -> None:
    first_release(project, cluster)
    new = project.build("v2", "model-bbb")
    project.rollout(steps="[10, 50, 100]", interval="3s")
    thread, result = background_deploy(project, FakeAnalysis())
    wait_for(lambda: at_step(cluster, 0))
    capsys.readouterr()
    assert promote_step.run(cli_args(project, "promote", "--json")) == 0
    thread.join(30)
    answer = json_in(capsys.readouterr().out)
    assert (answer["status"], answer["revision"], answer["restored_to"]) == ("promoted", 2, None)
    thread.join(30)
    assert result == [0]
    assert image(cluster, "stable") == new
    assert weights(cluster) == {"stable": 100, "canary": 0}
    state = rollout_state(cluster)
    assert state is not None and state["phase"] == "promoted"
    assert state["ended_by"].startswith("mlops promote")
    assert state["measurements"] == []  # promoted before the first window was judged


def test_promote_is_refused_where_a_deploy_would_be(cluster, project) -> None:
    first_release(project, cluster)
    project.build("v2", "model-bbb")
    project.rollout(steps="[10, 100]", interval="2s")
    thread, result = background_deploy(project, FakeAnalysis())
    wait_for(lambda: at_step(cluster, 0))
    project.scan(passed=False)  # the canary's image failed its scan meanwhile
    with pytest.raises(MlopsError, match=r"(?s)refusing to promote 'digits'.*failed its scan"):
        promote_step.run(cli_args(project, "promote"))
    assert abort_step.run(cli_args(project, "abort")) == 0
    thread.join(30)
    assert result == [1]
    assert weights(cluster) == {"stable": 100, "canary": 0}


def test_abort_ends_a_running_rollout(cluster, project, capsys) -> None:
    old = first_release(project, cluster)
    project.build("v2", "model-bbb")
    project.rollout(steps="[10, 50, 100]", interval="5s")
    thread, result = background_deploy(project, FakeAnalysis())
    wait_for(lambda: at_step(cluster, 0))
    capsys.readouterr()
    assert abort_step.run(cli_args(project, "abort", "--json")) == 0
    thread.join(30)
    answer = json_in(capsys.readouterr().out)
    assert (answer["model"], answer["status"], answer["restored_to"]) == ("digits", "aborted", 1)
    assert answer["rollout"]["weights"] == {"stable": 100, "canary": 0}
    thread.join(30)
    assert result == [1]
    assert image(cluster, "stable") == old
    assert weights(cluster) == {"stable": 100, "canary": 0}
    _, records = history(cluster)
    assert records[2]["status"] == "failed"
    assert records[2]["reason"].startswith("aborted by mlops abort")


@pytest.mark.slow
def test_a_second_deploy_racing_a_rollout_is_refused_by_the_lease(cluster, project) -> None:
    first_release(project, cluster)
    project.build("v2", "model-bbb")
    thread, result = background_deploy(project, FakeAnalysis(delay=0.5))
    wait_for(lambda: at_step(cluster, 0))
    project.build("v3", "model-ccc")
    # The Lease names the live driver: the second deploy stops before any write.
    before = cluster.request_count()
    with pytest.raises(DeployLocked, match=r"is in progress at step 1/3, driven by .* pid"):
        deploy(project)
    assert [w for w in cluster.writes(before) if "digits-mlops-rollout" not in w
            and "leases" not in w] == []  # fmt: skip
    # And a rollback (which takes the same Lease) cannot interleave either: it asks the
    # driver to abort instead -- see test_rollback_during_a_rollout_aborts_it_first.
    thread.join(30)
    assert result == [0]
    # The rollout went on undisturbed and promoted what it started with.
    assert image(cluster, "stable").endswith(project.build("v2", "model-bbb").split("@")[1])


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
def test_status_shows_phase_step_weights_and_last_measurements(cluster, project, capsys) -> None:
    first_release(project, cluster)
    project.build("v2", "model-bbb")
    project.rollout(steps="[10, 50, 100]", interval="1s")
    thread, result = background_deploy(project, FakeAnalysis(canary={0: {"error_rate": 0.004}}))
    wait_for(lambda: at_step(cluster, 1))
    capsys.readouterr()
    assert status_step.run(cli_args(project, "status")) == 0
    out = capsys.readouterr().out
    assert "rollout of revision 2: progressing at step 2/3" in out
    assert "weights stable 50% / canary 50%" in out
    assert "last canary: error_rate 0.004, latency_p95_ms 20" in out
    assert "last stable: error_rate 0.001" in out
    thread.join(30)
    assert result == [0]


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
