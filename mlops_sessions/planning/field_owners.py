"""Which fields a deploy takes back from another field manager: pure planning.

A real API server records, per object, which manager last set each field
(``metadata.managedFields``): ``kubectl scale`` owns ``spec.replicas`` after a manual scale,
``kubectl edit`` owns the label it changed. mlops.yaml is the source of truth for the
fields mlops sets, so a deploy sets them back, but never silently: for every field its
patch changes that another manager owns, it names the field and that manager, so the
person who scaled by hand learns where the setting lives. Fields mlops does not set (a
label or annotation someone added) are not in the patch and stay as they are. A model
with ``deploy.autoscaling`` does not set ``replicas`` at all: the HorizontalPodAutoscaler
owns it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

# Fields whose owner is expected to change them without anyone doing anything wrong.
_CONTROLLERS = frozenset({"kube-controller-manager", "kube-scheduler"})


@dataclass(frozen=True)
class TakenBack:
    """One field a patch sets back, and the manager that had set it."""

    path: str
    manager: str
    live: Any
    wanted: Any

    def message(self, hint: str = "") -> str:
        if self.wanted is None:  # a merge patch's null: a key mlops set before, now dropped
            return (
                f"{self.path}: removing {self.live!r} (last set by field manager "
                f"{self.manager!r}): mlops.yaml no longer sets it{hint}"
            )
        return (
            f"{self.path}: setting back {self.live!r} (set by field manager {self.manager!r}) "
            f"to {self.wanted!r} from mlops.yaml{hint}"
        )


def _leaves(patch: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for key, value in patch.items():
        if isinstance(value, Mapping) and value:
            yield from _leaves(value, (*prefix, key))
        else:
            yield (*prefix, key)


def _get(obj: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(obj, Mapping) or key not in obj:
            return None
        obj = obj[key]
    return obj


def _owns(fields: Any, path: tuple[str, ...]) -> bool:
    """Whether a fieldsV1 set contains the field at path (or a field inside it)."""
    for key in path:
        if not isinstance(fields, Mapping) or f"f:{key}" not in fields:
            return False
        fields = fields[f"f:{key}"]
    return True


def taken_back(live: Mapping[str, Any], patch: Mapping[str, Any], ours: str) -> list[TakenBack]:
    """Every field the merge patch changes on live that a manager other than ours owns."""
    entries = (live.get("metadata") or {}).get("managedFields") or []
    found: list[TakenBack] = []
    for path in _leaves(patch):
        wanted, current = _get(patch, path), _get(live, path)
        if current is None or current == wanted:
            continue
        owners = sorted(
            {
                str(entry.get("manager"))
                for entry in entries
                if entry.get("manager") not in (ours, *_CONTROLLERS)
                and _owns(entry.get("fieldsV1"), path)
            }
        )
        found += [TakenBack(".".join(path), owner, current, wanted) for owner in owners]
    return found


def hint_for(path: str) -> str:
    """Where in mlops.yaml the setting lives, for the fields people change by hand."""
    if path == "spec.replicas":
        return " (to change it, set deploy.replicas, or deploy.autoscaling to let an HPA own it)"
    return ""


# Fields the API server refuses to change on a live object, for the kinds mlops applies.
IMMUTABLE: Mapping[str, tuple[tuple[str, ...], ...]] = {
    "Deployment": (("spec", "selector"),),
    "Service": (("spec", "clusterIP"), ("spec", "clusterIPs")),
    "Job": (("spec", "selector"), ("spec", "template"), ("spec", "completionMode")),
}


def immutable_change(kind: str, live: Mapping[str, Any], patch: Mapping[str, Any]) -> str | None:
    """The first immutable field the patch would change, as a dotted path, or None."""
    for path in IMMUTABLE.get(kind, ()):
        if _get(patch, path) is not None and _get(live, path) not in (None, _get(patch, path)):
            return ".".join(path)
    return None


def owners_of(live: Mapping[str, Any], path: str, ours: str) -> list[str]:
    """The managers other than ours that own the field at path on live."""
    entries = (live.get("metadata") or {}).get("managedFields") or []
    parts = tuple(path.split("."))
    return sorted(
        {
            str(entry.get("manager"))
            for entry in entries
            if entry.get("manager") != ours and _owns(entry.get("fieldsV1"), parts)
        }
    )
