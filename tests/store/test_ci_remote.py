"""`mlops ci` with ``store.remote``: no store artifact between jobs, the shared store instead.

The generated GitHub and GitLab files still validate against the official schemas
(check-jsonschema's vendored copies); credentials are references to the CI's secret store,
never values; without a remote the artifact path is unchanged.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops_sessions.planning import ci_templates, stamped
from mlops_sessions.planning.ci_templates import STAGES, CiOptions

SCHEMAS = {"github": "vendor.github-workflows", "gitlab": "vendor.gitlab-ci"}
REMOTE = "s3://team-models/digits"


def options(remote: str | None) -> CiOptions:
    return CiOptions(
        sessions=("validate", *STAGES, "pipeline"),
        install=("mlops-sessions==0.1.0", "nox==2026.10.20"),
        production_profile="prod",
        registries=("registry.example.com",),
        remote=remote,
    )


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
    assert "No module named check_jsonschema" not in done.stderr, "pip install -e '.[dev]'"
    assert done.returncode == 0, f"{path} does not match {SCHEMAS[provider]}:\n{done.stdout}"


def _scripts(provider: str, document: dict[str, Any]) -> dict[str, list[str]]:
    """Every shell line of each job, in order (GitHub `run:` steps, GitLab script+after)."""
    out: dict[str, list[str]] = {}
    if provider == "github":
        for name, job in document["jobs"].items():
            out[name] = [s["run"] for s in job["steps"] if "run" in s]
    else:
        for name, job in document.items():
            if isinstance(job, dict) and "script" in job:
                out[name] = [*job["script"], *job.get("after_script", [])]
    return out


@pytest.mark.parametrize("provider", ["github", "gitlab"])
def test_a_remote_replaces_the_store_artifact(provider: str, tmp_path: Path) -> None:
    path = tmp_path / "workflow.yml"
    text = ci_templates.render(provider, options(REMOTE))
    path.write_text(stamped.stamp(text, "mlops ci", "mlops.yaml"))
    check_schema(path, provider)
    assert "mlops-store-" not in text, "no store artifact"
    assert "path: .mlops/" not in text and "- .mlops/" not in text
    assert REMOTE in text
    document = yaml.safe_load(path.read_text())
    scripts = _scripts(provider, document)
    assert "mlops store pull" not in scripts["test"] and "mlops store push" not in scripts["test"]
    for job in ("train", "evaluate", "build", "deploy", "deploy-production"):
        assert "mlops store push" in scripts[job], job
    for job in ("evaluate", "build", "deploy"):
        lines = scripts[job]
        assert lines.index("mlops store pull") < next(
            i for i, line in enumerate(lines) if line.startswith("nox ")
        ), "records come in before the sessions run"
    if provider == "github":
        env = document["env"]
        assert env["AWS_ACCESS_KEY_ID"] == "${{ secrets.AWS_ACCESS_KEY_ID }}"
        assert env["AWS_SECRET_ACCESS_KEY"] == "${{ secrets.AWS_SECRET_ACCESS_KEY }}"
        assert env["MLOPS_STORE_ENDPOINT"] == "${{ vars.MLOPS_STORE_ENDPOINT }}"
    else:
        assert "AWS_SECRET_ACCESS_KEY" not in str(document.get("variables")), "secret store only"
        assert document["evaluate"]["artifacts"]["paths"] == ["mlops-report/"]


@pytest.mark.parametrize("provider", ["github", "gitlab"])
def test_without_a_remote_the_store_still_travels_as_an_artifact(provider: str) -> None:
    text = ci_templates.render(provider, options(None))
    assert "mlops store" not in text and "AWS_" not in text
    assert ".mlops/" in text
