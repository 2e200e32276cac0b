"""Start and stop one real control plane on loopback: etcd, the API server, the controller
manager, the scheduler and KWOK, with two simulated nodes (``kwok-cpu-0`` and the GPU node
``kwok-gpu-0``, tainted ``nvidia.com/gpu:NoSchedule`` as GPU pools usually are).

Every process binds to 127.0.0.1 on a free port, logs into the control plane's directory,
and dies with the process that started it (``PR_SET_PDEATHSIG``), so nothing outlives a
test run even when pytest is killed. ``stop()`` ends exactly the PIDs it started.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.cluster import components, pki

GPU_NODE = "kwok-gpu-0"
CPU_NODE = "kwok-cpu-0"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
GPUS_PER_NODE = 8
PRODUCT_USER = "mlops-product"
# Every request at Metadata level (who, verb, resource, answer), except the control plane's
# own controllers and KWOK: what is left is the tests' admin and the product.
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {
            "level": "None",
            "users": [
                "kwok-controller",
                "system:kube-scheduler",
                "system:kube-controller-manager",
                "system:apiserver",
            ],
        },
        {"level": "None", "userGroups": ["system:serviceaccounts:kube-system", "system:nodes"]},
        {"level": "None", "nonResourceURLs": ["/readyz", "/healthz", "/livez"]},
        {"level": "Metadata"},
    ],
}
_PR_SET_PDEATHSIG = 1


class ControlPlaneError(RuntimeError):
    """The control plane did not come up; the message names the part and its log."""


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def kubeconfig_text(
    server: str,
    ca: Path,
    *,
    user: str,
    cert: Path | None = None,
    key: Path | None = None,
    token: str | None = None,
    namespace: str | None = None,
) -> str:
    credentials: dict[str, str] = {}
    if cert is not None and key is not None:
        credentials = {"client-certificate": str(cert), "client-key": str(key)}
    if token is not None:
        credentials = {"token": token}
    context: dict[str, str] = {"cluster": "mlops-test", "user": user}
    if namespace:
        context["namespace"] = namespace
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "mlops-test",
                    "cluster": {"server": server, "certificate-authority": str(ca)},
                }
            ],
            "users": [{"name": user, "user": credentials}],
            "contexts": [{"name": "mlops-test", "context": context}],
            "current-context": "mlops-test",
        },
        sort_keys=False,
    )


@dataclass
class ControlPlane:
    """One control plane in ``directory``; ``start()`` returns when nodes are Ready."""

    directory: Path
    binaries: components.Binaries
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    server: str = ""
    kubeconfig: Path = Path()
    product_kubeconfig: Path = Path()
    audit_log: Path = Path()
    ca: Path = Path()

    # -- life cycle ---------------------------------------------------------------------

    def start(self, timeout: float = 90.0) -> None:
        started = time.monotonic()
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            self._start(deadline=started + timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, deadline: float) -> None:
        certs = self.directory / "pki"
        ca = pki.CertificateAuthority(certs)
        self.ca = ca.cert
        port = free_port()
        self.server = f"https://127.0.0.1:{port}"
        serving = ca.issue(
            "apiserver",
            "kube-apiserver",
            server_names=(
                "127.0.0.1",
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "10.0.0.1",
            ),
        )
        sa_private, sa_public = pki.service_account_key(certs)
        identities = {
            "admin": ca.issue("admin", "mlops-test-admin", organization="system:masters"),
            "controller-manager": ca.issue("controller-manager", "system:kube-controller-manager"),
            "scheduler": ca.issue("scheduler", "system:kube-scheduler"),
            # KWOK plays every kubelet; a kubelet's Node identity would limit it to one node.
            "kwok": ca.issue("kwok", "kwok-controller", organization="system:masters"),
            # The product under test, apart from the admin the tests assert with, so the
            # audit log tells exactly which requests the product made.
            "product": ca.issue("product", PRODUCT_USER, organization="system:masters"),
        }
        configs = {}
        for who, pair in identities.items():
            path = self.directory / f"{who}.kubeconfig"
            path.write_text(
                kubeconfig_text(self.server, ca.cert, user=who, cert=pair.cert, key=pair.key)
            )
            configs[who] = path
        self.kubeconfig = configs["admin"]
        self.product_kubeconfig = configs["product"]
        self.audit_log = self.directory / "audit.log"
        policy = self.directory / "audit-policy.yaml"
        policy.write_text(yaml.safe_dump(AUDIT_POLICY, sort_keys=False))

        etcd_client, etcd_peer = free_port(), free_port()
        self._spawn(
            "etcd",
            [
                str(self.binaries.etcd),
                "--name=mlops-test",
                f"--data-dir={self.directory / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{etcd_client}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd_client}",
                f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-cluster=mlops-test=http://127.0.0.1:{etcd_peer}",
                "--quota-backend-bytes=1073741824",
                "--log-level=warn",
            ],
        )
        self._spawn(
            "kube-apiserver",
            [
                str(self.binaries.kube_apiserver),
                f"--etcd-servers=http://127.0.0.1:{etcd_client}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={port}",
                f"--tls-cert-file={serving.cert}",
                f"--tls-private-key-file={serving.key}",
                f"--client-ca-file={ca.cert}",
                f"--service-account-key-file={sa_public}",
                f"--service-account-signing-key-file={sa_private}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--authorization-mode=Node,RBAC",
                "--allow-privileged=true",
                # No kubelets answer: the API server must not wait for or dial any.
                "--endpoint-reconciler-type=none",
                f"--audit-policy-file={policy}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json",
                "--audit-log-mode=blocking",
                f"--cert-dir={certs}",
                "--v=1",
            ],
        )
        self._wait_ready(deadline)
        self._spawn(
            "kube-controller-manager",
            [
                str(self.binaries.kube_controller_manager),
                f"--kubeconfig={configs['controller-manager']}",
                f"--authentication-kubeconfig={configs['controller-manager']}",
                f"--authorization-kubeconfig={configs['controller-manager']}",
                "--bind-address=127.0.0.1",
                "--secure-port=0",
                "--leader-elect=false",
                f"--service-account-private-key-file={sa_private}",
                f"--root-ca-file={ca.cert}",
                "--use-service-account-credentials=true",
                # Fast enough for tests; the defaults wait minutes before evicting from a node.
                "--node-monitor-grace-period=40s",
                "--v=1",
            ],
        )
        self._spawn(
            "kube-scheduler",
            [
                str(self.binaries.kube_scheduler),
                f"--kubeconfig={configs['scheduler']}",
                f"--authentication-kubeconfig={configs['scheduler']}",
                f"--authorization-kubeconfig={configs['scheduler']}",
                "--bind-address=127.0.0.1",
                "--secure-port=0",
                "--leader-elect=false",
                "--v=1",
            ],
        )
        self.install_crds()
        self._spawn(
            "kwok",
            [
                str(self.binaries.kwok),
                f"--kubeconfig={configs['kwok']}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
                "--node-lease-duration-seconds=40",
                "--cidr=10.244.0.0/16",
                "--node-ip=10.0.0.2",
                f"--server-address=127.0.0.1:{free_port()}",
                *(f"--config={stage}" for stage in components.kwok_stage_files()),
            ],
        )
        for node in (_node(CPU_NODE, gpus=0), _node(GPU_NODE, gpus=GPUS_PER_NODE)):
            self.request("POST", "/api/v1/nodes", node)
        self._wait(deadline, "nodes Ready", self._nodes_ready)
        self._wait(
            deadline,
            "the default ServiceAccount",
            lambda: self._exists("/api/v1/namespaces/default/serviceaccounts/default"),
        )

    def stop(self) -> None:
        """End the processes this control plane started (in reverse order), by PID."""
        for process in reversed(list(self.processes.values())):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
        self.processes.clear()

    # -- API helpers ---------------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        admin = self.directory / "pki"
        context.load_cert_chain(admin / "admin.crt", admin / "admin.key")
        return context

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """One admin request; returns the decoded answer, raises HTTPError on 4xx/5xx."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.server + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", content_type)
        with urllib.request.urlopen(req, context=self.ssl_context(), timeout=30) as answer:
            raw = answer.read()
        return json.loads(raw) if raw else {}

    def apply_yaml(self, documents: list[dict[str, Any]], manager: str = "mlops-test") -> None:
        """Server-side apply of cluster-scoped or namespaced objects (admin)."""
        for doc in documents:
            group_version = doc["apiVersion"]
            base = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
            plural = _PLURALS[doc["kind"]]
            namespace = doc["metadata"].get("namespace")
            scope = f"/namespaces/{namespace}" if namespace else ""
            path = f"{base}{scope}/{plural}/{doc['metadata']['name']}"
            req = urllib.request.Request(
                f"{self.server}{path}?fieldManager={manager}&force=true",
                data=json.dumps(doc).encode(),
                method="PATCH",
            )
            req.add_header("Content-Type", "application/apply-patch+yaml")
            with urllib.request.urlopen(req, context=self.ssl_context(), timeout=30):
                pass

    def audit_events(self, user: str, since: int = 0) -> tuple[list[dict[str, Any]], int]:
        """Audit events of one user written after byte offset ``since``, and the new offset
        (pass it back to read only what came later)."""
        events: list[dict[str, Any]] = []
        with open(self.audit_log, "rb") as handle:
            handle.seek(since)
            data = handle.read()
        complete = data[: data.rfind(b"\n") + 1]
        for line in complete.splitlines():
            event = json.loads(line)
            if event.get("user", {}).get("username") == user:
                events.append(event)
        return events, since + len(complete)

    def install_crds(self) -> None:
        for path in components.crd_files().values():
            crds = [d for d in yaml.safe_load_all(path.read_text()) if d]
            self.apply_yaml([d for d in crds if d.get("kind") == "CustomResourceDefinition"])
        self._wait(time.monotonic() + 60, "CRDs Established", self._crds_established)

    # -- waiting -------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.directory / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it
        self.processes[name] = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
            cwd=self.directory,
        )
        log.close()

    def _check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                tail = (self.directory / f"{name}.log").read_text(errors="replace")[-3000:]
                raise ControlPlaneError(f"{name} exited with {process.returncode}:\n{tail}")

    def _wait(self, deadline: float, what: str, probe: Any) -> None:
        while True:
            self._check_alive()
            with contextlib.suppress(OSError, urllib.error.URLError, ValueError, KeyError):
                if probe():
                    return
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"timed out waiting for {what} ({self.directory})")
            time.sleep(0.2)

    def _wait_ready(self, deadline: float) -> None:
        def ready() -> bool:
            req = urllib.request.Request(self.server + "/readyz")
            with urllib.request.urlopen(req, context=self.ssl_context(), timeout=5) as answer:
                return bool(answer.status == 200)

        self._wait(deadline, "kube-apiserver /readyz", ready)

    def _exists(self, path: str) -> bool:
        try:
            self.request("GET", path)
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return False
            raise
        return True

    def _nodes_ready(self) -> bool:
        nodes = self.request("GET", "/api/v1/nodes")["items"]
        ready = {
            n["metadata"]["name"]
            for n in nodes
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in (n.get("status") or {}).get("conditions") or []
            )
        }
        return {CPU_NODE, GPU_NODE} <= ready

    def _crds_established(self) -> bool:
        crds = self.request("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions")
        names = {
            c["metadata"]["name"]
            for c in crds["items"]
            if any(
                k["type"] == "Established" and k["status"] == "True"
                for k in (c.get("status") or {}).get("conditions") or []
            )
        }
        return {
            "virtualservices.networking.istio.io",
            "destinationrules.networking.istio.io",
            "tfjobs.kubeflow.org",
        } <= names


