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
  apply and unchanged re-apply, counted the same way.

Usage: ``python benchmarks/cluster.py --runs 3``
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.cluster import components, controlplane  # noqa: E402
from tests.deploy.conftest import image_ref  # noqa: E402
from tests.kube.conftest import Kube, Project  # noqa: E402

ADMIN = "mlops-test-admin"


def mlops(project: Project, kubeconfig: Path, *args: str) -> float:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "mlops_sessions", args[0], "-c", str(project.config), *args[1:]],
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
    measure("mlops deploy, first", lambda: mlops(project, kc, "deploy"))
    measure("mlops deploy, nothing changed", lambda: mlops(project, kc, "deploy"))
    project.write(stable=50, canary=50)
    measure("mlops deploy, config-only change", lambda: mlops(project, kc, "deploy"))
    project.build("v2", "model-bbb")
    measure("mlops deploy, new build (rolling)", lambda: mlops(project, kc, "deploy"))
    measure("mlops rollback, previous", lambda: mlops(project, kc, "rollback"))

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")

    started = time.monotonic()
    binaries = components.ensure_built()
    print(f"binaries ready (build or cache) in {time.monotonic() - started:.1f} s")

    rows: dict[str, list[tuple[float, int]]] = {}
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
        finally:
            plane.stop()

    print(f"\n{'measurement':42} {'wall s (median)':>16} {'API requests':>13}")
    for label, values in rows.items():
        wall = statistics.median(v[0] for v in values)
        requests = statistics.median(v[1] for v in values)
        print(f"{label:42} {wall:16.2f} {requests:13.0f}")
    print(
        "\nwall includes the Python interpreter and `mlops` start-up (about 0.3 s), and for "
        "the product its own waiting for the rollout; kubectl does not wait."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
