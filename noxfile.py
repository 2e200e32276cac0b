"""Sessions for developing mlops-sessions itself, plus the example pipeline from mlops.yaml.

`nox -l` lists both: the project's checks (lint, typecheck, tests) and the pipeline
sessions that `mlops_sessions.register` builds from the repository's own mlops.yaml.
"""

from __future__ import annotations

import nox

import mlops_sessions

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "typecheck", "tests"]


@nox.session(reuse_venv=True)
def lint(session: nox.Session) -> None:
    """Ruff lint and format check."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


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


mlops_sessions.register("mlops.yaml")
