"""Training: ``train.backend`` and the keys only a Kubernetes training Job reads."""

from __future__ import annotations

from mlops_sessions.config import units
from mlops_sessions.config.model import Config, ModelConfig
from mlops_sessions.config.rules.base import Finding, Path_
from mlops_sessions.config.rules.resources import gpu_findings, toleration_list


def train_gpu_findings(config: Config, model: ModelConfig) -> list[Finding]:
    """GPU limit and request of a training that does not run on Kubernetes (a Kubernetes
    Job's are judged by :func:`train_backend_findings`, which its planners call too)."""
    train = model.train
    if train is None or train.effective_backend == "kubernetes":
        return []
    return gpu_findings(
        train.resources, ("models", model.name, "train", "resources"), on_kubernetes=False
    )


def train_backend_findings(config: Config, model: ModelConfig) -> list[Finding]:
    """``train.backend`` and the keys only a Kubernetes Job reads (the Job planner and the
    train step call this too, through :func:`require`)."""
    train = model.train
    if train is None:
        return []
    base: Path_ = ("models", model.name, "train")
    backend = train.effective_backend
    out: list[Finding] = []
    if train.backend not in (None, "container") and train.container:
        out.append(
            Finding(
                (*base, "container"),
                f"container: true contradicts backend: {train.backend}",
                "remove container (backend says where training runs)",
            )
        )
    if train.workers > 1 and backend != "kubernetes":
        out.append(
            Finding(
                (*base, "workers"),
                f"{train.workers} workers need backend: kubernetes (backend is {backend!r})",
                "set train.backend: kubernetes, or workers: 1",
            )
        )
    if train.operator != "job" and backend != "kubernetes":
        out.append(
            Finding(
                (*base, "operator"),
                f"operator: {train.operator} runs training on a Kubernetes cluster, and "
                f"backend is {backend!r}",
                "set train.backend: kubernetes, or remove operator",
            )
        )
    if backend != "kubernetes":
        return out
    if config.store_remote is None:
        out.append(
            Finding(
                (*base, "backend"),
                "a Kubernetes training Job writes its run to the shared store, and no "
                "store.remote is set",
                "add store: {remote: s3://<bucket>/<prefix>} (docs/store.md), or use "
                "backend: container",
            )
        )
    out += gpu_findings(train.resources, (*base, "resources"))
    if train.tolerations is not None:
        out += toleration_list(train.tolerations, base)
    if train.timeout is not None:
        try:
            whole = units.whole_seconds(train.timeout)
        except (units.UnitError, OverflowError):
            whole = units.INT32_MAX + 1
        if whole > units.INT32_MAX:
            out.append(
                Finding(
                    (*base, "timeout"),
                    f"{train.timeout!r} is more seconds than a Job's activeDeadlineSeconds holds",
                    f"use a duration below {units.INT32_MAX} seconds",
                )
            )
    return out
