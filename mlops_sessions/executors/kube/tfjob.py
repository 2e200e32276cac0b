"""Run one training ``TFJob`` (``train.operator: tfjob``) through the Kubeflow Training
Operator, for ``mlops train``.

:class:`TFJobRunner` is :class:`executors.kube.job.JobRunner` for the other kind: the same
creation, log streaming, pod diagnosis (ImagePullBackOff, Unschedulable, OOMKilled, with the
fix and the last log lines), clean-up and cancellation (Ctrl-C or SIGTERM deletes the TFJob
with foreground propagation, its pods first). What differs:

* Before anything is created, the operator must be installed: the ``tfjobs.kubeflow.org``
  CRD is read (through API discovery of ``kubeflow.org/v1`` when the login may not read
  CRDs). Without it, one error says so and names both ways out.
* The TFJob goes through the custom-objects API; its pods are found by the operator's
  labels (``training.kubeflow.org/job-name``, ``replica-type: worker``, ``replica-index``)
  and the chief is worker 0, whose log is streamed.
* The end is read from ``.status.conditions`` as the operator sets them (Created, Running,
  Restarting, then Succeeded or Failed); ``.status.replicaStatuses`` counts the workers.
  The operator deletes the pods of a job that failed, so every container termination is
  noted when it is seen (exit code, reason, last log lines of that run), and a failure
  names the last one: OOMKilled, BackoffLimitExceeded (``train.retries`` restarts used up),
  DeadlineExceeded (``train.timeout``).
* The replicas restart ``OnFailure`` (see :mod:`planning.train_tfjob`), so the
  ``podFailurePolicy`` of the Job path has no equivalent in the TFJob: a container that
  exits with code 2 (the spec or an input is wrong, ``drivers.train_pod``) fails the run
  here at once, and the TFJob is deleted, rather than being restarted until the backoff
  limit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from mlops_sessions.errors import StepError
from mlops_sessions.executors.kube.job import (
    LOG_TAIL,
    JobFailed,
    JobOutcome,
    JobRunner,
    last_terminated,
    pod_labels,
    response_json,
    restart_count,
    terminated_state,
)
from mlops_sessions.planning import train_tfjob
from mlops_sessions.planning.deploy_plan import Manifest
from mlops_sessions.planning.train_job import INPUT_ERROR_EXIT

WORKER = train_tfjob.REPLICA.lower()


@dataclass(frozen=True)
class Termination:
    """One end of a worker's container, as seen while it was still there."""

    pod: Manifest
    exit_code: int
    reason: str
    lines: list[str]


