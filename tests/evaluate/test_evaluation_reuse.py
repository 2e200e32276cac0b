"""The no-op evaluation: unchanged inputs reuse the recorded verdict (issue 11).

An evaluation's inputs are the model hash, the held-out data and team code hashes, the
evaluate section and the baseline's model hash. With all of them unchanged, ``mlops
evaluate`` reuses the recorded verdict without measuring (no TensorFlow work, no new eval
directory) and says so; ``--force`` or a changed threshold measures again.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlops_sessions.executors.tf import evaluate as tf_evaluate

pytestmark = pytest.mark.filterwarnings("error")


def _evals(project, run_id: str) -> list[Path]:  # type: ignore[no-untyped-def]
    """A run's evaluation directories, oldest first, ordered as the store orders them (by
    the verdict's created_at): two evaluations in one second have ids whose random part
    does not say which came first."""

    def created(path: Path) -> tuple[str, str]:
        verdict = path / "verdict.json"
        stamp = json.loads(verdict.read_text()).get("created_at", "") if verdict.is_file() else ""
        return str(stamp), path.name

    return sorted((project.store.run_dir(run_id) / "eval").iterdir(), key=created)


def _no_measuring(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def must_not_measure(*args: object, **kwargs: object) -> object:
        raise AssertionError("recorded values must be judged, not measured again")

    monkeypatch.setattr(tf_evaluate, "measure", must_not_measure)


def test_unchanged_inputs_reuse_the_verdict(make_project, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    project = make_project()
    run = project.add_run("good")
    real_measure = tf_evaluate.measure
    # 1st: no baseline yet, measured.
    code, document = project.evaluate_json()
    assert code == 0 and document["models"]["tiny"]["reused"] is False, document
    first = document["models"]["tiny"]["eval_id"]
    # 2nd: the blessed baseline is now this model (its hash changed from none to this one):
    # a new verdict, but on the values the 1st measured — no measuring.
    _no_measuring(monkeypatch)
    code, document = project.evaluate_json()
    outcome = document["models"]["tiny"]
    assert code == 0 and outcome["reused"] is False, document
    assert outcome["eval_id"] != first
    assert any(f"values measured by evaluation {first}" in n for n in outcome["notes"]), outcome
    evals = _evals(project, run["run_id"])
    assert len(evals) == 2
    first_metrics = json.loads((evals[0] / "metrics.json").read_text())
    second_metrics = json.loads((evals[1] / "metrics.json").read_text())
    assert first_metrics["values"] == second_metrics["values"]
    assert (evals[1] / "drift_reference.json").is_file()  # the server still finds its bins
    blessings_before = len(project.store.blessings("tiny"))

    # 3rd: nothing changed: the 2nd verdict is reused as it is.
    code, out, err = project.cli("evaluate")
    assert code == 0, out + err
    assert "reused: the verdict of evaluation" in out and "--force measures again" in out
    assert out.splitlines()[0].startswith("tiny: gate PASS — run " + run["run_id"])
    assert len(_evals(project, run["run_id"])) == 2
    assert len(project.store.blessings("tiny")) == blessings_before
    code, document = project.evaluate_json()
    assert code == 0 and document["models"]["tiny"]["reused"] is True
    assert document["models"]["tiny"]["eval_id"] == outcome["eval_id"]

    monkeypatch.setattr(tf_evaluate, "measure", real_measure)
    code, out, err = project.cli("evaluate", "--force")
    assert code == 0 and "reused" not in out, out + err
    assert len(_evals(project, run["run_id"])) == 3


def test_recorded_values_are_judged_against_the_new_baseline(make_project, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The verdict of re-judged values is the new baseline's, not the recorded one."""
    project = make_project(
        "dataset: tiny_model:heldout\n"
        "metrics: [accuracy, loss]\n"
        "baseline: blessed\n"
        "allow_first_run: true\n"
        "thresholds:\n"
        "  accuracy: {vs_baseline: {max_regression: 0.02}}\n"
    )
    good = project.add_run("good", current=False)
    assert project.cli("evaluate", "--run", good["run_id"])[0] == 0  # first run: blessed
    weak = project.add_run("weak")
    code, out, err = project.cli("evaluate")
    assert code == 1 and out.startswith("tiny: FAIL accuracy"), out + err  # far below the good

    _no_measuring(monkeypatch)
    # Against itself the weak model has not regressed: the same values now pass.
    code, document = project.evaluate_json("--baseline", f"run:{weak['run_id']}")
    outcome = document["models"]["tiny"]
    assert code == 0 and outcome["passed"] is True and outcome["reused"] is False, document
    assert any("judged again against the current baseline" in n for n in outcome["notes"])
    assert len(_evals(project, weak["run_id"])) == 2


def test_damaged_recorded_values_are_measured_again(make_project) -> None:  # type: ignore[no-untyped-def]
    project = make_project()
    run = project.add_run("good")
    assert project.cli("evaluate")[0] == 0
    (evaluation,) = _evals(project, run["run_id"])
    (evaluation / "drift_reference.json").write_text('{"features": [tor')
    code, document = project.evaluate_json()  # the baseline moved: would re-judge
    outcome = document["models"]["tiny"]
    assert code == 0 and not any("values measured by" in n for n in outcome["notes"]), outcome
    assert len(_evals(project, run["run_id"])) == 2


def test_a_changed_threshold_measures_again(make_project) -> None:  # type: ignore[no-untyped-def]
    project = make_project()
    run = project.add_run("good")
    for _ in range(3):
        assert project.cli("evaluate")[0] == 0
    assert len(_evals(project, run["run_id"])) == 2  # the second re-judged, the third reused
    project.write_config(make_project.default.replace("loss: {max: 0.5}", "loss: {max: 0.6}"))
    code, out, err = project.cli("evaluate")
    assert code == 0 and "reused" not in out, out + err
    assert len(_evals(project, run["run_id"])) == 3


def test_a_failing_verdict_is_reused_as_a_failure(make_project) -> None:  # type: ignore[no-untyped-def]
    project = make_project()
    run = project.add_run("weak")
    first = project.cli("evaluate")
    second = project.cli("evaluate")
    assert first[0] == second[0] == 1
    assert "reused" in second[1] and second[1].splitlines()[0] == first[1].splitlines()[0]
    assert len(_evals(project, run["run_id"])) == 1
    assert project.store.blessed("tiny") is None


def test_values_without_their_drift_reference_are_measured_again(make_project) -> None:  # type: ignore[no-untyped-def]
    """evaluate.drift is declared: a re-judged evaluation must carry the reference the serve
    image counts live inputs against, so values recorded without one are measured again."""
    project = make_project()
    run = project.add_run("good")
    assert project.cli("evaluate")[0] == 0
    (evaluation,) = _evals(project, run["run_id"])
    (evaluation / "drift_reference.json").unlink()  # as an evaluation fetched from a remote
    code, document = project.evaluate_json()
    outcome = document["models"]["tiny"]
    assert code == 0 and not any("values measured by" in n for n in outcome["notes"]), outcome
    newest = _evals(project, run["run_id"])[-1]
    assert (newest / "drift_reference.json").is_file()
