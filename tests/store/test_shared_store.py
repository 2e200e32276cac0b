"""The shared store end to end: a laptop and a CI checkout sharing one bucket (real S3 API).

The laptop trains and blesses; CI, with an empty ``.mlops/``, reuses the laptop's run (no
training, model not even downloaded) and judges its candidate against the model the
laptop blessed. Then the ways it can go wrong: a remote that is down (a clear error, never
a silent first run; ``--offline`` says so in the verdict), one that answers 503 SlowDown
(retried), a pipeline that lost the race for the blessed pointer (judged again).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlops_sessions.console.shared_store import SharedRemote, remote_for
from mlops_sessions.executors.s3.store import S3ObjectStore
from mlops_sessions.records.store import Store

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _run_id(result: Any) -> str:
    return str(result["runs"][0]["run_id"])


@pytest.mark.slow
def test_ci_reuses_the_laptops_run_and_judges_against_its_blessing(
    checkout: Callable[..., Any], bucket: Any
) -> None:
    laptop = checkout("laptop")
    code, trained, err = laptop.mlops("train")
    assert code == 0, err
    run_id = _run_id(trained)
    assert not trained["runs"][0]["reused"]
    code, evaluated, err = laptop.mlops("evaluate")
    assert code == 0, err
    assert evaluated["models"]["toy"]["blessed"]
    assert evaluated["models"]["toy"]["first_run"]
    # The run, its evaluation and the pointer are on the remote.
    assert f"runs/{run_id}/run.json" in bucket.objects()
    assert f"runs/{run_id}/model.tar.gz" in bucket.objects()
    assert bucket.json("models/toy/blessed.json")["run_id"] == run_id
    assert len(bucket.objects("models/toy/blessings/")) == 1

    ci = checkout("ci")
    code, trained, err = ci.mlops("train")
    assert code == 0, err
    (summary,) = trained["runs"]
    assert summary["reused"] and summary["run_id"] == run_id
    assert summary["model_on_remote_only"], "the model is downloaded only when needed"
    assert ci.local_runs() == [run_id]
    assert [k for k in bucket.objects("runs/") if k.endswith("/run.json")] == [
        f"runs/{run_id}/run.json"
    ], "an unchanged key creates no run"

    code, evaluated, err = ci.mlops("evaluate")
    assert code == 0, err
    toy = evaluated["models"]["toy"]
    assert toy["baseline"]["available"] and toy["baseline"]["run_id"] == run_id
    assert not toy["first_run"], "CI judges against the laptop's blessed model"
    assert toy["metrics"]["accuracy"]["baseline"] is not None
    assert evaluated["store"]["downloaded_bytes"] > 0

    # A third checkout: the same inputs and the same baseline -> the verdict is reused from
    # the remote and the model is never downloaded.
    third = checkout("third")
    assert third.mlops("train")[0] == 0
    code, evaluated, err = third.mlops("evaluate")
    assert code == 0, err
    assert evaluated["models"]["toy"]["reused"]
    assert not (third.store / "runs" / run_id / "model").exists()

    # lineage answers from the remote on a machine that only ran `lineage`.
    fresh = checkout("fresh")
    code, traced, err = fresh.mlops("lineage", run_id[:12])
    assert code == 0, err
    (chain,) = traced["runs"]
    assert chain["run_id"] == run_id and chain["blessed_now"]
    assert chain["evaluations"] >= 2


@pytest.mark.slow
def test_503_slowdown_is_retried(slowdown_proxy: tuple[str, Any], bucket: Any) -> None:
    endpoint, faults = slowdown_proxy
    remote = remote_for(bucket.url, endpoint=endpoint)
    faults.slowdown = 2
    remote.put("probe.json", b"{}")
    assert faults.answered_503 == 2
    faults.slowdown = 2
    found = remote.get("probe.json")
    assert found is not None and found.data == b"{}"
    assert faults.answered_503 == 4


def _closed_endpoint() -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there once the socket is closed


@pytest.mark.slow
def test_remote_down_is_a_clear_error_never_a_first_run(
    checkout: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    laptop = checkout("laptop")
    assert laptop.mlops("train")[0] == 0
    assert laptop.mlops("evaluate")[0] == 0
    ci = checkout("ci")
    assert ci.mlops("train")[0] == 0  # online: the run's record is now in CI's cache

    monkeypatch.setenv("MLOPS_STORE_ENDPOINT", _closed_endpoint())
    monkeypatch.setenv("MLOPS_STORE_RETRIES", "1")
    code, result, err = ci.mlops("evaluate", "--force")
    assert code != 0 and result is None
    assert "cannot reach the remote store" in err and "--offline" in err
    assert not list(ci.store.glob("runs/*/eval/*")), "no verdict, least of all a first run"

    fresh = checkout("fresh")
    code, result, err = fresh.mlops("train")
    assert code != 0 and "cannot reach the remote store" in err
    assert fresh.local_runs() == [], "an unreachable remote is not a cache miss"

    # --offline: the laptop judges against its local cache, and the verdict says so.
    code, result, err = laptop.mlops("evaluate", "--offline", "--force")
    assert code == 0, err
    toy = result["models"]["toy"]
    assert any(n.startswith("offline:") for n in toy["notes"])
    assert result["store"] == {
        "remote": result["store"]["remote"],
        "offline": True,
        "downloaded_bytes": 0,
    }
    verdict = Path(toy["verdict"]).read_text()
    assert "offline: judged against the local cache" in verdict


@pytest.mark.slow
def test_a_bless_that_lost_the_race_is_judged_again(
    checkout: Callable[..., Any], bucket: Any
) -> None:
    """CI judges its candidate against the laptop's blessing A; while it judges, another
    pipeline blesses C. CI's conditional write fails, and CI judges again against C."""
    from mlops_sessions.config.loader import load
    from mlops_sessions.drivers.training import plans
    from mlops_sessions.steps import evaluate as evaluate_step

    laptop = checkout("laptop")
    assert laptop.mlops("train")[0] == 0
    assert laptop.mlops("evaluate")[0] == 0
    other = checkout("other")
    code, trained, err = other.mlops("train", "--param", "hidden=6")
    assert code == 0, err
    competitor = _run_id(trained)
    ci = checkout("ci")
    code, trained, err = ci.mlops("train", "--param", "hidden=12")
    assert code == 0, err
    candidate = _run_id(trained)

    class RacingRemote(S3ObjectStore):
        """The real client; the first pointer write lets the other pipeline bless first."""

        raced = False

        def put(
            self,
            key: str,
            data: bytes,
            *,
            if_match: str | None = None,
            if_none_match: bool = False,
        ) -> str:
            if key == "models/toy/blessed.json" and not RacingRemote.raced:
                RacingRemote.raced = True
                code, result, err = other.mlops("evaluate", "--param", "hidden=6")
                assert code == 0 and result["models"]["toy"]["blessed"], err
            return super().put(key, data, if_match=if_match, if_none_match=if_none_match)

    config = load(ci.config)
    model = config.models["toy"]
    store = Store(
        config.store_path, SharedRemote(RacingRemote(bucket.url, endpoint=bucket.endpoint))
    )
    plan = plans.plan_run(config, model, params_override={"hidden": 12})
    run = plans.reusable_run(store, plan.key)
    assert run is not None and run["run_id"] == candidate
    outcome = evaluate_step.evaluate_model(config, store, model, run)

    assert RacingRemote.raced
    assert outcome.baseline.run_id == competitor, "judged again against the new blessing"
    assert any(n.startswith("re-judged:") for n in outcome.notes)
    evals = sorted(p.name for p in (ci.store / "runs" / candidate / "eval").iterdir())
    assert len(evals) == 2, "the first verdict is kept beside the second"
    pointer = bucket.json("models/toy/blessed.json")
    assert pointer["run_id"] == (candidate if outcome.passed else competitor)
    # Every blessing has its own object: none was overwritten.
    runs_blessed = [bucket.json(k)["run_id"] for k in bucket.objects("models/toy/blessings/")]
    assert competitor in runs_blessed
    assert len(runs_blessed) == 2 + int(outcome.passed)