@dataclass
class TFJobRunner(JobRunner):
    """Create one training TFJob and its ConfigMap, follow it to its end, clean up."""

    kind = train_tfjob.KIND
    container = train_tfjob.CONTAINER
    _seen: set[tuple[str, str]] = field(default_factory=set)  # (pod, termination)
    _last: Termination | None = None

    def run(self, objects: list[Manifest], job_name: str) -> JobOutcome:
        self.require_operator()
        return super().run(objects, job_name)

    def require_operator(self) -> None:
        """StepError unless the cluster serves TFJobs (the training operator's CRD)."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        extensions: Any = client.ApiextensionsV1Api(self.cluster.api_client)
        custom: Any = client.CustomObjectsApi(self.cluster.api_client)
        opts = {"_preload_content": False, "_request_timeout": self.cluster.policy.request_timeout}

        def crd() -> bool | None:
            try:
                extensions.read_custom_resource_definition(train_tfjob.CRD, **opts)
            except ApiException as exc:
                if exc.status == 404:
                    return False
                if exc.status == 403:
                    return None  # this login may not read CRDs: ask API discovery instead
                raise
            return True

        def discovery() -> bool:
            try:
                listed = response_json(
                    custom.get_api_resources(train_tfjob.GROUP, train_tfjob.VERSION, **opts)
                )
            except ApiException as exc:
                if exc.status == 404:
                    return False
                raise
            return any(r.get("name") == train_tfjob.PLURAL for r in listed.get("resources") or [])

        found = self.cluster.call(f"looking up the {train_tfjob.CRD} CRD", crd)
        if found is None:
            found = self.cluster.call(
                f"discovering {train_tfjob.API_VERSION}'s resources", discovery
            )
        if not found:
            raise StepError(
                f"the Kubeflow Training Operator is not installed in cluster "
                f"{self.cluster.context} ({self.cluster.server}) (no {train_tfjob.CRD} CRD): "
                "install it, or set train.operator: job"
            )

    # --- waiting ----------------------------------------------------------------------
    def _wait(self, name: str, namespace: str, started: float) -> JobOutcome:
        from kubernetes import client

        custom: Any = client.CustomObjectsApi(self.cluster.api_client)
        core: Any = client.CoreV1Api(self.cluster.api_client)
        opts: dict[str, Any] = {
            "_preload_content": False,
            "_request_timeout": self.cluster.policy.request_timeout,
        }
        selector = f"{train_tfjob.JOB_NAME_LABEL}={name},{train_tfjob.REPLICA_TYPE_LABEL}={WORKER}"
        unschedulable_since: float | None = None
        while True:
            job = response_json(
                self.cluster.call(
                    f"reading TFJob {namespace}/{name}",
                    lambda: custom.get_namespaced_custom_object(
                        train_tfjob.GROUP,
                        train_tfjob.VERSION,
                        namespace,
                        train_tfjob.PLURAL,
                        name,
                        **opts,
                    ),
                )
            )
            listed = (
                response_json(
                    self.cluster.call(
                        f"listing the pods of TFJob {namespace}/{name}",
                        lambda: core.list_namespaced_pod(
                            namespace, label_selector=selector, **opts
                        ),
                    )
                ).get("items")
                or []
            )
            pods = [p for p in listed if pod_labels(p).get(train_tfjob.JOB_NAME_LABEL) == name]
            chief = worker_zero(pods)
            if chief is not None:
                self._stream(core, chief, namespace, opts)
            self._note_terminations(core, name, namespace, pods, job, opts)
            status = job.get("status") or {}
            current = {
                c.get("type"): c
                for c in status.get("conditions") or []
                if c.get("status") == "True"
            }
            if "Succeeded" in current:
                return self._tfjob_outcome(name, namespace, chief, pods)
            if "Failed" in current:
                raise self._tfjob_failure(core, name, namespace, chief, current["Failed"], opts)
            if not pods and not status.get("conditions"):
                self._require_pickup(name, namespace, started)
            unschedulable_since = self._check_pods(
                core, name, namespace, pods, opts, unschedulable_since
            )
            time.sleep(self.poll_s)

    def _require_pickup(self, name: str, namespace: str, started: float) -> None:
        """A TFJob the operator has neither answered (no condition) nor given pods fails
        after train.pending_timeout: its CRD is there but its controller is not running,
        or does not watch this namespace; nothing else would end the wait (the deadline
        is the operator's to enforce)."""
        waited = time.monotonic() - started
        if waited >= self.unschedulable_after_s:
            raise JobFailed(
                f"the Kubeflow Training Operator did not pick up TFJob {namespace}/{name} in "
                f"{waited:.0f}s (no pods, no status): check that its controller is running "
                f"and watches namespace {namespace} (`kubectl get pods -A -l "
                "control-plane=kubeflow-training-operator`), or set train.operator: job",
                "NotPickedUp",
            )

    def _note_terminations(
        self,
        core: Any,
        name: str,
        namespace: str,
        pods: list[Manifest],
        job: Manifest,
        opts: dict[str, Any],
    ) -> None:
        """Keep each failed container run (the pod may be gone when the TFJob fails); a
        run that exited with code 2 fails the TFJob at once."""
        limit = ((job.get("spec") or {}).get("runPolicy") or {}).get("backoffLimit")
        for pod in pods:
            pod_name = str(pod["metadata"]["name"])
            restarts = restart_count(pod, self.container)
            # The run that just ended, or (restarted, or waiting in CrashLoopBackOff) the
            # one before the current state: its log is then the "previous" one.
            ended = [
                (terminated_state(pod, self.container), False),
                (last_terminated(pod, self.container), True),
            ]
            for state, previous in ended:
                code = state.get("exitCode")
                seen = (pod_name, _termination_id(state, restarts, previous))
                if code in (None, 0) or seen in self._seen:
                    continue
                self._seen.add(seen)
                attempt = sum(1 for other, _ in self._seen if other == pod_name)
                lines = self._log(core, pod_name, namespace, opts, LOG_TAIL, previous=previous)
                reason = str(state.get("reason") or "Error")
                self._last = Termination(pod, int(code), reason, lines)
                if code == INPUT_ERROR_EXIT:
                    raise self._error(
                        core,
                        name,
                        namespace,
                        pod,
                        "InputError",
                        f"the {self.container} container exited with code {code}",
                        opts,
                        lines=lines,
                    )
                # backoffLimit is train.retries + 1: the runs that may fail (train_tfjob).
                of = f" of at most {limit}" if limit else ""
                self.on_line(
                    f"{pod_name} exited with code {code} ({reason}): failure {attempt}{of}"
                )

    def _tfjob_outcome(
        self, name: str, namespace: str, chief: Manifest | None, pods: list[Manifest]
    ) -> JobOutcome:
        outcome = self._outcome(name, namespace, chief, {})
        outcome.attempts = 1 + max((restart_count(p, self.container) for p in pods), default=0)
        return outcome

    def _tfjob_failure(
        self,
        core: Any,
        name: str,
        namespace: str,
        chief: Manifest | None,
        condition: Manifest,
        opts: dict[str, Any],
    ) -> JobFailed:
        detail = str(condition.get("message") or "")
        reason = "Failed"
        if "backoff limit" in detail:
            reason = "BackoffLimitExceeded"
        elif "deadline" in detail:
            reason = "DeadlineExceeded"
        if self._last is None:
            # Nothing failed before: the deadline, say. The operator has deleted the pods,
            # so the chief's last lines are the ones streamed.
            return self._error(
                core, name, namespace, chief, reason, detail, opts, lines=self._chief_tail
            )
        last = self._last
        if last.reason == "OOMKilled":
            reason = "OOMKilled"
        detail = (detail + f"; the last pod exited with code {last.exit_code}").lstrip("; ")
        return self._error(core, name, namespace, last.pod, reason, detail, opts, lines=last.lines)

    # --- clean-up ---------------------------------------------------------------------
    def _delete_foreground(self, name: str, namespace: str) -> None:
        from kubernetes import client

        custom: Any = client.CustomObjectsApi(self.cluster.api_client)
        custom.delete_namespaced_custom_object(
            train_tfjob.GROUP,
            train_tfjob.VERSION,
            namespace,
            train_tfjob.PLURAL,
            name,
            propagation_policy="Foreground",
            _preload_content=False,
        )


def _termination_id(state: Manifest, restarts: int, previous: bool) -> str:
    """What tells one end of a container from another: the kubelet's container ID and
    end time, else the restart count."""
    found = state.get("containerID") or state.get("finishedAt")
    return str(found) if found else f"{restarts}{'-' if previous else ''}"


def worker_zero(pods: list[Manifest]) -> Manifest | None:
    """The chief: worker 0 (a TFJob without a Chief replica), the newest such pod."""
    chiefs = [p for p in pods if str(pod_labels(p).get(train_tfjob.REPLICA_INDEX_LABEL)) == "0"]
    if not chiefs:
        return None
    return max(chiefs, key=lambda p: str(p["metadata"].get("creationTimestamp") or ""))
