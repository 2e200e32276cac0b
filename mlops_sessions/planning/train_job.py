"""Plan training on Kubernetes (``train.backend: kubernetes``): the Job, as dicts. Pure.

One worker is a plain ``batch/v1`` Job with one pod. ``train.workers: N > 1`` is an
*Indexed* Job of N pods plus a headless Service whose name is the pods' ``subdomain``, so
pod ``i`` is reachable as ``<job>-<i>.<job>:2222``. Each pod's ``TF_CONFIG`` is built by the
kubelet from its completion index (``$(JOB_COMPLETION_INDEX)`` expands the variable the
downward API defined just before it), which is what TensorFlow's
``MultiWorkerMirroredStrategy`` reads; task 0 is the chief.

What a pod runs is the train image's own code: ``python -m
mlops_sessions.executors.train_pod`` in the image's working directory (the project, see the
train Dockerfile template), reading one JSON spec (:func:`pod_spec`) from a ConfigMap
through an environment variable. The spec carries the run id, the plan (paths relative to
the project), each input's source and sha256 (the pod refuses an input that differs from
what the key was computed over) and the run.json skeleton with the lineage; the chief
writes the run into ``store.remote``, where the driver picks it up.

The pod is locked down like a serving pod (the deploy section's security context, no
service-account token unless ``train.service_account`` is set, read-only root with an
``emptyDir`` for scratch), resources come from ``train.resources`` (GPUs, MIG profiles) and
placement from ``train.node_selector`` / ``train.tolerations`` (default: deploy's), a GPU
job tolerating the usual ``nvidia.com/gpu`` taint. Secrets are referenced, never copied:
the store's credentials come from ``train.credentials_secret``.

:func:`render` is what ``mlops render`` writes for review: the same Job and Service under a
stable name, without the per-run ConfigMap that ``mlops train`` creates.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops_sessions.config import Config, ModelConfig, TrainConfig
from mlops_sessions.errors import StepError
from mlops_sessions.planning.k8s_common import ANNOTATION_PREFIX, metadata, seconds
from mlops_sessions.planning.k8s_pod import (
    APPARMOR_FIELD_SINCE,
    GPU_TAINT,
    container_security_context,
    kubernetes_version,
    pod_security_context,
    resources,
)
from mlops_sessions.planning.training import TrainPlan

Manifest = dict[str, Any]

SPEC_FORMAT = 1
PORT = 2222  # TensorFlow's customary gRPC port for cluster workers
CONTAINER = "train"
APP_DIR = "/opt/mlops/app"  # WORKDIR of the train image (templates/_runtime.Dockerfile.j2)
SCRATCH = "/tmp"
SPEC_ENV = "MLOPS_TRAIN_SPEC"
SPEC_KEY = "spec.json"
COMMAND = ("python", "-m", "mlops_sessions.executors.train_pod")
JOB_LABEL = f"{ANNOTATION_PREFIX}/train-job"
RUN_LABEL = f"{ANNOTATION_PREFIX}/run-id"
KEY_ANNOTATION = f"{ANNOTATION_PREFIX}/train-key"
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
# A finished Job is kept a day for `kubectl logs`, then the TTL controller removes it.
KEEP_FINISHED_S = 24 * 3600
INPUT_ERROR_EXIT = 2  # drivers.train_pod: the spec or an input is wrong
POD_FAILURE_POLICY_SINCE = (1, 26)  # beta, on by default, from Kubernetes 1.26


@dataclass(frozen=True)
class JobTarget:
    """Which Job: its name (also the Service's and, with ``-spec``, the ConfigMap's), the
    image (by digest), and the run it produces (None when rendered for review)."""

    name: str
    image: str
    run_id: str | None = None
    key: str | None = None


@dataclass(frozen=True)
class PodShape:
    """What differs between the pods of a plain Job and those another controller makes
    from the same template (:mod:`planning.train_tfjob`): the container's and port's names,
    the Indexed Job's wiring (``subdomain`` and ``TF_CONFIG`` from the completion index)
    and whether the template sets the pod's restart policy."""

    container: str = CONTAINER
    port_name: str = "tf"
    indexed_job: bool = True
    restart_policy: str | None = "Never"  # the Job's backoffLimit retries, with a fresh pod


