"""``train.backend: kubernetes`` end to end: the real driver, the emulated API, a real S3.

``mlops train`` creates the Job on kmock's emulator through the real ``kubernetes``
client; :mod:`tests.train.job_cluster`'s controller runs each pod's command as a local
process with the pod's environment (so the pods really train, really read their spec from
the ConfigMap and their S3 credentials from the Secret, and the chief really publishes the
run to moto's S3 server); the driver streams the chief's log, waits, and takes the run
from the shared store.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mlops_sessions.drivers import render_inputs
from mlops_sessions.frontends.cli import main
from tests.conftest import clean_env, require_real
from tests.deploy.conftest import kmock
from tests.store import conftest as store_fixtures
from tests.store.conftest import Bucket, moto_server
from tests.train.job_cluster import JobCluster
from tests.train.tfjob_cluster import TFJobCluster

TRAIN_IMAGE = "registry.example.com/shop/train@sha256:" + "7a" * 32
MODEL = '''
"""A tiny real Keras model, and entrypoints that fail in the ways a pod can."""

import time

import numpy as np

from mlops_sessions import TrainContext


def _data(ctx):
    table = np.loadtxt(ctx.inputs["points"], delimiter=",", dtype=np.float32)
    return table[:, :-1], table[:, -1].astype(np.int64)


def train(ctx: TrainContext):
    import keras

    x, y = _data(ctx)
    with ctx.strategy.scope():
        model = keras.Sequential([
            keras.Input(shape=(x.shape[1],), name="features"),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(2, activation="softmax"),
        ])
        model.compile(optimizer=keras.optimizers.Adam(0.05),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=int(ctx.params["epochs"]), batch_size=32, verbose=0,
              callbacks=list(ctx.callbacks))
    return model


def crash(ctx: TrainContext):
    print("loading shards", flush=True)
    raise RuntimeError("boom: shard 3 is unreadable")


def slow(ctx: TrainContext):
    print("training forever", flush=True)
    time.sleep(600)
'''
CONFIG = """\
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
    deploy: {{namespace: ml}}
    train:
      source: src
      entrypoint: model:{entrypoint}
      inputs: [points]
      seed: 3
      params: {{epochs: 2}}
      backend: kubernetes
      image: trainer
      retries: {retries}
      credentials_secret: store-creds
{extra}"""


@dataclass
class ClusterProject:
    root: Path
    cluster: JobCluster
    bucket: Bucket

    @property
    def config(self) -> Path:
        return self.root / "mlops.yaml"

    def write(self, entrypoint: str = "train", retries: int = 0, extra: str = "") -> None:
        self.config.write_text(
            CONFIG.format(
                remote=self.bucket.url,
                endpoint=self.bucket.endpoint,
                entrypoint=entrypoint,
                retries=retries,
                extra=extra,
            )
        )

    def runs(self) -> list[str]:
        runs = self.root / ".mlops" / "runs"
        return sorted(p.name for p in runs.iterdir()) if runs.is_dir() else []

    def train(self, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
        capsys.readouterr()
        code = main(["train", "-c", str(self.config), "--json", *args])
        out, err = capsys.readouterr()
        return code, json.loads(out) if out.strip() else None, err

    def interrupted_train(self, how: signal.Signals) -> str:
        """`mlops train` in a child process, sent ``how`` once the pod trains; its output.

        The project must train with the ``slow`` entrypoint (it prints "training forever").
        """
        env = clean_env(KUBECONFIG=str(self.cluster.kubeconfig), PYTHONUNBUFFERED="1")
        driver = subprocess.Popen(
            [sys.executable, "-m", "mlops_sessions", "train", "-c", str(self.config)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 120
        while not any(
            (log.read_text() if log.exists() else "").count("training forever")
            for log in self.cluster.logs.values()
        ):
            assert time.monotonic() < deadline and driver.poll() is None, "the pod never started"
            time.sleep(0.2)
        driver.send_signal(how)
        output, _ = driver.communicate(timeout=60)
        assert driver.returncode != 0, output
        return output


# tests/store's real S3 fixtures: a bucket on moto's server, credentials only from the env.
s3_env = store_fixtures.s3_env
bucket = store_fixtures.bucket


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[str]:
    with moto_server(request, tmp_path_factory.mktemp("moto")) as endpoint:
        yield endpoint


@contextlib.contextmanager
def cluster_project(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    bucket: Bucket,
    make_cluster: Callable[[Path, Path], JobCluster] = JobCluster,
) -> Iterator[ClusterProject]:
    """The toy project, its pushed train image, and a running cluster (``make_cluster(tmp,
    image_root)``: tests.train.tfjob_cluster's adds the training operator)."""
    if kmock is None:
        require_real("kmock (a Kubernetes API emulator, Python >= 3.11) is not installed")
    root = tmp_path / "project"
    (root / "src").mkdir(parents=True)
    (root / "src" / "model.py").write_text(MODEL)
    (root / "data").mkdir()
    rows = [f"{i % 7 / 7:.3f},{i % 5 / 5:.3f},{int(i % 7 > 3)}" for i in range(96)]
    (root / "data" / "points.csv").write_text("\n".join(rows) + "\n")
    record = render_inputs.build_record(root / ".mlops", "trainer")
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"image": TRAIN_IMAGE}))
    cluster = make_cluster(tmp_path / "cluster", root)
    (tmp_path / "cluster").mkdir()
    cluster.start()
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    cluster.put_secret(
        "store-creds",
        {
            key: base64.b64encode(os.environ[key].encode()).decode()
            for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        },
    )
    try:
        yield ClusterProject(root, cluster, bucket)
    finally:
        cluster.stop()


