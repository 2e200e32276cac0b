"""The layers of docs/architecture.md hold: `lint-imports` checks the contracts declared in
pyproject.toml (front ends -> steps -> drivers -> console -> executors -> planning ->
records/config; steps do not import each other; only executors and the server import
Docker, Kubernetes, TensorFlow or S3 clients), and the contract's list of step modules is the
pipeline table's."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from mlops_sessions import pipeline
from tests.conftest import require_real

REPO = Path(__file__).resolve().parents[2]


def test_import_contracts_are_kept() -> None:
    linter = shutil.which("lint-imports")
    if linter is None:
        require_real("lint-imports (import-linter, a dev dependency) is not installed")
    assert linter is not None
    done = subprocess.run(
        [linter, "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert re.search(r"Contracts: [1-9]\d* kept, 0 broken", done.stdout), done.stdout[-2000:]


def test_every_step_module_is_a_row_of_the_pipeline_table() -> None:
    """A module in steps/ is a command of the table (what commands share lives in console/,
    orchestration in drivers/); a shared helper would have to be declared in pyproject."""
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    independence = next(c for c in contracts["contracts"] if c["type"] == "independence")
    shared = {rule.split("->")[1].strip() for rule in independence.get("ignore_imports", [])}
    steps_dir = REPO / "mlops_sessions" / "steps"
    modules = {
        f"mlops_sessions.steps.{p.stem}" for p in steps_dir.glob("*.py") if p.stem != "__init__"
    }
    commands = {f"mlops_sessions.steps.{s.module}" for s in pipeline.commands()}
    assert modules - shared == commands, (
        "a module in mlops_sessions/steps/ that is neither a command in pipeline.STEPS nor a "
        "shared helper listed in pyproject's independence contract"
    )
