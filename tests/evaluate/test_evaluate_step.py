"""`mlops evaluate` on real exported SavedModels: metrics, gate, records, blessing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlops_sessions.config import LATENCY_PERCENTILES
from mlops_sessions.planning.baseline import is_blessed

pytestmark = pytest.mark.filterwarnings("error")


def test_good_model_passes_first_run_and_is_blessed(make_project) -> None:  # type: ignore[no-untyped-def]
    project = make_project()
    run = project.add_run("good")
    code, out, err = project.cli("evaluate")
    assert code == 0, out + err
    assert out.splitlines()[0].startswith("tiny: gate PASS — run " + run["run_id"])
    # No baseline yet: the verdict must say the relative threshold was not checked.
    assert "FIRST RUN" in out
    assert "report: " in out

    (evaluation,) = (project.store.run_dir(run["run_id"]) / "eval").iterdir()
    verdict = json.loads((evaluation / "verdict.json").read_text())
    metrics = json.loads((evaluation / "metrics.json").read_text())
    assert verdict["passed"] is True and verdict["first_run"] is True
    assert verdict["model_hash"] == run["model_hash"]
    values = metrics["values"]
    for name in (
        "accuracy",
        "precision",
        "recall",
        "f1",
        "auc",
        "loss",
        "model_size_mb",
        "drift_psi_max",
        "drift_psi_mean",
    ):
        assert name in values, name
    for batch in (1, 8):
        for pct in LATENCY_PERCENTILES:
            assert values[f"latency_b{batch}_p{pct}_ms"] > 0
    assert values["latency_b1_p50_ms"] <= values["latency_b1_p99_ms"]
    assert values["accuracy"] >= 0.9 and 0.9 <= values["auc"] <= 1.0
    assert 0 < values["model_size_mb"] < 5
    # Training and held-out data come from one distribution: little drift.
    assert values["drift_psi_max"] < 0.5
    assert (
        len(metrics["drift_psi"]) == 8
        and max(metrics["drift_psi"].values()) == values["drift_psi_max"]
    )
    assert metrics["n_examples"] == 60
    assert sum(map(sum, metrics["confusion_matrix"])) == 60

    blessed = project.store.blessed("tiny")
    assert blessed is not None
    assert blessed["run_id"] == run["run_id"] and blessed["model_hash"] == run["model_hash"]
    assert blessed["git_commit"] == run["lineage"]["git"]["commit"]
    assert blessed["verdict"] == str(evaluation / "verdict.json") and blessed["blessed_at"]
    assert is_blessed(project.store.blessings("tiny"), run["model_hash"])
    assert not is_blessed(project.store.blessings("tiny"), "0" * 64)


def test_weak_model_fails_with_the_reason_on_the_first_line(make_project) -> None:  # type: ignore[no-untyped-def]
    project = make_project()
    run = project.add_run("weak")
    code, out, _ = project.cli("evaluate", "tiny")
    assert code == 1
    first = out.splitlines()[0]
    assert first.startswith("tiny: FAIL accuracy: 0."), first
    assert "is below the minimum 0.9 by" in first
    assert "tiny: gate FAIL" in out
    assert project.store.blessed("tiny") is None
    assert not is_blessed(project.store.blessings("tiny"), run["model_hash"])
    # The failing verdict is recorded all the same.
    (evaluation,) = (project.store.run_dir(run["run_id"]) / "eval").iterdir()
    verdict = json.loads((evaluation / "verdict.json").read_text())
    assert verdict["result"] == "fail" and verdict["failures"][0] == first.removeprefix("tiny: ")
    assert verdict["metrics"]["accuracy"]["threshold"]["min"] == 0.9


def test_relative_threshold_against_the_blessed_baseline(make_project) -> None:  # type: ignore[no-untyped-def]
    project = make_project(
        make_project.default.replace("accuracy: {min: 0.9, vs_baseline", "accuracy: {vs_baseline")
    )
    first = project.add_run("good")
    assert project.cli("evaluate")[0] == 0
    # A second, equally good run compares against the first: delta 0, within 0.02.
    second = project.add_run("good", current=False)
    code, result = project.evaluate_json("--run", second["run_id"])
    assert code == 0
    outcome = result["models"]["tiny"]
    assert outcome["baseline"]["run_id"] == first["run_id"]
    assert outcome["first_run"] is False
    accuracy = outcome["metrics"]["accuracy"]
    assert accuracy["baseline"] == accuracy["value"] and accuracy["delta"] == 0
    # The weak run regresses far beyond 0.02 against the (now second) blessed run.
    weak = project.add_run("weak", current=False)
    code, out, _ = project.cli("evaluate", "--run", weak["run_id"])
    assert code == 1
    first_line = out.splitlines()[0]
    assert first_line.startswith("tiny: FAIL accuracy: 0.")
    assert (
        f"lower than the baseline 1 (blessed run {second['run_id']}); allowed regression is 0.02"
        in first_line
    )
    assert project.store.blessed("tiny")["run_id"] == second["run_id"]  # type: ignore[index]


def test_relative_threshold_without_baseline_fails_closed(make_project) -> None:  # type: ignore[no-untyped-def]
    project = make_project(
        make_project.default.replace("allow_first_run: true", "allow_first_run: false")
    )
    project.add_run("good")
    code, out, _ = project.cli("evaluate")
    assert code == 1
    first = out.splitlines()[0]
    assert first.startswith(
        "tiny: FAIL accuracy: relative threshold (max_regression 0.02) needs a baseline"
    )
    assert "no blessed model of 'tiny' yet" in first
    assert project.store.blessed("tiny") is None


def test_allow_first_run_says_so_everywhere(make_project) -> None:  # type: ignore[no-untyped-def]
    project = make_project()
    run = project.add_run("good")
    code, result = project.evaluate_json()
    assert code == 0
    outcome = result["models"]["tiny"]
    assert outcome["first_run"] is True
    assert any(note.startswith("FIRST RUN") for note in outcome["notes"])
    assert "allow_first_run" in outcome["metrics"]["accuracy"]["notes"][0]
    report = (
        project.store.run_dir(run["run_id"]) / "eval" / outcome["eval_id"] / "report.md"
    ).read_text()
    assert "FIRST RUN" in report and "⚠️ pass (no baseline)" in report
    assert project.store.blessed("tiny")["first_run"] is True  # type: ignore[index]


def test_baseline_none_and_run_and_git_specs(make_project) -> None:  # type: ignore[no-untyped-def]
    project = make_project(
        make_project.default.replace(
            "accuracy: {min: 0.9, vs_baseline: {max_regression: 0.02}}", "accuracy: {min: 0.3}"
        )
    )
    good = project.add_run("good")
    assert project.cli("evaluate")[0] == 0
    weak = project.add_run("weak", current=False)
    _, result = project.evaluate_json(
        "--run", weak["run_id"], "--baseline", f"run:{good['run_id']}"
    )
    outcome = result["models"]["tiny"]
    assert outcome["baseline"]["label"] == f"run {good['run_id']}"
    assert outcome["metrics"]["accuracy"]["delta"] < -0.3
    _, result = project.evaluate_json("--run", weak["run_id"], "--baseline", "git:HEAD")
    assert result["models"]["tiny"]["baseline"]["run_id"] == good["run_id"]
    assert "at HEAD" in result["models"]["tiny"]["baseline"]["label"]
    _, result = project.evaluate_json("--run", weak["run_id"], "--baseline", "none")
    assert result["models"]["tiny"]["baseline"]["available"] is False
    assert result["models"]["tiny"]["metrics"]["accuracy"]["baseline"] is None
    # A commit with no blessed run: nothing to compare against, stated in the label.
    (project.root / "README").write_text("new commit\n")
    project.commit()
    _, result = project.evaluate_json("--run", weak["run_id"], "--baseline", "git:HEAD")
    assert result["models"]["tiny"]["baseline"]["available"] is False
    assert "no blessed run of 'tiny' at git HEAD" in result["models"]["tiny"]["baseline"]["label"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("run:nope", "baseline run 'nope' is not in the store"),
        ("git:no-such-branch", "git cannot resolve 'no-such-branch'"),
        ("latest", "baseline 'latest' is not understood"),
    ],
)
def test_bad_baseline_specs_are_clear_errors(make_project, spec: str, message: str) -> None:  # type: ignore[no-untyped-def]
    project = make_project()
    project.add_run("good")
    code, out, err = project.cli("evaluate", "--baseline", spec)
    assert code == 1 and not out
    assert err.startswith("mlops evaluate: ") and message in err


def test_no_current_run_tells_the_user_to_train(make_project) -> None:  # type: ignore[no-untyped-def]
    project = make_project()
    code, out, err = project.cli("evaluate")
    assert code == 1 and not out
    assert "no trained run of 'tiny' matches the current code, params and data" in err
    assert "`mlops train tiny` (or `nox -s train`)" in err
    # A run made for other inputs is not the current one either.
    project.add_run("good")
    (project.root / "code" / "tiny_model.py").write_text(
        (project.root / "code" / "tiny_model.py").read_text() + "\n# edited\n"
    )
    code, _, err = project.cli("evaluate")
    assert code == 1 and "mlops train tiny" in err


def test_unknown_run_is_a_clear_error(make_project) -> None:  # type: ignore[no-untyped-def]
    project = make_project()
    run = project.add_run("good")
    code, _, err = project.cli("evaluate", "--run", "20990101T000000Z-deadbeef")
    assert code == 1
    assert "run '20990101T000000Z-deadbeef' is not in the store" in err and run["run_id"] in err


def test_custom_metrics_by_import_path(make_project) -> None:  # type: ignore[no-untyped-def]
    project = make_project(
        """\
