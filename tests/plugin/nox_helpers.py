"""Running real `nox` on a copy of the example project (shared by the plugin tests)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

NOXFILE = 'import mlops_sessions\n\nmlops_sessions.register("mlops.yaml")\n'


def run_nox(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`python -m nox ARGS` in cwd, without the caller's NOX*/MLOPS_PROFILE settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOX", "MLOPS_PROFILE"))}
    return subprocess.run(
        [sys.executable, "-m", "nox", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def example_project(
    repo: Path, target: Path, config_text: str | None = None, with_code: bool = False
) -> Path:
    """The example's mlops.yaml + lock (and its model code) under a noxfile that registers it."""
    for name in ("mlops.yaml", "requirements.lock"):
        shutil.copy(repo / name, target / name)
    if config_text is not None:
        (target / "mlops.yaml").write_text(config_text)
    if with_code:
        shutil.copytree(
            repo / "examples", target / "examples", ignore=shutil.ignore_patterns("__pycache__")
        )
    (target / "noxfile.py").write_text(NOXFILE)
    return target