@pytest.fixture
def project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bucket: Bucket
) -> Iterator[ClusterProject]:
    with cluster_project(tmp_path, monkeypatch, bucket) as made:
        yield made


def _jobs(project: ClusterProject) -> list[str]:
    return [c for c in project.cluster.writes() if c.startswith("POST") and c.endswith("/jobs")]


@pytest.mark.slow
def test_one_worker_job_trains_publishes_and_an_unchanged_key_creates_no_job(
    project: ClusterProject, capsys: pytest.CaptureFixture[str]
) -> None:
    project.write()
    code, result, err = project.train(capsys)
    assert code == 0, err
    (run,) = result["runs"]
    assert run["reused"] is False and run["model_on_remote_only"] is True
    assert "\n[toy] epoch 2/2  " in err  # the chief's progress, streamed as a local run prints it
    assert "[toy] [toy]" not in err
    record = json.loads((project.root / ".mlops" / "runs" / run["run_id"] / "run.json").read_text())
    where = record["lineage"]["environment"]["kubernetes"]
    assert where["namespace"] == "ml" and where["node"] == "gpu-node-a"
    assert where["job"].startswith("toy-train-") and where["image"] == TRAIN_IMAGE
    assert record["status"] == "complete" and record["inputs"]["points"]["sha256"]
    assert f"runs/{run['run_id']}/run.json" in project.bucket.objects("runs/")
    assert project.bucket.objects("cache/train/")
    # The Job's ConfigMap and Service are gone; the Job stays for `kubectl logs` (its TTL).
    assert project.cluster.get("v1/configmaps", f"{where['job']}-spec") is None
    assert project.cluster.get("batch/v1/jobs", where["job"]) is not None
    jobs = len(_jobs(project))
    code, again, err = project.train(capsys)
    assert code == 0 and again["runs"][0]["reused"] is True, err
    assert len(_jobs(project)) == jobs  # no Job for an unchanged key
    # The same code, params, seed and data trained locally gives the same weights.
    project.config.write_text(
        project.config.read_text().replace("backend: kubernetes", "backend: local")
    )
    code, local, err = project.train(capsys, "--force")
    assert code == 0, err
    local_record = json.loads((Path(local["runs"][0]["run_dir"]) / "run.json").read_text())
    assert local_record["weights_hash"] == record["weights_hash"]


@pytest.mark.slow
def test_a_failing_pod_is_retried_up_to_backoff_limit_then_a_clear_error(
    project: ClusterProject, capsys: pytest.CaptureFixture[str]
) -> None:
    project.write(entrypoint="crash", retries=1)
    code, _, err = project.train(capsys)
    assert code != 0
    assert "BackoffLimitExceeded" in err and "boom: shard 3 is unreadable" in err
    assert "last log lines" in err and "exited with code 1" in err
    assert len(project.cluster.jobs.pods_started) == 2  # the first try and one retry
    assert project.runs() == [] and project.bucket.objects("runs/") == []


