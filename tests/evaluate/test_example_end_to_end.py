"""The repository's own digits example through train -> evaluate -> a weakened run failing.

Runs the real `mlops` command in subprocesses on a copy of the example project (its own git
repository and store), exactly as a nox session would.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import clean_env, run_mlops

REPO = Path(__file__).resolve().parents[2]
WEAK = ["--param", "epochs=1", "--param", "hidden_units=2"]


def _mlops(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = clean_env(PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    return run_mlops(project, *args, timeout=900, env=env)


@pytest.fixture
def example_project(tmp_path: Path) -> Path:
    project = tmp_path / "digits"
    project.mkdir()
    shutil.copy(REPO / "mlops.yaml", project)
    shutil.copy(REPO / "requirements.lock", project)
    shutil.copytree(
        REPO / "examples",
        project / "examples",
        ignore=shutil.ignore_patterns("__pycache__", ".mlops"),
    )
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "example"],
    ):
        subprocess.run(["git", *args], cwd=project, check=True, capture_output=True)
    return project


@pytest.mark.slow
def test_digits_train_evaluate_bless_then_a_weak_run_fails(example_project: Path) -> None:
    trained = _mlops(example_project, "train", "digits", "--json")
    assert trained.returncode == 0, trained.stdout + trained.stderr
    (good,) = json.loads(trained.stdout)["runs"]

    evaluated = _mlops(example_project, "evaluate")
    assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr
    lines = evaluated.stdout.splitlines()
    assert lines[0].startswith(f"digits: gate PASS — run {good['run_id']}")
    assert "FIRST RUN" in lines[1]  # allow_first_run: true in the example, and no baseline yet
    assert f"blessed: digits run {good['run_id']}" in evaluated.stdout
    report = next(line.split("report: ")[1] for line in lines if "report: " in line)
    assert Path(report).is_file() and Path(report).with_suffix(".html").is_file()

    weak_train = _mlops(example_project, "train", "digits", *WEAK)
    assert weak_train.returncode == 0, weak_train.stdout + weak_train.stderr
    weak = _mlops(example_project, "evaluate", *WEAK)
    assert weak.returncode == 1, weak.stdout + weak.stderr
    first = weak.stdout.splitlines()[0]
    assert first.startswith("digits: FAIL accuracy: 0.") and "is below the minimum 0.95 by" in first
    assert (
        "lower than the baseline 0.9" in weak.stdout
        and f"(blessed run {good['run_id']})" in weak.stdout
    )

    lineage = _mlops(example_project, "lineage", "--json", "HEAD")
    assert lineage.returncode == 0, lineage.stderr
    runs = {c["run_id"]: c for c in json.loads(lineage.stdout)["runs"]}
    assert runs[good["run_id"]]["blessed_now"] is True
    assert runs[good["run_id"]]["evaluation"]["passed"] is True
    (weak_run,) = [c for c in runs.values() if c["run_id"] != good["run_id"]]
    assert weak_run["params"]["epochs"] == 1 and weak_run["evaluation"]["passed"] is False
    assert weak_run["blessings"] == []
