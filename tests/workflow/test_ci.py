"""`mlops ci github|gitlab`: the generated workflows validate against the official schemas
(check-jsonschema's vendored copies), run exactly the nox sessions that exist, keep secrets
out of the file, and are regenerated idempotently without clobbering hand edits.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops_sessions.planning import ci_templates, stamped
from mlops_sessions.planning.ci_templates import STAGES, CiOptions

NOXFILE = 'import mlops_sessions\n\nmlops_sessions.register("mlops.yaml")\n'
SCHEMAS = {"github": "vendor.github-workflows", "gitlab": "vendor.gitlab-ci"}
PATHS = {"github": ".github/workflows/mlops.yml", "gitlab": ".gitlab-ci.yml"}


@pytest.fixture
def example(tmp_path: Path, repo_root: Path) -> Path:
    """The repository's example project (mlops.yaml, lock, noxfile) in a temp dir."""
    for name in ("mlops.yaml", "requirements.lock"):
        shutil.copy(repo_root / name, tmp_path / name)
    (tmp_path / "noxfile.py").write_text(NOXFILE)
    return tmp_path


def check_schema(path: Path, provider: str) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            SCHEMAS[provider],
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "No module named check_jsonschema" not in done.stderr, (
        "check-jsonschema is missing: pip install -e '.[dev]'"
    )
    assert done.returncode == 0, (
        f"{path} does not match {SCHEMAS[provider]}:\n{done.stdout}{done.stderr}"
    )


def nox_sessions(command: str) -> list[str]:
    """Session names of every `nox ... -s a b` line of a shell script."""
    found: list[str] = []
    for line in command.splitlines():
        words = shlex.split(line)
        if not words or words[0] != "nox":
            continue
        names = words[words.index("-s") + 1 :]
        found += [w for w in names if not w.startswith("-")]
    return found


def job_sessions(provider: str, document: dict[str, Any]) -> dict[str, list[str]]:
    """Job name -> the nox sessions its commands run, in order."""
    out: dict[str, list[str]] = {}
    if provider == "github":
        for name, job in document["jobs"].items():
            out[name] = [
                s for step in job["steps"] if "run" in step for s in nox_sessions(step["run"])
            ]
    else:
        for name, job in document.items():
            if isinstance(job, dict) and "script" in job:
                out[name] = [s for line in job["script"] for s in nox_sessions(line)]
    return out


def existing_sessions(project: Path, env: dict[str, str]) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-m", "nox", "-l", "--json", "-t", "mlops"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [entry["session"] for entry in json.loads(done.stdout)]


