"""Resources and scheduling: limits not below requests, GPU requests and limits (the one GPU
quantity rule, for training and serving), tolerations the API server accepts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from mlops_sessions.config import units
from mlops_sessions.config.locate import Locator
from mlops_sessions.config.model import ModelConfig, Resources
from mlops_sessions.config.rules.base import Finding, Path_, models_of
from mlops_sessions.errors import Problem

# Quantities whose limit must not be below the request: (key, name in messages, parser).
_LIMITED: tuple[tuple[str, str, Callable[[Any], float]], ...] = (
    ("cpu", "CPU", units.cpu_cores),
    ("memory", "memory", units.memory_bytes),
)


def resource_problems(doc: dict[str, Any], locator: Locator, root: Path) -> list[Problem]:
    out: list[Problem] = []
    for name, model in models_of(doc):
        for section in ("train", "deploy"):
            res = (model.get(section) or {}).get("resources")
            if not res:
                continue
            base = ("models", name, section, "resources")
            limits = res.get("limits") or {}
            # GPUs are gpu_findings' (one rule for training and serving, typed).
            for field, label, measure in _LIMITED:
                if (
                    field in limits
                    and field in res
                    and measure(limits[field]) < measure(res[field])
                ):
                    out.append(
                        locator.problem(
                            (*base, "limits", field),
                            f"{label} limit {limits[field]} is below the request {res[field]}",
                            f"raise limits.{field} or lower {field}",
                        )
                    )
    return out


def gpu_findings(res: Resources, base: Path_, *, on_kubernetes: bool = True) -> list[Finding]:
    """The one GPU quantity rule: a limit below the request; on Kubernetes (serving, a
    training Job) also a request that differs from the limit."""
    limit = res.limits.gpu if res.limits is not None else None
    if limit is None:
        return []
    if limit < res.gpu:
        return [
            Finding(
                (*base, "limits", "gpu"),
                f"GPU limit {limit} is below the request {res.gpu}",
                "raise limits.gpu or lower gpu; Kubernetes needs limit >= request",
            )
        ]
    if on_kubernetes and res.gpu and res.gpu != limit:
        return [
            Finding(
                (*base, "limits", "gpu"),
                f"GPU request {res.gpu} differs from GPU limit {limit}; Kubernetes cannot "
                "overcommit extended resources such as GPUs, so the two must be equal",
                f"set limits.gpu to {res.gpu}, or remove it",
            )
        ]
    return []


def toleration_findings(model: ModelConfig) -> list[Finding]:
    """The API server's toleration rules that a per-entry schema cannot say."""
    return toleration_list(model.deploy.tolerations, ("models", model.name, "deploy"))


def toleration_list(tolerations: Iterable[Any], base: Path_) -> list[Finding]:
    out: list[Finding] = []
    for index, toleration in enumerate(tolerations):
        path = (*base, "tolerations", index)
        operator = toleration.get("operator", "Equal")
        if operator == "Exists" and toleration.get("value"):
            out.append(
                Finding(
                    (*path, "value"),
                    "a toleration with operator 'Exists' takes no value",
                    "remove value, or use operator: Equal",
                )
            )
        if not toleration.get("key") and operator != "Exists":
            out.append(
                Finding(
                    path,
                    "a toleration without a key must use operator 'Exists'",
                    "add key: <taint key>, or set operator: Exists to tolerate every taint",
                )
            )
        if "tolerationSeconds" in toleration and toleration.get("effect") != "NoExecute":
            out.append(
                Finding(
                    (*path, "tolerationSeconds"),
                    "tolerationSeconds only applies to effect 'NoExecute'",
                    "set effect: NoExecute, or remove tolerationSeconds",
                )
            )
    return out
