"""A Kubernetes API for deploy tests: kmock's KubernetesEmulator over real HTTP on loopback.

No real API server can run here, so the ``cluster`` fixture starts kmock's stateful
emulator in a background thread (its own asyncio loop) on 127.0.0.1, registers the
resources a deploy touches (core, apps, autoscaling, policy, networking, and Istio's
VirtualService / DestinationRule) and writes a kubeconfig that points the real
``kubernetes`` client at it (``KUBECONFIG`` is set for the test).

Two things a real cluster does and the emulator does not are added here, openly:

- the API server bumps ``metadata.generation`` when a Deployment's spec changes
  (:class:`Apiserver`);
- the Deployment controller reports rollouts in ``.status`` (:class:`Controller`, a thread
  that watches Deployments and patches their status subresource over HTTP, as a
  controller would). An image whose
  reference contains a string in ``controller.crashing`` never becomes available and the
  rollout fails with ProgressDeadlineExceeded; one in ``controller.hanging`` never becomes
  available and never reports a deadline (the deploy's own timeout must catch it).

``cluster.inject(method, plural, faults)`` makes the next requests fail: an int is an HTTP
status answered with a Kubernetes Status body, a float is a delay in seconds before the
normal answer (the client's timeout turns it into a timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import require_real

try:
    import kmock
except ImportError:  # kmock needs Python >= 3.11; the render tests here do not need it
    kmock = None

RESOURCES = {
    "v1/serviceaccounts": ("ServiceAccount", set()),
    "v1/configmaps": ("ConfigMap", set()),
    "v1/secrets": ("Secret", set()),
    "v1/services": ("Service", set()),
    "apps/v1/deployments": ("Deployment", {"status"}),
    "autoscaling/v2/horizontalpodautoscalers": ("HorizontalPodAutoscaler", {"status"}),
    "policy/v1/poddisruptionbudgets": ("PodDisruptionBudget", {"status"}),
    "networking.k8s.io/v1/networkpolicies": ("NetworkPolicy", set()),
    "networking.istio.io/v1/virtualservices": ("VirtualService", set()),
    "networking.istio.io/v1/destinationrules": ("DestinationRule", set()),
    "coordination.k8s.io/v1/leases": ("Lease", set()),  # the deploy lock
}
WRITE_METHODS = {"POST", "PATCH", "PUT", "DELETE"}
CONTROLLER_AGENT = "fake-deployment-controller"


def _merge(base: Any, patch: Any) -> Any:
    """RFC 7386, to predict the object a merge patch produces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(base) if isinstance(base, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge(out.get(key), value)
    return out


class Apiserver(kmock.KubernetesEmulator if kmock else object):  # type: ignore[misc]
    """The emulator plus the API server's generation counter for Deployments."""

    async def _handle(self, request: Any) -> Any:
        resource = request.resource
        if (
            resource is not None
            and resource.plural == "deployments"
            and request.subresource is None
            and isinstance(request.data, dict)
        ):
            meta = request.data.setdefault("metadata", {})
            if request.action == kmock.action.CREATE:
                meta["generation"] = 1
            elif request.action == kmock.action.UPDATE:
                key = (resource, request.namespace, request.name)
                if key in self.objects and not self.objects[key].deleted:
                    current = self.objects[key].raw
                    if _merge(current, request.data).get("spec") != current.get("spec"):
                        old = int((current.get("metadata") or {}).get("generation") or 1)
                        meta["generation"] = old + 1
        return await super()._handle(request)


@dataclass
class Controller:
    """Plays the Deployment controller: reports rollouts by patching .status over HTTP."""

    kubeconfig: Path
    delay: float = 0.05
    crashing: set[str] = field(default_factory=set)
    hanging: set[str] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        """Watch Deployments (one long request, as a controller does) and reconcile each."""
        from kubernetes import client, config, watch

        api_client = config.new_client_from_config(config_file=str(self.kubeconfig))
        api_client.user_agent = CONTROLLER_AGENT  # so tests can tell its calls apart
        api = client.AppsV1Api(api_client)
        while not self._stop.is_set():
            stream = watch.Watch().stream(
                api.list_deployment_for_all_namespaces, _request_timeout=0.5
            )
            try:
                for event in stream:
                    if self._stop.is_set():
                        break
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._reconcile(api, event["raw_object"])
            except Exception:  # a read timeout ends the watch; look at the stop flag, rewatch
                continue

    def _reconcile(self, api: Any, dep: dict[str, Any]) -> None:
        meta, spec = dep["metadata"], dep.get("spec") or {}
        status = dep.get("status") or {}
        generation = int(meta.get("generation") or 1)
        if int(status.get("observedGeneration") or 0) >= generation:
            return
        time.sleep(self.delay)  # pods take a moment to start
        wanted = int(spec.get("replicas", 1))
        image = spec["template"]["spec"]["containers"][0]["image"]
        old = int(status.get("availableReplicas") or 0)
        if any(s in image for s in self.crashing | self.hanging):
            new_status: dict[str, Any] = {
                "observedGeneration": generation,
                "replicas": old + 1,
                "updatedReplicas": 1,
                "readyReplicas": old,
                "availableReplicas": old,
                "unavailableReplicas": 1,
                "conditions": [{"type": "Available", "status": "True" if old else "False"}],
            }
            if any(s in image for s in self.crashing):
                new_status["conditions"].append(
                    {
                        "type": "Progressing",
                        "status": "False",
                        "reason": "ProgressDeadlineExceeded",
                        "message": f'ReplicaSet "{meta["name"]}-x" has timed out progressing.',
                    }
                )
        else:
            new_status = {
                "observedGeneration": generation,
                "replicas": wanted,
                "updatedReplicas": wanted,
                "readyReplicas": wanted,
                "availableReplicas": wanted,
                "unavailableReplicas": None,
                "conditions": [
                    {"type": "Available", "status": "True"},
                    {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
                ],
            }
        with contextlib.suppress(Exception):
            api.patch_namespaced_deployment_status(
                meta["name"],
                meta.get("namespace"),
                {"status": new_status},
                _content_type="application/merge-patch+json",
                _preload_content=False,
            )

    def stop(self) -> None:
        self._stop.set()


class FakeCluster:
    """The running emulator, its kubeconfig, the controller and test helpers."""

    def __init__(self, tmp: Path) -> None:
        self.kubeconfig = tmp / "kubeconfig.yaml"
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="kmock", daemon=True)
        self.url = ""
        self.emulator: Any = None
        self.controller: Controller | None = None
        self._controller_thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    # --- lifecycle ------------------------------------------------------------------
    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        except BaseException as exc:  # surfaced by start()
            self._failure = exc
            self._ready.set()

    async def _main(self) -> None:
        self._stopping = asyncio.Event()
        async with Apiserver() as emulator, kmock.Server(emulator, host="127.0.0.1") as server:
            for name, (kind, subresources) in RESOURCES.items():
                emulator.resources[name] = kmock.ResourceInfo(
                    kind=kind,
                    namespaced=True,
                    subresources=subresources,
                    verbs={"get", "list", "watch", "create", "patch", "delete"},
                )
            self.emulator = emulator
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stopping.wait()

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(15) or self._failure is not None:
            raise RuntimeError(f"the kmock emulator did not start: {self._failure}")
        document = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kmock", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": "not-a-secret"}}],
            "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "tester"}}],
            "current-context": "kmock",
        }
        self.kubeconfig.write_text(yaml.safe_dump(document))
        self.controller = Controller(self.kubeconfig)
        self._controller_thread = threading.Thread(
            target=self.controller.run, name="controller", daemon=True
        )
        self._controller_thread.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
        if self._controller_thread is not None:
            self._controller_thread.join(10)
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(15)
        if not self._thread.is_alive():
            self._loop.close()

    # --- helpers for tests ----------------------------------------------------------
    def on_loop(self, fn: Any) -> Any:
        """Run fn() on the emulator's loop (its state is not thread-safe)."""

        async def call() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(10)

    def get(self, resource: str, name: str, namespace: str = "ml") -> dict[str, Any] | None:
        def read() -> dict[str, Any] | None:
            key = (kmock.resource(resource), namespace, name)
            if key not in self.emulator.objects or self.emulator.objects[key].deleted:
                return None
            return copy.deepcopy(self.emulator.objects[key].raw)

        result: dict[str, Any] | None = self.on_loop(read)
        return result

    def put_secret(self, name: str, keys: dict[str, str], namespace: str = "ml") -> None:
        def add() -> None:
            self.emulator.objects["v1/secrets", namespace, name] = {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, "namespace": namespace},
                "data": {k: v for k, v in keys.items()},
            }

        self.on_loop(add)

    def writes(self, since: int = 0) -> list[str]:
        """Writes the deployer made (the controller's status patches are not counted)."""
        out = []
        for request in list(self.emulator)[since:]:
            if (
                str(request.method.value) in WRITE_METHODS
                and request.headers.get("User-Agent") != CONTROLLER_AGENT
            ):
                out.append(f"{request.method.value} {request.url.path}")
        return out

    def calls(self, since: int = 0) -> list[str]:
        """Every request the deployer made (the controller's are left out)."""
        return [
            f"{r.method.value} {r.url.path}"
            for r in list(self.emulator)[since:]
            if r.headers.get("User-Agent") != CONTROLLER_AGENT
        ]

    def request_count(self) -> int:
        return len(list(self.emulator))

    def inject(self, method: str, plural: str, faults: list[int | float]) -> None:
        """The next len(faults) matching requests fail (int status) or stall (float s)."""
        pending = list(faults)
        group_version = {
            "deployments": ("apps", "v1"),
            "virtualservices": ("networking.istio.io", "v1"),
            "destinationrules": ("networking.istio.io", "v1"),
        }.get(plural, ("", "v1"))
        resource = kmock.resource(group_version[0], group_version[1], plural)

        async def react(request: Any) -> Any:
            # Only the deployer's calls: not the controller's status patches and listings.
            if request.subresource == "status" or (request.name is None and method == "GET"):
                raise NotImplementedError
            if not pending:
                raise NotImplementedError  # not ours: the emulator answers as usual
            fault = pending.pop(0)
            if isinstance(fault, float):
                await asyncio.sleep(fault)
                raise NotImplementedError
            body = {
                "apiVersion": "v1",
                "kind": "Status",
                "status": "Failure",
                "code": fault,
                "reason": "Conflict" if fault == 409 else "InternalError",
                "message": f"injected {fault}",
            }
            return kmock.Response(status=fault, payload=body)

        def register() -> None:
            self.emulator[method.lower(), resource] << react

        self.on_loop(register)


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCluster]:
    if kmock is None:
        require_real("kmock (a Kubernetes API emulator, Python >= 3.11) is not installed")
    fake = FakeCluster(tmp_path)
    fake.start()
    monkeypatch.setenv("KUBECONFIG", str(fake.kubeconfig))
    try:
        yield fake
    finally:
        fake.stop()


