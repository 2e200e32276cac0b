"""`mlops make`: mlops.mk, run with GNU make for real — targets are the registered sessions,
each calls `nox -s <session> -- $(ARGS)`, and a failing session fails make."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlops_sessions import pipeline

NOXFILE = 'import mlops_sessions\n\nmlops_sessions.register("mlops.yaml")\n'


@pytest.fixture
def make_bin(require_real: Callable[[str], None]) -> str:
    found = shutil.which("make")
    if found is None:
        require_real("GNU make is not installed (apt-get install make)")
    assert found is not None
    return found


@pytest.fixture
def project_with_nox(project: Path) -> Path:
    (project / "noxfile.py").write_text(NOXFILE)
    return project


def _make(
    make_bin: str, cwd: Path, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    # NOX points at this interpreter's nox, so the sessions see this mlops-sessions.
    return subprocess.run(
        [make_bin, *args, f"NOX={sys.executable} -m nox"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_targets_are_exactly_the_registered_sessions(
    project_with_nox: Path, mlops: Any, env: dict[str, str]
) -> None:
    done = mlops(project_with_nox, "make", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    listed = subprocess.run(
        [sys.executable, "-m", "nox", "-l", "--json", "-t", "mlops"],
        cwd=project_with_nox,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    sessions = [entry["session"] for entry in json.loads(listed.stdout)]
    assert sessions == [step.name for step in pipeline.sessions()]
    assert [t["name"] for t in result["targets"]] == sessions
    assert all(t["command"] == f"nox -s {t['name']} -- $(ARGS)" for t in result["targets"])
    text = (project_with_nox / "mlops.mk").read_text()
    recipes = dict(
        re.findall(r"^([\w-]+):\n\t\$\(NOX\) .* -s ([\w-]+) -- \$\(ARGS\)$", text, re.MULTILINE)
    )
    assert recipes == {name: name for name in sessions}


def test_make_runs_the_session_and_a_failing_session_fails_make(
    project_with_nox: Path, mlops: Any, make_bin: str, env: dict[str, str]
) -> None:
    assert mlops(project_with_nox, "make").returncode == 0
    ok = _make(make_bin, project_with_nox, env, "-f", "mlops.mk", "validate")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "valid (1 model: m" in ok.stdout + ok.stderr
    assert "Session validate was successful" in ok.stderr

    # Break the config: the same target now fails, and so does make.
    config = project_with_nox / "mlops.yaml"
    config.write_text(config.read_text().replace("name: workflow-test", "name: Not_A_Label"))
    failed = _make(make_bin, project_with_nox, env, "-f", "mlops.mk", "validate")
    assert failed.returncode != 0
    assert "project.name" in failed.stderr and "Traceback" not in failed.stderr
    assert re.search(r"make: \*\*\* \[.*mlops\.mk:\d+: validate\] Error", failed.stderr)


def test_args_reach_the_step(
    project_with_nox: Path, mlops: Any, make_bin: str, env: dict[str, str]
) -> None:
    assert mlops(project_with_nox, "make").returncode == 0
    done = _make(make_bin, project_with_nox, env, "-f", "mlops.mk", "validate", "ARGS=--json")
    assert done.returncode == 0, done.stderr
    assert '"valid": true' in done.stdout  # `mlops validate --json` output


def test_included_from_another_directory(
    project_with_nox: Path, mlops: Any, make_bin: str, env: dict[str, str], tmp_path_factory: Any
) -> None:
    assert mlops(project_with_nox, "make").returncode == 0
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (elsewhere / "Makefile").write_text(
        f"include {project_with_nox}/mlops.mk\n\nall: validate\n\t@echo team target done\n"
    )
    done = _make(make_bin, elsewhere, env, "all")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "team target done" in done.stdout


def test_prefix_and_help(
    project_with_nox: Path, mlops: Any, make_bin: str, env: dict[str, str]
) -> None:
    assert mlops(project_with_nox, "make", "--prefix", "ml-").returncode == 0
    text = (project_with_nox / "mlops.mk").read_text()
    assert "\nml-train:" in text and "\ntrain:" not in text
    done = _make(make_bin, project_with_nox, env, "-f", "mlops.mk", "ml-help")
    assert done.returncode == 0, done.stderr
    assert "ml-test" in done.stdout and "team's tests" in done.stdout


def test_hand_edited_makefile_is_kept(project_with_nox: Path, mlops: Any) -> None:
    assert mlops(project_with_nox, "make").returncode == 0
    path = project_with_nox / "mlops.mk"
    path.write_text(path.read_text() + "\nextra:\n\techo hi\n")
    refused = mlops(project_with_nox, "make")
    assert refused.returncode == 1 and "edited by hand" in refused.stderr
    assert "extra:" in path.read_text()
    assert mlops(project_with_nox, "make", "--force").returncode == 0
    assert "extra:" not in path.read_text()
