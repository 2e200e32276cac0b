"""Plugin overhead and venv backends, measured side by side in one run.

1. `nox -l` on a noxfile that registers the example mlops.yaml vs the same noxfile
   without the plugin (target: within 0.2 s).
2. Creating a session venv and installing the same small package set with the `uv` backend
   vs `virtualenv` + pip (why `venv_backend: auto` prefers uv). Both use warm local caches;
   the package set is kept small so the run takes seconds, not minutes.

Run: python benchmarks/nox_bench.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PLAIN = '''import nox


@nox.session
def lint(session: nox.Session) -> None:
    """A team session."""
    session.run("true")
'''
WITH_PLUGIN = PLAIN + '\nimport mlops_sessions\n\nmlops_sessions.register("mlops.yaml")\n'
VENV_NOXFILE = """import nox


@nox.session(venv_backend="{backend}")
def deps(session: nox.Session) -> None:
    session.install("pyyaml", "jsonschema", "packaging")
"""


def _time(cmd: list[str], cwd: Path, runs: int) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOX")}
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, env=env)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def bench_listing(runs: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copy(REPO / "mlops.yaml", root / "mlops.yaml")
        shutil.copy(REPO / "requirements.lock", root / "requirements.lock")
        (root / "plain.py").write_text(PLAIN)
        (root / "plugin.py").write_text(WITH_PLUGIN)
        nox = [sys.executable, "-m", "nox", "-l", "-f"]
        _time([*nox, "plain.py"], root, 1)  # warm the import caches
        plain = _time([*nox, "plain.py"], root, runs)
        plugin = _time([*nox, "plugin.py"], root, runs)
    return plain, plugin


def bench_venv(backend: str, runs: int) -> float:
    samples = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            (root / "noxfile.py").write_text(VENV_NOXFILE.format(backend=backend))
            samples.append(_time([sys.executable, "-m", "nox", "-s", "deps"], root, 1))
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    plain, plugin = bench_listing(args.runs)
    overhead = plugin - plain
    print(f"{'measurement':44} {'value':>10}  target")
    print(f"{'nox -l, plain noxfile (median)':44} {plain:9.3f}s")
    print(f"{'nox -l, with mlops_sessions.register':44} {plugin:9.3f}s")
    verdict = "PASS" if overhead <= 0.2 else "FAIL"
    print(f"{'plugin overhead':44} {overhead:9.3f}s  <= 0.200s {verdict}")
    venv_runs = max(1, args.runs // 3)
    bench_venv("uv", 1)  # warm uv's cache
    bench_venv("virtualenv", 1)  # warm pip's cache
    uv = bench_venv("uv", venv_runs)
    virtualenv = bench_venv("virtualenv", venv_runs)
    print(f"{'new venv + 3 packages, uv backend':44} {uv:9.3f}s")
    print(f"{'new venv + 3 packages, virtualenv + pip':44} {virtualenv:9.3f}s")
    print(f"{'virtualenv / uv':44} {virtualenv / uv:9.1f}x")


if __name__ == "__main__":
    main()