# --- a project to deploy ------------------------------------------------------------------

PROJECT = """\
apiVersion: mlops/v1alpha1
project: {{name: shop}}
images:
  serve:
    kind: serve
    repository: registry.example.com/shop/serve
    base: {{variant: cpu, tensorflow: "2.21.0"}}
models:
  digits:
    image: serve
    deploy:
      namespace: ml
      replicas: 2
      rollout_timeout: 2s
{deploy_extra}    rollout:
      hosts: [digits.ml.example.com]
      stable: {{weight: {stable}}}
      canary: {{weight: {canary}}}
      ab: {{header: {header}, value: "always"}}
profiles:
  prod:
    models:
      digits:
        deploy:
          protected: true
"""


def image_ref(tag: str) -> str:
    """A digest-pinned reference; tag picks a distinct, stable digest (and names it)."""
    import hashlib

    return "registry.example.com/shop/serve@sha256:" + hashlib.sha256(tag.encode()).hexdigest()


class Project:
    """A tmp project: mlops.yaml, build records and blessings in its .mlops store."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.config = root / "mlops.yaml"
        root.mkdir(parents=True, exist_ok=True)
        self.write()

    def write(
        self,
        stable: int = 90,
        canary: int = 10,
        header: str = "x-digits-canary",
        deploy_extra: str = "",
    ) -> None:
        self.config.write_text(
            PROJECT.format(stable=stable, canary=canary, header=header, deploy_extra=deploy_extra)
        )

    def build(self, tag: str, model_hash: str, *, dirty: bool = False, bless: bool = True) -> str:
        """Record a pushed build of image 'serve' carrying model_hash; bless it if asked."""
        from mlops_sessions.records.store import Store, write_json_atomic

        ref = image_ref(tag)
        store = Store(self.root / ".mlops")
        write_json_atomic(
            store.builds() / "serve" / "latest.json",
            {
                "image": ref,
                "model_hash": model_hash,
                "run_id": f"run-{tag}",
                "git_commit": f"commit-{tag}",
                # As push records it: the tag policy marks a dirty tree in the tag.
                "tags": [
                    f"registry.example.com/shop/serve:{tag}"
                    + ("-dirty-0123456789ab" if dirty else "")
                ],
            },
        )
        if bless:
            store.bless(
                "digits", {"model": "digits", "run_id": f"run-{tag}", "model_hash": model_hash}
            )
        return ref

    def scan(self, passed: bool) -> None:
        from mlops_sessions.records.store import write_json_atomic

        write_json_atomic(
            self.root / ".mlops" / "builds" / "serve" / "scan.json",
            {"passed": passed, "summary": "2 CRITICAL (CVE-2026-0001, CVE-2026-0002)"},
        )


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path / "project")


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


FAST_API = ["--api-timeout", "2", "--api-retries", "4", "--api-backoff", "0.02"]


@pytest.fixture
def mlops(project: Project, capsys: pytest.CaptureFixture[str]) -> Any:
    """Run the `mlops` CLI on the project; API retries are fast for tests."""
    from mlops_sessions.frontends.cli import main

    def call(*args: str, api: list[str] | None = None) -> Result:
        argv = [args[0], "-c", str(project.config), *args[1:]]
        if args[0] in ("deploy", "rollback", "status"):
            argv += FAST_API if api is None else api
        capsys.readouterr()
        code = main(argv)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return call
