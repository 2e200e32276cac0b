"""Typed, frozen view of a validated ``mlops.yaml``.

The loader (:mod:`mlops_sessions.config.loader`) is the only producer of these objects; every
planner and executor reads them and never the raw YAML dicts. Defaults live here and are
mirrored in the JSON Schema's ``default`` keywords (a test keeps the two in step).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

API_VERSION = "mlops/v1alpha1"


def plain(value: Any) -> Any:
    """A frozen config object as plain JSON-ready data: dataclasses and (read-only)
    mappings as dicts, tuples as lists (dataclasses.asdict cannot copy mapping proxies)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


BUILTIN_METRICS: dict[str, bool] = {
    # name -> higher is better
    "accuracy": True,
    "precision": True,
    "recall": True,
    "f1": True,
    "auc": True,
    "loss": False,
}
ALWAYS_PRODUCED: dict[str, bool] = {"model_size_mb": False}
LATENCY_PERCENTILES = (50, 95, 99)


@dataclass(frozen=True)
class Resources:
    cpu: str | None = None
    memory: str | None = None
    gpu: int = 0
    gpu_resource: str = "nvidia.com/gpu"
    limits: ResourceLimits | None = None

    @property
    def gpu_limit(self) -> int:
        if self.limits is not None and self.limits.gpu is not None:
            return self.limits.gpu
        return self.gpu


@dataclass(frozen=True)
class ResourceLimits:
    cpu: str | None = None
    memory: str | None = None
    gpu: int | None = None


@dataclass(frozen=True)
class DataInput:
    path: str | None = None
    package: str | None = None
    resource: str | None = None
    # An object in S3-compatible storage (s3://bucket/key) and its declared sha256, which is
    # what the run's key covers: planning never downloads it.
    uri: str | None = None
    sha256: str | None = None
    description: str = ""


@dataclass(frozen=True)
class TrainConfig:
    entrypoint: str
    source: str = "."
    params: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    inputs: tuple[str, ...] = ()
    deterministic: bool = True
    container: bool = False
    # None: "container" when container is true, else "local" (see effective_backend).
    backend: Literal["local", "container", "kubernetes"] | None = None
    workers: int = 1
    # With backend kubernetes: a batch/v1 Job, or a Kubeflow TFJob (planning.train_tfjob).
    operator: Literal["job", "tfjob"] = "job"
    namespace: str | None = None  # None: deploy.namespace
    retries: int = 0
    # None: the deploy section's (training usually runs where the model is served).
    node_selector: Mapping[str, str] | None = None
    tolerations: tuple[Mapping[str, Any], ...] | None = None
    service_account: str | None = None
    credentials_secret: str | None = None
    image: str | None = None
    resources: Resources = field(default_factory=Resources)
    allow_cpu_fallback: bool = False
    timeout: str | None = None
    # With backend kubernetes: how long a pod may stay unschedulable (a cluster autoscaler
    # adding a GPU node takes minutes) before the run fails with the scheduler's reason.
    pending_timeout: str = "10m"

    @property
    def effective_backend(self) -> Literal["local", "container", "kubernetes"]:
        if self.backend is not None:
            return self.backend
        return "container" if self.container else "local"

    @property
    def in_image(self) -> bool:
        """Training runs in the train image (Docker or a Kubernetes Job), not the venv."""
        return self.effective_backend != "local"


@dataclass(frozen=True)
class CustomMetric:
    name: str
    function: str
    higher_is_better: bool = True


@dataclass(frozen=True)
class LatencyConfig:
    batch_sizes: tuple[int, ...] = (1,)
    warmup: int = 5
    runs: int = 50


@dataclass(frozen=True)
class DriftConfig:
    reference: str
    bins: int = 10


@dataclass(frozen=True)
class ThresholdBaseline:
    max_regression: float | None = None
    max_regression_pct: float | None = None


@dataclass(frozen=True)
class Threshold:
    min: float | None = None
    max: float | None = None
    vs_baseline: ThresholdBaseline | None = None
    direction: Literal["higher_is_better", "lower_is_better"] | None = None


@dataclass(frozen=True)
class ModelSigning:
    """evaluate.sign: the gate signs the SavedModel it blesses; loaders verify it."""

    key: str
    public_key: str


