"""``train.operator: tfjob`` end to end: the real driver, the emulated training operator.

The same project, S3 server and kmock API as tests/train/test_cluster_train.py (its
``cluster_project``), with :class:`tests.train.tfjob_cluster.TFJobCluster`: the TFJob is
created through the custom-objects API, the emulated operator makes the worker pods (their
commands run as local processes, really training and publishing to moto's S3), and the
driver follows the TFJob's conditions and streams worker 0's log. The two-worker
MultiWorkerMirroredStrategy run is ``test_cluster_train``'s two-worker test, parametrized
by operator.
"""

from __future__ import annotations

import json
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops_sessions.drivers import render_inputs
from tests.store.conftest import Bucket
from tests.train import test_cluster_train as job_tests
from tests.train.test_cluster_train import TRAIN_IMAGE, ClusterProject, cluster_project
from tests.train.tfjob_cluster import TFJobCluster

TFJOB = "      operator: tfjob\n"
# test_cluster_train's fixtures: moto's S3 server, a bucket, credentials from the env.
moto = job_tests.moto
bucket = job_tests.bucket
s3_env = job_tests.s3_env


def _project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bucket: Bucket, *, installed: bool
) -> Iterator[ClusterProject]:
    def make(tmp: Path, root: Path) -> TFJobCluster:
        return TFJobCluster(tmp, root, operator_installed=installed)

    with cluster_project(tmp_path, monkeypatch, bucket, make) as made:
        yield made


@pytest.fixture
def project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bucket: Bucket
) -> Iterator[ClusterProject]:
    yield from _project(tmp_path, monkeypatch, bucket, installed=True)


@pytest.fixture
def bare(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bucket: Bucket
) -> Iterator[ClusterProject]:
    yield from _project(tmp_path, monkeypatch, bucket, installed=False)


def _operator(project: ClusterProject) -> TFJobCluster:
    assert isinstance(project.cluster, TFJobCluster)
    return project.cluster


def _writes(project: ClusterProject, what: str) -> list[str]:
    return [w for w in project.cluster.writes() if what in w]


def test_without_the_operator_one_error_says_so_and_nothing_is_created(
    bare: ClusterProject, capsys: pytest.CaptureFixture[str]
) -> None:
    bare.write(extra=TFJOB)
    code, _, err = bare.train(capsys)
    assert code != 0
    assert "the Kubeflow Training Operator is not installed in cluster kmock" in err
    assert "(no tfjobs.kubeflow.org CRD): install it, or set train.operator: job" in err
    assert "Traceback" not in err
    assert not [w for w in bare.cluster.writes() if w.startswith("POST")]
    assert bare.runs() == []