@pytest.mark.parametrize("provider", ["github", "gitlab"])
def test_example_workflow_validates_and_runs_exactly_the_existing_sessions(
    provider: str, example: Path, mlops: Any, env: dict[str, str]
) -> None:
    done = mlops(example, "ci", provider, "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    path = example / PATHS[provider]
    assert result["path"] == str(path) and result["status"] == "created"
    check_schema(path, provider)

    existing = existing_sessions(example, env)
    stages = [s for s in STAGES if s in existing]
    assert stages[:3] == ["test", "train", "evaluate"]
    expected = stages + (["deploy"] if "deploy" in existing else [])  # + production deploy
    document = yaml.safe_load(path.read_text())
    per_job = job_sessions(provider, document)
    ran = [s for sessions in per_job.values() for s in sessions]
    assert ran == expected, "jobs must run exactly the existing pipeline sessions, in order"
    assert result["stages_not_available"] == [s for s in STAGES if s not in existing]
    # Everything after the first job continues from its store instead of re-running requires=.
    first, *rest = per_job
    script = json.dumps(document)
    assert f"nox -s {per_job[first][0]}" in script
    for job in rest:
        for session in per_job[job]:
            assert f"nox --no-dependencies -s {session}" in script


def _all_stages(production: str | None = "prod") -> CiOptions:
    return CiOptions(
        sessions=("validate", *STAGES, "pipeline"),
        install=("mlops-sessions==0.1.0", "nox==2026.10.20"),
        python="3.11",
        production_profile=production,
        cache_files=("requirements.lock", "noxfile.py"),
        registries=("registry.example.com",),
    )


@pytest.mark.parametrize("provider", ["github", "gitlab"])
def test_full_pipeline_shape_validates(provider: str, tmp_path: Path) -> None:
    """Once build/scan/push/deploy exist, the workflow is still schema-valid."""
    path = tmp_path / "workflow.yml"
    path.write_text(
        stamped.stamp(ci_templates.render(provider, _all_stages()), "mlops ci", "mlops.yaml")
    )
    check_schema(path, provider)
    document = yaml.safe_load(path.read_text())
    per_job = job_sessions(provider, document)
    assert per_job == {
        "test": ["test"],
        "train": ["train"],
        "evaluate": ["evaluate"],
        "build": ["build", "scan", "push"],
        "deploy": ["deploy"],
        "deploy-production": ["deploy"],
    }


def test_github_gates_branches_secrets_and_production_approval() -> None:
    document = yaml.safe_load(ci_templates.github(_all_stages()))
    jobs = document["jobs"]
    for name in ("test", "train", "evaluate"):
        assert "if" not in jobs[name], f"{name} runs on every branch and pull request"
    for name in ("build", "deploy", "deploy-production"):
        assert "refs/heads/main" in jobs[name]["if"] and "pull_request" in jobs[name]["if"]
    assert jobs["deploy"]["environment"] == "staging"
    assert jobs["deploy-production"]["environment"] == "production"  # required reviewers
    assert jobs["deploy-production"]["env"] == {"MLOPS_PROFILE": "prod"}
    assert jobs["deploy-production"]["needs"] == "deploy"
    # Credentials only as references to the secret store, handed over on stdin.
    login = next(s for s in jobs["build"]["steps"] if "docker login" in s.get("run", ""))
    assert "--password-stdin" in login["run"]
    assert login["env"]["REGISTRY_PASSWORD"] == "${{ secrets.REGISTRY_PASSWORD }}"
    kube = next(s for s in jobs["deploy"]["steps"] if "KUBECONFIG" in s.get("run", ""))
    assert kube["env"] == {"KUBECONFIG_DATA": "${{ secrets.KUBECONFIG }}"}
    # The report is attached to the run and commented on pull requests.
    steps = jobs["evaluate"]["steps"]
    assert any(
        s.get("uses", "").startswith("actions/upload-artifact")
        and s["with"]["name"] == "evaluation-report"
        for s in steps
    )
    assert any("gh pr comment" in s.get("run", "") for s in steps)
    assert jobs["evaluate"]["permissions"]["pull-requests"] == "write"
    # pip and venv caches.
    setup = jobs["train"]["steps"]
    assert any(s.get("with", {}).get("cache") == "pip" for s in setup)
    assert any(
        ".nox" in s.get("with", {}).get("path", "")
        for s in setup
        if s.get("uses", "").startswith("actions/cache")
    )


def test_gitlab_gates_branches_secrets_and_production_approval() -> None:
    document = yaml.safe_load(ci_templates.gitlab(_all_stages()))
    for name in ("test", "train", "evaluate"):
        assert "rules" not in document[name]
    assert document["build"]["rules"] == [{"if": '$CI_COMMIT_BRANCH == "main"'}]
    production = document["deploy-production"]
    assert production["rules"] == [{"if": '$CI_COMMIT_BRANCH == "main"', "when": "manual"}]
    assert production["allow_failure"] is False
    assert production["environment"] == {"name": "production"}
    assert production["variables"] == {"MLOPS_PROFILE": "prod"}
    assert ".nox" in document["default"]["cache"]["paths"]
    assert document["variables"]["PIP_CACHE_DIR"].endswith(".cache/pip")
    assert document["evaluate"]["artifacts"]["expose_as"] == "evaluation report"
    login = document["build"]["script"][
        document["build"]["script"].index("nox --no-dependencies -s push") - 1
    ]
    assert "$REGISTRY_PASSWORD" in login and "registry.example.com" in login


def test_no_production_profile_means_approval_on_the_only_deploy() -> None:
    document = yaml.safe_load(ci_templates.github(_all_stages(production=None)))
    assert "deploy-production" not in document["jobs"]
    assert document["jobs"]["deploy"]["environment"] == "production"


def test_regeneration_is_idempotent_and_keeps_hand_edits(example: Path, mlops: Any) -> None:
    assert mlops(example, "ci", "github").returncode == 0
    path = example / PATHS["github"]
    first = path.read_bytes()
    again = mlops(example, "ci", "github", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["status"] == "unchanged"
    assert path.read_bytes() == first
    assert stamped.state(first.decode()) == "generated"

    path.write_text(first.decode().replace("runs-on: ubuntu-latest", "runs-on: self-hosted", 1))
    refused = mlops(example, "ci", "github")
    assert refused.returncode == 1
    assert "refusing to overwrite" in refused.stderr and "edited by hand" in refused.stderr
    assert "mlops ci github --force" in refused.stderr
    assert "self-hosted" in path.read_text(), "the hand edit must survive"

    forced = mlops(example, "ci", "github", "--force", "--json")
    assert forced.returncode == 0 and json.loads(forced.stdout)["status"] == "updated"
    assert path.read_bytes() == first


def test_a_file_we_did_not_write_is_not_overwritten(example: Path, mlops: Any) -> None:
    (example / ".gitlab-ci.yml").write_text("stages: [lint]\n")
    refused = mlops(example, "ci", "gitlab")
    assert refused.returncode == 1 and "was not generated by mlops-sessions" in refused.stderr


def test_unknown_provider_is_a_clear_error(example: Path, mlops: Any) -> None:
    done = mlops(example, "ci", "githb")
    assert done.returncode == 1
    assert "unknown CI provider 'githb'" in done.stderr and "did you mean 'github'?" in done.stderr
    assert "supported: github, gitlab" in done.stderr and "Traceback" not in done.stderr
    done = mlops(example, "ci", "jenkins")
    assert done.returncode == 1 and "unknown CI provider 'jenkins'" in done.stderr


def test_unknown_production_profile_is_a_clear_error(example: Path, mlops: Any) -> None:
    done = mlops(example, "ci", "github", "--production-profile", "live")
    assert done.returncode == 1
    assert "declares no such profile (declared: ci, prod)" in done.stderr


def test_stamp_detects_edits_anywhere_in_the_body() -> None:
    text = stamped.stamp("a: 1\nb: 2\n", "mlops ci github", "mlops.yaml")
    assert stamped.state(text) == "generated"
    assert stamped.state(text + "c: 3\n") == "edited"
    assert stamped.state(text.replace("b: 2", "b: 3")) == "edited"
    assert stamped.state("a: 1\n") == "foreign"


def test_image_tags_are_the_commit_sha_or_a_warning(example: Path, mlops: Any) -> None:
    done = mlops(example, "ci", "github", "--json")
    assert json.loads(done.stdout)["warnings"] == []  # the example uses policy git-commit
    config = example / "mlops.yaml"
    config.write_text(config.read_text().replace("policy: git-commit", "policy: date"))
    done = mlops(example, "ci", "github", "--force", "--json")
    assert done.returncode == 0, done.stderr
    (warning,) = json.loads(done.stdout)["warnings"]
    assert "image 'serve' is tagged by policy 'date'" in warning
    assert "images.serve.tag.policy: git-commit" in warning
    for text in (example / PATHS["github"]).read_text().splitlines():
        assert ":latest" not in text