@dataclass(frozen=True)
class EvaluateConfig:
    dataset: str
    metrics: tuple[str | CustomMetric, ...] = ("accuracy",)
    latency: LatencyConfig | None = None
    drift: DriftConfig | None = None
    thresholds: Mapping[str, Threshold] = field(default_factory=dict)
    baseline: str = "blessed"
    allow_first_run: bool = False
    sign: ModelSigning | None = None

    def produced_metrics(self) -> dict[str, bool]:
        """Every metric name this evaluation produces, mapped to 'higher is better'."""
        produced = dict(ALWAYS_PRODUCED)
        for metric in self.metrics:
            if isinstance(metric, CustomMetric):
                produced[metric.name] = metric.higher_is_better
            else:
                produced[metric] = BUILTIN_METRICS[metric]
        if self.latency is not None:
            for batch in self.latency.batch_sizes:
                for pct in LATENCY_PERCENTILES:
                    produced[f"latency_b{batch}_p{pct}_ms"] = False
        if self.drift is not None:
            produced["drift_psi_max"] = False
            produced["drift_psi_mean"] = False
        return produced


@dataclass(frozen=True)
class ImageBase:
    variant: Literal["cpu", "gpu", "jupyter", "gpu-jupyter"] | None = None
    tensorflow: str | None = None
    image: str | None = None
    gpu: bool | None = None

    @property
    def reference(self) -> str:
        if self.image is not None:
            return self.image
        suffix = {"cpu": "", "gpu": "-gpu", "jupyter": "-jupyter", "gpu-jupyter": "-gpu-jupyter"}
        return f"tensorflow/tensorflow:{self.tensorflow}{suffix[self.variant or 'cpu']}"

    @property
    def has_gpu(self) -> bool:
        if self.image is not None:
            return bool(self.gpu)
        return self.variant in ("gpu", "gpu-jupyter")


@dataclass(frozen=True)
class ImagePackages:
    apt: tuple[str, ...] = ()
    pip: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImageUser:
    name: str = "mlops"
    uid: int = 10001


@dataclass(frozen=True)
class TagPolicy:
    policy: Literal["git-commit", "semver", "date", "template"] = "git-commit"
    template: str | None = None
    dirty: Literal["refuse", "digest-suffix"] = "digest-suffix"


@dataclass(frozen=True)
class ImageScan:
    trivy: bool = False
    fail_on: tuple[str, ...] = ("CRITICAL", "HIGH")


@dataclass(frozen=True)
class ImageSigning:
    """images.<name>.sign: cosign signs the pushed digest and attaches attestations."""

    key: str
    tlog: bool = False
    sbom: bool = True
    provenance: bool = True


@dataclass(frozen=True)
class ImageConfig:
    base: ImageBase
    repository: str
    kind: Literal["train", "serve", "tfserving"] = "serve"
    registry: str | None = None
    packages: ImagePackages = field(default_factory=ImagePackages)
    user: ImageUser = field(default_factory=ImageUser)
    labels: Mapping[str, str] = field(default_factory=dict)
    tag: TagPolicy = field(default_factory=TagPolicy)
    hermetic: bool = True
    size_budget_mb: float | None = None
    scan: ImageScan = field(default_factory=ImageScan)
    dockerfile: str | None = None
    sign: ImageSigning | None = None


@dataclass(frozen=True)
class Batching:
    enabled: bool = True
    max_batch_size: int = 32
    max_wait: str = "2ms"


@dataclass(frozen=True)
class ServeConfig:
    runtime: Literal["mlops", "tfserving"] = "mlops"
    host: str = "127.0.0.1"
    port: int = 8501
    grpc_port: int = 8500  # 0: no gRPC listener
    grpc_max_message_bytes: int = 4194304
    batching: Batching = field(default_factory=Batching)
    max_queue: int = 256
    max_body_bytes: int = 4194304
    workers: int = 1
    drain: str = "20s"
    read_timeout: str = "30s"


@dataclass(frozen=True)
class Probe:
    path: str | None = None
    initial_delay: str | None = None
    period: str | None = None
    timeout: str | None = None
    failure_threshold: int | None = None