def test_a_crd_without_a_running_operator_fails_after_pending_timeout(
    project: ClusterProject, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CRD is left over but its controller does not run: nothing would ever answer
    the TFJob, so the wait ends at train.pending_timeout with what to check."""
    assert project.cluster.jobs is not None
    project.cluster.jobs.stop()  # the operator's controller is gone; its CRD stays
    project.write(extra=TFJOB + "      pending_timeout: 2s\n")
    started = time.monotonic()
    code, _, err = project.train(capsys)
    assert code != 0 and 2 <= time.monotonic() - started < 60, err
    assert "did not pick up TFJob ml/toy-train-" in err and "controller is running" in err
    assert "Traceback" not in err
    assert _writes(project, "DELETE /apis/kubeflow.org/v1/namespaces/ml/tfjobs/")
    assert project.runs() == []


@pytest.mark.slow
def test_one_worker_tfjob_trains_publishes_and_says_where_it_ran(
    project: ClusterProject, capsys: pytest.CaptureFixture[str]
) -> None:
    project.write(extra=TFJOB)
    code, result, err = project.train(capsys)
    assert code == 0, err
    (run,) = result["runs"]
    assert run["reused"] is False and run["model_on_remote_only"] is True
    assert "[toy] TFJob ml/toy-train-" in err and "\n[toy] epoch 2/2  " in err
    record = json.loads((project.root / ".mlops" / "runs" / run["run_id"] / "run.json").read_text())
    where = record["lineage"]["environment"]["kubernetes"]
    assert where["kind"] == "TFJob" and where["namespace"] == "ml"
    assert where["node"] == "gpu-node-a" and where["image"] == TRAIN_IMAGE
    assert where["pod"] == f"{where['job']}-worker-0" and where["workers"] == 1
    assert f"runs/{run['run_id']}/run.json" in project.bucket.objects("runs/")
    operator = _operator(project).operator
    assert operator.pods_started == [f"{where['job']}-worker-0"]
    pod = project.cluster.get("v1/pods", f"{where['job']}-worker-0")
    assert pod is not None  # cleanPodPolicy Running keeps a finished pod for `kubectl logs`
    assert pod["spec"]["restartPolicy"] == "OnFailure"
    assert pod["metadata"]["labels"]["training.kubeflow.org/replica-type"] == "worker"
    env = {e["name"] for e in pod["spec"]["containers"][0]["env"]}
    assert "TF_CONFIG" not in env  # one worker: the operator sets none, and neither do we
    # Created through the custom-objects API; the ConfigMap is gone, the TFJob kept (TTL).
    assert _writes(project, "POST /apis/kubeflow.org/v1/namespaces/ml/tfjobs")
    assert project.cluster.get("v1/configmaps", f"{where['job']}-spec") is None
    tfjob = project.cluster.get("kubeflow.org/v1/tfjobs", where["job"])
    assert tfjob is not None
    conditions = {c["type"]: c["status"] for c in tfjob["status"]["conditions"]}
    assert conditions["Succeeded"] == "True" and conditions["Running"] == "False"
    tfjobs = len(_writes(project, "/tfjobs"))
    code, again, err = project.train(capsys)
    assert code == 0 and again["runs"][0]["reused"] is True, err
    assert len(_writes(project, "/tfjobs")) == tfjobs  # no TFJob for an unchanged key


@pytest.mark.slow
def test_a_failing_worker_is_restarted_to_the_backoff_limit_then_a_clear_error(
    project: ClusterProject, capsys: pytest.CaptureFixture[str]
) -> None:
    project.write(entrypoint="crash", retries=1, extra=TFJOB)
    code, _, err = project.train(capsys)
    assert code != 0
    assert "training TFJob ml/toy-train-" in err and "BackoffLimitExceeded" in err
    assert "boom: shard 3 is unreadable" in err and "last log lines" in err
    assert "exited with code 1" in err and "failure 1 of at most 2" in err
    operator = _operator(project).operator
    ran = [p for p in operator.finished if p.name.endswith("-worker-0")]
    assert len(ran) == 2  # the first run and train.retries = 1 whole retry
    assert operator.alive() == []
    assert project.runs() == [] and project.bucket.objects("runs/") == []
    assert _writes(project, "DELETE /apis/kubeflow.org/v1/namespaces/ml/tfjobs/")


def test_an_input_that_differs_from_the_key_fails_at_once_and_deletes_the_tfjob(
    project: ClusterProject, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    image = tmp_path / "image"
    shutil.copytree(project.root, image, ignore=shutil.ignore_patterns(".mlops"))
    _operator(project).operator.image_root = image
    data = project.root / "data" / "points.csv"
    data.write_text(data.read_text() + "0.5,0.5,1\n")
    project.write(retries=3, extra=TFJOB)
    code, _, err = project.train(capsys)
    assert code != 0
    assert "InputError" in err and "sha256" in err and "Rebuild and push" in err
    assert "a retry cannot help" in err
    assert _writes(project, "DELETE /apis/kubeflow.org/v1/namespaces/ml/tfjobs/")
    assert project.runs() == []


def test_an_oom_killed_worker_names_the_memory_limit(
    project: ClusterProject, capsys: pytest.CaptureFixture[str]
) -> None:
    record = render_inputs.build_record(project.root / ".mlops", "trainer")
    record.write_text(json.dumps({"image": TRAIN_IMAGE.replace("shop/train", "shop/oomkill")}))
    project.write(extra=TFJOB)
    code, _, err = project.train(capsys)
    assert code != 0
    assert "training TFJob" in err and "OOMKilled" in err
    assert "raise train.resources.limits.memory" in err and "exited with code 137" in err
    assert project.runs() == []


def test_an_image_that_cannot_be_pulled_fails_fast_and_the_tfjob_is_deleted(
    project: ClusterProject, capsys: pytest.CaptureFixture[str]
) -> None:
    record = render_inputs.build_record(project.root / ".mlops", "trainer")
    record.write_text(json.dumps({"image": TRAIN_IMAGE.replace("shop/train", "shop/unpullable")}))
    project.write(extra=TFJOB)
    started = time.monotonic()
    code, _, err = project.train(capsys)
    assert code != 0 and time.monotonic() - started < 30
    assert "ImagePullBackOff" in err and "mlops push" in err
    assert len(_writes(project, "DELETE /apis/kubeflow.org/v1/namespaces/ml/tfjobs/")) == 1
    until = time.monotonic() + 10
    while _operator(project).operator.tfjobs and time.monotonic() < until:
        time.sleep(0.1)
    assert _operator(project).operator.tfjobs == {}  # the garbage collector took its pods


@pytest.mark.slow
def test_deadline_exceeded_names_train_timeout(
    project: ClusterProject, capsys: pytest.CaptureFixture[str]
) -> None:
    project.write(entrypoint="slow", extra=TFJOB + "      timeout: 3s\n")
    code, _, err = project.train(capsys)
    assert code != 0
    assert "DeadlineExceeded" in err and "raise train.timeout" in err
    assert _operator(project).operator.alive() == []
    assert project.runs() == []


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupting_the_driver_deletes_the_tfjob_and_keeps_nothing(
    project: ClusterProject, how: signal.Signals
) -> None:
    project.write(entrypoint="slow", extra=TFJOB)
    output = project.interrupted_train(how)
    assert "cancelled: TFJob ml/toy-train-" in output and "deleted" in output
    assert _writes(project, "DELETE /apis/kubeflow.org/v1/namespaces/ml/tfjobs/"), output
    until = time.monotonic() + 20
    while _operator(project).operator.alive() and time.monotonic() < until:
        time.sleep(0.2)
    assert _operator(project).operator.alive() == []  # the training process was stopped
    assert project.runs() == [] and project.bucket.objects("runs/") == []
    (cancelled,) = (project.root / ".mlops" / "cancelled").iterdir()
    note = json.loads(cancelled.read_text())
    assert note["status"] == "cancelled" and note["kubernetes"]["kind"] == "TFJob"
