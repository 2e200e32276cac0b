"""The TFJob planner (planning/train_tfjob.py), its schema and the ``train.operator`` key.

Goldens pin the rendered TFJob for 1, 2 and 4 workers, with and without GPUs; each is
validated offline for every Kubernetes version the package ships (the project's
schemas/kubeflow/tfjob.json, then the pod template as the official PodTemplateSpec).
A mutation test misspells every field render emits, one at a time, and requires the
validation to refuse each. Regenerate the goldens after an intended change with:

    MLOPS_UPDATE_GOLDEN=1 pytest tests/train/test_train_tfjob.py
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlops_sessions.config.loader import load
from mlops_sessions.errors import ConfigError, StepError
from mlops_sessions.planning import k8s_validate, manifests, train_job, train_tfjob
from mlops_sessions.planning.training import plan_training
from tests.train.test_train_job import IMAGE, project

GOLDEN = Path(__file__).parent / "golden_tfjob"
TFJOB = "      operator: tfjob\n"
# Maps whose keys are data, not field names: a new key there is not a misspelling.
FREE_FORM = {"labels", "annotations", "nodeSelector", "limits", "requests"}


def _tfjob(tmp_path: Path, *, workers: int = 1, gpu: bool = False) -> tuple[Any, Any]:
    config = load(str(project(tmp_path, workers=workers, gpu=gpu, extra=TFJOB)))
    return config, config.models["digits"]


@pytest.mark.parametrize("workers", [1, 2, 4])
@pytest.mark.parametrize("gpu", [False, True], ids=["cpu", "gpu"])
def test_rendered_tfjob_matches_golden_and_validates(
    tmp_path: Path, workers: int, gpu: bool
) -> None:
    config, model = _tfjob(tmp_path, workers=workers, gpu=gpu)
    target = train_job.JobTarget("digits-train", IMAGE)
    objects = train_tfjob.render(config, model, target)
    for version in k8s_validate.supported_versions():
        deploy = dataclasses.replace(model.deploy, kubernetes_version=version)
        versioned = dataclasses.replace(model, deploy=deploy)
        k8s_validate.validate_objects(train_tfjob.render(config, versioned, target), version)
    text = manifests.to_yaml_stream(objects)
    golden = GOLDEN / f"{workers}-workers-{'gpu' if gpu else 'cpu'}.yaml"
    if os.environ.get("MLOPS_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text(), f"{golden.name} differs; regenerate if intended"
    (tfjob,) = objects  # no headless Service: the operator makes one per replica
    assert (tfjob["apiVersion"], tfjob["kind"]) == ("kubeflow.org/v1", "TFJob")
    worker = tfjob["spec"]["tfReplicaSpecs"]["Worker"]
    assert worker["replicas"] == workers and worker["restartPolicy"] == "OnFailure"
    assert tfjob["spec"]["runPolicy"] == {
        "backoffLimit": 3,  # train.retries 2: two whole retries under the operator's count
        "activeDeadlineSeconds": 5400,
        "cleanPodPolicy": "Running",
        "ttlSecondsAfterFinished": 86400,
    }
    pod = worker["template"]["spec"]
    (container,) = pod["containers"]
    assert container["name"] == "tensorflow"
    assert container["ports"] == [{"name": "tfjob-port", "containerPort": 2222, "protocol": "TCP"}]
    env = {e["name"]: e for e in container["env"]}
    assert "TF_CONFIG" not in env and "JOB_COMPLETION_INDEX" not in env  # the operator's
    assert env["MLOPS_TRAIN_KIND"]["value"] == "TFJob"
    assert env["MLOPS_TRAIN_SPEC"]["valueFrom"]["configMapKeyRef"]["name"] == "digits-train-spec"
    assert "subdomain" not in pod and "restartPolicy" not in pod
    # The same pod as the Job path, but for the names and the Job-only wiring.
    job_pod = train_job.job(config, model, target)["spec"]["template"]["spec"]
    for key in ("securityContext", "automountServiceAccountToken", "nodeSelector", "volumes"):
        assert pod[key] == job_pod[key]
    assert pod["tolerations"] == job_pod["tolerations"]
    (job_container,) = job_pod["containers"]
    assert container["resources"] == job_container["resources"]
    assert container["securityContext"] == job_container["securityContext"]
    if gpu:
        assert container["resources"]["limits"] == {"nvidia.com/mig-3g.20gb": "2"}


def test_train_objects_carry_the_spec_config_map(tmp_path: Path) -> None:
    config, model = _tfjob(tmp_path, workers=2)
    plan = plan_training(config, model)
    run_id = "20261201T120000Z-abc123-" + plan.key[:8]
    spec = train_job.pod_spec(config, model, plan, run_id)
    target = train_job.JobTarget(train_job.job_name("digits", run_id), IMAGE, run_id, plan.key)
    config_map, tfjob = train_tfjob.objects(config, model, target, spec)
    assert config_map["kind"] == "ConfigMap" and json.loads(config_map["data"]["spec.json"]) == spec
    assert tfjob["metadata"]["labels"][train_job.RUN_LABEL] == run_id
    assert tfjob["metadata"]["annotations"][train_job.KEY_ANNOTATION] == plan.key
    # The operator's pod names (<job>-worker-<i>) stay DNS labels for the longest job name.
    assert len(train_tfjob.worker_pod(target.name, 63)) <= 63
    k8s_validate.validate_objects([config_map, tfjob], k8s_validate.supported_versions()[-1])


def _paths(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every field name's path in the object, free-form maps' keys left out."""
    if isinstance(node, dict):
        for key, value in node.items():
            if path and path[-1] in FREE_FORM:
                continue
            yield (*path, key)
            yield from _paths(value, (*path, key))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _paths(item, (*path, index))


