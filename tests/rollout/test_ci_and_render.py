"""The rollout in the CI templates (long deploy jobs, the rollout report attached) and in
`mlops render` (steps/ shows each step, validated like every manifest)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import yaml

from mlops_sessions.frontends.cli import main
from mlops_sessions.planning import ci_templates
from mlops_sessions.planning.ci_templates import CiOptions

STAGES = ("test", "train", "evaluate", "build", "scan", "push", "deploy")


def options() -> CiOptions:
    return CiOptions(
        sessions=("validate", *STAGES, "pipeline"),
        install=("mlops-sessions==0.1.0",),
        python="3.11",
        production_profile="prod",
        cache_files=("requirements.lock",),
    )


def test_github_deploy_jobs_are_long_and_attach_the_rollout_report(tmp_path: Path) -> None:
    jobs = yaml.safe_load(ci_templates.github(options()))["jobs"]
    for name in ("deploy", "deploy-production"):
        job = jobs[name]
        assert job["timeout-minutes"] >= 120
        names = [s.get("name") for s in job["steps"]]
        collect = job["steps"][names.index("Collect the rollout report")]
        upload = job["steps"][names.index("Attach the rollout report to the run")]
        assert collect["if"] == upload["if"] == "always()"
        assert upload["with"]["path"] == "mlops-rollout-report/"
        # The collecting script runs as written: it copies each report under its name.
        store = tmp_path / name / ".mlops"
        report = store / "rollouts" / "digits" / "prod--ml" / "r000004" / "report.md"
        report.parent.mkdir(parents=True)
        report.write_text("## ✅ digits: rollout PROMOTED\n")
        script = (
            collect["run"]
            .replace(".mlops", str(store))
            .replace("mlops-rollout-report", str(tmp_path / name / "out"))
        )
        subprocess.run(["sh", "-ec", script], check=True)
        copied = tmp_path / name / "out" / "digits_prod--ml_r000004_report.md"
        assert copied.read_text().startswith("## ✅")
    assert "timeout-minutes" not in jobs["evaluate"]


def test_gitlab_deploy_jobs_are_long_and_expose_the_rollout_report() -> None:
    document = yaml.safe_load(ci_templates.gitlab(options()))
    for name in ("deploy", "deploy-production"):
        job = document[name]
        assert job["timeout"] == "180 minutes"
        assert any("rollouts/*/*/r*/report.md" in line for line in job["after_script"])
        assert job["artifacts"]["when"] == "always"
        assert "mlops-rollout-report/" in job["artifacts"]["paths"]


def test_render_shows_each_step_validated(tmp_path: Path, repo_root: Path, monkeypatch) -> None:
    monkeypatch.setenv("DIGITS_REPLICAS", "3")
    shutil.copy(repo_root / "mlops.yaml", tmp_path / "mlops.yaml")
    record = tmp_path / ".mlops" / "builds" / "serve" / "latest.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"image": "r.example.com/d@sha256:" + "ab" * 32}))
    out = tmp_path / "out"
    assert main(["render", "-c", str(tmp_path / "mlops.yaml"), "--out", str(out), "--json"]) == 0
    steps = sorted(p.name for p in (out / "steps").iterdir())
    assert steps == [
        "digits-abort.yaml",
        "digits-promote.yaml",
        "digits-step-1-canary-10.yaml",
        "digits-step-2-canary-50.yaml",
        "digits-step-3-canary-100.yaml",
    ]
    middle = list(yaml.safe_load_all((out / "steps" / steps[3]).read_text()))
    assert [d["kind"] for d in middle] == ["VirtualService"]
    assert [r["weight"] for r in middle[0]["spec"]["http"][1]["route"]] == [50, 50]
    # Switching the steps off removes the step files render wrote, and only those.
    (out / "steps" / "NOTES.md").write_text("mine")
    text = (tmp_path / "mlops.yaml").read_text()
    start = text.index("      canary: {replicas: 1}")
    end = text.index("          # drift_psi_max is judged live too")
    fixed = "      stable: {weight: 90}\n      canary: {weight: 10}\n"
    (tmp_path / "mlops.yaml").write_text(text[:start] + fixed + text[end:].split("\n", 1)[1])
    assert main(["render", "-c", str(tmp_path / "mlops.yaml"), "--out", str(out)]) == 0
    assert sorted(p.name for p in (out / "steps").iterdir()) == ["NOTES.md"]
