"""Names, labels and small conversions shared by the manifest planners.

One place decides what the labels are (Istio's ``app`` / ``version`` plus a ``track``
label the DestinationRule subsets select on, and the ``app.kubernetes.io/*`` set), how
config durations become whole seconds, and where the serving config is mounted.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from mlops_sessions.config import Config, ModelConfig, units
from mlops_sessions.errors import StepError

Track = Literal["stable", "canary"]
TRACKS: tuple[Track, ...] = ("stable", "canary")

ANNOTATION_PREFIX = "mlops-sessions.dev"
MANAGED_BY = "mlops-sessions"
CONFIG_DIR = "/etc/mlops"
CONFIG_FILE = "mlops.yaml"

# A Kubernetes label value: at most 63 characters, alphanumeric at both ends.
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def seconds(duration: str, *, minimum: int = 0) -> int:
    """A config duration ('500ms', '20s', '5m') as whole seconds, rounded up (see units)."""
    try:
        return units.whole_seconds(duration, minimum=minimum)
    except units.UnitError as exc:
        raise StepError(str(exc)) from None


def label_value(text: str | None) -> str | None:
    """text if Kubernetes accepts it as a label value, else None."""
    if text is None or len(text) > 63 or _LABEL_VALUE.match(text) is None:
        return None
    return text


def selector_labels(model: ModelConfig, track: Track | None = None) -> dict[str, str]:
    """Labels a selector matches on: never the version, which changes with every build."""
    labels = {"app": model.name}
    if track is not None:
        labels["track"] = track
    return labels


def common_labels(config: Config, model: ModelConfig) -> dict[str, str]:
    return {
        "app": model.name,
        "app.kubernetes.io/name": model.name,
        "app.kubernetes.io/part-of": config.project.name,
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }


def metadata(
    config: Config,
    model: ModelConfig,
    name: str,
    annotations: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": common_labels(config, model) | (labels or {})}
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def service_host(model: ModelConfig) -> str:
    """The Service's name as Istio routes to it: fully qualified when a namespace is set."""
    namespace = model.deploy.namespace
    return f"{model.name}.{namespace}.svc.cluster.local" if namespace else model.name