def _typo(key: str) -> str:
    return key[:-1] + key[-1].swapcase() if key[-1].isalpha() else key + "s"


def _misspelt(obj: Any, path: tuple[Any, ...]) -> Any:
    out = copy.deepcopy(obj)
    parent = out
    for step in path[:-1]:
        parent = parent[step]
    parent[_typo(path[-1])] = parent.pop(path[-1])
    return out


def test_the_schema_refuses_every_misspelt_field(tmp_path: Path) -> None:
    """Property: for each field render emits, anywhere in the TFJob (its own fields and the
    pod template's), a misspelling of its name fails validation."""
    config, model = _tfjob(tmp_path, workers=2, gpu=True)
    (tfjob,) = train_tfjob.render(config, model, train_job.JobTarget("digits-train", IMAGE))
    version = k8s_validate.supported_versions()[-1]
    k8s_validate.validate_objects([tfjob], version)
    paths = list(_paths(tfjob))
    assert len(paths) > 60  # the walk reached into the pod template
    accepted = []
    for path in paths:
        try:
            k8s_validate.validate_objects([_misspelt(tfjob, path)], version)
        except StepError as exc:
            # The problem names the field: the unexpected misspelling or the missing name.
            assert _typo(path[-1]) in str(exc) or path[-1] in str(exc), (path, str(exc))
        else:
            accepted.append(".".join(map(str, path)))
    assert accepted == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda j: j["spec"]["tfReplicaSpecs"].update(Chief=j["spec"]["tfReplicaSpecs"]["Worker"]),
         "tfReplicaSpecs: Additional properties"),
        (lambda j: j["spec"]["runPolicy"].update(cleanPodPolicy="Sometimes"),
         "runPolicy.cleanPodPolicy: 'Sometimes' is not one of"),
        (lambda j: j["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]
         .update(name="train"), "Worker.template.spec.containers"),
        (lambda j: j["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"].update(
            restartPolicy="Never"), "Worker.template.spec"),
        (lambda j: j["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["securityContext"]
         .update(runAsUser="root"), "template.spec.securityContext.runAsUser: 'root' is not"),
    ],
    ids=["chief-replica", "clean-pod-policy", "container-name", "restart-policy", "official"],
)  # fmt: skip
def test_the_schema_refuses_values_the_operator_or_kubernetes_would(
    tmp_path: Path, change: Any, expected: str
) -> None:
    config, model = _tfjob(tmp_path)
    (tfjob,) = train_tfjob.render(config, model, train_job.JobTarget("digits-train", IMAGE))
    change(tfjob)
    with pytest.raises(StepError) as caught:
        k8s_validate.validate_objects([tfjob], k8s_validate.supported_versions()[-1])
    assert expected in str(caught.value)


def test_operator_tfjob_needs_backend_kubernetes_and_validate_names_the_fix(
    tmp_path: Path,
) -> None:
    path = project(tmp_path, extra=TFJOB)
    text = path.read_text().replace("backend: kubernetes", "backend: container")
    path.write_text(text.replace("      credentials_secret: store-creds\n", ""))
    with pytest.raises(ConfigError) as caught:
        load(str(path))
    message = str(caught.value)
    assert "models.digits.train.operator" in message
    assert "set train.backend: kubernetes, or remove operator" in message
    path.write_text(text.replace("      operator: tfjob\n", "      operator: kubeflow\n"))
    with pytest.raises(ConfigError, match="operator"):
        load(str(path))


def test_worker_zero_of_the_operators_tf_config_is_the_chief(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlops_sessions.executors.tf.train import cluster_workers, is_chief, task_index

    hosts = ["j-worker-0.ml.svc:2222", "j-worker-1.ml.svc:2222"]
    for index, chief in ((0, True), (1, False)):
        spec = {
            "cluster": {"worker": hosts},
            "task": {"type": "worker", "index": index},
            "environment": "cloud",
        }
        monkeypatch.setenv("TF_CONFIG", json.dumps(spec))
        assert is_chief() is chief and task_index() == index and cluster_workers() == hosts
    # With a Chief replica, worker 0 is an ordinary worker and the chief is the chief.
    cluster = {"chief": ["j-chief-0.ml.svc:2222"], "worker": hosts}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker"}}))
    assert is_chief() is False
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "chief"}}))
    assert is_chief() is True
    monkeypatch.delenv("TF_CONFIG")  # one worker: the operator sets no TF_CONFIG
    assert is_chief() is True


def test_render_writes_the_tfjob_for_review(tmp_path: Path) -> None:
    from mlops_sessions.steps import render

    config, model = _tfjob(tmp_path, workers=2)
    objects = render.training_objects(config, model, {"trainer": IMAGE})
    assert [o["kind"] for o in objects] == ["TFJob"]
    assert manifests.file_names(objects) == ["85-tfjob-digits-train.yaml"]
    assert objects == train_tfjob.render(config, model, train_job.JobTarget("digits-train", IMAGE))
