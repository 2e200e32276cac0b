"""Run a training Job on Kubernetes and wait for it: the executor behind
``train.backend: kubernetes``.

Thin: the objects come from :mod:`planning.train_job`; this module creates them in order
(spec ConfigMap, headless Service, Job) through :class:`executors.kube.Cluster` (its
login rules, retries and errors), then polls — the Job's conditions, its pods' states and
the chief pod's log, whose new lines are passed on as the run's progress, the way a local
run prints it.

It ends in one of three ways:

* the Job completes: returns where it ran (pod, node, the image ID the kubelet pulled);
* it fails, or can never run: :class:`JobFailed` names the reason Kubernetes gives
  (OOMKilled, ImagePullBackOff, Unschedulable, DeadlineExceeded, BackoffLimitExceeded...),
  the fix, and the chief's last log lines;
* the driver is interrupted (Ctrl-C, SIGTERM): the Job is deleted with foreground
  propagation (its pods go first, so no worker keeps training or writing) before the
  interruption propagates.

The spec ConfigMap and Service are deleted with the Job in every case: they belong to one
run. A finished Job is left for ``kubectl logs`` until its TTL; a failed or cancelled one
is deleted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mlops_sessions.errors import StepError
from mlops_sessions.executors.kube.client import Cluster, KubeError
from mlops_sessions.planning.deploy_plan import Manifest, ref
from mlops_sessions.planning.train_job import CONTAINER, INDEX_ANNOTATION, INPUT_ERROR_EXIT

LOG_TAIL = 20
# Waiting reasons a pod does not recover from by itself.
STUCK_WAITING = {
    "ImagePullBackOff": "the cluster cannot pull the train image",
    "ErrImagePull": "the cluster cannot pull the train image",
    "InvalidImageName": "the train image reference is not valid",
    "CreateContainerConfigError": "the pod's configuration refers to something missing",
}
FIXES = {
    "OOMKilled": "raise train.resources.limits.memory (and memory), or train with less memory",
    "ImagePullBackOff": "push the train image (`mlops build` + `mlops push` of it) and check "
    "that the cluster can pull from its registry (an imagePullSecret on the namespace)",
    "ErrImagePull": "push the train image (`mlops build` + `mlops push` of it) and check that "
    "the cluster can pull from its registry",
    "InvalidImageName": "push the train image again so its digest is recorded",
    "CreateContainerConfigError": "create the Secret named in train.credentials_secret (keys "
    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) in the Job's namespace",
    "Unschedulable": "lower train.resources, change train.node_selector / train.tolerations, "
    "add nodes that have what the pod asks for, or raise train.pending_timeout if a node "
    "is on its way",
    "DeadlineExceeded": "raise train.timeout (the Job's activeDeadlineSeconds), or train for "
    "fewer epochs",
    "BackoffLimitExceeded": "read the log lines below; raise train.retries only for failures "
    "that a retry can cure",
    "PodFailurePolicy": "the training spec or an input is wrong (see the log lines below); a "
    "retry cannot help",
}
FIXES["InputError"] = FIXES["PodFailurePolicy"]  # exit 2 in a TFJob (executors.kube.tfjob)


class JobFailed(StepError):
    """The training Job failed or cannot run; the message has reason, fix and last lines."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class JobOutcome:
    """Where the Job ran: what the driver saw (the run records the pod's own view)."""

    job: str
    namespace: str
    pod: str | None = None
    node: str | None = None
    image_id: str | None = None
    attempts: int = 0
    duration_s: float = 0.0