JOB_POD = PodShape()


def train_of(model: ModelConfig) -> TrainConfig:
    if model.train is None:
        raise StepError(f"model '{model.name}' has no 'train' section; add one to train it")
    return model.train


def namespace(model: ModelConfig) -> str | None:
    """``train.namespace``, else ``deploy.namespace`` (None: the kubeconfig context's)."""
    return train_of(model).namespace or model.deploy.namespace


def job_name(model: str, run_id: str | None = None) -> str:
    """``<model>-train`` for review; ``<model>-train-<6 hex>-<key[:8]>`` for one run.

    At most 52 characters, so ``<job>-<index>`` (the pods' host names) stays a DNS label.
    """
    base = f"{model[:30].rstrip('-')}-train"
    if run_id is None:
        return base
    _, random, key8 = run_id.rsplit("-", 2)
    return f"{base}-{random.lower()}-{key8.lower()}"


def worker_hosts(target: JobTarget, workers: int) -> list[str]:
    """The cluster spec's worker addresses: pod ``i`` of an Indexed Job with subdomain
    ``<job>`` resolves as ``<job>-<i>.<job>`` inside the namespace."""
    return [f"{target.name}-{i}.{target.name}:{PORT}" for i in range(workers)]


def tf_config_template(target: JobTarget, workers: int) -> str:
    """``TF_CONFIG`` with the task index left to the kubelet's ``$(VAR)`` expansion."""
    cluster = json.dumps({"worker": worker_hosts(target, workers)}, separators=(",", ":"))
    return f'{{"cluster":{cluster},"task":{{"type":"worker","index":$(JOB_COMPLETION_INDEX)}}}}'


def tf_config(hosts: list[str], index: int) -> dict[str, Any]:
    """The ``TF_CONFIG`` a worker with this index gets (what the template expands to)."""
    return {"cluster": {"worker": list(hosts)}, "task": {"type": "worker", "index": index}}


# --- the spec a pod reads ------------------------------------------------------------------


def _in_project(config: Config, path: Path, what: str) -> str:
    try:
        return path.resolve().relative_to(config.root.resolve()).as_posix() or "."
    except ValueError:
        raise StepError(
            f"{what} {path} is outside the project ({config.root}); the train image holds "
            "only project files, so a Kubernetes Job cannot read it: move it into the project "
            "or ship it in a package (data.<name>.package + resource)"
        ) from None


def pod_spec(config: Config, model: ModelConfig, plan: TrainPlan, run_id: str) -> dict[str, Any]:
    """The JSON the pods read: plan, inputs (source + sha256), run.json skeleton, store."""
    assert config.store_remote is not None  # train_backend_findings refuses its absence
    inputs: dict[str, dict[str, str]] = {}
    for name, path in plan.inputs.items():
        entry = config.data[name]
        source: dict[str, str]
        if entry.package is not None and entry.resource is not None:
            source = {"package": entry.package, "resource": entry.resource}
        elif entry.uri is not None:
            source = {"uri": entry.uri}  # each pod fetches it (drivers.train_pod)
        else:
            source = {"path": _in_project(config, path, f"data input '{name}'")}
        inputs[name] = {**source, "sha256": plan.data_hashes[name]}
    plan_spec = {
        **plan.to_spec(),
        "source": _in_project(config, plan.source, "train.source"),
        "inputs": {},
    }
    record = {"run_id": run_id, **plan.run_fields(), "lineage": plan.lineage()}
    remote = config.store_remote
    return {
        "format": SPEC_FORMAT,
        "run_id": run_id,
        "plan": plan_spec,
        "inputs": inputs,
        "record": record,
        "store": {"url": remote.url, "endpoint": remote.endpoint, "region": remote.region},
    }


