"""Progressive rollout timing: how fast a bad canary is pulled back, how much a healthy
one's promotion costs beyond its analysis windows.

Runs the real driver (`mlops deploy` with rollout.steps, drivers.rollout)
against kmock's Kubernetes emulator over real HTTP with the real `kubernetes` client, the
Deployment controller played by the tests' controller thread (pods "start" 50 ms after a
spec change). The live analysis is the tests' FakeAnalysis: the gate's own decide() on
chosen numbers, answering at once. So the figures are the driver's own cost (applies,
waits, records on the cluster and in the store); a real Prometheus adds its query time per
window (measured separately with the Prometheus executor).

(a) bad canary: from the moment the canary's weight took effect (the first window's
    start) to the VirtualService saying 100 % stable, against failure_limit x interval;
    the excess is the abort's one apply (goal: within failure_limit x interval + 1 apply).
(b) healthy canary, steps [10, 50, 100]: from `mlops deploy` starting to it returning
    promoted, against len(steps) x interval (goal: overhead <= 10 %).

    python benchmarks/rollout.py [--intervals 2,5,10] [--limits 1,2]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mlops_sessions.frontends.cli import build_parser  # noqa: E402
from mlops_sessions.steps import deploy as deploy_step  # noqa: E402
from tests.deploy.conftest import FAST_API, FakeCluster  # noqa: E402
from tests.rollout.conftest import RolloutProject  # noqa: E402
from tests.rollout.fakes import FakeAnalysis  # noqa: E402


def args_for(project: RolloutProject, *rest: str) -> Any:
    argv = ["deploy", "-c", str(project.config), *rest, *FAST_API]
    return build_parser("deploy").parse_args(argv)


def vs_weights(cluster: FakeCluster) -> dict[str, int]:
    vs = cluster.get("networking.istio.io/v1/virtualservices", "digits")
    if vs is None:
        return {}
    route = vs["spec"]["http"][-1]["route"]
    return {d["destination"]["subset"]: int(d["weight"]) for d in route}


def rollout_state(cluster: FakeCluster) -> dict[str, Any]:
    cm = cluster.get("v1/configmaps", "digits-mlops-rollout")
    assert cm is not None
    state: dict[str, Any] = json.loads(cm["data"]["state"])
    return state


def quiet(fn: Any) -> Any:
    """Run fn with the deploy's progress lines (stderr) and summary (stdout) dropped."""
    with open(os.devnull, "w") as null:
        out, err = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = null
        try:
            return fn()
        finally:
            sys.stdout, sys.stderr = out, err


def fresh(
    root: Path, interval: float, failure_limit: int = 1
) -> tuple[FakeCluster, RolloutProject]:
    root.mkdir(parents=True)
    cluster = FakeCluster(root)
    cluster.start()
    os.environ["KUBECONFIG"] = str(cluster.kubeconfig)
    project = RolloutProject(root / "project")
    project.rollout(interval=f"{interval:g}s", failure_limit=failure_limit)
    project.build("v1", "model-aaa")
    assert quiet(lambda: deploy_step.run(args_for(project), analyse=FakeAnalysis())) == 0
    project.build("v2", "model-bbb")
    return cluster, project


def bad_canary(root: Path, interval: float, failure_limit: int) -> dict[str, float]:
    cluster, project = fresh(root, interval, failure_limit)
    try:
        back: list[float] = []
        armed = threading.Event()
        stop = threading.Event()

        def watch() -> None:
            # The moment the split returns to 100 % stable after the canary took traffic.
            while not stop.is_set():
                weights = vs_weights(cluster)
                if weights.get("canary", 0) > 0:
                    armed.set()
                elif armed.is_set() and weights.get("stable") == 100:
                    back.append(time.time())
                    return
                time.sleep(0.002)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        fake = FakeAnalysis(canary={0: {"error_rate": 0.3}})
        code = quiet(lambda: deploy_step.run(args_for(project), analyse=fake))
        stop.set()
        watcher.join(5)
        assert code == 1 and back, "the bad canary was not aborted"
        state = rollout_state(cluster)
        first = state["measurements"][0]["window"]
        decided = state["measurements"][-1]["at"]
        return {
            "to_stable": back[0] - first["start"],
            "bound": failure_limit * interval,
            "apply": back[0] - decided,
        }
    finally:
        cluster.stop()


def healthy(root: Path, interval: float) -> dict[str, float]:
    cluster, project = fresh(root, interval)
    try:
        started = time.monotonic()
        code = quiet(lambda: deploy_step.run(args_for(project), analyse=FakeAnalysis()))
        took = time.monotonic() - started
        assert code == 0, "the healthy canary was not promoted"
        windows = 3 * interval
        state = rollout_state(cluster)
        # Where the time beyond the windows went: judging late, and applying between them.
        windows_at = [m["window"] for m in state["measurements"]]
        driver = state["updated_at"] - state["started_at"]  # begin -> promoted, settled
        return {
            "took": took,
            "windows": windows,
            "overhead": (took - windows) / windows,
            "prepare": took - driver,  # load, policy, render, validate, connect, lock
            "canary_up": windows_at[0]["start"] - state["started_at"],
            "steps": sum(b["start"] - a["end"] for a, b in itertools.pairwise(windows_at)),
            "promotion": state["updated_at"] - windows_at[-1]["end"],
            "driver_overhead": (driver - windows) / windows,
        }
    finally:
        cluster.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--intervals", default="2,5,10", help="analysis intervals (s)")
    parser.add_argument("--limits", default="1,2", help="failure_limit values for (a)")
    options = parser.parse_args()
    intervals = [float(x) for x in options.intervals.split(",")]
    limits = [int(x) for x in options.limits.split(",")]
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    work = Path(tempfile.mkdtemp(prefix="rollout-bench-"))
    failed = False
    try:
        print("\n(a) bad canary: first failed window's start -> 100% stable")
        print(f"{'interval':>9} {'limit':>6} {'to stable s':>12} {'limit x int':>12} "
              f"{'apply s':>8}  result")  # fmt: skip
        for interval in intervals[:2]:
            for limit in limits:
                row = bad_canary(work / f"bad-{interval}-{limit}", interval, limit)
                ok = row["to_stable"] <= row["bound"] + row["apply"] + 0.05
                failed |= not ok
                print(f"{interval:>9g} {limit:>6} {row['to_stable']:>12.3f} "
                      f"{row['bound']:>12.3f} {row['apply']:>8.3f}  "
                      f"{'PASS' if ok else 'FAIL'}")  # fmt: skip
        print("\n(b) healthy canary, steps [10, 50, 100]: deploy start -> promoted")
        print(
            f"{'interval':>9} {'took s':>7} {'3 x int':>7} {'prepare':>8} {'canary up':>9} "
            f"{'steps':>6} {'promote':>8} {'overhead':>9} {'driver only':>12}  target  result"
        )
        for interval in intervals:
            row = healthy(work / f"good-{interval}", interval)
            ok = row["overhead"] <= 0.10
            failed |= not ok
            print(
                f"{interval:>9g} {row['took']:>7.2f} {row['windows']:>7.1f} "
                f"{row['prepare']:>8.2f} {row['canary_up']:>9.2f} {row['steps']:>6.2f} "
                f"{row['promotion']:>8.2f} {row['overhead']:>8.1%} "
                f"{row['driver_overhead']:>11.1%}   <=10%  {'PASS' if ok else 'FAIL'}"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
