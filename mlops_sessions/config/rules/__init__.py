"""Config rules: what JSON Schema cannot say, one module per area, behind one registry.

Two kinds, both run by ``validate`` (every load) and located like schema errors:

- rules on the effective document (:data:`DOCUMENT_RULES`, run by :func:`cross_field`):
  references between sections, limits against requests, thresholds against the metrics an
  evaluation produces, images that hold together ...;
- rules on the typed :class:`~mlops_sessions.config.Config` (:data:`MODEL_RULES` and
  :data:`CONFIG_RULES`, run by :func:`config_findings`): traffic weights, A/B routes, GPU
  requests and limits, model downloads, AppArmor profiles, durations Kubernetes counts in
  int32 seconds, disruption budgets, hosts claimed twice, images verified for two models,
  serving GPUs on CPU-only images, tolerations, Kubernetes versions, training backends.
  ``render`` and ``deploy`` run the SAME registry through :func:`model_findings` and
  :func:`require`, so a config ``validate`` accepts is a config render accepts.

The areas: ``naming`` (references, label keys), ``data`` (S3 inputs), ``resources``
(limits, GPUs, tolerations), ``evaluation`` (gate thresholds), ``images`` (images and
GPU bases), ``serving`` (Kubernetes serving), ``deploy`` (weights, A/B, rollout),
``training`` (backends). Pure: no file other than the requirements lock is read;
kubernetes-validate's list of shipped schema versions is consulted when it is installed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlops_sessions.config.locate import Locator
from mlops_sessions.config.model import Config, ModelConfig
from mlops_sessions.config.rules import (
    data,
    deploy,
    evaluation,
    images,
    naming,
    resources,
    serving,
    training,
)
from mlops_sessions.config.rules.base import Check, Finding, Path_, require
from mlops_sessions.config.rules.deploy import ab_route_findings, weight_findings
from mlops_sessions.config.rules.resources import gpu_findings
from mlops_sessions.config.rules.serving import (
    apparmor_findings,
    apparmor_profile,
    kubernetes_version_minor,
    model_source_findings,
    supported_kubernetes_versions,
)
from mlops_sessions.config.rules.training import train_backend_findings
from mlops_sessions.errors import Problem

__all__ = [
    "CONFIG_RULES",
    "DOCUMENT_RULES",
    "MODEL_RULES",
    "Finding",
    "Path_",
    "ab_route_findings",
    "apparmor_findings",
    "apparmor_profile",
    "config_findings",
    "cross_field",
    "gpu_findings",
    "kubernetes_version_minor",
    "model_findings",
    "model_source_findings",
    "require",
    "supported_kubernetes_versions",
    "train_backend_findings",
    "weight_findings",
]

# Rules on the effective document, in the order they report.
DOCUMENT_RULES: tuple[Check, ...] = (
    naming.reference_problems,
    resources.resource_problems,
    evaluation.threshold_problems,
    evaluation.signing_problems,
    deploy.rollout_problems,
    images.image_problems,
    deploy.deploy_problems,
    images.tensorflow_pin_problems,
    data.object_input_problems,
)

# Rules on one model of the typed Config: what validate, render and deploy all enforce.
MODEL_RULES: tuple[Callable[[Config, ModelConfig], list[Finding]], ...] = (
    lambda config, model: deploy.weight_findings(model),
    lambda config, model: deploy.ab_findings(model),
    lambda config, model: resources.gpu_findings(
        model.deploy.resources, ("models", model.name, "deploy", "resources")
    ),
    lambda config, model: serving.model_source_findings(model),
    lambda config, model: serving.apparmor_findings(model),
    lambda config, model: serving.duration_findings(model),
    lambda config, model: serving.pdb_findings(model),
    images.gpu_base_findings,
    lambda config, model: resources.toleration_findings(model),
    training.train_backend_findings,
    training.train_gpu_findings,
    lambda config, model: naming.label_key_findings(model),
    lambda config, model: serving.kubernetes_version_findings(model),
    lambda config, model: deploy.rollout_findings(model),
)

# Rules across the models of a Config.
CONFIG_RULES: tuple[Callable[[Config], list[Finding]], ...] = (
    serving.host_findings,
    deploy.verified_image_findings,
)


def cross_field(doc: dict[str, Any], locator: Locator, root: Path) -> list[Problem]:
    """Every document rule's problems (the schema has passed)."""
    problems: list[Problem] = []
    for rule in DOCUMENT_RULES:
        problems.extend(rule(doc, locator, root))
    return problems


def model_findings(config: Config, model: ModelConfig) -> list[Finding]:
    """The rules render and deploy enforce on one model's config."""
    return [finding for rule in MODEL_RULES for finding in rule(config, model)]


def config_findings(config: Config) -> list[Finding]:
    """Every typed rule, for every model, plus the rules across models."""
    out: list[Finding] = []
    for model in config.models.values():
        out += model_findings(config, model)
    for rule in CONFIG_RULES:
        out += rule(config)
    return out
