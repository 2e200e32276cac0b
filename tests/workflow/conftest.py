"""Fixtures for the workflow tests: run the real `mlops` CLI, nox and make in subprocesses.

Test modules here cannot import each other (pytest's importlib mode), so the helpers are
handed out as fixtures.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import clean_env, run_mlops

MINIMAL_CONFIG = """\
apiVersion: mlops/v1alpha1
project: {name: workflow-test}
models:
  m: {description: a model whose tests we run}
"""


Runner = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A directory with a minimal valid mlops.yaml."""
    (tmp_path / "mlops.yaml").write_text(MINIMAL_CONFIG)
    return tmp_path


@pytest.fixture
def mlops() -> Runner:
    """`mlops <args>` in a directory, as a subprocess of this interpreter."""
    return run_mlops


@pytest.fixture
def env() -> dict[str, str]:
    return clean_env()


@pytest.fixture
def require_real(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """tests/conftest.py's require_real (skip locally, fail in CI); conftest modules are
    registered with pytest under their path, and importlib mode makes them unimportable."""
    shared = request.config.pluginmanager.get_plugin(
        str(Path(__file__).parent.parent / "conftest.py")
    )
    assert shared is not None, "tests/conftest.py was not loaded"
    function: Callable[[str], None] = shared.require_real
    return function