dataset: tiny_model:heldout
metrics:
  - accuracy
  - {name: examples, function: tiny_model:count, higher_is_better: false}
  - {name: true_prob, function: "tiny_model:mean_true_prob"}
thresholds:
  examples: {max: 60}
  true_prob: {min: 0.8}
"""
    )
    project.add_run("good")
    code, result = project.evaluate_json()
    assert code == 0
    metrics = result["models"]["tiny"]["metrics"]
    assert metrics["examples"]["value"] == 60
    assert metrics["examples"]["direction"] == "lower_is_better"
    assert 0.8 <= metrics["true_prob"]["value"] <= 1.0
    assert metrics["true_prob"]["direction"] == "higher_is_better"


@pytest.mark.parametrize(
    ("function", "message"),
    [
        (
            "tiny_model:broken",
            "custom metric 'bad' (tiny_model:broken) raised ValueError: labels and "
            "probabilities disagree (at ",
        ),
        (
            "tiny_model:not_a_number",
            "custom metric 'bad' (tiny_model:not_a_number) returned str 'high'; "
            "it must return a number",
        ),
        ("tiny_model:missing", "tiny_model:missing: module 'tiny_model'"),
    ],
)
def test_custom_metric_failures_are_clear_errors(make_project, function: str, message: str) -> None:  # type: ignore[no-untyped-def]
    project = make_project(
        f"dataset: tiny_model:heldout\nmetrics: [accuracy, {{name: bad, function: '{function}'}}]\n"
    )
    project.add_run("good")
    code, out, err = project.cli("evaluate")
    assert code == 1 and not out
    assert err.startswith("mlops evaluate: ")
    assert message in err, err
    assert "Traceback" not in err


def test_drift_against_shifted_data_fails_the_gate(make_project) -> None:  # type: ignore[no-untyped-def]
    project = make_project(
        """\
