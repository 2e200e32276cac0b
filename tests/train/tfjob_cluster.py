"""A cluster with the Kubeflow Training Operator, for tests: :mod:`tests.train.job_cluster`
plus an emulated operator.

No real operator can run here. :class:`TFJobCluster` is :class:`JobCluster` (kmock's API
emulator, the Job controller, scheduler, kubelet and cluster DNS played as described
there, unchanged) with, in the API, the ``customresourcedefinitions`` of apiextensions.k8s.io
and — when ``operator_installed`` — the ``tfjobs.kubeflow.org`` CRD object and the
``kubeflow.org/v1`` ``tfjobs`` resource; without it the cluster answers 404 for both, as a
cluster without the operator does. :class:`TrainingOperator` (the controller thread)
additionally plays, openly, the parts of the training operator's TFJob controller that
``mlops train`` relies on:

- for each TFJob, one pod ``<job>-worker-<i>`` and one Service of that name per Worker
  replica, the pods labelled as the operator labels them
  (``training.kubeflow.org/job-name``, ``replica-type: worker``, ``replica-index``,
  ``operator-name``, ``job-role: master`` on worker 0), their ``restartPolicy`` set from the
  replica's, and — for more than one worker only, as the operator does — a ``TF_CONFIG`` on
  the container named ``tensorflow``:
  ``{"cluster": {"worker": ["<job>-worker-<i>.<ns>.svc:<tfjob-port>", ...]}, "task":
  {"type": "worker", "index": i}, "environment": "cloud"}`` (the DNS names become loopback
  ports, as in job_cluster);
- restarts: ``OnFailure``/``Always``, the kubelet restarts a failed container in its pod
  after a back-off (``waiting: CrashLoopBackOff`` with ``lastState.terminated`` meanwhile;
  1.5 s, where a real kubelet waits 10 s and more), then counts it in ``restartCount``;
  ``Never``, the pod fails and so does the TFJob. ``ExitCode`` is not played;
- ``runPolicy.backoffLimit``: once the running pods' restarts reach it (0 counts as 1,
  the operator's rule) the TFJob fails ("reached the specified backoff limit") and its pods
  are deleted; ``runPolicy.activeDeadlineSeconds``: from the TFJob's start, it fails ("was
  active longer than specified deadline") and the pods are deleted;
- success when worker 0 succeeds (the default success policy); then
  ``runPolicy.cleanPodPolicy``: Running deletes the pods still running, All every pod,
  None none;
- ``.status``: ``conditions`` (Created, Running, Restarting, Succeeded / Failed, with the
  operator's reasons TFJobCreated, TFJobRunning, TFJobRestarting, TFJobSucceeded,
  TFJobFailed; a terminal condition sets Running to False), ``replicaStatuses.Worker``
  (active, succeeded, failed) and ``startTime``;
- the garbage collector: a deleted TFJob's pods are stopped and deleted with its Services.
"""

from __future__ import annotations

import contextlib
import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops_sessions.planning import train_tfjob
from tests.train.job_cluster import (
    JOB_RESOURCES,
    JobCluster,
    JobController,
    PodRun,
    _free_port,
    _reason,
)

CRD_RESOURCE = "apiextensions.k8s.io/v1/customresourcedefinitions"
TFJOB_RESOURCE = f"{train_tfjob.API_VERSION}/{train_tfjob.PLURAL}"
OPERATOR = "tfjob-controller"
CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": train_tfjob.CRD},
    "spec": {
        "group": train_tfjob.GROUP,
        "scope": "Namespaced",
        "names": {"plural": train_tfjob.PLURAL, "singular": "tfjob", "kind": train_tfjob.KIND},
        "versions": [{"name": train_tfjob.VERSION, "served": True, "storage": True}],
    },
}


