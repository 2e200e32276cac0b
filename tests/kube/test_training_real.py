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

import base64
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.controlplane import PRODUCT_USER
from tests.store import conftest as store_fixtures
from tests.store.conftest import moto_server

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


# --- `mlops train` itself, through the CLI, against the real control plane -----------------

# The cluster-training project of tests/train (its toy model and data), in the test's own
# namespace, with two workers: an Indexed Job with TF_CONFIG and its headless Service, or a
# TFJob. A short pending_timeout: no training operator runs here (docs/testing.md).
TRAIN_CONFIG = """\
apiVersion: mlops/v1alpha1
project: {{name: shop}}
store: {{remote: "{remote}", endpoint: "{endpoint}", region: us-east-1}}
data:
  points: {{path: data/points.csv}}
images:
  trainer:
    kind: train
    repository: registry.example.com/shop/train
    base: {{variant: cpu, tensorflow: "2.21.0"}}
models:
  toy:
    deploy: {{namespace: {namespace}}}
    train:
      source: src
      entrypoint: model:train
      inputs: [points]
      params: {{epochs: 2}}
      backend: kubernetes
      image: trainer
      workers: 2
      operator: {operator}
      pending_timeout: 4s
      credentials_secret: store-creds
"""


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Any:
    with moto_server(request, tmp_path_factory.mktemp("moto")) as endpoint:
        yield endpoint


# tests/store's real S3 fixtures: a bucket on moto's server, credentials only from the env.
s3_env = store_fixtures.s3_env
bucket = store_fixtures.bucket


@pytest.mark.parametrize("operator", ["job", "tfjob"])
def test_mlops_train_on_the_real_control_plane_ends_with_one_line_naming_where_to_look(
    kube_cluster: Any,
    namespace: str,
    bucket: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    operator: str,
) -> None:
    from mlops_sessions.drivers import render_inputs
    from mlops_sessions.frontends.cli import main
    from tests.train.test_cluster_train import MODEL, TRAIN_IMAGE

    root = tmp_path / "project"
    (root / "src").mkdir(parents=True)
    (root / "src" / "model.py").write_text(MODEL)
    (root / "data").mkdir()
    rows = [f"{i % 7 / 7:.3f},{i % 5 / 5:.3f},{int(i % 7 > 3)}" for i in range(96)]
    (root / "data" / "points.csv").write_text("\n".join(rows) + "\n")
    record = render_inputs.build_record(root / ".mlops", "trainer")
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"image": TRAIN_IMAGE}))
    config = root / "mlops.yaml"
    config.write_text(
        TRAIN_CONFIG.format(
            remote=bucket.url, endpoint=bucket.endpoint, namespace=namespace, operator=operator
        )
    )
    kube_cluster.send(
        "POST",
        f"/api/v1/namespaces/{namespace}/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "store-creds"},
            "data": {
                key: base64.b64encode(os.environ[key].encode()).decode()
                for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
            },
        },
    )
    monkeypatch.setenv("KUBECONFIG", str(kube_cluster.plane.product_kubeconfig))
    _, since = kube_cluster.plane.audit_events("nobody")
    capsys.readouterr()
    started = time.monotonic()
    code = main(["train", "-c", str(config)])
    took = time.monotonic() - started
    err = capsys.readouterr().err
    assert code == 1, err
    problems = [line for line in err.splitlines() if line.startswith("mlops train:")]
    assert len(problems) == 1, err
    (problem,) = problems
    assert "Traceback" not in err
    # The objects were created, and accepted, by the real API server.
    events, _ = kube_cluster.plane.audit_events(PRODUCT_USER, since)
    created = {
        e["objectRef"]["resource"]: e["responseStatus"]["code"]
        for e in events
        if e["verb"] == "create" and e.get("objectRef")
    }
    if operator == "job":
        assert created == {"configmaps": 201, "services": 201, "jobs": 201}, created
        # The real Job controller ran both indexed pods to completion (KWOK played the
        # kubelet): the Job finished, but no code ran, so no run was published.
        (job,) = (kube_cluster.get(f"/apis/batch/v1/namespaces/{namespace}/jobs") or {}).get(
            "items", []
        )
        assert job["status"].get("succeeded") == 2, job["status"]
        assert "finished, but its pods wrote no run record" in problem, problem
        assert f"kubectl -n {namespace} logs" in problem, problem
        assert bucket.url in problem
    else:
        assert created == {"configmaps": 201, "tfjobs": 201}, created
        # No training operator runs here: the TFJob was accepted and nobody acted on it;
        # the driver gives up after train.pending_timeout and deletes it (foreground: the
        # garbage collector may still be finishing, so it can be there, being deleted).
        assert "did not pick up TFJob" in problem, problem
        assert any(
            e["verb"] == "delete" and e.get("objectRef", {}).get("resource") == "tfjobs"
            for e in events
        )
        left = (kube_cluster.get(f"/apis/kubeflow.org/v1/namespaces/{namespace}/tfjobs") or {}).get(
            "items"
        ) or []
        assert all(t["metadata"].get("deletionTimestamp") for t in left), left
    assert took < 60, f"mlops train took {took:.1f}s"
    assert not (root / ".mlops" / "runs").is_dir() or not list(
        (root / ".mlops" / "runs").glob("*/run.json")
    )