@dataclass(frozen=True)
class Probes:
    liveness: Probe | None = None
    readiness: Probe | None = None
    startup: Probe | None = None


@dataclass(frozen=True)
class Autoscaling:
    min_replicas: int
    max_replicas: int
    target_cpu_percent: int = 70


@dataclass(frozen=True)
class Pdb:
    min_available: int | None = None


@dataclass(frozen=True)
class ModelSource:
    type: Literal["image", "s3"] = "image"
    uri: str | None = None
    endpoint: str | None = None
    sha256: str | None = None
    credentials_secret: str | None = None
    timeout: str | None = None
    retries: int = 3


@dataclass(frozen=True)
class SecretRef:
    env: str
    secret: str
    key: str


@dataclass(frozen=True)
class SELinux:
    level: str | None = None
    role: str | None = None
    type: str | None = None
    user: str | None = None


@dataclass(frozen=True)
class Security:
    run_as_user: int = 10001
    read_only_root_filesystem: bool = True
    apparmor_profile: str | None = None
    selinux: SELinux | None = None


@dataclass(frozen=True)
class ImageVerify:
    """deploy.verify: what must verify about an image digest before it is applied."""

    key: str
    tlog: bool = False
    require: tuple[Literal["signature", "sbom", "provenance", "verdict"], ...] = (
        "signature",
        "provenance",
        "verdict",
    )


@dataclass(frozen=True)
class DeployConfig:
    context: str | None = None
    namespace: str | None = None
    kubernetes_version: str = "1.30"
    replicas: int = 2
    resources: Resources = field(default_factory=Resources)
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    probes: Probes = field(default_factory=Probes)
    autoscaling: Autoscaling | None = None
    pdb: Pdb | None = None
    model_source: ModelSource = field(default_factory=ModelSource)
    secrets: tuple[SecretRef, ...] = ()
    security: Security = field(default_factory=Security)
    network_policy: bool = False
    protected: bool = False
    rollout_timeout: str = "5m"
    verify: ImageVerify | None = None


@dataclass(frozen=True)
class TrackWeight:
    weight: int


@dataclass(frozen=True)
class Canary:
    # None: not written. Required without rollout.steps; with steps the steps set it and
    # it must be absent (config.rules.rollout_findings).
    weight: int | None = None
    image: str | None = None
    replicas: int = 1


@dataclass(frozen=True)
class ABRoute:
    header: str | None = None
    cookie: str | None = None
    value: str | None = None


# Metrics a rollout can measure live, per track, from the server's Prometheus series;
# True where higher is better. Accuracy and the other label-based scores are not here:
# live traffic carries no labels.
LIVE_METRICS: dict[str, bool] = {
    "error_rate": False,
    "request_rate": True,
    "latency_p50_ms": False,
    "latency_p95_ms": False,
    "latency_p99_ms": False,
    "prediction_drift_psi": False,
    "drift_psi_max": False,
    "drift_psi_mean": False,
}
# Live metrics that exist offline too: one declaration in evaluate.thresholds checks both.
SHARED_METRICS = ("drift_psi_max", "drift_psi_mean")


@dataclass(frozen=True)
class Analysis:
    prometheus: str
    interval: str
    min_requests: int = 20
    failure_limit: int = 1
    inconclusive_limit: int = 3
    error_limit: int = 3
    thresholds: Mapping[str, Threshold] = field(default_factory=dict)


@dataclass(frozen=True)
class RolloutConfig:
    hosts: tuple[str, ...]
    gateways: tuple[str, ...] = ("mesh",)
    stable: TrackWeight | None = None
    canary: Canary | None = None
    ab: ABRoute | None = None
    steps: tuple[int, ...] = ()
    analysis: Analysis | None = None


@dataclass(frozen=True)
class ModelConfig:
    name: str
    description: str = ""
    train: TrainConfig | None = None
    evaluate: EvaluateConfig | None = None
    image: str | None = None
    serve: ServeConfig = field(default_factory=ServeConfig)
    deploy: DeployConfig = field(default_factory=DeployConfig)
    rollout: RolloutConfig | None = None


@dataclass(frozen=True)
class ProjectConfig:
    name: str
    description: str = ""