@dataclass
class JobRunner:
    """Create one training Job's objects, follow it to its end, clean up after it."""

    cluster: Cluster
    on_line: Callable[[str], None] = print
    poll_s: float = 1.0
    # A pod unschedulable this long fails the run (train.pending_timeout: a cluster
    # autoscaler may add a node meanwhile, so not at once).
    unschedulable_after_s: float = 600.0
    _printed: dict[str, int] = field(default_factory=dict)
    _chief_tail: list[str] = field(default_factory=list)  # the chief's last lines seen
    # What is run, and the container whose log and state speak for a pod; subclasses
    # (executors.kube.tfjob) run other kinds the same way.
    kind = "Job"
    container = CONTAINER

    def run(self, objects: list[Manifest], job_name: str) -> JobOutcome:
        namespace = self.cluster.namespace
        started = time.monotonic()
        try:
            for obj in objects:
                namespace = obj["metadata"].get("namespace") or self.cluster.namespace
                self.cluster.create(obj)
            outcome = self._wait(job_name, namespace, started)
        except BaseException:
            # Failed, cancelled (KeyboardInterrupt, SIGTERM turned into one) or the driver
            # crashed: no pod may go on training or writing for a run nobody waits for.
            self.delete(objects)
            raise
        self._delete_support(objects)
        outcome.duration_s = round(time.monotonic() - started, 3)
        return outcome

    # --- waiting ----------------------------------------------------------------------
    def _wait(self, name: str, namespace: str, started: float) -> JobOutcome:
        from kubernetes import client

        # Plain JSON in and out (_preload_content=False), as executors.kube does.
        batch: Any = client.BatchV1Api(self.cluster.api_client)
        core: Any = client.CoreV1Api(self.cluster.api_client)
        opts: dict[str, Any] = {
            "_preload_content": False,
            "_request_timeout": self.cluster.policy.request_timeout,
        }
        unschedulable_since: float | None = None
        while True:
            job = response_json(
                self.cluster.call(
                    f"reading Job {namespace}/{name}",
                    lambda: batch.read_namespaced_job(name, namespace, **opts),
                )
            )
            listed = (
                response_json(
                    self.cluster.call(
                        f"listing the pods of Job {namespace}/{name}",
                        lambda: core.list_namespaced_pod(
                            namespace, label_selector=f"job-name={name}", **opts
                        ),
                    )
                ).get("items")
                or []
            )
            # The selector again, on our side: a pod of another Job never speaks for this one.
            pods = [p for p in listed if pod_labels(p).get("job-name") == name]
            chief = _chief(pods)
            if chief is not None:
                self._stream(core, chief, namespace, opts)
            status = job.get("status") or {}
            for condition in status.get("conditions") or []:
                if condition.get("status") != "True":
                    continue
                if condition.get("type") == "Complete":
                    return self._outcome(name, namespace, chief, status)
                if condition.get("type") == "Failed":
                    raise self._failure(core, name, namespace, pods, condition, opts)
            unschedulable_since = self._check_pods(
                core, name, namespace, pods, opts, unschedulable_since
            )
            time.sleep(self.poll_s)

    def _check_pods(
        self,
        core: Any,
        name: str,
        namespace: str,
        pods: list[Manifest],
        opts: dict[str, Any],
        unschedulable_since: float | None,
    ) -> float | None:
        """Raise for a pod that cannot run (stuck pulling, or unschedulable for too long);
        returns since when a pod has been unschedulable (None: none is)."""
        for pod in pods:
            stuck = _stuck(pod, self.container)
            if stuck is not None:
                raise self._pod_failure(core, name, namespace, pod, *stuck, opts)
        if not any(_unschedulable(p) for p in pods):
            return None
        unschedulable_since = unschedulable_since or time.monotonic()
        if time.monotonic() - unschedulable_since >= self.unschedulable_after_s:
            pod = next(p for p in pods if _unschedulable(p))
            raise self._pod_failure(
                core, name, namespace, pod, "Unschedulable", _unschedulable(pod), opts
            )
        return unschedulable_since

    def _stream(self, core: Any, pod: Manifest, namespace: str, opts: dict[str, Any]) -> None:
        """Pass on the chief's log lines not passed on yet (a retried pod, or a container
        restarted in its pod, starts afresh)."""
        name = pod["metadata"]["name"]
        if (pod.get("status") or {}).get("phase") in (None, "Pending"):
            return
        key = f"{name}#{restart_count(pod, self.container)}"
        lines = self._log(core, name, namespace, opts, tail=None)
        for line in lines[self._printed.get(key, 0) :]:
            self.on_line(line)
        self._printed[key] = len(lines)
        if lines:
            self._chief_tail = lines[-LOG_TAIL:]

    def _log(
        self,
        core: Any,
        pod: str,
        namespace: str,
        opts: dict[str, Any],
        tail: int | None,
        previous: bool = False,
    ) -> list[str]:
        extra: dict[str, Any] = {"tail_lines": tail} if tail else {}
        if previous:  # the container's last run before the kubelet restarted it
            extra["previous"] = True
        try:
            response = self.cluster.call(
                f"reading the log of pod {namespace}/{pod}",
                lambda: core.read_namespaced_pod_log(
                    pod, namespace, container=self.container, **extra, **opts
                ),
            )
        except KubeError:
            return []  # a log that cannot be read (yet) does not decide anything
        text = (response.data or b"").decode("utf-8", "replace")
        return text.splitlines()

    def _outcome(
        self, name: str, namespace: str, chief: Manifest | None, status: Manifest
    ) -> JobOutcome:
        outcome = JobOutcome(name, namespace, attempts=int(status.get("failed") or 0) + 1)
        if chief is not None:
            outcome.pod = chief["metadata"]["name"]
            outcome.node = (chief.get("spec") or {}).get("nodeName")
            for state in (chief.get("status") or {}).get("containerStatuses") or []:
                outcome.image_id = state.get("imageID") or outcome.image_id
        return outcome

    # --- failures ---------------------------------------------------------------------
    def _failure(
        self,
        core: Any,
        name: str,
        namespace: str,
        pods: list[Manifest],
        condition: Manifest,
        opts: dict[str, Any],
    ) -> JobFailed:
        reason = str(condition.get("reason") or "Failed")
        detail = str(condition.get("message") or "")
        failed = [p for p in pods if (p.get("status") or {}).get("phase") == "Failed"]
        pod = _chief(failed) or (failed[-1] if failed else _chief(pods))
        terminated = terminated_state(pod, self.container) if pod is not None else {}
        # The container's own reason (OOMKilled) says more than the Job's (BackoffLimit).
        if terminated.get("reason") == "OOMKilled":
            reason = "OOMKilled"
        exit_code = terminated.get("exitCode")
        if exit_code is not None:
            detail = (detail + f"; the last pod exited with code {exit_code}").lstrip("; ")
        if exit_code == INPUT_ERROR_EXIT and reason == "Failed":
            reason = "PodFailurePolicy"
        return self._error(core, name, namespace, pod, reason, detail, opts)

    def _pod_failure(
        self,
        core: Any,
        name: str,
        namespace: str,
        pod: Manifest,
        reason: str,
        detail: str,
        opts: dict[str, Any],
    ) -> JobFailed:
        return self._error(core, name, namespace, pod, reason, detail, opts)

    def _error(
        self,
        core: Any,
        name: str,
        namespace: str,
        pod: Manifest | None,
        reason: str,
        detail: str,
        opts: dict[str, Any],
        lines: list[str] | None = None,
    ) -> JobFailed:
        """The failure, with the fix and the pod's last log lines (``lines`` when the
        caller kept them: the pod may be gone by now)."""
        where = ""
        if pod is not None:
            pod_name = pod["metadata"]["name"]
            where = f" (pod {pod_name})"
            if lines is None:
                lines = self._log(core, pod_name, namespace, opts, tail=LOG_TAIL)
        lines = lines or []
        fix = FIXES.get(
            reason, f"see `kubectl describe {self.kind.lower()}` and the log lines below"
        )
        tail = "\n".join(f"    {line}" for line in lines[-LOG_TAIL:])
        message = (
            f"training {self.kind} {namespace}/{name} failed: {reason}{where}"
            + (f": {detail}" if detail else "")
            + f"; {fix}"
            + (f"\n  last log lines:\n{tail}" if tail else "")
        )
        return JobFailed(message, reason)

    # --- clean-up ---------------------------------------------------------------------
    def delete(self, objects: list[Manifest]) -> None:
        """Delete the Job (foreground: its pods first) and its ConfigMap and Service."""
        for obj in objects:
            if obj["kind"] != self.kind:
                continue
            name = str(obj["metadata"]["name"])
            namespace = obj["metadata"].get("namespace") or self.cluster.namespace

            def remove(name: str = name, namespace: str = namespace) -> None:
                _ignore_missing(lambda: self._delete_foreground(name, namespace))

            self.cluster.call(f"deleting {self.kind} {namespace}/{name}", remove)
        self._delete_support(objects)

    def _delete_foreground(self, name: str, namespace: str) -> None:
        from kubernetes import client

        batch: Any = client.BatchV1Api(self.cluster.api_client)
        batch.delete_namespaced_job(
            name, namespace, propagation_policy="Foreground", _preload_content=False
        )

    def _delete_support(self, objects: list[Manifest]) -> None:
        for obj in objects:
            if obj["kind"] != self.kind:
                self.cluster.delete(ref(obj, self.cluster.namespace))


