"""`mlops test`: the team's pytest suite, run for real in a subprocess, with its failure modes.

Each case is a small project in a temp dir with a real test suite; the step runs pytest
with this interpreter, as the nox `test` session runs it with the session venv's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mlops_sessions.config.loader import loads

PYTEST_INI = "[pytest]\nmarkers =\n    slow: a slow test\n"


def _suite(project: Path, files: dict[str, str], config_extra: str = "") -> Path:
    for name, text in files.items():
        path = project / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (project / "pytest.ini").write_text(PYTEST_INI)
    if config_extra:
        with open(project / "mlops.yaml", "a") as handle:
            handle.write(config_extra)
    return project


def test_tests_key_defaults_and_overrides() -> None:
    base = "apiVersion: mlops/v1alpha1\nproject: {name: p}\nmodels: {m: {}}\n"
    assert loads(base).tests.path == "tests"
    assert loads(base).tests.markers is None and loads(base).tests.args == ()
    custom = loads(base + "tests: {path: checks, markers: 'not slow', args: [-x, -q]}\n")
    assert (custom.tests.path, custom.tests.markers, custom.tests.args) == (
        "checks",
        "not slow",
        ("-x", "-q"),
    )


def test_passing_suite_reports_counts_as_json(project: Path, mlops: Any) -> None:
    _suite(
        project,
        {
            "tests/test_ok.py": "import pytest\n\ndef test_a():\n    assert 1 + 1 == 2\n\n"
            "def test_b():\n    assert 'x'\n\n"
            "@pytest.mark.skip(reason='demo')\ndef test_c():\n    pass\n",
        },
    )
    done = mlops(project, "test", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)  # pytest's own output went to stderr
    assert result["passed"] is True and result["exit_code"] == 0
    assert result["counts"] == {"tests": 3, "failures": 0, "errors": 0, "skipped": 1, "passed": 2}
    assert "test session starts" in done.stderr


def test_failing_suite_stops_with_a_clear_message(project: Path, mlops: Any) -> None:
    _suite(project, {"tests/test_bad.py": "def test_bad():\n    assert 2 + 2 == 5\n"})
    done = mlops(project, "test")
    assert done.returncode == 1
    assert "1 test(s) failed in tests; the pipeline stops here" in done.stderr
    assert "Traceback" not in done.stderr
    assert "test_bad - assert (2 + 2) == 5" in done.stdout  # pytest's own report is shown


def test_failing_suite_with_json_still_prints_json(project: Path, mlops: Any) -> None:
    _suite(project, {"tests/test_bad.py": "def test_bad():\n    assert False\n"})
    done = mlops(project, "test", "--json")
    assert done.returncode == 1
    result = json.loads(done.stdout)
    assert result["passed"] is False and result["exit_code"] == 1
    assert result["counts"]["failures"] == 1
    assert "pipeline stops here" in result["error"]


def test_empty_suite_is_a_failure(project: Path, mlops: Any) -> None:
    _suite(project, {"tests/helpers.py": "VALUE = 1\n"})
    done = mlops(project, "test")
    assert done.returncode == 1
    assert "no tests were collected from tests (pytest exit 5)" in done.stderr
    assert "tests.path / tests.markers" in done.stderr


def test_missing_test_path_names_the_fix(project: Path, mlops: Any) -> None:
    done = mlops(project, "test")  # the default path 'tests' does not exist
    assert done.returncode == 1
    assert "test path 'tests' does not exist" in done.stderr
    assert "set tests.path in mlops.yaml" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_markers_and_args_from_config_and_cli(project: Path, mlops: Any) -> None:
    _suite(
        project,
        {
            "checks/test_mixed.py": "import pytest\n\n@pytest.mark.slow\ndef test_slow():\n"
            "    assert False\n\ndef test_fast():\n    assert True\n\n"
            "def test_other():\n    assert True\n"
        },
        "tests: {path: checks, markers: 'not slow', args: ['-p', 'no:cacheprovider']}\n",
    )
    done = mlops(project, "test", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["counts"]["passed"] == 2
    assert result["command"][-4:] == ["-m", "not slow", "-p", "no:cacheprovider"]
    assert not (project / ".pytest_cache").exists()
    # -k narrows further; -m on the command line replaces the configured expression.
    done = mlops(project, "test", "--json", "-k", "fast")
    assert json.loads(done.stdout)["counts"]["passed"] == 1
    done = mlops(project, "test", "-m", "slow")
    assert done.returncode == 1 and "1 test(s) failed" in done.stderr


def test_container_models_are_tested_in_their_image_not_in_the_venv(
    project: Path, mlops: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The suite of a train.container model runs in the train image: with no Docker engine
    the step says so (naming the fix) instead of quietly testing in the venv."""
    (project / "mlops.yaml").write_text(
        "apiVersion: mlops/v1alpha1\nproject: {name: p}\n"
        "tests: {path: tests}\n"
        "images:\n  trainer: {kind: train, repository: trainer, tag: {policy: date}, "
        "base: {variant: cpu, tensorflow: '2.21.0'}}\n"
        "models:\n  m:\n    train: {entrypoint: 'm:train', container: true, image: trainer}\n"
    )
    _suite(project, {"tests/test_ok.py": "def test_ok():\n    pass\n"})
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    done = mlops(project, "test")
    assert done.returncode == 1
    assert "cannot reach the Docker engine at unix:///nonexistent/docker.sock" in done.stderr
    assert "test session starts" not in done.stdout  # pytest never ran in the venv


