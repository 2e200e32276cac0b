"""Shared test plumbing.

``require_real(reason)`` is how a test says "this needs a real component (Docker engine,
registry, Prometheus, wrk ...) that is absent here". Locally that is a skip with the reason;
with ``MLOPS_REQUIRE_REAL=1`` (set by ``.ci/run``) it is a failure, so a green CI always
means the real thing ran.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

# The fast tier's watch (tests/fast_tier.py): at the end of a `-m "not slow"` run, the
# unmarked tests that took over 2 s. Imported by name: pytest finds conftest hooks by name.
from tests.fast_tier import pytest_configure  # noqa: F401

if TYPE_CHECKING:
    from tests.prometheus_server import Prometheus

REPO = Path(__file__).resolve().parent.parent
REQUIRE_REAL_ENV = "MLOPS_REQUIRE_REAL"


def require_real(reason: str) -> None:
    """Skip (locally) or fail (in CI) because a real component is missing."""
    if os.environ.get(REQUIRE_REAL_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_REAL_ENV}=1 turns this skip into a failure)")
    pytest.skip(reason)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without the outer run's nox/pytest/mlops variables, plus extra."""
    drop = ("NOX", "PYTEST", "MLOPS_PROFILE", "MLOPS_CONFIG")
    return {**{k: v for k, v in os.environ.items() if not k.startswith(drop)}, **extra}


def run_mlops(
    cwd: Path, *args: str, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m mlops_sessions ARGS` in cwd as a subprocess, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "mlops_sessions", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env() if env is None else env,
        check=False,
    )


@pytest.fixture
def repo_root() -> Path:
    return REPO


@pytest.fixture
def example_config() -> Path:
    return REPO / "mlops.yaml"


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """A real Prometheus on loopback for the whole session (tests/prometheus_server.py):
    tests add the `mlops serve` processes it should scrape with `add_target`."""
    from tests.prometheus_server import Prometheus, binary

    found = binary()
    if found is None:
        require_real("Prometheus (Debian's prometheus package) is not installed")
    assert found is not None
    server = Prometheus(found, tmp_path_factory.mktemp("prometheus"))
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


# The session's dockerd and registry, defined once so that every directory shares one
# engine (imported last: tests/fixtures/docker.py uses require_real from this module).
from tests.fixtures.docker import docker_env  # noqa: E402, F401
