"""Sessions for developing mlops-sessions itself, plus the example pipeline from mlops.yaml.

`nox -l` lists both: the project's checks (lint, typecheck, tests) and the pipeline
sessions that `mlops_sessions.register` builds from the repository's own mlops.yaml.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nox

import mlops_sessions

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - nox runs this file with the developer's Python
    import tomli as tomllib

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "typecheck", "tests"]


@nox.session(reuse_venv=True)
def lint(session: nox.Session) -> None:
    """Ruff lint and format check."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    # The layers of docs/architecture.md, enforced: front ends -> steps -> executors ->
    # planning -> records/config (contracts in pyproject.toml).
    session.install("-e", ".", "import-linter>=2.1")
    session.run("lint-imports")


@nox.session(reuse_venv=True)
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package."""
    session.install("-e", ".[dev]")
    session.run("mypy")


@nox.session(reuse_venv=True)
def tests(session: nox.Session) -> None:
    """The test suite (pass -- -m "not slow" for the quick part)."""
    session.install("-e", ".[dev]")
    session.run("pytest", *session.posargs)


def _oldest_nox() -> str:
    """The lowest nox the package declares (pyproject's `nox>=X`): the plugin must work there."""
    project = tomllib.loads(Path("pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        found = re.fullmatch(r"nox\s*>=\s*([\w.]+)", requirement)
        if found:
            return found.group(1)
    raise RuntimeError("pyproject.toml declares no `nox>=` lower bound")


PLUGIN_TESTS = "tests/plugin/test_noxplugin.py"


@nox.session(reuse_venv=True)
@nox.parametrize("nox_version", ["oldest", "newest"])
def plugin_compat(session: nox.Session, nox_version: str) -> None:
    """The nox plugin's tests against the oldest nox we declare and the newest release."""
    pin = f"nox=={_oldest_nox()}" if nox_version == "oldest" else "nox"
    # Upgrade so "newest" really is the newest release, not whatever the venv kept.
    session.install("--upgrade", "-e", ".", "pytest>=8", pin)
    session.run("python", "-m", "nox", "--version")
    deselect = []
    if nox_version == "oldest":
        # nox 2025.2.9 applies `default=False` before `-t`, so `nox -l --json -t mlops`
        # lists only the default sessions there: a nox behaviour, not the plugin's.
        deselect = [
            "--deselect",
            f"{PLUGIN_TESTS}::test_nox_list_json_matches_golden[args1-nox-list-all.json]",
        ]
    session.run("pytest", "-p", "no:cacheprovider", "-q", PLUGIN_TESTS, *deselect)


mlops_sessions.register("mlops.yaml")