# --- manifests -----------------------------------------------------------------------------


def objects(
    config: Config, model: ModelConfig, target: JobTarget, spec: Mapping[str, Any]
) -> list[Manifest]:
    """What ``mlops train`` creates, in order: the spec's ConfigMap, the headless Service
    (several workers), the Job."""
    return [config_map(config, model, target, spec), *render(config, model, target)]


def render(config: Config, model: ModelConfig, target: JobTarget) -> list[Manifest]:
    """The Service (several workers) and the Job, for a checked Config (the shared rules,
    rules.train_backend_findings, ran when it was loaded)."""
    train = train_of(model)
    out: list[Manifest] = []
    if train.workers > 1:
        out.append(headless_service(config, model, target))
    out.append(job(config, model, target))
    return out


def object_meta(config: Config, model: ModelConfig, target: JobTarget, name: str) -> dict[str, Any]:
    labels = {"app.kubernetes.io/component": "train", JOB_LABEL: target.name}
    if target.run_id is not None:
        labels[RUN_LABEL] = target.run_id
    annotations = {KEY_ANNOTATION: target.key} if target.key else None
    meta = metadata(config, model, name, annotations=annotations, labels=labels)
    ns = namespace(model)
    if ns is not None:
        meta["namespace"] = ns
    return meta


def config_map(
    config: Config, model: ModelConfig, target: JobTarget, spec: Mapping[str, Any]
) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": object_meta(config, model, target, f"{target.name}-spec"),
        "data": {SPEC_KEY: json.dumps(spec, sort_keys=True, indent=1)},
    }


def headless_service(config: Config, model: ModelConfig, target: JobTarget) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(config, model, target, target.name),
        "spec": {
            "clusterIP": "None",
            # Workers must find each other before they are "ready": there is no probe.
            "publishNotReadyAddresses": True,
            "selector": {JOB_LABEL: target.name},
            "ports": [{"name": "tf", "port": PORT, "targetPort": PORT, "protocol": "TCP"}],
        },
    }


def job(config: Config, model: ModelConfig, target: JobTarget) -> Manifest:
    train = train_of(model)
    workers = train.workers
    spec: dict[str, Any] = {
        "backoffLimit": train.retries,
        "ttlSecondsAfterFinished": KEEP_FINISHED_S,
        "template": pod_template(config, model, target),
    }
    if kubernetes_version(model) >= POD_FAILURE_POLICY_SINCE:
        # A wrong spec or input (exit 2, drivers.train_pod) fails the Job at once: a
        # retry would meet the same image and data.
        rule: dict[str, Any] = {
            "action": "FailJob",
            "onExitCodes": {
                "containerName": CONTAINER,
                "operator": "In",
                "values": [INPUT_ERROR_EXIT],
            },
        }
        if kubernetes_version(model) < (1, 29):
            rule["onPodConditions"] = []  # required by the API's schema before 1.29
        spec["podFailurePolicy"] = {"rules": [rule]}
    if train.timeout is not None:
        spec["activeDeadlineSeconds"] = seconds(train.timeout, minimum=1)
    if workers > 1:
        spec |= {"completions": workers, "parallelism": workers, "completionMode": "Indexed"}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": object_meta(config, model, target, target.name),
        "spec": spec,
    }


