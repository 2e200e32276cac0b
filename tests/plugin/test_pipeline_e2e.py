"""The README's main job, for real: `nox -s pipeline` on a copy of the example project.

nox creates the session venv (uv backend), installs the locked requirements and this
checkout, trains the digits model, evaluates it and blesses it. A second run must hit the
training cache and skip the install.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _copy_example(repo: Path, target: Path) -> Path:
    for name in ("mlops.yaml", "requirements.lock"):
        shutil.copy(repo / name, target / name)
    shutil.copytree(
        repo / "examples", target / "examples", ignore=shutil.ignore_patterns("__pycache__")
    )
    (target / "noxfile.py").write_text(
        'import mlops_sessions\n\nmlops_sessions.register("mlops.yaml")\n'
    )
    return target


def _nox(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOX", "MLOPS_PROFILE"))}
    return subprocess.run(
        [sys.executable, "-m", "nox", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )


def test_pipeline_trains_gates_and_blesses_then_hits_the_cache(
    tmp_path: Path, repo_root: Path
) -> None:
    project = _copy_example(repo_root, tmp_path)
    first = _nox(project, "-s", "pipeline")
    output = first.stdout + first.stderr
    assert first.returncode == 0, output[-4000:]
    blessed = json.loads((project / ".mlops" / "models" / "digits" / "blessed.json").read_text())
    run = json.loads((project / ".mlops" / "runs" / blessed["run_id"] / "run.json").read_text())
    assert run["model_hash"] == blessed["model_hash"]

    second = _nox(project, "-s", "pipeline")
    output = second.stdout + second.stderr
    assert second.returncode == 0, output[-4000:]
    assert "dependencies unchanged since the last install" in output
    runs = [p for p in (project / ".mlops" / "runs").iterdir() if (p / "run.json").is_file()]
    assert len(runs) == 1, "an unchanged pipeline must reuse the stored run, not train again"
