"""The training Job planner (planning/train_job.py) and the config keys it reads.

Goldens pin the rendered Job (and, for several workers, the headless Service) for 1, 2
and 4 workers, with and without GPUs; every object is validated against the official
Kubernetes schemas (kubernetes-validate, strict) for every version the package ships.
Regenerate after an intended change with:

    MLOPS_UPDATE_GOLDEN=1 pytest tests/train/test_train_job.py
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from mlops_sessions.config.loader import load
from mlops_sessions.errors import ConfigError, StepError
from mlops_sessions.planning import k8s_validate, manifests, train_job
from mlops_sessions.planning.training import plan_training

GOLDEN = Path(__file__).parent / "golden_job"
IMAGE = "registry.example.com/shop/train@sha256:" + "ab" * 32
CONFIG = """\
apiVersion: mlops/v1alpha1
project: {{name: shop}}
store: {{remote: "s3://models/shop", endpoint: "http://minio.storage:9000"}}
data:
  local: {{path: data/points.csv}}
  digits: {{package: sklearn, resource: datasets/data/digits.csv.gz}}
images:
  trainer:
    kind: train
    repository: shop-train
    base: {{variant: {variant}, tensorflow: "2.21.0"}}
models:
  digits:
    deploy:
      namespace: ml
      node_selector: {{pool: serving}}
      tolerations: [{{key: dedicated, operator: Equal, value: ml, effect: NoSchedule}}]
    train:
      source: src
      entrypoint: model:train
      inputs: [local, digits]
      seed: 7
      backend: kubernetes
      image: trainer
      workers: {workers}
      timeout: 90m
      retries: 2
      credentials_secret: store-creds
      resources: {resources}
{extra}"""
CPU = "{cpu: '2', memory: 4Gi, limits: {memory: 6Gi}}"
GPU = "{cpu: '4', memory: 16Gi, gpu: 2, gpu_resource: nvidia.com/mig-3g.20gb}"


def project(tmp_path: Path, *, workers: int = 1, gpu: bool = False, extra: str = "") -> Path:
    root = tmp_path / "project"
    (root / "src").mkdir(parents=True, exist_ok=True)
    (root / "src" / "model.py").write_text("def train(ctx):\n    return None\n")
    (root / "data").mkdir(exist_ok=True)
    (root / "data" / "points.csv").write_text("1,2\n")
    text = CONFIG.format(
        workers=workers,
        resources=GPU if gpu else CPU,
        variant="gpu" if gpu else "cpu",
        extra=extra,
    )
    (root / "mlops.yaml").write_text(text)
    return root / "mlops.yaml"


@pytest.mark.parametrize("workers", [1, 2, 4])
@pytest.mark.parametrize("gpu", [False, True], ids=["cpu", "gpu"])
def test_rendered_job_matches_golden_and_official_schemas(
    tmp_path: Path, workers: int, gpu: bool
) -> None:
    config = load(str(project(tmp_path, workers=workers, gpu=gpu)))
    model = config.models["digits"]
    target = train_job.JobTarget("digits-train", IMAGE)
    objects = train_job.render(config, model, target)
    for version in k8s_validate.supported_versions():
        # Rendered for that version (podFailurePolicy needs 1.26), checked against its schema.
        deploy = dataclasses.replace(model.deploy, kubernetes_version=version)
        versioned = dataclasses.replace(model, deploy=deploy)
        k8s_validate.validate_objects(train_job.render(config, versioned, target), version)
    text = manifests.to_yaml_stream(objects)
    golden = GOLDEN / f"{workers}-workers-{'gpu' if gpu else 'cpu'}.yaml"
    if os.environ.get("MLOPS_UPDATE_GOLDEN") == "1":
        golden.write_text(text)
    assert text == golden.read_text(), f"{golden.name} differs; regenerate if intended"
    job = objects[-1]
    pod = job["spec"]["template"]["spec"]
    assert [o["kind"] for o in objects] == (["Service", "Job"] if workers > 1 else ["Job"])
    assert pod["automountServiceAccountToken"] is False
    assert job["spec"]["backoffLimit"] == 2 and job["spec"]["activeDeadlineSeconds"] == 5400
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "store-creds"
    limits = pod["containers"][0]["resources"]["limits"]
    if gpu:
        assert limits == {"nvidia.com/mig-3g.20gb": "2"}
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
            "tolerations"
        ]
    if workers > 1:
        assert job["spec"]["completionMode"] == "Indexed"
        assert job["spec"]["completions"] == job["spec"]["parallelism"] == workers
        assert pod["subdomain"] == objects[0]["metadata"]["name"] == "digits-train"
        names = list(env)
        # The kubelet expands $(JOB_COMPLETION_INDEX) only from variables defined before.
        assert names.index("JOB_COMPLETION_INDEX") < names.index("TF_CONFIG")
        expanded = env["TF_CONFIG"]["value"].replace("$(JOB_COMPLETION_INDEX)", "3")
        hosts = [f"digits-train-{i}.digits-train:2222" for i in range(workers)]
        assert json.loads(expanded) == train_job.tf_config(hosts, 3)
    else:
        assert "TF_CONFIG" not in env and "subdomain" not in pod


def test_pod_spec_carries_relative_paths_hashes_and_the_run_skeleton(tmp_path: Path) -> None:
    config = load(str(project(tmp_path)))
    model = config.models["digits"]
    plan = plan_training(config, model)
    run_id = "20261201T120000Z-abc123-" + plan.key[:8]
    spec = train_job.pod_spec(config, model, plan, run_id)
    assert spec["plan"]["source"] == "src" and spec["plan"]["key"] == plan.key
    assert spec["inputs"]["local"] == {
        "path": "data/points.csv",
        "sha256": plan.data_hashes["local"],
    }
    assert spec["inputs"]["digits"]["package"] == "sklearn"
    assert spec["record"]["lineage"]["code_hash"] == plan.code_hash
    assert spec["store"]["url"] == "s3://models/shop"
    target, objects = (
        train_job.JobTarget(train_job.job_name("digits", run_id), IMAGE, run_id, plan.key),
        None,
    )
    objects = train_job.objects(config, model, target, spec)
    assert objects[0]["kind"] == "ConfigMap"
    assert json.loads(objects[0]["data"]["spec.json"]) == spec
    assert objects[-1]["metadata"]["labels"][train_job.RUN_LABEL] == run_id
    assert target.name == f"digits-train-abc123-{plan.key[:8]}"
    for version in k8s_validate.supported_versions()[-1:]:
        k8s_validate.validate_objects(objects, version)


def test_input_outside_the_project_is_refused_with_the_fix(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.csv"
    outside.write_text("1\n")
    path = project(tmp_path)
    path.write_text(path.read_text().replace("path: data/points.csv", f"path: {outside}"))
    config = load(str(path))
    plan = plan_training(config, config.models["digits"])
    with pytest.raises(StepError, match=r"outside the project.*move it into the project"):
        train_job.pod_spec(config, config.models["digits"], plan, "20261201T120000Z-abc123-x")


def test_validate_refuses_kubernetes_without_a_remote_and_names_the_fix(tmp_path: Path) -> None:
    path = project(tmp_path)
    text = path.read_text().replace(
        'store: {remote: "s3://models/shop", endpoint: "http://minio.storage:9000"}\n', ""
    )
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load(str(path))
    message = str(caught.value)
    assert "models.digits.train.backend" in message
    assert "store: {remote: s3://<bucket>/<prefix>}" in message


def test_workers_need_kubernetes_and_container_contradicting_backend(tmp_path: Path) -> None:
    path = project(tmp_path, workers=2)
    path.write_text(
        path.read_text().replace("backend: kubernetes", "backend: local\n      container: true")
    )
    with pytest.raises(ConfigError) as caught:
        load(str(path))
    message = str(caught.value)
    assert "models.digits.train.workers: 2 workers need backend: kubernetes" in message
    assert "container: true contradicts backend: local" in message


def test_container_true_is_the_container_backend_with_the_same_key(tmp_path: Path) -> None:
    path = project(tmp_path)
    base = path.read_text().replace("      credentials_secret: store-creds\n", "")
    base = base.replace("      workers: 1\n", "")
    keys = {}
    for name, spelling in {
        "flag": "container: true",
        "backend": "backend: container",
        "cluster": "backend: kubernetes",
    }.items():
        path.write_text(base.replace("backend: kubernetes", spelling))
        config = load(str(path))
        model = config.models["digits"]
        assert model.train is not None
        assert model.train.effective_backend == name.replace("flag", "container").replace(
            "backend", "container"
        ).replace("cluster", "kubernetes")
        keys[name] = plan_training(config, model).key
    # The same image and code: a run trained by Docker or by a Job serves either backend.
    assert keys["flag"] == keys["backend"] == keys["cluster"]


def test_the_train_process_reads_its_place_in_the_cluster_from_tf_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlops_sessions.executors.tf.train import cluster_workers, task_index

    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert cluster_workers() == [] and task_index() == 0  # one process: the chief
    hosts = ["a-0.a:2222", "a-1.a:2222"]
    monkeypatch.setenv("TF_CONFIG", json.dumps(train_job.tf_config(hosts, 1)))
    assert cluster_workers() == hosts and task_index() == 1
    monkeypatch.setenv("TF_CONFIG", "$(JOB_COMPLETION_INDEX)")  # an unexpanded template
    with pytest.raises(StepError, match="not a TensorFlow cluster spec"):
        cluster_workers()