def test_unknown_model_is_a_clear_error(project: Path, mlops: Any) -> None:
    done = mlops(project, "test", "nosuch")
    assert done.returncode == 1
    assert "unknown model(s): nosuch" in done.stderr


def test_collection_error_is_explained(project: Path, mlops: Any) -> None:
    _suite(project, {"tests/test_imports.py": "import no_such_module_here\n"})
    done = mlops(project, "test")
    assert done.returncode == 1
    assert "interrupted (pytest exit 2), often by an import error in tests" in done.stderr
    assert "no_such_module_here" in done.stdout


def test_bad_pytest_args_are_explained(project: Path, mlops: Any) -> None:
    _suite(
        project,
        {"tests/test_ok.py": "def test_ok():\n    pass\n"},
        "tests: {args: ['--no-such-pytest-option']}\n",
    )
    done = mlops(project, "test")
    assert done.returncode == 1
    assert "pytest rejected its arguments (exit 4); check tests.args" in done.stderr


def test_team_tests_import_model_code_from_train_source(tmp_path: Path, mlops: Any) -> None:
    # The tests import the model module exactly as the training step does: from
    # train.source, which is not the project root and not installed.
    (tmp_path / "mlops.yaml").write_text(
        "apiVersion: mlops/v1alpha1\nproject: {name: p}\n"
        "models: {m: {train: {entrypoint: 'shapes:train', source: src/model}}}\n"
    )
    _suite(
        tmp_path,
        {
            "src/model/shapes.py": "def width():\n    return 8\n",
            "tests/test_shapes.py": "from shapes import width\n\ndef test_width():\n"
            "    assert width() == 8\n",
        },
    )
    done = mlops(tmp_path, "test", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["counts"]["passed"] == 1


def _passing_project(tmp_path: Path) -> Path:
    (tmp_path / "mlops.yaml").write_text(
        "apiVersion: mlops/v1alpha1\nproject: {name: p}\n"
        "models: {m: {train: {entrypoint: 'shapes:train', source: src}}}\n"
    )
    return _suite(
        tmp_path,
        {
            "src/shapes.py": "def width():\n    return 8\n",
            "tests/test_shapes.py": "from shapes import width\n\ndef test_width():\n"
            "    assert width() == 8\n",
        },
    )


@pytest.mark.slow
def test_a_pass_is_reused_until_an_input_changes(tmp_path: Path, mlops: Any) -> None:
    project = _passing_project(tmp_path)
    first = json.loads(mlops(project, "test", "--json").stdout)
    assert first["cached"] is False and first["passed"] is True
    again = mlops(project, "test", "--json")
    assert json.loads(again.stdout)["cached"] is True
    assert "test session starts" not in again.stderr, "a cached pass must not run pytest"
    assert json.loads(mlops(project, "test", "--json", "--force").stdout)["cached"] is False

    # A change to the model code (not the tests) runs the suite again.
    (project / "src" / "shapes.py").write_text("def width():\n    return 8  # same value\n")
    assert json.loads(mlops(project, "test", "--json").stdout)["cached"] is False
    # So does a change to the tests, and to the pytest command.
    (project / "tests" / "test_extra.py").write_text("def test_more():\n    pass\n")
    assert json.loads(mlops(project, "test", "--json").stdout)["cached"] is False
    assert json.loads(mlops(project, "test", "--json", "-k", "width").stdout)["cached"] is False


@pytest.mark.slow
def test_a_failure_is_never_reused(tmp_path: Path, mlops: Any) -> None:
    project = _passing_project(tmp_path)
    (project / "src" / "shapes.py").write_text("def width():\n    return 9\n")
    for _ in range(2):
        done = mlops(project, "test")
        assert done.returncode == 1
        assert "test session starts" in done.stdout + done.stderr