@pytest.mark.slow
def test_deadline_exceeded_names_train_timeout(
    project: ClusterProject, capsys: pytest.CaptureFixture[str]
) -> None:
    project.write(entrypoint="slow", extra="      timeout: 3s\n")
    code, _, err = project.train(capsys)
    assert code != 0
    assert "DeadlineExceeded" in err and "raise train.timeout" in err
    assert project.cluster.jobs.alive() == []
    assert project.runs() == []


@pytest.mark.slow
def test_an_input_that_differs_from_the_key_fails_at_once_without_retries(
    project: ClusterProject, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # The "image" was built from the checkout as it was; the checkout's data changed since.
    image = tmp_path / "image"
    shutil.copytree(project.root, image, ignore=shutil.ignore_patterns(".mlops"))
    project.cluster.jobs.image_root = image
    data = project.root / "data" / "points.csv"
    data.write_text(data.read_text() + "0.5,0.5,1\n")
    project.write(retries=3)
    code, _, err = project.train(capsys)
    assert code != 0
    assert "PodFailurePolicy" in err and "sha256" in err and "Rebuild and push" in err
    assert len(project.cluster.jobs.pods_started) == 1  # FailJob: no retry
    assert project.runs() == []


def test_an_image_that_cannot_be_pulled_fails_fast_with_the_fix(
    project: ClusterProject, capsys: pytest.CaptureFixture[str]
) -> None:
    record = render_inputs.build_record(project.root / ".mlops", "trainer")
    record.write_text(json.dumps({"image": TRAIN_IMAGE.replace("shop/train", "shop/unpullable")}))
    project.write()
    started = time.monotonic()
    code, _, err = project.train(capsys)
    assert code != 0 and time.monotonic() - started < 30
    assert "ImagePullBackOff" in err and "mlops push" in err
    deleted = [w for w in project.cluster.writes() if w.startswith("DELETE") and "/jobs/" in w]
    assert len(deleted) == 1  # a Job that cannot run is not left behind
    assert project.runs() == []


def test_an_oom_killed_pod_names_the_memory_limit(
    project: ClusterProject, capsys: pytest.CaptureFixture[str]
) -> None:
    record = render_inputs.build_record(project.root / ".mlops", "trainer")
    record.write_text(json.dumps({"image": TRAIN_IMAGE.replace("shop/train", "shop/oomkill")}))
    project.write()
    code, _, err = project.train(capsys)
    assert code != 0
    assert "OOMKilled" in err and "raise train.resources.limits.memory" in err
    assert "exited with code 137" in err
    assert project.runs() == []


def test_a_pod_no_node_can_take_fails_as_unschedulable_and_the_job_is_deleted(
    project: ClusterProject,
) -> None:
    from mlops_sessions.config.loader import load
    from mlops_sessions.executors.kube.client import connect
    from mlops_sessions.executors.kube.job import JobFailed, JobRunner
    from mlops_sessions.planning import train_job

    project.write(extra="      resources: {gpu: 2}\n")  # the one node has 1 GPU
    project.config.write_text(project.config.read_text().replace("variant: cpu", "variant: gpu"))
    config = load(str(project.config))
    model = config.models["toy"]
    target = train_job.JobTarget("toy-train-gpu", TRAIN_IMAGE)
    objects = train_job.objects(config, model, target, {"format": 1})
    lines: list[str] = []
    runner = JobRunner(connect(None, "ml"), on_line=lines.append, poll_s=0.1)
    runner.unschedulable_after_s = 0.5
    with pytest.raises(JobFailed) as failed:
        runner.run(objects, target.name)
    assert failed.value.reason == "Unschedulable"
    message = str(failed.value)
    assert "Insufficient nvidia.com/gpu" in message and "lower train.resources" in message
    assert project.cluster.get("batch/v1/jobs", target.name) is None
    assert project.cluster.get("v1/configmaps", f"{target.name}-spec") is None


@pytest.mark.slow
def test_train_pending_timeout_bounds_the_wait_for_a_node(
    project: ClusterProject, capsys: pytest.CaptureFixture[str]
) -> None:
    """`mlops train` waits train.pending_timeout for a node, then fails with the reason."""
    project.write(extra="      resources: {gpu: 2}\n      pending_timeout: 2s\n")
    project.config.write_text(project.config.read_text().replace("variant: cpu", "variant: gpu"))
    started = time.monotonic()
    code, _, err = project.train(capsys)
    waited = time.monotonic() - started
    assert code != 0 and "Unschedulable" in err, err
    assert "Insufficient nvidia.com/gpu" in err and "train.pending_timeout" in err
    assert 2 <= waited < 60  # the configured wait, not the 10-minute default
    assert project.runs() == []


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupting_the_driver_deletes_the_job_and_keeps_nothing(
    project: ClusterProject, how: signal.Signals
) -> None:
    project.write(entrypoint="slow")
    output = project.interrupted_train(how)
    assert "cancelled: Job" in output and "deleted" in output
    deletes = [w for w in project.cluster.writes() if w.startswith("DELETE") and "/jobs/" in w]
    assert deletes, output
    until = time.monotonic() + 20
    while project.cluster.jobs.alive() and time.monotonic() < until:
        time.sleep(0.2)
    assert project.cluster.jobs.alive() == []  # the training process was stopped
    assert project.runs() == [] and project.bucket.objects("runs/") == []
    (cancelled,) = (project.root / ".mlops" / "cancelled").iterdir()
    note = json.loads(cancelled.read_text())
    assert note["status"] == "cancelled" and note["kubernetes"]["namespace"] == "ml"


@pytest.mark.slow
@pytest.mark.parametrize("operator", ["job", "tfjob"])
def test_two_workers_train_the_example_through_the_job_and_pass_the_gate(
    operator: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    bucket: Bucket,
    repo_root: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The Indexed Job's two pods (or the TFJob's two workers, TF_CONFIG written by the
    emulated training operator) run MultiWorkerMirroredStrategy on loopback; the chief's
    run, read from the shared store, passes the example's own gate in `mlops evaluate`."""
    import yaml

    if kmock is None:
        require_real("kmock (a Kubernetes API emulator, Python >= 3.11) is not installed")
    root = tmp_path / "project"
    root.mkdir()
    for name in ("mlops.yaml", "requirements.lock"):
        shutil.copy(repo_root / name, root / name)
    shutil.copytree(
        repo_root / "examples", root / "examples", ignore=shutil.ignore_patterns("__pycache__")
    )
    document = yaml.safe_load((root / "mlops.yaml").read_text())
    document["store"] = {"remote": bucket.url, "endpoint": bucket.endpoint, "region": "us-east-1"}
    document["images"]["trainer"] = {
        "kind": "train",
        "repository": "registry.example.com/digits/train",
        "base": {"variant": "cpu", "tensorflow": "2.21.0"},
    }
    document["models"]["digits"]["train"] |= {
        "backend": "kubernetes",
        "image": "trainer",
        "workers": 2,
        "operator": operator,
        "credentials_secret": "store-creds",
    }
    (root / "mlops.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    record = render_inputs.build_record(root / ".mlops", "trainer")
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"image": TRAIN_IMAGE}))
    cluster = (TFJobCluster if operator == "tfjob" else JobCluster)(tmp_path / "cluster", root)
    (tmp_path / "cluster").mkdir()
    cluster.start()
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    try:
        cluster.put_secret(
            "store-creds",
            {
                key: base64.b64encode(os.environ[key].encode()).decode()
                for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
            },
        )
        config = str(root / "mlops.yaml")
        capsys.readouterr()
        assert main(["train", "-c", config, "--json"]) == 0, capsys.readouterr().err
        (run,) = json.loads(capsys.readouterr().out)["runs"]
        assert cluster.jobs is not None and len(cluster.jobs.pods_started) == 2
        local = json.loads((root / ".mlops" / "runs" / run["run_id"] / "run.json").read_text())
        where = local["lineage"]["environment"]["kubernetes"]
        assert where["workers"] == 2
        assert where["kind"] == ("TFJob" if operator == "tfjob" else "Job")
        assert main(["evaluate", "-c", config, "--json"]) == 0, capsys.readouterr().err
        verdict = json.loads(capsys.readouterr().out)
        assert verdict["passed"] is True and verdict["models"]["digits"]["passed"] is True
        assert verdict["models"]["digits"]["blessed"] is True  # the example's allow_first_run
    finally:
        cluster.stop()
