"""A cluster that runs training Jobs for tests: kmock's emulator plus a Job controller.

No real API server or kubelet can run here. tests/deploy's :class:`FakeCluster` gives the
real ``kubernetes`` client a real HTTP API (kmock's stateful emulator); this module adds
Jobs and Pods to it, a ``pods/log`` endpoint, and :class:`JobController`, a thread that
plays, openly and in this order:

- the **Job controller**: for each Job, one pod per completion index (``job-name`` label,
  ``batch.kubernetes.io/job-completion-index`` annotation, Indexed Jobs' host names), a
  new pod for a failed index until ``backoffLimit`` is used up, ``podFailurePolicy``'s
  FailJob on an exit code, ``activeDeadlineSeconds`` (pods killed, DeadlineExceeded), the
  Complete / Failed conditions in ``.status``; and the garbage collector: a deleted Job's
  pods are killed and deleted;
- the **scheduler**: a pod asking for more GPUs than the one node has stays Pending with
  PodScheduled=False/Unschedulable and the scheduler's message;
- the **kubelet**: an image whose reference contains ``unpullable`` is ImagePullBackOff;
  otherwise the container's command runs as a local process with the pod's environment —
  values, ``$(VAR)`` expansion from earlier variables, ConfigMap and Secret references
  read through the API, downward-API fields — its working directory mapped to the
  "image" (a directory standing for the train image's /opt/mlops/app), its emptyDir
  mounts to temp directories, and its output kept as the pod's log;
- **cluster DNS**: ``<job>-<i>.<job>:<port>`` in TF_CONFIG becomes a loopback port.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.deploy.conftest import RESOURCES, Apiserver, FakeCluster, kmock

JOB_RESOURCES = {
    **RESOURCES,
    "batch/v1/jobs": ("Job", {"status"}),
    "v1/pods": ("Pod", {"status", "log"}),
}
NODE = "gpu-node-a"
NODE_GPUS = 1
CONTROLLER_AGENT = "fake-deployment-controller"  # tests/deploy's writes() leaves these out
INDEX = "batch.kubernetes.io/job-completion-index"


class LogApiserver(Apiserver):
    """The emulator plus ``GET pods/<name>/log``, served from the kubelet's output files."""

    logs: dict[tuple[str, str], Path]
    previous_logs: dict[tuple[str, str], Path]  # the container's run before its restart

    async def _handle(self, request: Any) -> Any:
        resource = request.resource
        if resource is not None and resource.plural == "pods" and request.subresource == "log":
            previous = str(request.params.get("previous", "")).lower() == "true"
            path = (self.previous_logs if previous else self.logs).get(
                (request.namespace, request.name)
            )
            text = path.read_text(errors="replace") if path and path.exists() else ""
            tail = request.params.get("tailLines") if hasattr(request, "params") else None
            if tail:
                text = "\n".join(text.splitlines()[-int(tail) :]) + "\n"
            return await kmock.Response(status=200, payload=text.encode())(request)
        return await super()._handle(request)


class JobCluster(FakeCluster):
    """FakeCluster with Jobs, Pods and pod logs registered, and a JobController."""

    resources: dict[str, tuple[str, set[str]]] = JOB_RESOURCES
    cluster_scoped: frozenset[str] = frozenset()

    def __init__(self, tmp: Path, image_root: Path) -> None:
        super().__init__(tmp)
        self.image_root = image_root
        self.logs: dict[tuple[str, str], Path] = {}
        self.previous_logs: dict[tuple[str, str], Path] = {}
        self.jobs: JobController | None = None
        self._jobs_thread: threading.Thread | None = None

    async def _main(self) -> None:
        self._stopping = __import__("asyncio").Event()
        emulator = LogApiserver()
        emulator.logs = self.logs
        emulator.previous_logs = self.previous_logs
        async with emulator, kmock.Server(emulator, host="127.0.0.1") as server:
            for name, (kind, subresources) in self.resources.items():
                emulator.resources[name] = kmock.ResourceInfo(
                    kind=kind,
                    namespaced=name not in self.cluster_scoped,
                    subresources=subresources,
                    verbs={"get", "list", "watch", "create", "patch", "delete"},
                )
            self.emulator = emulator
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stopping.wait()

    def start(self) -> None:
        super().start()
        self.jobs = self._controller()
        self._jobs_thread = threading.Thread(target=self.jobs.run, name="jobs", daemon=True)
        self._jobs_thread.start()

    def _controller(self) -> JobController:
        return JobController(self.kubeconfig, self.image_root, self.logs, self.previous_logs)

    def stop(self) -> None:
        if self.jobs is not None:
            self.jobs.stop()
        if self._jobs_thread is not None:
            self._jobs_thread.join(30)
        super().stop()