_PLURALS = {"CustomResourceDefinition": "customresourcedefinitions"}


def _node(name: str, gpus: int) -> dict[str, Any]:
    capacity = {"cpu": "32", "memory": "256Gi", "pods": "110", "ephemeral-storage": "1Ti"}
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "type": "kwok",
        # The node pool the tests' configs select (deploy.node_selector: {pool: serving}).
        "pool": "serving",
    }
    spec: dict[str, Any] = {}
    if gpus:
        capacity["nvidia.com/gpu"] = str(gpus)
        # An A100-style MIG profile too: the training goldens request MIG slices.
        capacity["nvidia.com/mig-3g.20gb"] = str(gpus)
        labels["nvidia.com/gpu.present"] = "true"
        spec["taints"] = [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": spec,
        "status": {"capacity": capacity, "allocatable": capacity},
    }


def pids(plane: ControlPlane) -> dict[str, int]:
    return {name: p.pid for name, p in plane.processes.items()}


def environment(plane: ControlPlane) -> dict[str, str]:
    """What a shell needs to talk to this control plane (``python -m tests.cluster env``)."""
    return {
        "KUBECONFIG": str(plane.kubeconfig),
        "MLOPS_TEST_PRODUCT_KUBECONFIG": str(plane.product_kubeconfig),
        "MLOPS_TEST_KUBE_SERVER": plane.server,
        "MLOPS_TEST_KUBE_DIR": str(plane.directory),
    }