@pytest.mark.slow
def test_store_status_push_pull_and_gc(checkout: Callable[..., Any], bucket: Any) -> None:
    laptop = checkout("laptop")
    code, trained, _ = laptop.mlops("train")
    blessed_run = _run_id(trained)
    assert laptop.mlops("evaluate")[0] == 0
    code, trained, err = laptop.mlops("train", "--param", "hidden=5")
    assert code == 0, err
    old_run = _run_id(trained)

    code, status, err = laptop.mlops("store", "status")
    assert code == 0, err
    assert status["remote"]["runs"] == 2 and status["remote"]["only_local"] == []
    assert status["blessed"]["toy"] == {"local": blessed_run, "remote": blessed_run}

    fresh = checkout("fresh")
    code, pulled, err = fresh.mlops("store", "pull", "--models")
    assert code == 0, err
    assert pulled["runs"] == 2 and pulled["models"] == [blessed_run]
    assert (fresh.store / "runs" / blessed_run / "model" / "saved_model.pb").is_file()
    assert not (fresh.store / "runs" / old_run / "model").exists()

    # Nothing is old enough yet.
    code, result, err = fresh.mlops("store", "gc", "--older-than", "1")
    assert code == 0 and result["pruned"] == [], err
    # Everything is old enough: only the unblessed run goes, here and on the remote.
    code, result, err = fresh.mlops("store", "gc", "--older-than", "0")
    assert code == 0, err
    assert result["pruned"] == [old_run] and result["kept"] == {blessed_run: "blessed"}
    assert not any(k.startswith(f"runs/{old_run}/") for k in bucket.objects())
    assert any(k.startswith(f"runs/{blessed_run}/") for k in bucket.objects())
    assert fresh.local_runs() == [blessed_run]
    # The laptop's cache still names the pruned run; the remote no longer does.
    assert not [k for k in bucket.objects("cache/train/") if old_run in str(bucket.json(k))]


@pytest.mark.slow
def test_the_drift_reference_travels_with_its_evaluation(
    checkout: Callable[..., Any], bucket: Any
) -> None:
    """A serve image built on another machine counts live inputs against the reference
    the laptop's evaluation wrote (evaluate.drift): it is shared with the evaluation."""
    from mlops_sessions.records import evaluations as evaluation_records

    laptop = checkout("laptop", drift=True)
    assert laptop.mlops("train")[0] == 0
    code, evaluated, err = laptop.mlops("evaluate")
    assert code == 0, err
    run_id = evaluated["models"]["toy"]["run_id"]
    eval_id = evaluated["models"]["toy"]["eval_id"]
    assert f"runs/{run_id}/eval/{eval_id}/drift_reference.json" in bucket.objects()

    ci = checkout("ci", drift=True)
    assert ci.mlops("train")[0] == 0
    code, evaluated, err = ci.mlops("evaluate")
    toy = evaluated["models"]["toy"]
    # The baseline moved from none to this run: the laptop's values are judged again,
    # not measured (they come with their reference), and the new evaluation keeps it.
    assert code == 0 and any("values measured by" in n for n in toy["notes"]), (toy, err)
    reference = evaluation_records.drift_reference(ci.store, run_id)
    assert (
        reference is not None
        and reference.read_bytes()
        == (laptop.store / "runs" / run_id / "eval" / eval_id / "drift_reference.json").read_bytes()
    )
