"""The training objects ``mlops render`` produces, created on a real API server.

The golden files of tests/train are what render writes for 1, 2 and 4 workers with and
without GPUs (tests/train/test_train_job.py and test_train_tfjob.py pin them byte for
byte). Here each one is created for real: the API server validates and defaults it, the
real Job controller creates the indexed pods, the real scheduler places GPU pods on the
GPU node only (tolerating its taint, fitting its MIG capacity), and KWOK completes them so
the Job controller marks the Job Complete. TFJobs are accepted by the published TFJob CRD's
schema; no training operator runs here, so nothing acts on them (docs/testing.md).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

TRAIN = Path(__file__).resolve().parent.parent / "train"
PATHS = {
    "Service": "/api/v1/namespaces/{ns}/services",
    "Job": "/apis/batch/v1/namespaces/{ns}/jobs",
    "TFJob": "/apis/kubeflow.org/v1/namespaces/{ns}/tfjobs",
}


def _create(kube_cluster: Any, golden: Path, namespace: str) -> list[dict[str, Any]]:
    created = []
    for doc in yaml.safe_load_all(golden.read_text()):
        if not doc:
            continue
        doc["metadata"]["namespace"] = namespace
        created.append(kube_cluster.send("POST", PATHS[doc["kind"]].format(ns=namespace), doc))
    return created


def _wait(probe: Any, what: str, seconds: float = 60) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("golden", sorted(p.name for p in (TRAIN / "golden_job").iterdir()))
def test_the_rendered_training_job_runs_to_completion_under_the_real_job_controller(
    kube_cluster: Any, namespace: str, golden: str
) -> None:
    objects = _create(kube_cluster, TRAIN / "golden_job" / golden, namespace)
    job = next(o for o in objects if o["kind"] == "Job")
    workers = int(job["spec"]["completions"])
    # Several workers find each other by index (TF_CONFIG); one needs no index.
    assert job["spec"]["completionMode"] == ("Indexed" if workers > 1 else "NonIndexed")
    name = job["metadata"]["name"]

    def pods() -> list[dict[str, Any]]:
        found = kube_cluster.pods(namespace, f"job-name={name}")
        return (
            found if len(found) >= workers and all(p["spec"].get("nodeName") for p in found) else []
        )

    placed = _wait(pods, f"{workers} scheduled pods of Job {name}")
    if workers > 1:
        indexes = sorted(
            p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] for p in placed
        )
        assert indexes == [str(i) for i in range(workers)]
    nodes = {p["spec"]["nodeName"] for p in placed}
    assert nodes == ({"kwok-gpu-0"} if golden.endswith("-gpu.yaml") else {"kwok-cpu-0"})

    def complete() -> bool:
        status = (kube_cluster.get(f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}") or {}).get(
            "status"
        ) or {}
        return any(
            c["type"] == "Complete" and c["status"] == "True"
            for c in status.get("conditions") or []
        )

    _wait(complete, f"Job {name} Complete")


@pytest.mark.parametrize("golden", sorted(p.name for p in (TRAIN / "golden_tfjob").iterdir()))
def test_the_rendered_tfjob_is_accepted_by_the_published_crd(
    kube_cluster: Any, namespace: str, golden: str
) -> None:
    (tfjob,) = _create(kube_cluster, TRAIN / "golden_tfjob" / golden, namespace)
    stored = kube_cluster.get(
        f"/apis/kubeflow.org/v1/namespaces/{namespace}/tfjobs/{tfjob['metadata']['name']}"
    )
    assert stored is not None
    # The CRD's structural schema prunes unknown fields, and its defaults add some (such as
    # runPolicy.suspend): everything we sent must have survived, as sent.
    from mlops_sessions.planning.deploy_plan import covers

    sent = yaml.safe_load((TRAIN / "golden_tfjob" / golden).read_text())
    assert covers(stored["spec"], sent["spec"]), (stored["spec"], sent["spec"])
