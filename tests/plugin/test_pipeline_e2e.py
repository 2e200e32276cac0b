"""The README's main job, for real: `nox -s pipeline` on a copy of the example project.

nox creates the session venv (uv backend), installs the locked requirements and this
checkout, trains the digits model, evaluates it and blesses it. A second run must hit the
training cache and skip the install.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .nox_helpers import example_project, run_nox

pytestmark = pytest.mark.slow


def test_pipeline_trains_gates_and_blesses_then_hits_the_cache(
    tmp_path: Path, repo_root: Path
) -> None:
    project = example_project(repo_root, tmp_path, with_code=True)
    first = run_nox(project, "-s", "pipeline", timeout=1800)
    output = first.stdout + first.stderr
    assert first.returncode == 0, output[-4000:]
    blessed = json.loads((project / ".mlops" / "models" / "digits" / "blessed.json").read_text())
    run = json.loads((project / ".mlops" / "runs" / blessed["run_id"] / "run.json").read_text())
    assert run["model_hash"] == blessed["model_hash"]

    second = run_nox(project, "-s", "pipeline", timeout=1800)
    output = second.stdout + second.stderr
    assert second.returncode == 0, output[-4000:]
    assert "dependencies unchanged since the last install" in output
    runs = [p for p in (project / ".mlops" / "runs").iterdir() if (p / "run.json").is_file()]
    assert len(runs) == 1, "an unchanged pipeline must reuse the stored run, not train again"