dataset: tiny_model:shifted
metrics: [accuracy]
drift: {reference: tiny_model:training_data}
thresholds:
  drift_psi_max: {max: 0.25}
"""
    )
    project.add_run("good")
    code, out, _ = project.cli("evaluate")
    assert code == 1
    assert out.splitlines()[0].startswith("tiny: FAIL drift_psi_max: ")
    assert "is above the maximum 0.25 by" in out.splitlines()[0]


def test_reports_are_written_and_the_html_embeds_the_plots(make_project) -> None:  # type: ignore[no-untyped-def]
    import base64
    import re

    project = make_project()
    run = project.add_run("good")
    code, result = project.evaluate_json()
    assert code == 0
    outcome = result["models"]["tiny"]
    report_md = Path(outcome["report_md"]).read_text(encoding="utf-8")
    assert report_md.startswith("## ✅ tiny: evaluation gate PASS")
    assert "| metric | value | threshold | baseline | delta | result |" in report_md
    assert "| `accuracy` |" in report_md and ">= 0.9; regression <= 0.02" in report_md
    assert run["run_id"] in report_md
    page = Path(outcome["report_html"]).read_text(encoding="utf-8")
    for title in ("Training curves", "Metrics against thresholds", "Confusion matrix", "Drift"):
        assert f"<h2>{title}</h2>" in page, title
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 4
    for image in images:
        assert base64.b64decode(image).startswith(b"\x89PNG\r\n\x1a\n")
    assert "http://" not in page and "https://" not in page  # one file, nothing fetched


def test_failing_report_leads_with_the_failure(make_project) -> None:  # type: ignore[no-untyped-def]
    project = make_project()
    project.add_run("weak")
    code, out, err = project.cli("evaluate", "--json")
    result = json.loads(out)
    assert code == 1 and result["passed"] is False
    assert err.splitlines()[0].startswith("tiny: FAIL accuracy: 0.")  # for CI logs
    outcome = result["models"]["tiny"]
    lines = Path(outcome["report_md"]).read_text(encoding="utf-8").splitlines()
    assert lines[0] == "## ❌ tiny: evaluation gate FAIL"
    assert lines[2].startswith("- **FAIL accuracy: 0.")
    assert '<h1 class="fail">' in Path(outcome["report_html"]).read_text(encoding="utf-8")


def test_model_without_evaluate_section(make_project) -> None:  # type: ignore[no-untyped-def]
    project = make_project()
    text = project.config_path.read_text()
    project.config_path.write_text(text[: text.index("    evaluate:")])
    code, _, err = project.cli("evaluate", "tiny")
    assert code == 1 and "model 'tiny' has no 'evaluate' section" in err
    code, _, err = project.cli("evaluate")
    assert code == 1 and "no model in" in err


def test_a_model_emitting_logits_is_refused_not_judged(make_project) -> None:  # type: ignore[no-untyped-def]
    project = make_project()
    project.add_run("logits")
    code, out, err = project.cli("evaluate")
    assert code == 1 and not out
    assert "not probability distributions" in err and "end the model with a softmax" in err
    assert project.store.blessed("tiny") is None


@pytest.mark.parametrize(
    ("dataset", "message"),
    [
        ("tiny_model:failing_data", "evaluate.dataset tiny_model:failing_data raised "),
        ("tiny_model:unlabelled", "it must return a (features, labels) pair"),
        ("tiny_model:nope", "has no attribute 'nope'"),
    ],
)
def test_data_function_problems_are_clear_errors(make_project, dataset: str, message: str) -> None:  # type: ignore[no-untyped-def]
    project = make_project(f"dataset: {dataset}\nmetrics: [accuracy]\n")
    project.add_run("good")
    code, out, err = project.cli("evaluate")
    assert code == 1 and not out
    assert message in err, err
    assert "Traceback" not in err
    assert not (project.store.run_dir(project.store.list_runs()[0]["run_id"]) / "eval").exists()


def test_a_baseline_measured_on_other_data_is_flagged(make_project) -> None:  # type: ignore[no-untyped-def]
    project = make_project("dataset: tiny_model:heldout\nmetrics: [accuracy]\n")
    project.add_run("good")
    assert project.cli("evaluate")[0] == 0
    project.write_config("dataset: tiny_model:shifted\nmetrics: [accuracy]\n")
    second = project.add_run("good", current=False)
    code, result = project.evaluate_json("--run", second["run_id"])
    assert code == 0
    (note,) = result["models"]["tiny"]["notes"]
    assert note.startswith("the baseline was evaluated on different held-out data")
    verdict_path = result["models"]["tiny"]["verdict"]
    assert note in json.loads(Path(verdict_path).read_text())["notes"]
