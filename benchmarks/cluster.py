"""The product against a real control plane (tests/cluster): deploy and rollback times, and
API requests per deploy side by side with ``kubectl apply --server-side`` of the same
manifests.

Starts one control plane (building its binaries first when the cache lacks them, and
printing how long that took), then for ``--runs`` fresh namespaces measures:

- ``mlops deploy`` of a first build (the real Deployment controller decides completion),
- ``mlops deploy`` with nothing changed, with a config-only change (weights) and with a new
  build (a rolling update of both tracks),
- ``mlops rollback`` to the previous revision,
- the requests each of those sent (from the API server's audit log, by the product's own
  identity), and ``kubectl apply --server-side`` of the same rendered manifests, first
  apply and unchanged re-apply, counted the same way;
- a whole progressive rollout with short analysis windows (``--window``, 2 s by default:
  the shortest the real analysis can judge when Prometheus scrapes every second; 1 s
  windows are all inconclusive, and a zero-length window is refused by the config
  rules): ``mlops deploy`` of a new build stepping the real VirtualService through
  ``--steps``, each step judged by the real analysis on the traffic the test router
  sends by that VirtualService to two real ``mlops serve`` processes scraped by a real
  Prometheus (tests/rollout/e2e.py's parts, as in tests/kube/test_rollout_real.py).
  Printed beside it: the time spent inside the judged windows; the rest is the product's
  own cost per rollout.

Usage: ``python benchmarks/cluster.py --runs 3`` (``--no-rollout`` skips the rollout, which
needs TensorFlow and Debian's prometheus)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.cluster import components, controlplane  # noqa: E402
from tests.deploy.conftest import image_ref  # noqa: E402
from tests.kube.conftest import Kube, Project  # noqa: E402

ADMIN = "mlops-test-admin"


def mlops(config: Path, kubeconfig: Path, *args: str) -> float:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "mlops_sessions", args[0], "-c", str(config), *args[1:]],
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        capture_output=True,
        text=True,
        check=False,
    )
    took = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"mlops {' '.join(args)} failed:\n{done.stderr}")
    return took


def counted(
    plane: controlplane.ControlPlane, user: str, action: Callable[[], float]
) -> tuple[float, int]:
    _, since = plane.audit_events("nobody")
    took = action()
    time.sleep(0.3)  # the audit log is written as requests finish
    events, _ = plane.audit_events(user, since)
    return took, len(events)


def kubectl_apply(kubectl: Path, kubeconfig: Path, manifests: Path) -> float:
    started = time.monotonic()
    subprocess.run(
        [
            str(kubectl),
            "--kubeconfig",
            str(kubeconfig),
            "apply",
            "--server-side",
            "--field-manager=kubectl-bench",
            "-f",
            str(manifests),
        ],
        check=True,
        capture_output=True,
    )
    return time.monotonic() - started


def one_run(
    plane: controlplane.ControlPlane,
    kube: Kube,
    scratch: Path,
    ns: str,
    rows: dict[str, list[tuple[float, int]]],
) -> None:
    """One namespace: the product's deploys and rollback, then kubectl on a twin."""
    user = controlplane.PRODUCT_USER
    kubectl = components.kubernetes_bin_dir() / "kubectl"
    kube.send(
        "POST",
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
    )
    project = Project(scratch / ns, ns)
    kc = plane.product_kubeconfig

    def measure(label: str, action: Callable[[], float], who: str = user) -> None:
        rows.setdefault(label, []).append(counted(plane, who, action))

    project.build("v1", "model-aaa")
    measure("mlops deploy, first", lambda: mlops(project.config, kc, "deploy"))
    measure("mlops deploy, nothing changed", lambda: mlops(project.config, kc, "deploy"))
    project.write(stable=50, canary=50)
    measure("mlops deploy, config-only change", lambda: mlops(project.config, kc, "deploy"))
    project.build("v2", "model-bbb")
    measure("mlops deploy, new build (rolling)", lambda: mlops(project.config, kc, "deploy"))
    measure("mlops rollback, previous", lambda: mlops(project.config, kc, "rollback"))

    # The same manifests through kubectl, into a namespace of its own.
    twin = f"{ns}k"
    kube.send(
        "POST",
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": twin}},
    )
    twin_project = Project(scratch / twin, twin)
    out = scratch / f"{twin}-rendered"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "mlops_sessions",
            "render",
            "-c",
            str(twin_project.config),
            "--out",
            str(out),
            "--image",
            f"serve={image_ref('v1')}",
        ],
        check=True,
        capture_output=True,
    )
    every = out / "all.yaml"
    measure(
        "kubectl apply --server-side, first",
        lambda: kubectl_apply(kubectl, plane.kubeconfig, every),
        ADMIN,
    )
    measure(
        "kubectl apply --server-side, unchanged",
        lambda: kubectl_apply(kubectl, plane.kubeconfig, every),
        ADMIN,
    )