class TFJobCluster(JobCluster):
    """JobCluster with the CRD API, and the training operator when ``operator_installed``."""

    cluster_scoped = frozenset({CRD_RESOURCE})

    def __init__(self, tmp: Path, image_root: Path, *, operator_installed: bool = True) -> None:
        super().__init__(tmp, image_root)
        self.operator_installed = operator_installed
        self.resources = {**JOB_RESOURCES, CRD_RESOURCE: ("CustomResourceDefinition", set())}
        if operator_installed:
            self.resources[TFJOB_RESOURCE] = (train_tfjob.KIND, {"status"})

    def _controller(self) -> JobController:
        return TrainingOperator(self.kubeconfig, self.image_root, self.logs, self.previous_logs)

    def start(self) -> None:
        super().start()
        if self.operator_installed:  # what installing the operator's manifests does first
            from kubernetes import client, config

            api = client.ApiextensionsV1Api(
                config.new_client_from_config(config_file=str(self.kubeconfig))
            )
            api.create_custom_resource_definition(CRD, _preload_content=False)

    @property
    def operator(self) -> TrainingOperator:
        assert isinstance(self.jobs, TrainingOperator)
        return self.jobs


@dataclass
class TFJobState:
    started: float
    ports: list[int]
    pods: dict[int, PodRun] = field(default_factory=dict)
    templates: dict[int, dict[str, Any]] = field(default_factory=dict)
    succeeded: set[int] = field(default_factory=set)
    failed: set[int] = field(default_factory=set)
    conditions: list[dict[str, Any]] = field(default_factory=list)
    backoff: dict[int, float] = field(default_factory=dict)  # index -> when it restarts
    finished: bool = False


