"""`mlops init`: the scaffold's files, its refusal to overwrite, and (slow) that a fresh
scaffold runs `nox -s test train evaluate`, `make -f mlops.mk train` and validates its CI
files for real."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops_sessions.config.loader import load, schema
from mlops_sessions.steps import init

SCAFFOLD = [
    ".gitignore",
    "mlops.yaml",
    "model/iris_model.py",
    "noxfile.py",
    "pytest.ini",
    "requirements.txt",
    "tests/test_iris_model.py",
]


def test_scaffold_files_ship_with_the_package(repo_root: Path) -> None:
    assert sorted(init.templates()) == SCAFFOLD
    if sys.version_info >= (3, 11):
        import tomllib

        data = tomllib.loads((repo_root / "pyproject.toml").read_text())
        assert "scaffold/**/*" in data["tool"]["setuptools"]["package-data"]["mlops_sessions"]


def test_init_writes_a_valid_project(tmp_path: Path, mlops: Any) -> None:
    target = tmp_path / "Iris Demo"
    done = mlops(tmp_path, "init", str(target), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["project"] == "iris-demo"
    assert sorted(result["written"]) == SCAFFOLD
    assert result["next"].endswith("nox -s test train evaluate")
    config = load(target / "mlops.yaml")
    assert config.project.name == "iris-demo"
    assert config.data["iris"].package == "sklearn"
    assert config.tests.path == "tests"
    assert config.python.requirements == "requirements.txt"
    train = config.models["iris"].train
    assert train is not None and (target / train.source / "iris_model.py").is_file()
    # The editor's schema reference is the installed schema file.
    first = (target / "mlops.yaml").read_text().splitlines()[0]
    assert first.startswith("# yaml-language-server: $schema=")
    schema_path = Path(first.split("$schema=", 1)[1])
    assert json.loads(schema_path.read_text()) == schema()
    requirements = (target / "requirements.txt").read_text()
    for name in ("tensorflow-cpu", "scikit-learn", "numpy", "pytest"):
        assert f"\n{name}" in requirements
    noxfile = (target / "noxfile.py").read_text()
    assert 'mlops_sessions.register("mlops.yaml")' in noxfile


def test_schema_url_option(tmp_path: Path, mlops: Any) -> None:
    assert mlops(tmp_path, "init", "p", "--schema-url").returncode == 0
    first = (tmp_path / "p" / "mlops.yaml").read_text().splitlines()[0]
    assert first == f"# yaml-language-server: $schema={schema()['$id']}"


def test_refuses_to_overwrite_and_lists_the_files(tmp_path: Path, mlops: Any) -> None:
    (tmp_path / "mlops.yaml").write_text("mine\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_iris_model.py").write_text("mine\n")
    done = mlops(tmp_path, "init")
    assert done.returncode == 1
    assert "refusing to overwrite 2 existing file(s)" in done.stderr
    assert "  mlops.yaml\n" in done.stderr and "tests/test_iris_model.py" in done.stderr
    assert "--force" in done.stderr and "Traceback" not in done.stderr
    assert (tmp_path / "mlops.yaml").read_text() == "mine\n"
    assert not (tmp_path / "noxfile.py").exists(), "nothing is written after a refusal"

    forced = mlops(tmp_path, "init", "--force", "--json")
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout)["overwritten"] == ["mlops.yaml", "tests/test_iris_model.py"]
    assert load(tmp_path / "mlops.yaml").models["iris"]


def test_other_files_are_kept_and_gitignore_is_extended(tmp_path: Path, mlops: Any) -> None:
    (tmp_path / "README.md").write_text("# ours\n")
    (tmp_path / ".gitignore").write_text("*.pyc\n.nox/")
    done = mlops(tmp_path, "init", "--json")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "README.md").read_text() == "# ours\n"
    lines = (tmp_path / ".gitignore").read_text().splitlines()
    assert lines[:2] == ["*.pyc", ".nox/"] and ".mlops/" in lines and lines.count(".nox/") == 1


def test_init_into_a_file_is_a_clear_error(tmp_path: Path, mlops: Any) -> None:
    (tmp_path / "x").write_text("")
    done = mlops(tmp_path, "init", "x")
    assert done.returncode == 1 and "x exists and is a file, not a directory" in done.stderr
    assert "Traceback" not in done.stderr and (tmp_path / "x").read_text() == ""


def test_bad_project_name(tmp_path: Path, mlops: Any) -> None:
    done = mlops(tmp_path, "init", "--name", "Bad_Name")
    assert done.returncode == 1 and "DNS-1123" in done.stderr


@pytest.mark.slow
def test_scaffold_runs_the_pipeline_end_to_end(
    tmp_path: Path, mlops: Any, env: dict[str, str], require_real: Callable[[str], None]
) -> None:
    """The promise of `mlops init`: `nox -s test train evaluate` passes out of the box."""
    project = tmp_path / "demo"
    assert mlops(tmp_path, "init", str(project)).returncode == 0
    nox = [sys.executable, "-m", "nox"]
    done = subprocess.run(
        [*nox, "-s", "test", "train", "evaluate"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    log = done.stdout + done.stderr
    assert "tests passed: 3 passed" in log
    assert "Session train was successful" in log
    assert "gate PASS" in log and "blessed: iris" in log
    reports = list((project / ".mlops" / "runs").glob("*/eval/*/report.md"))
    assert len(reports) == 1

    # Make drives the same sessions: train now reuses the stored run.
    make = shutil.which("make")
    if make is None:
        require_real("GNU make is not installed (apt-get install make)")
    assert make is not None
    assert mlops(project, "make").returncode == 0
    made = subprocess.run(
        [make, "-f", "mlops.mk", "train", f"NOX={sys.executable} -m nox"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
    assert "Session train was successful" in made.stderr
    assert len(list((project / ".mlops" / "runs").iterdir())) == 1, "make reran the same step"

    # The scaffold's CI files validate and run its sessions.
    for provider, path in (("github", ".github/workflows/mlops.yml"), ("gitlab", ".gitlab-ci.yml")):
        assert mlops(project, "ci", provider).returncode == 0
        document = yaml.safe_load((project / path).read_text())
        assert document
        checked = subprocess.run(
            [
                sys.executable,
                "-m",
                "check_jsonschema",
                "--builtin-schema",
                {"github": "vendor.github-workflows", "gitlab": "vendor.gitlab-ci"}[provider],
                str(project / path),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr

    # A failing test stops the pipeline: `train` requires `test`, so it never starts.
    test_file = project / "tests" / "test_iris_model.py"
    test_file.write_text(
        test_file.read_text() + "\n\ndef test_broken() -> None:\n    assert False\n"
    )
    failed = subprocess.run(
        [*nox, "-s", "train", "--", "--force"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert failed.returncode != 0
    log = failed.stdout + failed.stderr
    assert "1 test(s) failed in tests; the pipeline stops here" in log
    assert "Session train aborted: Prerequisite session test was not successful" in log
    assert len(list((project / ".mlops" / "runs").iterdir())) == 1
