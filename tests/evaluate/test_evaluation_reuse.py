"""The no-op evaluation: unchanged inputs reuse the recorded verdict (issue 11).

An evaluation's inputs are the model hash, the held-out data and team code hashes, the
evaluate section and the baseline's model hash. With all of them unchanged, ``mlops
evaluate`` reuses the recorded verdict without measuring (no TensorFlow work, no new eval
directory) and says so; ``--force`` or a changed threshold measures again.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_sessions.executors import tf_evaluate

pytestmark = pytest.mark.filterwarnings("error")


def _evals(project, run_id: str) -> list[Path]:  # type: ignore[no-untyped-def]
    return sorted((project.store.run_dir(run_id) / "eval").iterdir())


def test_unchanged_inputs_reuse_the_verdict(make_project, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    project = make_project()
    run = project.add_run("good")
    # 1st: no baseline yet. 2nd: the blessed baseline is now this model (its hash changed
    # from none to this one), so it measures again. 3rd: nothing changed.
    measured = []
    for _ in range(2):
        code, document = project.evaluate_json()
        assert code == 0 and document["models"]["tiny"]["reused"] is False, document
        measured.append(document["models"]["tiny"]["eval_id"])
    assert len(_evals(project, run["run_id"])) == 2
    blessings_before = len(project.store.blessings("tiny"))

    real_measure = tf_evaluate.measure

    def must_not_measure(*args: object, **kwargs: object) -> object:
        raise AssertionError("a reused verdict must not measure the model again")

    monkeypatch.setattr(tf_evaluate, "measure", must_not_measure)
    code, out, err = project.cli("evaluate")
    assert code == 0, out + err
    assert "reused: the verdict of evaluation" in out and "--force measures again" in out
    assert out.splitlines()[0].startswith("tiny: gate PASS — run " + run["run_id"])
    assert len(_evals(project, run["run_id"])) == 2
    assert len(project.store.blessings("tiny")) == blessings_before
    code, document = project.evaluate_json()
    assert code == 0 and document["models"]["tiny"]["reused"] is True
    assert document["models"]["tiny"]["eval_id"] == measured[-1]

    monkeypatch.setattr(tf_evaluate, "measure", real_measure)
    code, out, err = project.cli("evaluate", "--force")
    assert code == 0 and "reused" not in out, out + err
    assert len(_evals(project, run["run_id"])) == 3


def test_a_changed_threshold_measures_again(make_project) -> None:  # type: ignore[no-untyped-def]
    project = make_project()
    run = project.add_run("good")
    for _ in range(3):
        assert project.cli("evaluate")[0] == 0
    assert len(_evals(project, run["run_id"])) == 2  # the third was reused
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
