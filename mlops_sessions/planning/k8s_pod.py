"""The Deployment of one track: pod template, probes, resources, security, model download.

Everything a pod needs comes from ``deploy:`` and ``serve:`` of the model:

- resources: CPU/memory requests and limits; GPUs as limits on ``resources.gpu_resource``
  (``nvidia.com/gpu`` or a MIG name), plus the toleration for the usual GPU node taint;
- probes on ``/healthz`` (liveness) and ``/ready`` (readiness, and startup: a slow model
  load must not trip liveness), each field overridable from ``deploy.probes``;
- a termination grace a little longer than ``serve.drain``, so the server finishes its
  drain before the kubelet kills it;
- a restricted security context by default (non-root, read-only root filesystem, no
  privilege escalation, no capabilities, seccomp RuntimeDefault), AppArmor and SELinux
  when asked;
- secrets only as ``secretKeyRef``; with ``model_source.type: s3`` an init container
  fetches and checks the model into a shared volume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlops_sessions.config import Config, ModelConfig, Probe, Resources, rules
from mlops_sessions.planning.k8s_common import (
    ANNOTATION_PREFIX,
    CONFIG_DIR,
    CONFIG_FILE,
    Track,
    common_labels,
    label_value,
    seconds,
    selector_labels,
)

SERVER = "server"
FETCHER = "fetch-model"
MODELS_DIR = "/models"
GPU_TAINT = "nvidia.com/gpu"
# Seconds between the end of the server's drain and SIGKILL: time to flush logs and exit.
EXIT_MARGIN_S = 5
DEFAULT_FETCH_TIMEOUT = "10m"
# AppArmor became a securityContext field (GA) in Kubernetes 1.30; before, an annotation.
APPARMOR_FIELD_SINCE = (1, 30)

_PROBE_DEFAULTS: dict[str, dict[str, Any]] = {
    "liveness": {"path": "/healthz", "initial": 0, "period": 10, "timeout": 2, "failures": 3},
    "readiness": {"path": "/ready", "initial": 0, "period": 5, "timeout": 2, "failures": 3},
    # 60 x 5 s: five minutes to load a large model before liveness takes over.
    "startup": {"path": "/ready", "initial": 0, "period": 5, "timeout": 2, "failures": 60},
}


@dataclass(frozen=True)
class Build:
    """The image one track runs, with the lineage recorded when it was built."""

    image: str
    run_id: str | None = None
    model_hash: str | None = None
    git_commit: str | None = None

    @property
    def digest(self) -> str:
        return self.image.rsplit("@sha256:", 1)[-1]

    @property
    def version(self) -> str:
        """Istio's ``version`` label: the training run when known, else the image digest."""
        return label_value(self.run_id) or f"sha256-{self.digest[:12]}"


def kubernetes_version(model: ModelConfig) -> tuple[int, int]:
    major, minor = model.deploy.kubernetes_version.split(".")[:2]
    return int(major), int(minor)


def lineage_annotations(build: Build, config_hash: str) -> dict[str, str]:
    values = {
        "image": build.image,
        "git-commit": build.git_commit,
        "run-id": build.run_id,
        "model-hash": build.model_hash,
        "config-hash": config_hash,
    }
    return {f"{ANNOTATION_PREFIX}/{key}": v for key, v in values.items() if v is not None}


def deployment(
    config: Config,
    model: ModelConfig,
    track: Track,
    build: Build,
    config_hash: str,
    serve_config_hash: str,
) -> dict[str, Any]:
    """The Deployment of one track.

    The Deployment carries the full lineage (config hash included). The pod template
    carries only what the pods consume: the build's lineage and the hash of the serving
    config, so editing traffic weights does not restart pods but a serving change does.
    """
    deploy = model.deploy
    name = f"{model.name}-{track}"
    labels = common_labels(config, model) | {"track": track, "version": build.version}
    lineage = lineage_annotations(build, config_hash)
    pod_lineage = {k: v for k, v in lineage.items() if not k.endswith("/config-hash")}
    # What the model does, for whoever finds the Deployment: on the Deployment only, so
    # editing the text does not restart pods.
    described = {f"{ANNOTATION_PREFIX}/description": model.description} if model.description else {}
    pod_lineage[f"{ANNOTATION_PREFIX}/serve-config-hash"] = serve_config_hash
    spec: dict[str, Any] = {
        "revisionHistoryLimit": 10,
        "progressDeadlineSeconds": seconds(deploy.rollout_timeout, minimum=1),
        "strategy": {
            # Never below the wanted count: a new pod is ready before an old one goes.
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0},
        },
        "selector": {"matchLabels": selector_labels(model, track)},
        "template": {
            "metadata": {
                "labels": labels,
                "annotations": pod_lineage
                | _scrape_annotations(model)
                | _apparmor_annotations(model),
            },
            "spec": _pod_spec(model, build),
        },
    }
    replicas = _replicas(model, track)
    if replicas is not None:
        spec["replicas"] = replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels, "annotations": lineage | described},
        "spec": spec,
    }