@dataclass
class TrainingOperator(JobController):
    """The Job controller (inherited, for Jobs) and the TFJob controller described above."""

    tfjobs: dict[tuple[str, str], TFJobState] = field(default_factory=dict)
    restart_backoff: float = 1.5  # the kubelet's CrashLoopBackOff, 10 s and more in life

    def run(self) -> None:
        super().run()
        for key in list(self.tfjobs):  # the cluster goes away: no worker outlives it
            self._stop_pods(key, delete=False)

    def _tick(self) -> None:
        super()._tick()
        if not hasattr(self, "custom"):
            from kubernetes import client

            self.custom = client.CustomObjectsApi(self.core.api_client)
        try:
            listed = self._json(
                self.custom.list_cluster_custom_object(
                    train_tfjob.GROUP,
                    train_tfjob.VERSION,
                    train_tfjob.PLURAL,
                    _preload_content=False,
                )
            )
        except Exception:  # not installed: nothing to reconcile
            return
        live = set()
        for job in listed.get("items") or []:
            key = (job["metadata"]["namespace"], job["metadata"]["name"])
            live.add(key)
            self._reconcile_tfjob(key, job)
        for key in list(self.tfjobs):
            if key not in live:  # deleted: the garbage collector takes its pods and Services
                self._stop_pods(key, delete=True)
                for index in range(len(self.tfjobs[key].ports)):
                    self._delete_service(key[0], train_tfjob.worker_pod(key[1], index))
                del self.tfjobs[key]

    # --- the TFJob controller ---------------------------------------------------------
    def _reconcile_tfjob(self, key: tuple[str, str], job: dict[str, Any]) -> None:
        namespace, name = key
        replica = job["spec"]["tfReplicaSpecs"]["Worker"]
        policy = job["spec"].get("runPolicy") or {}
        workers = int(replica.get("replicas", 1))
        state = self.tfjobs.get(key)
        if state is None:
            state = self.tfjobs[key] = TFJobState(
                time.monotonic(), [_free_port() for _ in range(workers)]
            )
            self._condition(state, "Created", f"TFJob {name} is created.")
            for index in range(workers):
                self._service(namespace, name, index)
        if state.finished:
            return
        deadline = policy.get("activeDeadlineSeconds")
        if deadline is not None and time.monotonic() - state.started > float(deadline):
            return self._fail(
                key, state, f"Job {name} has failed because it was active longer than "
                "specified deadline", delete_pods=True,
            )  # fmt: skip
        restart_policy = replica.get("restartPolicy", "Never")
        for index, pod in list(state.pods.items()):
            if index in state.backoff and time.monotonic() >= state.backoff[index]:
                # The kubelet's back-off is over: the container runs again in its pod.
                del state.backoff[index]
                pod.restarts += 1
                pod.oom = False
                self._run_container(namespace, state.templates[index], pod, state.ports)
                continue
            if pod.proc is None or pod.proc.poll() is None or index in state.backoff:
                continue
            if index in state.succeeded or index in state.failed:
                continue
            code = 137 if pod.oom else pod.proc.returncode
            pod.ended = time.monotonic()
            self.finished.append(copy.copy(pod))
            if code == 0:
                state.succeeded.add(index)
                self._terminated(namespace, pod, 0)
            elif restart_policy in ("OnFailure", "Always"):
                # The kubelet restarts the container in its pod after a back-off
                # (CrashLoopBackOff); the operator says Restarting.
                pod.last_terminated = {
                    "exitCode": code,
                    "reason": _reason(pod, code),
                    "finishedAt": f"{time.time():.6f}",
                }
                state.backoff[index] = time.monotonic() + self.restart_backoff
                self._status(namespace, pod.name, {"phase": "Running", "containerStatuses": [{
                    "name": pod.container, "ready": False, "restartCount": pod.restarts,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "imageID": "docker-pullable://train", **self._last_state(pod),
                }]})  # fmt: skip
                self._condition(
                    state, "Restarting",
                    f"TFJob {name} is restarting because 1 Worker replica(s) failed.",
                )  # fmt: skip
            else:
                state.failed.add(index)
                self._terminated(namespace, pod, code)
        if 0 in state.succeeded:  # worker 0 is the chief: the default success policy
            state.finished = True
            clean = policy.get("cleanPodPolicy", "Running")
            for index, pod in state.pods.items():
                if clean == "All" or (clean == "Running" and index not in state.succeeded):
                    self._kill(namespace, pod, delete_pod=True)
            self._condition(state, "Succeeded", f"TFJob {namespace}/{name} successfully completed.")
            return self._publish(key, state)
        limit = policy.get("backoffLimit")
        if limit is not None and restart_policy in ("OnFailure", "Always"):
            restarts = sum(p.restarts for i, p in state.pods.items() if i not in state.failed)
            if restarts > 0 if int(limit) == 0 else restarts >= int(limit):
                return self._fail(
                    key, state, f"Job {name} has failed because it has reached the specified "
                    "backoff limit", delete_pods=True,
                )  # fmt: skip
        if state.failed:
            return self._fail(
                key, state, f"TFJob {namespace}/{name} has failed because "
                f"{len(state.failed)} Worker replica(s) failed.", delete_pods=False,
            )  # fmt: skip
        for index in range(workers):
            if index not in state.pods:
                state.pods[index] = self._worker(key, job, index, state)
        running = [p for p in state.pods.values() if p.proc is not None]
        if len(running) == workers and not any(c["type"] == "Running" for c in state.conditions):
            self._condition(state, "Running", f"TFJob {namespace}/{name} is running.")
        self._publish(key, state)

    def _worker(
        self, key: tuple[str, str], job: dict[str, Any], index: int, state: TFJobState
    ) -> PodRun:
        namespace, name = key
        replica = job["spec"]["tfReplicaSpecs"]["Worker"]
        template = copy.deepcopy(replica["template"])
        meta = template.setdefault("metadata", {})
        meta["name"], meta["namespace"] = train_tfjob.worker_pod(name, index), namespace
        labels = meta.setdefault("labels", {})
        labels |= {
            train_tfjob.JOB_NAME_LABEL: name,
            train_tfjob.REPLICA_TYPE_LABEL: "worker",
            train_tfjob.REPLICA_INDEX_LABEL: str(index),
            "training.kubeflow.org/operator-name": OPERATOR,
        }
        if index == 0:
            labels["training.kubeflow.org/job-role"] = "master"
        meta["creationTimestamp"] = f"{time.time():.6f}"
        policy = replica.get("restartPolicy", "Never")
        template["spec"]["restartPolicy"] = "Never" if policy == "ExitCode" else policy
        workers = int(replica.get("replicas", 1))
        if workers > 1:  # the operator leaves a job that is not distributed without one
            for container in template["spec"]["containers"]:
                if container["name"] == train_tfjob.CONTAINER:
                    port = next(
                        p["containerPort"]
                        for p in container.get("ports") or []
                        if p.get("name") == train_tfjob.PORT_NAME
                    )
                    hosts = [
                        f"{train_tfjob.worker_pod(name, i)}.{namespace}.svc:{port}"
                        for i in range(workers)
                    ]
                    tf_config = {
                        "cluster": {"worker": hosts},
                        "task": {"type": "worker", "index": index},
                        "environment": "cloud",
                    }
                    container.setdefault("env", []).append(
                        {"name": "TF_CONFIG", "value": json.dumps(tf_config)}
                    )
        pod = {"apiVersion": "v1", "kind": "Pod", **template}
        state.templates[index] = pod
        return self._launch(namespace, pod, index, state.ports)

    def _host(self, pod: dict[str, Any], index: int) -> str:
        job = pod["metadata"]["labels"].get(train_tfjob.JOB_NAME_LABEL)
        if job is None:
            return super()._host(pod, index)
        return f"{train_tfjob.worker_pod(job, index)}.{pod['metadata']['namespace']}.svc:"

    # --- status -----------------------------------------------------------------------
    def _condition(self, state: TFJobState, kind: str, message: str) -> None:
        if kind in ("Succeeded", "Failed"):
            for condition in state.conditions:
                if condition["type"] in ("Running", "Restarting"):
                    condition["status"] = "False"
        state.conditions = [c for c in state.conditions if c["type"] != kind]
        state.conditions.append(
            {"type": kind, "status": "True", "reason": f"TFJob{kind}", "message": message}
        )

    def _fail(
        self, key: tuple[str, str], state: TFJobState, message: str, *, delete_pods: bool
    ) -> None:
        state.finished = True
        if delete_pods:  # a job past its limits: the operator deletes its pods and Services
            self._stop_pods(key, delete=True)
        self._condition(state, "Failed", message)
        self._publish(key, state)

    def _publish(self, key: tuple[str, str], state: TFJobState) -> None:
        active = sum(
            1
            for i, p in state.pods.items()
            if p.proc is not None and p.proc.poll() is None and i not in state.succeeded
        )
        status = {
            "conditions": state.conditions,
            "replicaStatuses": {
                "Worker": {
                    "active": active,
                    "succeeded": len(state.succeeded),
                    "failed": len(state.failed),
                }
            },
            "startTime": "2026-12-01T00:00:00Z",
        }
        self.custom.patch_namespaced_custom_object_status(
            train_tfjob.GROUP, train_tfjob.VERSION, key[0], train_tfjob.PLURAL, key[1],
            {"status": status},
            _content_type="application/merge-patch+json", _preload_content=False,
        )  # fmt: skip

    # --- pods and Services ------------------------------------------------------------
    def _stop_pods(self, key: tuple[str, str], *, delete: bool) -> None:
        state = self.tfjobs[key]
        for pod in state.pods.values():
            self._kill(key[0], pod, delete_pod=delete)

    def _service(self, namespace: str, job: str, index: int) -> None:
        name = train_tfjob.worker_pod(job, index)
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {train_tfjob.JOB_NAME_LABEL: job},
            },
            "spec": {
                "clusterIP": "None",
                "selector": {
                    train_tfjob.JOB_NAME_LABEL: job,
                    train_tfjob.REPLICA_INDEX_LABEL: str(index),
                },
                "ports": [{"name": train_tfjob.PORT_NAME, "port": 2222}],
            },
        }
        self.core.create_namespaced_service(namespace, service, _preload_content=False)

    def _delete_service(self, namespace: str, name: str) -> None:
        with contextlib.suppress(Exception):  # already gone
            self.core.delete_namespaced_service(name, namespace, _preload_content=False)

    def alive(self) -> list[str]:
        return super().alive() + [
            pod.name
            for state in self.tfjobs.values()
            for pod in state.pods.values()
            if pod.proc is not None and pod.proc.poll() is None
        ]