@dataclass(frozen=True)
class PythonConfig:
    version: str | None = None
    requirements: str | None = None
    venv_backend: Literal["auto", "uv", "virtualenv", "venv"] = "auto"


@dataclass(frozen=True)
class SuiteConfig:
    """The team's test suite (`tests:`), run by `mlops test` before training.

    Not named Test*: pytest would try to collect it from test modules that import it.
    """

    path: str = "tests"
    markers: str | None = None
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class StoreRemote:
    """``store.remote``: the shared store in S3-compatible object storage (docs/store.md).

    Only where it is; credentials come from boto3's chain (AWS_ACCESS_KEY_ID ..., never the
    file) and ``MLOPS_STORE_ENDPOINT`` overrides ``endpoint``.
    """

    url: str  # s3://bucket/prefix
    endpoint: str | None = None
    region: str | None = None


@dataclass(frozen=True)
class MlflowTracking:
    """``tracking.mlflow``: mirror runs, evaluations and blessings into an MLflow server."""

    uri: str
    experiment: str
    registered_model: str | None = None  # default: <project>-<model>
    alias: str = "champion"


@dataclass(frozen=True)
class TrackingConfig:
    mlflow: MlflowTracking | None = None


@dataclass(frozen=True)
class AlertSeverity:
    page: str = "critical"  # someone must act now
    ticket: str = "warning"  # look at it today


@dataclass(frozen=True)
class AlertsConfig:
    """``alerts:``: how the PrometheusRule render writes per model alerts (docs/alerts.md)."""

    for_: str = "5m"  # the key ``for`` (a Python keyword)
    window: str = "5m"
    labels: Mapping[str, str] = field(default_factory=dict)
    rule_labels: Mapping[str, str] = field(default_factory=dict)
    severity: AlertSeverity = field(default_factory=AlertSeverity)
    # The oldest a served model may be (from its training run's end); None: no age alert.
    max_model_age: str | None = None


@dataclass(frozen=True)
class Config:
    """The effective configuration: file + chosen profile + defaults, validated."""

    api_version: str
    project: ProjectConfig
    models: Mapping[str, ModelConfig]
    python: PythonConfig = field(default_factory=PythonConfig)
    store: str = ".mlops"  # the local store's path (``store:`` or ``store.path``)
    # ``store.remote`` (``store:`` as an object); None: the store is local only.
    store_remote: StoreRemote | None = None
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    tests: SuiteConfig = field(default_factory=SuiteConfig)
    data: Mapping[str, DataInput] = field(default_factory=dict)
    images: Mapping[str, ImageConfig] = field(default_factory=dict)
    profiles: tuple[str, ...] = ()
    # Where the file lives: relative paths in the config resolve against it.
    root: Path = Path(".")
    source_file: Path = Path("mlops.yaml")
    profile: str | None = None
    # The effective document (after profile, defaults and interpolation), for `mlops config`
    # and for hashing; planners must not read it.
    document: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def store_path(self) -> Path:
        return (self.root / self.store).resolve()

    def resolve(self, relative: str) -> Path:
        return (self.root / relative).resolve()

    def select_models(self, names: list[str] | tuple[str, ...]) -> list[ModelConfig]:
        """The models named (all when none are), in file order; unknown names raise."""
        from mlops_sessions.errors import StepError

        if not names:
            return list(self.models.values())
        unknown = [n for n in names if n not in self.models]
        if unknown:
            raise StepError(
                f"unknown model(s): {', '.join(unknown)}; "
                f"this config declares: {', '.join(self.models)}"
            )
        return [self.models[n] for n in names]

    def declares(self, section: str) -> bool:
        """Whether the effective file has this top-level section (e.g. ``tests``): for the
        few decisions that depend on a section being written, not on its defaults."""
        return section in (self.document or {})

    def document_hash(self) -> str:
        """sha256 of the whole effective config (canonical JSON)."""
        blob = json.dumps(dict(self.document), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def model_hash(self, model: str) -> str:
        """Hash of the effective config of one model plus shared sections it depends on."""
        doc = self.document
        part = {
            "model": doc.get("models", {}).get(model, {}),
            "data": doc.get("data", {}),
            "python": doc.get("python", {}),
        }
        blob = json.dumps(part, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()
