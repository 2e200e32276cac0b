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


def rest_routes(kube_cluster: Any, namespace: str) -> list[str]:
    """The names of the VirtualService's HTTP routes (the gRPC ones, ``grpc-*``, mirror them)."""
    http = kube_cluster.virtual_service(namespace, MODEL)["spec"]["http"]
    return [r["name"] for r in http if not r["name"].startswith("grpc-")]


def first_release(kube_cluster: Any, namespace: str, root: Path, config: Path) -> None:
    """The first deploy goes straight to stable: no rollout, the canary at 0."""
    from mlops_sessions.frontends.cli import main

    release(root, "v1")
    assert main(["deploy", "-c", str(config)]) == 0
    assert kube_cluster.image(namespace, f"{MODEL}-stable") == image_ref("v1")
    assert kube_cluster.weights(namespace, MODEL) == {"stable": 100, "canary": 0}
    assert rest_routes(kube_cluster, namespace) == ["weighted"]
    assert kube_cluster.deployment(namespace, f"{MODEL}-canary")["spec"]["replicas"] == 0
    recorded = kube_cluster.history(namespace, MODEL)
    assert recorded["current"] == "1"
    assert recorded["records"]["r000001"]["status"] == "rolled-out"
    assert (
        kube_cluster.get(f"/api/v1/namespaces/{namespace}/configmaps/{MODEL}-mlops-rollout") is None
    )


def report(root: Path, namespace: str) -> str:
    from mlops_sessions.records import rollouts

    target = rollouts.target_dir(root / ".mlops", MODEL, "mlops-test", namespace)
    return (target / "r000002" / "report.md").read_text()


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
    first_release(kube_cluster, namespace, root, config)
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
    records = kube_cluster.history(namespace, MODEL)["records"]
    # Whatever the verdict: 100 % stable, the canary back to 0, the A/B route gone.
    assert weights == {"stable": 100, "canary": 0}, weights
    assert rest_routes(kube_cluster, namespace) == ["weighted"]
    assert kube_cluster.deployment(namespace, f"{MODEL}-canary")["spec"]["replicas"] == 0
    # The first window was judged on real traffic through the router.
    assert state["measurements"][0]["samples"]["canary"] >= 10
    assert state["measurements"][0]["measurements"]["canary"]["error_rate"] is not None
    starts = [m["window"]["start"] for m in state["measurements"]]
    assert starts == sorted(starts)
    if canary == "good":
        assert state["phase"] == "promoted" and state["settled"], err
        assert judged == [(50, "passed"), (100, "passed")], err
        assert router.counts["canary"] > 0 and router.counts["stable"] > 0
        # Promoted: the stable track now runs the new build, rolled out by the real
        # Deployment controller, and takes all the traffic again.
        assert stable_image == image_ref("v2")
        record = records["r000002"]
        assert record["status"] == "rolled-out"
        assert record["rollout"]["phase"] == "promoted"
        assert len(record["rollout"]["measurements"]) == 2
        written = report(root, namespace)
        assert written.startswith(f"## ✅ {MODEL}: rollout PROMOTED")
        assert written.count("| `error_rate` |") == 2
        # The same build again: nothing to roll out, not one write.
        mark = kube_cluster.mark()
        assert main(["deploy", "-c", str(config)]) == 0
        assert kube_cluster.writes(mark) == []
    else:
        assert state["phase"] == "aborted", err
        assert judged == [(50, "failed")], err
        assert stable_image == image_ref("v1")
        failure = err.split(f"mlops deploy: {MODEL}: ", 1)[1].splitlines()[0]
        assert failure.startswith("error_rate = "), failure
        assert "(bound <= 0.02) at step 1/2 (canary 50%), window" in failure
        record = records["r000002"]
        assert (record["status"], record["restored_to"]) == ("failed", 1)
        assert record["reason"] == failure
        written = report(root, namespace)
        assert written.startswith(f"## ❌ {MODEL}: rollout ABORTED")
        assert f"- **{failure}**" in written
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
    capsys: pytest.CaptureFixture[str],
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
    config.write_text(text.replace("interval: 5s", "interval: 6s"))
    first_release(kube_cluster, namespace, root, config)
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
                assert rollout_state(kube_cluster, namespace)["phase"] == "progressing"
                code = main(["deploy", "-c", str(config), "--resume"])
                assert code == 0
                expected = ("promoted", image_ref("v2"))
            else:
                capsys.readouterr()
                # While it runs, the Lease keeps a second deploy out, naming the driver,
                # and status shows where the rollout stands.
                assert main(["deploy", "-c", str(config)]) == 1
                assert "is in progress at step 1/2, driven by" in capsys.readouterr().err
                assert main(["status", "-c", str(config)]) == 0
                shown = capsys.readouterr().out
                assert "rollout of revision 2: progressing at step 1/2" in shown, shown
                assert "weights stable 50% / canary 50%" in shown, shown
                if ending == "promote":
                    # Refused where a deploy would be: the canary's image failed its scan.
                    scan = root / ".mlops" / "builds" / "serve" / "scan.json"
                    scan.write_text('{"passed": false, "summary": "1 CRITICAL (CVE-2026-1)"}')
                    assert main(["promote", "-c", str(config)]) == 1
                    said = capsys.readouterr().err
                    assert f"refusing to promote '{MODEL}'" in said and "failed its scan" in said
                    scan.unlink()
                assert main([ending, "-c", str(config), "--json"]) == 0
                answer = json.loads(capsys.readouterr().out)
                _, err = driver.communicate(timeout=60)
                assert driver.returncode == (0 if ending == "promote" else 1), err
                expected = (
                    ("promoted", image_ref("v2"))
                    if ending == "promote"
                    else ("aborted", image_ref("v1"))
                )
    state = rollout_state(kube_cluster, namespace)
    assert (state["phase"], kube_cluster.image(namespace, f"{MODEL}-stable")) == expected
    assert kube_cluster.weights(namespace, MODEL).get("stable") == 100
    record = kube_cluster.history(namespace, MODEL)["records"]["r000002"]
    if ending == "promote":
        assert (answer["status"], answer["revision"], answer["restored_to"]) == (
            "promoted",
            2,
            None,
        )
        assert state["ended_by"].startswith("mlops promote")
    elif ending == "abort":
        assert (answer["model"], answer["status"], answer["restored_to"]) == (MODEL, "aborted", 1)
        assert answer["rollout"]["weights"] == {"stable": 100, "canary": 0}
        assert record["status"] == "failed"
        assert record["reason"].startswith("aborted by mlops abort")


def rollout_state(kube_cluster: Any, namespace: str) -> dict[str, Any]:
    found = kube_cluster.get(f"/api/v1/namespaces/{namespace}/configmaps/{MODEL}-mlops-rollout")
    assert found is not None, "the rollout ConfigMap is missing"
    state: dict[str, Any] = json.loads(found["data"]["state"])
    return state
