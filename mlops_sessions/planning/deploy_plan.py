"""Apply planning: what to change on the cluster, whether a Deployment is ready, which revision.

Pure and offline (kopf's ``detect_*`` habit): the Kubernetes executor fetches live objects
and hands them here as plain dicts; this module decides. It knows

- how an object is identified (:class:`ObjectRef`) and how a desired object is stamped with
  the configuration it was applied from (the ``last-applied`` annotation, as kubectl does);
- the JSON merge patch (RFC 7386) that brings a live object to the desired one, empty when
  nothing changed, so a second apply writes nothing; keys applied last time and dropped from
  the config become ``null`` (deleted), keys others added (defaults, controllers) stay;
- a readable diff for ``--dry-run``;
- when a Deployment has rolled out (kubectl's ``rollout status`` rules) or failed;
- the revision records that ``deploy`` writes and ``rollback`` / ``status`` read.
"""

from __future__ import annotations

import copy
import difflib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import yaml

from mlops_sessions.hashing import sha256_json
from mlops_sessions.planning.k8s_common import ANNOTATION_PREFIX

Manifest = dict[str, Any]

LAST_APPLIED = f"{ANNOTATION_PREFIX}/last-applied"
REVISION = f"{ANNOTATION_PREFIX}/revision"
# How many revisions the history ConfigMap keeps (ConfigMaps are limited to 1 MiB).
HISTORY_LIMIT = 10

Action = Literal["create", "patch", "unchanged", "delete"]


class ObjectRef(NamedTuple):
    """Identity of one object: apiVersion, kind, namespace, name."""

    api_version: str
    kind: str
    namespace: str | None
    name: str

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind}/{where}{self.name}"


def ref(obj: Mapping[str, Any], namespace: str | None = None) -> ObjectRef:
    meta = obj.get("metadata") or {}
    return ObjectRef(
        str(obj["apiVersion"]),
        str(obj["kind"]),
        meta.get("namespace") or namespace,
        str(meta["name"]),
    )


def manifest_hash(objects: Sequence[Mapping[str, Any]]) -> str:
    """Identity of one rendered set, independent of how it is stamped for apply."""
    return sha256_json([_unstamped(obj) for obj in objects])


def _unstamped(obj: Mapping[str, Any]) -> Manifest:
    out = copy.deepcopy(dict(obj))
    annotations = (out.get("metadata") or {}).get("annotations")
    if isinstance(annotations, dict):
        annotations.pop(LAST_APPLIED, None)
        annotations.pop(REVISION, None)
        if not annotations:
            del out["metadata"]["annotations"]
    return out


def stamp(obj: Mapping[str, Any], revision: int) -> Manifest:
    """The object as applied: with the revision and the configuration it was applied from.

    The ``last-applied`` annotation is the object without stamps, so a later apply knows
    which keys it owns (and may delete) and which were added by someone else.
    """
    plain = _unstamped(obj)
    out = copy.deepcopy(plain)
    annotations = out.setdefault("metadata", {}).setdefault("annotations", {})
    annotations[REVISION] = str(revision)
    annotations[LAST_APPLIED] = json.dumps(plain, sort_keys=True, separators=(",", ":"))
    return out


