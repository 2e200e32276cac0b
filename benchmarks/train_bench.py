"""Training cache effectiveness through the real front end, measured in one run.

On a copy of the example project (venvs created and dependencies installed by a warm-up
run, as they are on a developer's machine after the first `nox -s pipeline`):

* cold:   `nox -s train -- --force`  (the whole chain, retraining the model)
* no-op:  `nox -s train`             (the whole chain; training is a cache hit)
* empty:  `nox -s empty`             (a session that does nothing: nox's own floor)
* pipeline: `nox -s pipeline` with an empty store (venvs kept), for the record

Targets (issue: reproducible training): no-op <= 10% of cold, and no-op - empty < 3 s.

Run: python benchmarks/train_bench.py [--runs N]
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
NOXFILE = '''import nox

import mlops_sessions


@nox.session(python=False)
def empty(session: nox.Session) -> None:
    """Does nothing: the cost of starting nox and a session."""


mlops_sessions.register("mlops.yaml")
'''


def _project(root: Path) -> Path:
    for name in ("mlops.yaml", "requirements.lock"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(
        REPO / "examples", root / "examples", ignore=shutil.ignore_patterns("__pycache__")
    )
    (root / "noxfile.py").write_text(NOXFILE)
    return root


def _nox(root: Path, *args: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOX", "MLOPS_PROFILE"))}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "nox", *args], cwd=root, env=env, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"nox {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = _project(Path(tmp))
        warmup = _nox(root, "-s", "pipeline")
        cold = statistics.median(
            _nox(root, "-s", "train", "--", "--force") for _ in range(args.runs)
        )
        noop = statistics.median(_nox(root, "-s", "train") for _ in range(args.runs))
        empty = statistics.median(_nox(root, "-s", "empty") for _ in range(args.runs))
        shutil.rmtree(root / ".mlops")  # cold: no cached tests, run or blessing
        pipeline = _nox(root, "-s", "pipeline")
    ratio = noop / cold
    title = f"measurement (median of {args.runs})"
    print(f"{title:46} {'seconds':>9}  target")
    print(f"{'first pipeline (venv + install + train + gate)':46} {warmup:9.2f}")
    print(f"{'nox -s train -- --force  (cold training)':46} {cold:9.2f}")
    print(f"{'nox -s train             (cache hit)':46} {noop:9.2f}")
    print(f"{'nox -s empty             (floor)':46} {empty:9.2f}")
    print(f"{'nox -s pipeline, empty store':46} {pipeline:9.2f}")
    print(f"{'no-op / cold':46} {ratio:9.1%}  <= 10%  {'PASS' if ratio <= 0.10 else 'FAIL'}")
    over = noop - empty
    print(f"{'no-op - empty':46} {over:9.2f}  < 3 s   {'PASS' if over < 3 else 'FAIL'}")


if __name__ == "__main__":
    main()