def pod_template(
    config: Config, model: ModelConfig, target: JobTarget, shape: PodShape = JOB_POD
) -> dict[str, Any]:
    """The training pod: the Job's template, and each TFJob replica's."""
    train = train_of(model)
    meta = object_meta(config, model, target, target.name)
    template_meta: dict[str, Any] = {"labels": meta["labels"]}
    annotations = _apparmor_annotation(model, shape.container)
    if annotations:
        template_meta["annotations"] = annotations
    pod: dict[str, Any] = {
        "restartPolicy": shape.restart_policy,
        "automountServiceAccountToken": train.service_account is not None,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(model),
        "containers": [_container(config, model, target, shape)],
        "volumes": [{"name": "scratch", "emptyDir": {}}],
    }
    if train.service_account is not None:
        pod["serviceAccountName"] = train.service_account
    if shape.restart_policy is None:
        del pod["restartPolicy"]
    if shape.indexed_job and train.workers > 1:
        pod["subdomain"] = target.name
    selector = (
        train.node_selector if train.node_selector is not None else model.deploy.node_selector
    )
    if selector:
        pod["nodeSelector"] = dict(selector)
    tolerations = _tolerations(model)
    if tolerations:
        pod["tolerations"] = tolerations
    return {"metadata": template_meta, "spec": pod}


def _container(
    config: Config, model: ModelConfig, target: JobTarget, shape: PodShape = JOB_POD
) -> dict[str, Any]:
    train = train_of(model)
    env: list[dict[str, Any]] = [
        {
            "name": SPEC_ENV,
            "valueFrom": {"configMapKeyRef": {"name": f"{target.name}-spec", "key": SPEC_KEY}},
        },
        {"name": "MLOPS_TRAIN_JOB", "value": target.name},
        {"name": "MLOPS_TRAIN_IMAGE", "value": target.image},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "HOME", "value": SCRATCH},
        {"name": "TMPDIR", "value": SCRATCH},
    ]
    if shape.indexed_job and train.workers > 1:
        index_path = f"metadata.annotations['{INDEX_ANNOTATION}']"
        env += [
            {"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {"fieldPath": index_path}}},
            # Defined after JOB_COMPLETION_INDEX: the kubelet expands $(...) from earlier vars.
            {"name": "TF_CONFIG", "value": tf_config_template(target, train.workers)},
        ]
    remote = config.store_remote
    if remote is not None and remote.endpoint:
        env.append({"name": "MLOPS_STORE_ENDPOINT", "value": remote.endpoint})
    if train.credentials_secret is not None:
        env += [
            {
                "name": key,
                "valueFrom": {"secretKeyRef": {"name": train.credentials_secret, "key": key}},
            }
            for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        ]
    container: dict[str, Any] = {
        "name": shape.container,
        "image": target.image,
        "imagePullPolicy": "IfNotPresent",
        "command": list(COMMAND),
        "workingDir": APP_DIR,
        "env": env,
        "securityContext": container_security_context(model),
        "volumeMounts": [{"name": "scratch", "mountPath": SCRATCH}],
    }
    res = resources(train.resources)
    if res:
        container["resources"] = res
    if train.workers > 1 or not shape.indexed_job:
        container["ports"] = [{"name": shape.port_name, "containerPort": PORT, "protocol": "TCP"}]
    return container


def _tolerations(model: ModelConfig) -> list[dict[str, Any]]:
    train = train_of(model)
    chosen = train.tolerations if train.tolerations is not None else model.deploy.tolerations
    tolerations = [dict(t) for t in chosen]
    if train.resources.gpu_limit > 0 and not any(t.get("key") == GPU_TAINT for t in tolerations):
        # GPU nodes are commonly tainted nvidia.com/gpu:NoSchedule to keep CPU pods off.
        tolerations.append({"key": GPU_TAINT, "operator": "Exists", "effect": "NoSchedule"})
    return tolerations


def _apparmor_annotation(model: ModelConfig, container: str = CONTAINER) -> dict[str, str]:
    """Before Kubernetes 1.30 AppArmor is set per container by a pod annotation."""
    profile = model.deploy.security.apparmor_profile
    if profile is None or kubernetes_version(model) >= APPARMOR_FIELD_SINCE:
        return {}
    return {f"container.apparmor.security.beta.kubernetes.io/{container}": profile}