# --- reading pods ----------------------------------------------------------------------------


def response_json(response: Any) -> Manifest:
    data = json.loads(response.data or b"{}")
    return data if isinstance(data, dict) else {}


def _ignore_missing(fn: Callable[[], Any]) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        fn()
    except ApiException as exc:
        if exc.status != 404:
            raise


def pod_labels(pod: Manifest) -> dict[str, Any]:
    return dict((pod.get("metadata") or {}).get("labels") or {})


def _index(pod: Manifest) -> str | None:
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(INDEX_ANNOTATION)
    return None if value is None else str(value)


def _chief(pods: list[Manifest]) -> Manifest | None:
    """The newest pod of task 0 (a plain Job's pods have no index: each is the chief)."""
    chiefs = [p for p in pods if _index(p) in (None, "0")]
    if not chiefs:
        return None
    return max(chiefs, key=lambda p: str(p["metadata"].get("creationTimestamp") or ""))


def _container_status(pod: Manifest, container: str = CONTAINER) -> Manifest:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == container:
            return dict(status)
    return {}


def _container_state(pod: Manifest, container: str = CONTAINER) -> Manifest:
    return _container_status(pod, container).get("state") or {}


def restart_count(pod: Manifest, container: str = CONTAINER) -> int:
    """How often the kubelet restarted the container in this pod (restartPolicy OnFailure)."""
    return int(_container_status(pod, container).get("restartCount") or 0)


def terminated_state(pod: Manifest, container: str = CONTAINER) -> Manifest:
    state = _container_state(pod, container).get("terminated")
    return state if isinstance(state, dict) else {}


def last_terminated(pod: Manifest, container: str = CONTAINER) -> Manifest:
    """The end of the container's previous run, before the kubelet restarted it."""
    state = (_container_status(pod, container).get("lastState") or {}).get("terminated")
    return state if isinstance(state, dict) else {}


def _stuck(pod: Manifest, container: str = CONTAINER) -> tuple[str, str] | None:
    waiting = _container_state(pod, container).get("waiting") or {}
    reason = waiting.get("reason")
    if reason in STUCK_WAITING:
        message = waiting.get("message") or STUCK_WAITING[reason]
        return str(reason), str(message)
    return None


def _unschedulable(pod: Manifest) -> str:
    """The scheduler's message when the pod cannot be placed, else ''."""
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if (
            condition.get("type") == "PodScheduled"
            and condition.get("status") == "False"
            and condition.get("reason") == "Unschedulable"
        ):
            return str(condition.get("message") or "no node fits the pod")
    return ""
