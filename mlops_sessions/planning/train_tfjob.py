"""Plan training as a Kubeflow ``TFJob`` (``train.operator: tfjob``), as dicts. Pure.

Where the Kubeflow Training Operator is installed, ``mlops train`` can hand the workers to
it instead of running a ``batch/v1`` Job (:mod:`planning.train_job`). The TFJob has one
replica type, ``Worker``, with ``train.workers`` replicas; the operator creates pod
``<job>-worker-<i>`` and a Service of the same name for each, and gives every pod its own
``TF_CONFIG`` (``{"cluster": {"worker": [...]}, "task": {"type": "worker", "index": i}}``;
none with a single worker, as the operator does for a job that is not distributed). With
no ``Chief`` replica, worker 0 is the chief (the operator's and TensorFlow's rule), and
the TFJob succeeds when worker 0 does (the default success policy), which is also what
``drivers.train_pod`` does: worker 0 publishes the run. So this planner neither builds a
``TF_CONFIG`` nor a headless Service.

The pod template is the Job's (:func:`planning.train_job.pod_template`, the same security
context, resources, GPU/MIG, placement, labels and spec ConfigMap), with the names the
operator requires: the container ``tensorflow`` and its port ``tfjob-port`` (2222).

Restarts. The replicas' ``restartPolicy`` is ``OnFailure``: a failed container is
restarted in place by the kubelet, so the pod keeps its name, Service and node, and the
other workers' ``TF_CONFIG`` stays right. ``runPolicy.backoffLimit`` bounds those
restarts (``train.retries`` + 1, see :func:`backoff_limit`): the operator counts the
containers' restarts against it only for ``OnFailure``/``Always``. ``ExitCode`` was not
chosen: it retries only exit codes 128-255 (a signal) and treats 1-127 as permanent, so a
Python exception (exit 1) would never be retried and ``train.retries`` would mean nothing
for it. The one failure the Job path fails at once without retrying, exit 2 (the spec or
an input is wrong, ``podFailurePolicy``), the driver handles itself
(:mod:`executors.kube.tfjob` fails the run and deletes the TFJob when it sees that exit
code).

``runPolicy.activeDeadlineSeconds`` is ``train.timeout``; ``cleanPodPolicy: Running``
stops workers still running when the job ends and keeps finished pods for ``kubectl
logs`` until ``ttlSecondsAfterFinished`` (a day, as for the Job) removes the TFJob.

:func:`render` is what ``mlops render`` writes for review (no ConfigMap); :func:`objects`
is what ``mlops train`` creates. The TFJob is validated offline against
``schemas/kubeflow/tfjob.json`` (:mod:`planning.k8s_validate`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlops_sessions.config import Config, ModelConfig
from mlops_sessions.planning.k8s_common import seconds
from mlops_sessions.planning.train_job import (
    KEEP_FINISHED_S,
    PORT,
    JobTarget,
    Manifest,
    PodShape,
    config_map,
    object_meta,
    pod_template,
    train_of,
)

API_VERSION = "kubeflow.org/v1"
KIND = "TFJob"
GROUP, VERSION = API_VERSION.split("/")
PLURAL = "tfjobs"
CRD = f"{PLURAL}.{GROUP}"
CONTAINER = "tensorflow"  # the operator finds the TensorFlow container by this name
PORT_NAME = "tfjob-port"  # ... and the port for the cluster spec by this one
REPLICA = "Worker"
RESTART_POLICY = "OnFailure"
CLEAN_POD_POLICY = "Running"
# The labels the operator puts on the pods it creates.
JOB_NAME_LABEL = "training.kubeflow.org/job-name"
REPLICA_TYPE_LABEL = "training.kubeflow.org/replica-type"
REPLICA_INDEX_LABEL = "training.kubeflow.org/replica-index"
KIND_ENV = "MLOPS_TRAIN_KIND"  # read by drivers.train_pod for the run's lineage

TFJOB_POD = PodShape(
    container=CONTAINER, port_name=PORT_NAME, indexed_job=False, restart_policy=None
)


def objects(
    config: Config, model: ModelConfig, target: JobTarget, spec: Mapping[str, Any]
) -> list[Manifest]:
    """What ``mlops train`` creates, in order: the spec's ConfigMap, the TFJob."""
    return [config_map(config, model, target, spec), *render(config, model, target)]


def render(config: Config, model: ModelConfig, target: JobTarget) -> list[Manifest]:
    """The TFJob, for a checked Config (rules.train_backend_findings ran when it loaded)."""
    return [tfjob(config, model, target)]


def tfjob(config: Config, model: ModelConfig, target: JobTarget) -> Manifest:
    train = train_of(model)
    template = pod_template(config, model, target, TFJOB_POD)
    (container,) = template["spec"]["containers"]
    container["env"].append({"name": KIND_ENV, "value": KIND})
    assert container["ports"][0]["containerPort"] == PORT
    run_policy: dict[str, Any] = {
        "backoffLimit": backoff_limit(train.retries),
        "cleanPodPolicy": CLEAN_POD_POLICY,
        "ttlSecondsAfterFinished": KEEP_FINISHED_S,
    }
    if train.timeout is not None:
        run_policy["activeDeadlineSeconds"] = seconds(train.timeout, minimum=1)
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": object_meta(config, model, target, target.name),
        "spec": {
            "runPolicy": run_policy,
            "tfReplicaSpecs": {
                REPLICA: {
                    "replicas": train.workers,
                    "restartPolicy": RESTART_POLICY,
                    "template": template,
                }
            },
        },
    }


def backoff_limit(retries: int) -> int:
    """``runPolicy.backoffLimit`` for ``train.retries`` whole retries.

    The operator sums the running pods' container restarts and fails the job once the sum
    *reaches* the limit (0 behaves as 1): by then the kubelet has started the restarted
    container, which is stopped at once. So ``retries + 1`` lets ``retries`` restarted runs
    go to their end, as ``backoffLimit: retries`` does for a Job.
    """
    return retries + 1


def worker_pod(job: str, index: int) -> str:
    """The name the operator gives worker ``index``'s pod (and its Service)."""
    return f"{job}-{REPLICA.lower()}-{index}"