def _replicas(model: ModelConfig, track: Track) -> int | None:
    if track == "canary":
        assert model.rollout is not None and model.rollout.canary is not None
        return model.rollout.canary.replicas
    # With an autoscaler the HPA owns the count; a rendered number would fight it on apply.
    return None if model.deploy.autoscaling is not None else model.deploy.replicas


def _scrape_annotations(model: ModelConfig) -> dict[str, str]:
    return {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(model.serve.port),
        "prometheus.io/path": "/metrics",
        "prometheus.io/scheme": "http",
    }


def _pod_spec(model: ModelConfig, build: Build) -> dict[str, Any]:
    deploy = model.deploy
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": f"{model.name}-serve"}},
        # The root filesystem is read-only; TensorFlow and Python still want a scratch dir.
        {"name": "tmp", "emptyDir": {}},
    ]
    spec: dict[str, Any] = {
        "serviceAccountName": model.name,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": seconds(model.serve.drain) + EXIT_MARGIN_S,
        "securityContext": _pod_security(model),
        "containers": [_server_container(model, build)],
        "volumes": volumes,
    }
    if deploy.model_source.type == "s3":
        volumes.append({"name": "model", "emptyDir": {}})
        spec["initContainers"] = [_fetch_container(model, build)]
    node_selector = dict(deploy.node_selector)
    if node_selector:
        spec["nodeSelector"] = node_selector
    tolerations = _tolerations(model)
    if tolerations:
        spec["tolerations"] = tolerations
    return spec