def rollout_run(
    plane: controlplane.ControlPlane,
    kube: Kube,
    scratch: Path,
    ns: str,
    parts: tuple[Path, Any],
    window: str,
    steps: str,
    rows: dict[str, list[tuple[float, int]]],
    inside: list[float],
) -> None:
    """One namespace: a first deploy (straight to stable), then a new build rolled out in
    steps under a real analysis, timed and counted; ``inside`` gets the judged seconds."""
    from tests.rollout.e2e import PROJECT, Load, release
    from tests.rollout.router import Router, vs_reader
    from tests.rollout.test_live_analysis_e2e import _serve
    from tests.serve.conftest import MODEL

    good, prometheus = parts
    kube.send(
        "POST",
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
    )
    root = scratch / ns
    root.mkdir()
    text = PROJECT.format(model=MODEL, prometheus=prometheus.url)
    for old, new in [
        ("namespace: ml,", f"namespace: {ns},"),
        ("rollout_timeout: 5s", "rollout_timeout: 20s"),
        ("steps: [50, 100]", f"steps: {steps}"),
        ("interval: 5s", f"interval: {window}"),
        # A window of a second sees a few requests at a 10 % step: judged, not inconclusive.
        ("min_requests: 10", "min_requests: 1"),
    ]:
        assert old in text, old
        text = text.replace(old, new)
    config = root / "mlops.yaml"
    config.write_text(text)
    kc = plane.product_kubeconfig
    release(root, "v1")
    mlops(config, kc, "deploy")
    release(root, "v2")
    with contextlib.ExitStack() as stack:
        stable = stack.enter_context(
            contextlib.contextmanager(_serve)(scratch / f"{ns}-s", good, "stable", prometheus)
        )
        canary = stack.enter_context(
            contextlib.contextmanager(_serve)(scratch / f"{ns}-c", good, "canary", prometheus)
        )
        router = Router(
            vs_reader(os.fspath(plane.kubeconfig), MODEL, ns),
            {"stable": stable.url, "canary": canary.url},
        )
        with Load(router):
            label = f"mlops deploy, rollout {steps}, {window} windows"
            rows.setdefault(label, []).append(
                counted(plane, controlplane.PRODUCT_USER, lambda: mlops(config, kc, "deploy"))
            )
    found = kube.get(f"/api/v1/namespaces/{ns}/configmaps/{MODEL}-mlops-rollout")
    state = json.loads((found or {}).get("data", {}).get("state", "{}"))
    if state.get("phase") != "promoted":
        raise SystemExit(f"the rollout in {ns} ended {state.get('phase')}: {state}")
    inside.append(sum(m["window"]["end"] - m["window"]["start"] for m in state["measurements"]))


@contextlib.contextmanager
def rollout_parts(scratch: Path) -> Iterator[tuple[Path, Any]]:
    """An exported model and a real Prometheus, shared by every rollout run."""
    from tests.prometheus_server import Prometheus, binary
    from tests.serve.conftest import _export_dense

    found = binary()
    if found is None:
        raise SystemExit("the rollout needs Debian's prometheus (or pass --no-rollout)")
    model = scratch / "model-good"
    _export_dense(model)
    (scratch / "prometheus").mkdir()
    prometheus = Prometheus(found, scratch / "prometheus")
    try:
        prometheus.wait_ready()
        yield model, prometheus
    finally:
        prometheus.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--window",
        default="2s",
        help="the rollout's analysis interval (1s windows are inconclusive: Prometheus "
        "scrapes every second, and an increase() over one second has one sample)",
    )
    parser.add_argument("--steps", default="[10, 50, 100]", help="the rollout's steps")
    parser.add_argument("--no-rollout", action="store_true", help="skip the rollout")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")

    started = time.monotonic()
    binaries = components.ensure_built()
    print(f"binaries ready (build or cache) in {time.monotonic() - started:.1f} s")

    rows: dict[str, list[tuple[float, int]]] = {}
    inside: list[float] = []
    with tempfile.TemporaryDirectory() as scratch:
        plane = controlplane.ControlPlane(Path(scratch) / "plane", binaries)
        started = time.monotonic()
        plane.start()
        print(
            f"control plane up (etcd, API server, controllers, KWOK nodes Ready) in "
            f"{time.monotonic() - started:.1f} s"
        )
        kube = Kube(plane)
        try:
            for run in range(args.runs):
                one_run(plane, kube, Path(scratch), f"bench{run}", rows)
            if not args.no_rollout:
                with rollout_parts(Path(scratch)) as parts:
                    for run in range(args.runs):
                        rollout_run(
                            plane,
                            kube,
                            Path(scratch),
                            f"roll{run}",
                            parts,
                            args.window,
                            args.steps,
                            rows,
                            inside,
                        )
        finally:
            plane.stop()

    print(f"\n{'measurement':48} {'wall s (median)':>16} {'API requests':>13}")
    for label, values in rows.items():
        wall = statistics.median(v[0] for v in values)
        requests = statistics.median(v[1] for v in values)
        print(f"{label:48} {wall:16.2f} {requests:13.0f}")
    if inside:
        print(
            f"\nthe rollout: {statistics.median(inside):.2f} s (median) of its wall time "
            "inside judged windows; the rest is stepping, waiting for the canary's and "
            "stable's rollouts, querying Prometheus and recording"
        )
    print(
        "\nwall includes the Python interpreter and `mlops` start-up (about 0.3 s), and for "
        "the product its own waiting for the rollout; kubectl does not wait."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