def last_applied(live: Mapping[str, Any] | None) -> Manifest | None:
    if not live:
        return None
    text = ((live.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


# --- comparing and patching ---------------------------------------------------------------


def covers(live: Any, desired: Any) -> bool:
    """True when live has every value desired sets (extra keys in live are server defaults).

    Lists must have the same length and each element must be covered: a container list
    with server-filled defaults still equals the one we sent.
    """
    if isinstance(desired, Mapping):
        if not isinstance(live, Mapping):
            return False
        return all(
            covers(live[key], value) if key in live else is_zero(value)
            for key, value in desired.items()
        )
    if isinstance(desired, list):
        if not isinstance(live, list) or len(live) != len(desired):
            return False
        return all(covers(a, b) for a, b in zip(live, desired, strict=True))
    # YAML/JSON numbers: 1 and 1.0 are the same value; bool is not an int here.
    if isinstance(desired, bool) or isinstance(live, bool):
        return type(desired) is type(live) and desired == live
    return bool(live == desired)


def is_zero(value: Any) -> bool:
    """A value the API server may leave out when it answers (Go's ``omitempty``): false,
    0, "", an empty list or map. Its absence from a live object is not a difference."""
    if isinstance(value, bool):
        return value is False
    if value is None:
        return True
    if isinstance(value, (int, float)):
        return value == 0
    if isinstance(value, (str, list, dict)):
        return len(value) == 0
    return False


def merge_patch(
    live: Mapping[str, Any], desired: Mapping[str, Any], previous: Mapping[str, Any] | None
) -> Manifest:
    """RFC 7386 merge patch taking live to desired; ``{}`` when live already matches.

    ``previous`` is what we applied last time: keys in it and absent from desired are
    deleted (``null``); keys never applied by us are left alone.
    """
    patch: Manifest = {}
    for key, want in desired.items():
        have = live.get(key)
        if key not in live:
            if not is_zero(want):
                patch[key] = copy.deepcopy(want)
        elif isinstance(want, Mapping) and isinstance(have, Mapping):
            before = previous.get(key) if isinstance(previous, Mapping) else None
            sub = merge_patch(have, want, before if isinstance(before, Mapping) else None)
            if sub:
                patch[key] = sub
        elif not covers(have, want):
            patch[key] = copy.deepcopy(want)
    if previous:
        for key in previous:
            if key not in desired and key in live:
                patch[key] = None
    return patch


@dataclass(frozen=True)
class Change:
    """One object's fate in an apply: created, patched, left alone or deleted."""

    ref: ObjectRef
    action: Action
    desired: Manifest | None
    live: Manifest | None
    patch: Manifest = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"object": str(self.ref), "action": self.action}


def plan_changes(
    desired: Sequence[Manifest],
    live: Mapping[ObjectRef, Manifest | None],
    previous_refs: Iterable[ObjectRef] = (),
) -> list[Change]:
    """Changes in apply order: every desired object, then deletions of objects we dropped.

    ``desired`` objects must be stamped (:func:`stamp`); ``live`` maps each ref to the
    object on the cluster (None: absent); ``previous_refs`` are the objects the previous
    revision applied: those no longer desired and still present are deleted.
    """
    changes: list[Change] = []
    wanted = set()
    for obj in desired:
        key = ref(obj)
        wanted.add(key)
        current = live.get(key)
        if current is None:
            changes.append(Change(key, "create", obj, None, copy.deepcopy(obj)))
            continue
        patch = merge_patch(current, obj, last_applied(current))
        # A patch that only refreshes our stamps (same config) is no change at all.
        if _only_stamps(patch, obj, current):
            changes.append(Change(key, "unchanged", obj, current))
        else:
            changes.append(Change(key, "patch", obj, current, patch))
    for key in previous_refs:
        if key not in wanted and live.get(key) is not None:
            changes.append(Change(key, "delete", None, live[key]))
    return changes


def _only_stamps(patch: Manifest, desired: Manifest, live: Manifest) -> bool:
    if not patch:
        return True
    if set(patch) != {"metadata"} or set(patch["metadata"]) != {"annotations"}:
        return False
    keys = set(patch["metadata"]["annotations"] or {})
    if not keys <= {REVISION, LAST_APPLIED}:
        return False
    # The revision number changes with every deploy; the applied config must not.
    return last_applied(live) == last_applied(desired)


def diff_text(change: Change) -> str:
    """A unified YAML diff of what the change does, for ``--dry-run``."""
    before = _shown(change.live, change.desired) if change.live is not None else None
    after = _shown(change.desired, None) if change.desired is not None else None
    if before is not None and after is not None:
        # What the server leaves out of its answers (zero values) is no change: covers()
        # decides so, and the diff must agree with the decision.
        after = _without_omitted(after, before)
    old = _to_yaml(before).splitlines(keepends=True) if before is not None else []
    new = _to_yaml(after).splitlines(keepends=True) if after is not None else []
    label = str(change.ref)
    return "".join(
        difflib.unified_diff(old, new, fromfile=f"cluster: {label}", tofile=f"apply: {label}")
    )


def _shown(obj: Mapping[str, Any] | None, shape: Mapping[str, Any] | None) -> Manifest | None:
    """The object without stamps; live objects cut to the keys we set (the rest is noise)."""
    if obj is None:
        return None
    plain = _unstamped(obj)
    if shape is None:
        return plain
    owned = _unstamped(shape)
    previous = last_applied(obj)
    shown: Manifest = _project(plain, _union(owned, previous or {}))
    return shown


def _union(a: Mapping[str, Any], b: Mapping[str, Any]) -> Manifest:
    out: Manifest = copy.deepcopy(dict(a))
    for key, value in b.items():
        if key in out and isinstance(out[key], dict) and isinstance(value, Mapping):
            out[key] = _union(out[key], value)
        elif key not in out:
            out[key] = copy.deepcopy(value)
    return out


def _project(obj: Any, shape: Any) -> Any:
    if isinstance(obj, Mapping) and isinstance(shape, Mapping):
        return {k: _project(obj[k], shape[k]) for k in shape if k in obj}
    if isinstance(obj, list) and isinstance(shape, list) and len(obj) == len(shape):
        return [_project(a, b) for a, b in zip(obj, shape, strict=True)]
    return obj


def _without_omitted(obj: Any, live: Any) -> Any:
    """obj without the zero values live does not have (Go's ``omitempty`` on the server)."""
    if isinstance(obj, Mapping) and isinstance(live, Mapping):
        return {
            key: _without_omitted(value, live[key]) if key in live else value
            for key, value in obj.items()
            if key in live or not is_zero(value)
        }
    if isinstance(obj, list) and isinstance(live, list) and len(obj) == len(live):
        return [_without_omitted(a, b) for a, b in zip(obj, live, strict=True)]
    return obj


class _PlainDumper(yaml.SafeDumper):
    """Writes a repeated object out again instead of as a YAML alias (``*id001``): a
    Deployment's selector and its pod labels are often one dict, and a diff must show both."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _to_yaml(obj: Any) -> str:
    return yaml.dump(obj, Dumper=_PlainDumper, sort_keys=True, default_flow_style=False, width=100)


# --- Deployment readiness ---------------------------------------------------------------


@dataclass(frozen=True)
class Readiness:
    """Whether one Deployment is ready: done, failed (with why) or still going. (Not the
    progressive rollout, which is planning.rollout.)"""

    done: bool
    failed: str | None
    message: str


def readiness(deployment: Mapping[str, Any]) -> Readiness:
    """kubectl's ``rollout status`` rules on one live Deployment."""
    meta = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    name = meta.get("name", "?")
    generation = int(meta.get("generation") or 0)
    observed = int(status.get("observedGeneration") or 0)
    if generation == 0 or observed < generation:
        return Readiness(False, None, f"{name}: waiting for the controller to see the update")
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and (
            condition.get("reason") == "ProgressDeadlineExceeded"
        ):
            why = condition.get("message") or "progress deadline exceeded"
            return Readiness(False, f"{name}: {why}", f"{name}: {why}")
    wanted = int(spec.get("replicas", 1))
    updated = int(status.get("updatedReplicas") or 0)
    total = int(status.get("replicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    if updated < wanted:
        return Readiness(False, None, f"{name}: {updated} of {wanted} replicas updated")
    if total > updated:
        return Readiness(False, None, f"{name}: {total - updated} old replicas pending termination")
    if available < updated:
        return Readiness(False, None, f"{name}: {available} of {updated} replicas available")
    return Readiness(True, None, f"{name}: rolled out ({available} available)")


# --- revisions ----------------------------------------------------------------------------


def revision_key(number: int) -> str:
    return f"r{number:06d}"


def traffic_weights(objects: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Subset -> weight of the VirtualService's default (last) route; {} without Istio."""
    for obj in objects:
        if obj.get("kind") != "VirtualService":
            continue
        routes = (obj.get("spec") or {}).get("http") or []
        if not routes:
            return {}
        weights: dict[str, int] = {}
        for dest in routes[-1].get("route") or []:
            subset = (dest.get("destination") or {}).get("subset") or "default"
            weights[str(subset)] = int(dest.get("weight", 100))
        return weights
    return {}


def deployments(objects: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [obj for obj in objects if obj.get("kind") == "Deployment"]


def images(objects: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Deployment name -> the image of its first container."""
    out: dict[str, str] = {}
    for dep in deployments(objects):
        containers = (((dep.get("spec") or {}).get("template") or {}).get("spec") or {}).get(
            "containers"
        ) or []
        if containers:
            out[str(dep["metadata"]["name"])] = str(containers[0].get("image", ""))
    return out


def digest_of(image: str) -> str | None:
    return image.split("@", 1)[1] if "@" in image else None


def next_revision(numbers: Iterable[int]) -> int:
    return max(numbers, default=0) + 1


def pick_target(
    history: Sequence[Mapping[str, Any]], current: int | None, named: int | None
) -> Mapping[str, Any] | None:
    """The revision record rollback returns to: the named one, or the last good one before
    the current one. ``history`` is oldest first; only revisions that rolled out count
    for the implicit choice (a failed one was already restored)."""
    if named is not None:
        for record in history:
            if int(record["revision"]) == named:
                return record
        return None
    before = [r for r in history if current is None or int(r["revision"]) < current]
    good = [r for r in before if r.get("status") == "rolled-out"]
    if current is not None:
        current_record = next((r for r in history if int(r["revision"]) == current), None)
        if current_record is not None:
            # Skip revisions identical to the running one: "previous" means a different set.
            good = [
                r for r in good if r.get("manifest_hash") != current_record.get("manifest_hash")
            ]
    return good[-1] if good else None


# --- references the cluster must already hold ---------------------------------------------


@dataclass(frozen=True)
class SecretUse:
    """One Secret (and maybe one key of it) that a pod of the rendered set reads."""

    secret: str
    key: str | None
    used_by: str


def secret_uses(objects: Sequence[Mapping[str, Any]]) -> list[SecretUse]:
    """Every non-optional Secret reference in the pod templates: env, envFrom, volumes and
    image pull secrets. ``deploy`` checks these exist before it writes anything."""
    uses: list[SecretUse] = []
    for dep in deployments(objects):
        owner = f"Deployment/{dep['metadata']['name']}"
        pod = ((dep.get("spec") or {}).get("template") or {}).get("spec") or {}
        containers = [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]
        for container in containers:
            where = f"{owner} container {container.get('name')}"
            for env in container.get("env") or []:
                selector = (env.get("valueFrom") or {}).get("secretKeyRef")
                if selector and not selector.get("optional"):
                    uses.append(SecretUse(selector["name"], selector.get("key"), where))
            for source in container.get("envFrom") or []:
                selector = source.get("secretRef")
                if selector and not selector.get("optional"):
                    uses.append(SecretUse(selector["name"], None, where))
        for volume in pod.get("volumes") or []:
            secret = volume.get("secret")
            if secret and not secret.get("optional"):
                uses.append(SecretUse(secret["secretName"], None, f"{owner} volume"))
        for pull in pod.get("imagePullSecrets") or []:
            uses.append(SecretUse(pull["name"], None, f"{owner} imagePullSecrets"))
    unique: dict[tuple[str, str | None], SecretUse] = {}
    for use in uses:
        unique.setdefault((use.secret, use.key), use)
    return list(unique.values())