def _server_container(model: ModelConfig, build: Build) -> dict[str, Any]:
    serve = model.serve
    args = [
        "serve",
        model.name,
        "--config",
        f"{CONFIG_DIR}/{CONFIG_FILE}",
        "--model-dir",
        f"{MODELS_DIR}/{model.name}",
        "--host",
        "0.0.0.0",
        "--port",
        str(serve.port),
    ]
    if build.run_id is not None:
        args += ["--version", build.run_id]
    mounts = [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    if model.deploy.model_source.type == "s3":
        mounts.append({"name": "model", "mountPath": MODELS_DIR, "readOnly": True})
    container: dict[str, Any] = {
        "name": SERVER,
        "image": build.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["mlops"],
        "args": args,
        "ports": [
            {"name": "http", "containerPort": serve.port, "protocol": "TCP"},
            # TF Serving's gRPC API (serve.grpc_port; 0: none). Probes stay on http.
            *(
                [{"name": "grpc", "containerPort": serve.grpc_port, "protocol": "TCP"}]
                if serve.grpc_port
                else []
            ),
        ],
        "resources": resources(model.deploy.resources),
        "securityContext": _container_security(model),
        "volumeMounts": mounts,
        "livenessProbe": _probe("liveness", model.deploy.probes.liveness),
        "readinessProbe": _probe("readiness", model.deploy.probes.readiness),
        "startupProbe": _probe("startup", model.deploy.probes.startup),
    }
    env = [
        # The rollout track, from the pod's own label: the server puts it on its metrics,
        # so a rollout's analysis compares stable and canary traffic (docs/rollout.md).
        {
            "name": "MLOPS_TRACK",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['track']"}},
        },
        *(
            {"name": ref.env, "valueFrom": {"secretKeyRef": {"name": ref.secret, "key": ref.key}}}
            for ref in model.deploy.secrets
        ),
    ]
    container["env"] = env
    return container


def _fetch_container(model: ModelConfig, build: Build) -> dict[str, Any]:
    """Init container: download the model archive, check its sha256, unpack it for the server.

    The program (``mlops fetch-model``) ships in the serve image; its contract is the
    arguments below (see docs/deploy.md).
    """
    source = model.deploy.model_source
    # A uri and a checksum: the config's rule (rules.model_source_findings), already run.
    assert source.uri is not None and source.sha256 is not None
    timeout = seconds(source.timeout or DEFAULT_FETCH_TIMEOUT, minimum=1)
    args = [
        "fetch-model",
        "--uri",
        source.uri,
        "--sha256",
        source.sha256,
        "--dest",
        f"{MODELS_DIR}/{model.name}",
        "--timeout",
        f"{timeout}s",
        "--retries",
        str(source.retries),
    ]
    if source.endpoint is not None:
        args += ["--endpoint", source.endpoint]
    container: dict[str, Any] = {
        "name": FETCHER,
        "image": build.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["mlops"],
        "args": args,
        # No GPU for a download: only the CPU/memory part of the server's resources.
        "resources": resources(model.deploy.resources, gpus=False),
        "securityContext": _container_security(model),
        "volumeMounts": [
            {"name": "model", "mountPath": MODELS_DIR},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    if source.credentials_secret is not None:
        container["env"] = [
            {
                "name": key,
                "valueFrom": {"secretKeyRef": {"name": source.credentials_secret, "key": key}},
            }
            for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        ]
    return container


def resources(res: Resources, *, gpus: bool = True) -> dict[str, Any]:
    """Kubernetes requests/limits from the config's resources block."""
    requests: dict[str, str] = {}
    limits: dict[str, Any] = {}
    if res.cpu is not None:
        requests["cpu"] = str(res.cpu)
    if res.memory is not None:
        requests["memory"] = str(res.memory)
    if res.limits is not None:
        if res.limits.cpu is not None:
            limits["cpu"] = str(res.limits.cpu)
        if res.limits.memory is not None:
            limits["memory"] = str(res.limits.memory)
    if gpus and res.gpu_limit > 0:
        # Request = limit (rules.gpu_findings) holds on a checked Config.
        # Extended resources are set as limits; Kubernetes copies them into requests.
        limits[res.gpu_resource] = str(res.gpu_limit)
    out: dict[str, Any] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def _tolerations(model: ModelConfig) -> list[dict[str, Any]]:
    tolerations = [dict(t) for t in model.deploy.tolerations]
    wants_gpu = model.deploy.resources.gpu_limit > 0
    if wants_gpu and not any(t.get("key") == GPU_TAINT for t in tolerations):
        # GPU nodes are commonly tainted nvidia.com/gpu:NoSchedule to keep CPU pods off.
        tolerations.append({"key": GPU_TAINT, "operator": "Exists", "effect": "NoSchedule"})
    return tolerations


def _probe(kind: str, probe: Probe | None) -> dict[str, Any]:
    default = _PROBE_DEFAULTS[kind]
    probe = probe or Probe()

    def pick(value: str | None, fallback: int, minimum: int) -> int:
        return fallback if value is None else seconds(value, minimum=minimum)

    return {
        "httpGet": {"path": probe.path or default["path"], "port": "http", "scheme": "HTTP"},
        "initialDelaySeconds": pick(probe.initial_delay, default["initial"], 0),
        "periodSeconds": pick(probe.period, default["period"], 1),
        "timeoutSeconds": pick(probe.timeout, default["timeout"], 1),
        "failureThreshold": probe.failure_threshold or default["failures"],
        "successThreshold": 1,
    }


def _pod_security(model: ModelConfig) -> dict[str, Any]:
    security = model.deploy.security
    uid = security.run_as_user
    context: dict[str, Any] = {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if security.selinux is not None:
        options = {
            key: value
            for key, value in (
                ("level", security.selinux.level),
                ("role", security.selinux.role),
                ("type", security.selinux.type),
                ("user", security.selinux.user),
            )
            if value is not None
        }
        if options:
            context["seLinuxOptions"] = options
    if security.apparmor_profile is not None and kubernetes_version(model) >= APPARMOR_FIELD_SINCE:
        context["appArmorProfile"] = _apparmor_field(model, security.apparmor_profile)
    return context


def _container_security(model: ModelConfig) -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": model.deploy.security.read_only_root_filesystem,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _apparmor_field(model: ModelConfig, profile: str) -> dict[str, str]:
    field = rules.apparmor_profile(profile)
    assert field is not None  # apparmor_findings refused every other profile
    return field


def _apparmor_annotations(model: ModelConfig) -> dict[str, str]:
    """Before Kubernetes 1.30 AppArmor is set per container by a pod annotation."""
    profile = model.deploy.security.apparmor_profile
    if profile is None or kubernetes_version(model) >= APPARMOR_FIELD_SINCE:
        return {}
    _apparmor_field(model, profile)  # same validation as the field form
    names = [SERVER] + ([FETCHER] if model.deploy.model_source.type == "s3" else [])
    prefix = "container.apparmor.security.beta.kubernetes.io"
    return {f"{prefix}/{name}": profile for name in names}


def pod_security_context(model: ModelConfig) -> dict[str, Any]:
    """The pod securityContext of a serving pod; training Jobs (planning.train_job) use it."""
    return _pod_security(model)


def container_security_context(model: ModelConfig) -> dict[str, Any]:
    """The container securityContext of a serving container, shared with training Jobs."""
    return _container_security(model)
