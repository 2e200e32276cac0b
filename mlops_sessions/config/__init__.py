"""The config layer: mlops.yaml -> one frozen, typed Config (or one ConfigError).

Modules, in the order data flows through them:

- yamlpos: YAML text -> plain data + a map from JSON path to file:line:col;
- interpolate: ${VAR} substitution on the effective document;
- loader: read the file, pick the profile, validate (schema, then checks), build;
- locate: JSON path -> file:line:col for every problem, and the did-you-mean hints;
- rules: the cross-field rules, one module per area behind one registry: every rule a
  later step enforces on the config, which render and deploy run too;
- units: the one parser for durations and CPU/memory quantities;
- build: schema-valid document -> the frozen dataclasses of model;
- model: the dataclasses themselves (re-exported here: from mlops_sessions.config
  import Config).

Nothing here imports planning, executors or steps.
"""

from __future__ import annotations

from mlops_sessions.config.model import (
    ALWAYS_PRODUCED,
    API_VERSION,
    BUILTIN_METRICS,
    LATENCY_PERCENTILES,
    LIVE_METRICS,
    SHARED_METRICS,
    ABRoute,
    Analysis,
    Autoscaling,
    Batching,
    Canary,
    Config,
    CustomMetric,
    DataInput,
    DeployConfig,
    DriftConfig,
    EvaluateConfig,
    ImageBase,
    ImageConfig,
    ImagePackages,
    ImageScan,
    ImageUser,
    LatencyConfig,
    ModelConfig,
    ModelSource,
    Pdb,
    Probe,
    Probes,
    ProjectConfig,
    PythonConfig,
    ResourceLimits,
    Resources,
    RolloutConfig,
    SecretRef,
    Security,
    SELinux,
    ServeConfig,
    SuiteConfig,
    TagPolicy,
    Threshold,
    ThresholdBaseline,
    TrackWeight,
    TrainConfig,
)

__all__ = [
    "ALWAYS_PRODUCED",
    "API_VERSION",
    "BUILTIN_METRICS",
    "LATENCY_PERCENTILES",
    "LIVE_METRICS",
    "SHARED_METRICS",
    "ABRoute",
    "Analysis",
    "Autoscaling",
    "Batching",
    "Canary",
    "Config",
    "CustomMetric",
    "DataInput",
    "DeployConfig",
    "DriftConfig",
    "EvaluateConfig",
    "ImageBase",
    "ImageConfig",
    "ImagePackages",
    "ImageScan",
    "ImageUser",
    "LatencyConfig",
    "ModelConfig",
    "ModelSource",
    "Pdb",
    "Probe",
    "Probes",
    "ProjectConfig",
    "PythonConfig",
    "ResourceLimits",
    "Resources",
    "RolloutConfig",
    "SELinux",
    "SecretRef",
    "Security",
    "ServeConfig",
    "SuiteConfig",
    "TagPolicy",
    "Threshold",
    "ThresholdBaseline",
    "TrackWeight",
    "TrainConfig",
]