@dataclass
class PodRun:
    name: str
    index: int
    proc: subprocess.Popen[bytes] | None
    scratch: Path
    started: float = 0.0  # time.monotonic() when the process started / was seen ending
    ended: float | None = None
    oom: bool = False
    container: str = "train"
    restarts: int = 0  # the kubelet's restarts of the container in this pod
    last_terminated: dict[str, Any] | None = None  # how its previous run ended


@dataclass
class JobState:
    started: float
    failed: int = 0
    succeeded: set[int] = field(default_factory=set)
    running: dict[int, PodRun] = field(default_factory=dict)
    ports: list[int] = field(default_factory=list)
    finished: bool = False


@dataclass
class JobController:
    kubeconfig: Path
    image_root: Path
    logs: dict[tuple[str, str], Path]
    previous_logs: dict[tuple[str, str], Path]
    poll: float = 0.1
    node_gpus: int = NODE_GPUS
    states: dict[tuple[str, str], JobState] = field(default_factory=dict)
    pods_started: list[str] = field(default_factory=list)
    finished: list[PodRun] = field(default_factory=list)  # pods whose process ended
    _stop: threading.Event = field(default_factory=threading.Event)

    # --- loop ---------------------------------------------------------------------------
    def run(self) -> None:
        from kubernetes import client, config

        api_client = config.new_client_from_config(config_file=str(self.kubeconfig))
        api_client.user_agent = CONTROLLER_AGENT
        self.batch = client.BatchV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                self._tick()
            time.sleep(self.poll)
        for key in list(self.states):
            self._kill_all(key, delete_pods=False)

    def stop(self) -> None:
        self._stop.set()

    def _json(self, response: Any) -> Any:
        return json.loads(response.data or b"{}")

    def _tick(self) -> None:
        jobs = self._json(self.batch.list_job_for_all_namespaces(_preload_content=False))
        live = set()
        for job in jobs.get("items") or []:
            key = (job["metadata"]["namespace"], job["metadata"]["name"])
            live.add(key)
            self._reconcile(key, job)
        for key in list(self.states):
            if key not in live:  # the Job was deleted: the garbage collector takes its pods
                self._kill_all(key, delete_pods=True)
                del self.states[key]

    # --- the Job controller -----------------------------------------------------------
    def _reconcile(self, key: tuple[str, str], job: dict[str, Any]) -> None:
        state = self.states.setdefault(key, JobState(started=time.monotonic()))
        if state.finished:
            return
        spec = job["spec"]
        completions = int(spec.get("completions") or 1)
        if not state.ports:
            state.ports = [_free_port() for _ in range(completions)]
        deadline = spec.get("activeDeadlineSeconds")
        if deadline is not None and time.monotonic() - state.started > float(deadline):
            self._kill_all(key, delete_pods=False)
            self._finish(
                key, "Failed", "DeadlineExceeded", "Job was active longer than specified deadline"
            )
            return
        for index, pod in list(state.running.items()):
            if pod.proc is None or pod.proc.poll() is None:
                continue
            code = 137 if pod.oom else pod.proc.returncode
            pod.ended = time.monotonic()
            self.finished.append(pod)
            self._terminated(key[0], pod, code)
            del state.running[index]
            if code == 0:
                state.succeeded.add(index)
                continue
            if _fail_job(spec, code):
                self._kill_all(key, delete_pods=False)
                self._finish(
                    key,
                    "Failed",
                    "PodFailurePolicy",
                    f"Container train for pod {key[0]}/{pod.name} failed with exit code "
                    f"{code} matching FailJob rule at index 0",
                )
                return
            state.failed += 1
            if state.failed > int(spec.get("backoffLimit", 6)):
                self._kill_all(key, delete_pods=False)
                self._finish(
                    key,
                    "Failed",
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit",
                )
                return
        if len(state.succeeded) == completions:
            self._finish(key, "Complete", None, None)
            return
        for index in range(completions):
            if index not in state.succeeded and index not in state.running:
                state.running[index] = self._start_pod(key, job, index, state)

    def _finish(
        self, key: tuple[str, str], kind: str, reason: str | None, message: str | None
    ) -> None:
        state = self.states[key]
        state.finished = True
        condition: dict[str, Any] = {"type": kind, "status": "True"}
        if reason:
            condition |= {"reason": reason, "message": message}
        status = {
            "conditions": [condition],
            "failed": state.failed,
            "succeeded": len(state.succeeded),
        }
        self.batch.patch_namespaced_job_status(
            key[1], key[0], {"status": status},
            _content_type="application/merge-patch+json", _preload_content=False,
        )  # fmt: skip

    # --- scheduler and kubelet ----------------------------------------------------------
    def _start_pod(
        self, key: tuple[str, str], job: dict[str, Any], index: int, state: JobState
    ) -> PodRun:
        namespace, job_name = key
        template = copy.deepcopy(job["spec"]["template"])
        name = f"{job_name}-{index}-{uuid.uuid4().hex[:5]}"
        meta = template.setdefault("metadata", {})
        meta["name"], meta["namespace"] = name, namespace
        meta.setdefault("labels", {})["job-name"] = job_name
        if job["spec"].get("completionMode") == "Indexed":
            meta.setdefault("annotations", {})[INDEX] = str(index)
        meta["creationTimestamp"] = f"{time.time():.6f}"
        pod = {"apiVersion": "v1", "kind": "Pod", **template}
        return self._launch(namespace, pod, index, state.ports)

    def _launch(self, namespace: str, pod: dict[str, Any], index: int, ports: list[int]) -> PodRun:
        """The API server, scheduler and kubelet for one new pod."""
        name = pod["metadata"]["name"]
        container = pod["spec"]["containers"][0]
        gpus = sum(
            int(v) for k, v in (container.get("resources") or {}).get("limits", {}).items()
            if k.startswith("nvidia.com/")
        )  # fmt: skip
        schedulable = gpus <= self.node_gpus
        if schedulable:
            pod["spec"]["nodeName"] = NODE
        self.core.create_namespaced_pod(namespace, pod, _preload_content=False)
        self.pods_started.append(name)
        scratch = Path(tempfile.mkdtemp(prefix=f"pod-{name}-"))
        run = PodRun(name, index, None, scratch, container=container["name"])
        if not schedulable:
            self._status(namespace, name, {"phase": "Pending", "conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": f"0/1 nodes are available: 1 Insufficient nvidia.com/gpu "
                           f"(the pod asks for {gpus}, the node has {self.node_gpus}).",
            }]})  # fmt: skip
            return run
        if "unpullable" in container["image"]:
            self._status(namespace, name, {"phase": "Pending", "containerStatuses": [{
                "name": container["name"], "ready": False, "restartCount": 0,
                "image": container["image"], "imageID": "",
                "state": {"waiting": {"reason": "ImagePullBackOff",
                                      "message": f'Back-off pulling image "{container["image"]}"'}},
            }]})  # fmt: skip
            return run
        self._run_container(namespace, pod, run, ports)
        return run

    def _run_container(
        self, namespace: str, pod: dict[str, Any], run: PodRun, ports: list[int]
    ) -> None:
        """The kubelet (re)starting the pod's container: a local process, its log kept."""
        name, scratch = run.name, run.scratch
        container = pod["spec"]["containers"][0]
        if "oomkill" in container["image"]:
            # The kernel's OOM killer, as the kubelet reports it: exit 137, reason OOMKilled.
            run.proc = subprocess.Popen(
                [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"]
            )
            run.oom = True
        else:
            env = self._environment(pod, namespace, scratch, ports)
            log = scratch / f"pod-{run.restarts}.log"
            if (namespace, name) in self.logs:
                self.previous_logs[(namespace, name)] = self.logs[(namespace, name)]
            self.logs[(namespace, name)] = log
            command = list(container["command"])
            if command[0] == "python":
                command[0] = sys.executable
            run.started = time.monotonic()
            with open(log, "wb") as out:
                run.proc = subprocess.Popen(
                    command, cwd=self.image_root, env=env, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )  # fmt: skip
        self._status(namespace, name, {"phase": "Running", "containerStatuses": [{
            "name": container["name"], "ready": True, "restartCount": run.restarts,
            "image": container["image"], "imageID": f"docker-pullable://{container['image']}",
            "state": {"running": {"startedAt": "2026-12-01T00:00:00Z"}},
            **self._last_state(run),
        }]})  # fmt: skip

    @staticmethod
    def _last_state(run: PodRun) -> dict[str, Any]:
        """``lastState`` of a restarted container (a Job's pods are never restarted)."""
        return {"lastState": {"terminated": run.last_terminated}} if run.last_terminated else {}

    def _environment(
        self, pod: dict[str, Any], namespace: str, scratch: Path, ports: list[int]
    ) -> dict[str, str]:
        """The container's environment as the kubelet builds it (plus the image's PATH)."""
        container = pod["spec"]["containers"][0]
        repo = Path(__file__).resolve().parents[2]
        env: dict[str, str] = {
            # The image's own ENV (templates/_runtime.Dockerfile.j2): the package on the path.
            "PATH": os.environ["PATH"], "PYTHONPATH": str(repo), "PYTHONUNBUFFERED": "1",
            "TF_CPP_MIN_LOG_LEVEL": "2", "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost", "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": str(scratch / "none"),
            "AWS_SHARED_CREDENTIALS_FILE": str(scratch / "none"),
        }  # fmt: skip
        mounts = {m["mountPath"]: scratch / m["name"] for m in container.get("volumeMounts") or []}
        for path in mounts.values():
            path.mkdir(parents=True, exist_ok=True)
        for item in container.get("env") or []:
            if "value" in item:
                value = re.sub(
                    r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                    lambda m: env.get(m.group(1), m.group(0)),
                    item["value"],
                )
            else:
                value = self._value_from(pod, namespace, item["valueFrom"])
            env[item["name"]] = str(mounts.get(value, value))
        if "TF_CONFIG" in env:  # cluster DNS: pod host names to loopback ports
            spec = json.loads(env["TF_CONFIG"])
            spec["cluster"]["worker"] = [
                f"127.0.0.1:{ports[i]}" if host.startswith(self._host(pod, i)) else host
                for i, host in enumerate(spec["cluster"]["worker"])
            ]
            env["TF_CONFIG"] = json.dumps(spec)
        return env

    def _host(self, pod: dict[str, Any], index: int) -> str:
        """The DNS name (and ':') of worker ``index`` as TF_CONFIG names it: an Indexed
        Job's pod ``<job>-<i>`` under its headless Service, the pods' subdomain."""
        subdomain = pod["spec"].get("subdomain")
        return f"{pod['metadata']['labels']['job-name']}-{index}.{subdomain}:"

    def _value_from(self, pod: dict[str, Any], namespace: str, source: dict[str, Any]) -> str:
        if "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            cm = self._json(
                self.core.read_namespaced_config_map(ref["name"], namespace, _preload_content=False)
            )
            return str(cm["data"][ref["key"]])
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            secret = self._json(
                self.core.read_namespaced_secret(ref["name"], namespace, _preload_content=False)
            )
            return base64.b64decode(secret["data"][ref["key"]]).decode()
        path = source["fieldRef"]["fieldPath"]
        if path == "spec.nodeName":
            return str(pod["spec"].get("nodeName", ""))
        if path.startswith("metadata.annotations['"):
            return str(
                pod["metadata"].get("annotations", {})[path[len("metadata.annotations['") : -2]]
            )
        return str(pod["metadata"][path.split(".", 1)[1]])

    def _terminated(self, namespace: str, pod: PodRun, code: int) -> None:
        self._status(namespace, pod.name, {
            "phase": "Succeeded" if code == 0 else "Failed",
            "containerStatuses": [{
                "name": pod.container, "ready": False, "restartCount": pod.restarts,
                "state": {"terminated": {"exitCode": code, "reason": _reason(pod, code)}},
                "imageID": "docker-pullable://train", **self._last_state(pod),
            }],
        })  # fmt: skip

    def _status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.core.patch_namespaced_pod_status(
            name, namespace, {"status": status},
            _content_type="application/merge-patch+json", _preload_content=False,
        )  # fmt: skip

    def _kill_all(self, key: tuple[str, str], *, delete_pods: bool) -> None:
        state = self.states.get(key)
        if state is None:
            return
        for pod in list(state.running.values()):
            self._kill(key[0], pod, delete_pod=delete_pods)
        state.running.clear()

    def _kill(self, namespace: str, pod: PodRun, *, delete_pod: bool) -> None:
        if pod.proc is not None and pod.proc.poll() is None:
            # What the kubelet does on deletion: SIGTERM, then SIGKILL after the grace.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pod.proc.pid, signal.SIGTERM)
            try:
                pod.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(pod.proc.pid, signal.SIGKILL)
                pod.proc.wait()
        if delete_pod:
            with contextlib.suppress(Exception):
                self.core.delete_namespaced_pod(pod.name, namespace, _preload_content=False)

    def alive(self) -> list[str]:
        """Pods whose process still runs."""
        return [
            pod.name
            for state in self.states.values()
            for pod in state.running.values()
            if pod.proc is not None and pod.proc.poll() is None
        ]


def _reason(pod: PodRun, code: int) -> str:
    return "OOMKilled" if pod.oom else "Completed" if code == 0 else "Error"


def _fail_job(spec: dict[str, Any], code: int) -> bool:
    for rule in (spec.get("podFailurePolicy") or {}).get("rules") or []:
        codes = rule.get("onExitCodes") or {}
        if (
            rule.get("action") == "FailJob"
            and codes.get("operator") == "In"
            and code in codes.get("values", [])
        ):
            return True
    return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
