"""A published Go module's source tree at a pinned version, fetched with the Go toolchain.

``module_dir(module, version)`` runs ``go mod download -json MODULE@VERSION`` with its own
module cache (``~/.cache/mlops-sessions/gomod/``, or ``$MLOPS_GOMOD_CACHE``) and returns the
extracted directory Go reports (``Dir``). Go checks every download against the checksum
database, so the files are the ones the module's authors published at that version. A
second call is answered from the cache without the network. Tests read the CRDs projects
publish in their modules (the prometheus-operator's PrometheusRule, Istio's, Kubeflow's)
from here.

Without ``go`` on PATH, or when the download fails, the test is skipped locally and fails
in CI (:func:`tests.conftest.require_real`).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from pathlib import Path

from tests.conftest import require_real

CACHE_ENV = "MLOPS_GOMOD_CACHE"
DOWNLOAD_TIMEOUT_S = 600


def cache_root() -> Path:
    configured = os.environ.get(CACHE_ENV)
    return Path(configured) if configured else Path.home() / ".cache" / "mlops-sessions" / "gomod"


@functools.cache
def module_dir(module: str, version: str) -> Path:
    """The extracted source of ``module`` at ``version`` (read-only files, as Go leaves them)."""
    go = shutil.which("go")
    if go is None:
        require_real(f"the Go toolchain is not installed: cannot fetch {module}@{version}")
    assert go is not None
    cache = cache_root()
    cache.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "GOMODCACHE": str(cache),
        "GOFLAGS": "-mod=mod",
        "GO111MODULE": "on",
        # Outside any module: `go mod download` needs no go.mod for MODULE@VERSION.
        "GOWORK": "off",
    }
    try:
        done = subprocess.run(
            [go, "mod", "download", "-json", f"{module}@{version}"],
            capture_output=True,
            text=True,
            timeout=DOWNLOAD_TIMEOUT_S,
            cwd=cache,
            env=env,
        )
    except subprocess.TimeoutExpired:
        require_real(f"go mod download {module}@{version} took over {DOWNLOAD_TIMEOUT_S}s")
        raise
    info = _answer(done.stdout)
    error = info.get("Error") or (done.stderr.strip() if done.returncode != 0 else "")
    if error or "Dir" not in info:
        require_real(f"go mod download {module}@{version} failed: {error or done.stdout[:500]}")
    return Path(info["Dir"])


def _answer(stdout: str) -> dict[str, str]:
    try:
        parsed = json.loads(stdout) if stdout.strip() else {}
    except json.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}
