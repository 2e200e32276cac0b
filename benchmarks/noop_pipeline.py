"""The no-op pipeline: `nox -s pipeline` with nothing changed, next to an empty nox session.

On a copy of the example project (mlops.yaml, lock, the digits model code) the pipeline runs
until it is steady: the first run creates the session venvs, trains and blesses; the second
evaluates once more against the now-blessed model (the baseline changed: a new verdict);
from then on nothing that a step depends on changes. Timed side by side, each the median of
N runs in fresh processes:

(a) `nox -s pipeline` — validate, test, train, evaluate, every one of them reusing what it
    recorded (install stamp, test pass, train cache, evaluation verdict);
(b) `nox -s empty` — an empty session (python=False) in a noxfile beside it: the floor nox
    itself costs.

The difference is what a no-op pipeline costs above nox. Target: under 3 s.

Run: python benchmarks/noop_pipeline.py [--runs N] [--workdir DIR]
(--workdir keeps the warm project between invocations; the first run there takes minutes.)
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
TARGET_S = 3.0
NOXFILE = 'import mlops_sessions\n\nmlops_sessions.register("mlops.yaml")\n'
EMPTY_NOXFILE = """import nox


@nox.session(python=False)
def empty(session: nox.Session) -> None:
    \"\"\"Does nothing: what nox alone costs.\"\"\"
"""


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("NOX", "MLOPS_PROFILE"))}


def _nox(cwd: Path, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "nox", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=_env(),
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"nox {' '.join(args)} failed:\n{(done.stdout + done.stderr)[-3000:]}")
    return done


def prepare(root: Path) -> None:
    """The example project under a noxfile that registers it, plus an empty-session noxfile."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("mlops.yaml", "requirements.lock"):
        shutil.copy(REPO / name, root / name)
    if not (root / "examples").exists():
        shutil.copytree(
            REPO / "examples", root / "examples", ignore=shutil.ignore_patterns("__pycache__")
        )
    (root / "noxfile.py").write_text(NOXFILE)
    (root / "empty_noxfile.py").write_text(EMPTY_NOXFILE)


def warm(root: Path) -> None:
    """Run the pipeline until a run reuses every verdict (at most a few runs)."""
    for attempt in range(1, 5):
        start = time.perf_counter()
        done = _nox(root, "-s", "pipeline")
        output = done.stdout + done.stderr
        print(f"warm-up run {attempt}: {time.perf_counter() - start:.1f} s", flush=True)
        if "reused: the verdict of evaluation" in output and "reused run" in output:
            return
    raise SystemExit("the pipeline never reached a no-op run:\n" + output[-3000:])


def timed(root: Path, args: list[str], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        done = _nox(root, *args)
        samples.append(time.perf_counter() - start)
        if args[-1] == "pipeline":
            text = done.stdout + done.stderr
            assert "reused: the verdict of evaluation" in text, text[-3000:]
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = (args.workdir or Path(tmp) / "example").resolve()
        prepare(root)
        warm(root)
        pipeline = timed(root, ["-s", "pipeline"], args.runs)
        empty = timed(root, ["-f", "empty_noxfile.py", "-s", "empty"], args.runs)
    p, e = statistics.median(pipeline), statistics.median(empty)
    print(f"no-op `nox -s pipeline` (median of {args.runs}): {p:.2f} s")
    print(f"empty nox session        (median of {args.runs}): {e:.2f} s")
    print(
        f"difference: {p - e:.2f} s (target < {TARGET_S:.0f} s: "
        f"{'met' if p - e < TARGET_S else 'NOT met'}); ratio {p / e:.1f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
