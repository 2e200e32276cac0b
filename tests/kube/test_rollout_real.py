"""A progressive rollout on the real control plane, judged on real traffic.

``mlops deploy`` steps the VirtualService on a real API server through ``rollout.steps``;
the test router (tests/rollout/router.py) reads that VirtualService from the real API
server and routes a bounded load by its weights to two real ``mlops serve`` processes
(stable and canary); a real Prometheus scrapes them, and each step is judged by the real
analysis. The pods the Deployments own are KWOK's (no container runs), so the traffic goes
to the serve processes the test started, standing in for the pods (docs/testing.md).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import image_ref
from tests.prometheus_server import Prometheus
from tests.rollout.e2e import PROJECT as E2E_PROJECT
from tests.rollout.e2e import Load, models, release, servers
from tests.rollout.router import Router, vs_reader
from tests.serve.conftest import MODEL

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
__all__ = ["models"]  # the exported good and failing models, a module fixture of tests/rollout

# The e2e project of tests/rollout, in the test's own namespace.
PROJECT = E2E_PROJECT.replace("namespace: ml,", "namespace: {namespace},").replace(
    "rollout_timeout: 5s", "rollout_timeout: 20s"
)
assert "{namespace}" in PROJECT


@pytest.mark.parametrize(("canary", "code"), [("good", 0), ("failing", 1)])
def test_a_rollout_steps_the_real_virtualservice_and_is_judged_on_routed_traffic(
    tmp_path: Path,
    models: dict[str, Path],
    prometheus: Prometheus,
    kube_cluster: Any,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    canary: str,
    code: int,
) -> None:
    from mlops_sessions.frontends.cli import main

    monkeypatch.setenv("KUBECONFIG", str(kube_cluster.plane.product_kubeconfig))
    root = tmp_path / "project"
    root.mkdir()
    config = root / "mlops.yaml"
    config.write_text(PROJECT.format(model=MODEL, namespace=namespace, prometheus=prometheus.url))
    release(root, "v1")
    assert main(["deploy", "-c", str(config)]) == 0  # first deploy: straight to stable
    release(root, "v2")
    for stable, canary_server in servers(tmp_path, models, canary, prometheus):
        router = Router(
            vs_reader(os.fspath(kube_cluster.kubeconfig), MODEL, namespace),
            {"stable": stable.url, "canary": canary_server.url},
        )
        capsys.readouterr()
        with Load(router):
            assert main(["deploy", "-c", str(config)]) == code
        err = capsys.readouterr().err

    state_cm = kube_cluster.get(f"/api/v1/namespaces/{namespace}/configmaps/{MODEL}-mlops-rollout")
    assert state_cm is not None, err
    state = json.loads(state_cm["data"]["state"])
    # The phase is a label too, for kube-state-metrics and the MlopsRolloutAborted alert.
    assert state_cm["metadata"]["labels"]["mlops-sessions.dev/rollout-phase"] == state["phase"]
    judged = [(m["window"]["weight"], m["judged"]) for m in state["measurements"]]
    weights = kube_cluster.weights(namespace, MODEL)
    stable_image = kube_cluster.image(namespace, f"{MODEL}-stable")
    if canary == "good":
        assert state["phase"] == "promoted", err
        assert judged == [(50, "passed"), (100, "passed")], err
        assert router.counts["canary"] > 0 and router.counts["stable"] > 0
        # Promoted: the stable track now runs the new build, rolled out by the real
        # Deployment controller, and takes all the traffic again.
        assert stable_image == image_ref("v2")
        assert weights.get("stable") == 100, weights
    else:
        assert state["phase"] == "aborted", err
        assert judged == [(50, "failed")], err
        assert stable_image == image_ref("v1")
        assert weights.get("stable") == 100, weights
    stable = kube_cluster.deployment(namespace, f"{MODEL}-stable")
    assert stable["status"].get("updatedReplicas") == stable["spec"]["replicas"]


@pytest.mark.parametrize("ending", ["abort", "promote", "interrupt-then-resume"])
def test_a_running_rollout_is_ended_or_resumed_from_another_process(
    tmp_path: Path,
    models: dict[str, Path],
    prometheus: Prometheus,
    kube_cluster: Any,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
    ending: str,
) -> None:
    import signal
    import subprocess
    import sys
    import time

    from mlops_sessions.frontends.cli import main
    from tests.conftest import clean_env

    product = str(kube_cluster.plane.product_kubeconfig)
    monkeypatch.setenv("KUBECONFIG", product)
    root = tmp_path / "project"
    root.mkdir()
    config = root / "mlops.yaml"
    text = PROJECT.format(model=MODEL, namespace=namespace, prometheus=prometheus.url)
    config.write_text(text.replace("interval: 5s", "interval: 4s"))
    release(root, "v1")
    assert main(["deploy", "-c", str(config)]) == 0
    release(root, "v2")
    leave = ["--on-interrupt", "leave"] if ending == "interrupt-then-resume" else []
    for stable, canary_server in servers(tmp_path, models, "good", prometheus):
        router = Router(
            vs_reader(os.fspath(kube_cluster.kubeconfig), MODEL, namespace),
            {"stable": stable.url, "canary": canary_server.url},
        )
        with Load(router):
            driver = subprocess.Popen(
                [sys.executable, "-m", "mlops_sessions", "deploy", "-c", str(config), *leave],
                env=clean_env(KUBECONFIG=product),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            deadline = time.monotonic() + 60
            while kube_cluster.weights(namespace, MODEL).get("canary") != 50:
                assert time.monotonic() < deadline, "the rollout never reached its first step"
                assert driver.poll() is None, driver.communicate()
                time.sleep(0.2)
            if ending == "interrupt-then-resume":
                driver.send_signal(signal.SIGTERM)
                _, err = driver.communicate(timeout=60)
                assert driver.returncode != 0
                assert "--resume` continues it" in err, err
                # Left as it was: the canary keeps its share until the resumed driver ends.
                assert kube_cluster.weights(namespace, MODEL).get("canary") == 50
                code = main(["deploy", "-c", str(config), "--resume"])
                assert code == 0
                expected = ("promoted", image_ref("v2"))
            else:
                assert main([ending, "-c", str(config)]) == 0
                _, err = driver.communicate(timeout=60)
                assert driver.returncode == (0 if ending == "promote" else 1), err
                expected = (
                    ("promoted", image_ref("v2"))
                    if ending == "promote"
                    else ("aborted", image_ref("v1"))
                )
    state_cm = kube_cluster.get(f"/api/v1/namespaces/{namespace}/configmaps/{MODEL}-mlops-rollout")
    assert state_cm is not None
    state = json.loads(state_cm["data"]["state"])
    assert (state["phase"], kube_cluster.image(namespace, f"{MODEL}-stable")) == expected
    assert kube_cluster.weights(namespace, MODEL).get("stable") == 100
