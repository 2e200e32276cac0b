"""What a progressive rollout applies: the objects of each step, of the promotion and of
the abort, derived from the rendered (or recorded) manifests of a revision.

Pure: the state machine (:mod:`mlops_sessions.planning.rollout`) says which step is next,
this module says which objects that step changes. The VirtualService's routes come from
the one builder render uses (:func:`mlops_sessions.planning.istio_routing.http_routes`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from mlops_sessions.config import ModelConfig
from mlops_sessions.errors import StepError
from mlops_sessions.planning import istio_routing
from mlops_sessions.planning.rollout import step_weights

Manifest = dict[str, Any]


def progressive(model: ModelConfig) -> bool:
    """Whether deploys of model go through the steps (``rollout.steps`` non-empty)."""
    return model.rollout is not None and bool(model.rollout.steps)


def _find(objects: Sequence[Manifest], kind: str, suffix: str = "") -> Manifest | None:
    for obj in objects:
        if obj.get("kind") == kind and str(obj["metadata"]["name"]).endswith(suffix):
            return obj
    return None


def with_weights(
    objects: Sequence[Manifest], weights: Mapping[str, int], ab: Sequence[Manifest] = ()
) -> list[Manifest]:
    """objects with the VirtualService split by weights; ab: the A/B matches to keep
    sending to the canary (empty: no A/B route). The routes are rebuilt by the one builder
    render uses (:func:`istio_routing.http_routes`), aimed where the rendered ones point."""
    out = copy.deepcopy(list(objects))
    vs = _find(out, "VirtualService")
    if vs is None:
        return out
    target = istio_routing.RouteTarget.read(vs)
    split = {"stable": int(weights["stable"]), "canary": int(weights["canary"])}
    vs["spec"]["http"] = istio_routing.http_routes(target, split, ab)
    return out


def with_canary_replicas(objects: Sequence[Manifest], replicas: int) -> list[Manifest]:
    out = copy.deepcopy(list(objects))
    canary = _find(out, "Deployment", "-canary")
    if canary is not None:
        canary["spec"]["replicas"] = replicas
    return out


def steady_state(objects: Sequence[Manifest]) -> list[Manifest]:
    """Outside a rollout: 100 % stable, no A/B route (the canary runs nothing), canary at 0."""
    return with_canary_replicas(with_weights(objects, step_weights(0)), 0)


def during(
    objects: Sequence[Manifest], canary_weight: int, canary_replicas: int, ab: Sequence[Manifest]
) -> list[Manifest]:
    """What runs during a step: the canary up, the split at the step's weight, A/B kept."""
    return with_canary_replicas(
        with_weights(objects, step_weights(canary_weight), ab), canary_replicas
    )


def only(objects: Sequence[Manifest], kinds_and_names: Sequence[tuple[str, str]]) -> list[Manifest]:
    """The objects whose (kind, name suffix) is listed, in the listed order."""
    out = []
    for kind, suffix in kinds_and_names:
        obj = _find(objects, kind, suffix)
        if obj is not None:
            out.append(copy.deepcopy(obj))
    return out


def promotion_stages(final: Sequence[Manifest]) -> list[tuple[str, list[Manifest]]]:
    """The order a promotion applies the promoted set in, each stage waited for before the
    next: stable takes the canary's build and rolls out (the split untouched), then 100 %
    stable, then the canary to 0. Objects a stage leaves out are not touched by it."""
    rest = [
        copy.deepcopy(o)
        for o in final
        if o.get("kind") != "VirtualService"
        and not (o.get("kind") == "Deployment" and str(o["metadata"]["name"]).endswith("-canary"))
    ]
    return [
        ("stable takes the canary's build", rest),
        ("100% stable", only(final, [("VirtualService", "")])),
        # The rest of final went out in the stages before: only the canary is left.
        ("canary scaled to 0", only(final, [("Deployment", "-canary")])),
    ]


def step_plan(
    objects: Sequence[Manifest], steps: Sequence[int], canary_replicas: int, ab: Sequence[Manifest]
) -> list[tuple[str, list[Manifest]]]:
    """(name, objects it changes) for each step, then promote and abort: what `mlops render`
    shows of a rollout. The first step also scales the canary up."""
    plan: list[tuple[str, list[Manifest]]] = []
    for index, weight in enumerate(steps):
        changed = during(objects, weight, canary_replicas, ab)
        picks = [("VirtualService", "")]
        if index == 0:
            picks.insert(0, ("Deployment", "-canary"))
        plan.append((f"step-{index + 1}-canary-{weight}", only(changed, picks)))
    final = steady_state(objects)
    plan.append(
        ("promote", only(final, [("Deployment", "-stable"), ("VirtualService", ""),
                                 ("Deployment", "-canary")]))
    )  # fmt: skip
    plan.append(("abort", only(final, [("VirtualService", ""), ("Deployment", "-canary")])))
    return plan


def canary_set(final: Sequence[Manifest], running: Sequence[Manifest]) -> list[Manifest]:
    """The objects a rollout steps through: the promoted set, but with the stable
    Deployment exactly as the running revision recorded it (stable keeps what runs now,
    byte for byte, until the promotion)."""
    stable_now = _find(running, "Deployment", "-stable")
    if stable_now is None:
        raise StepError("the running revision has no stable Deployment to keep")
    out = []
    for obj in final:
        if obj.get("kind") == "Deployment" and str(obj["metadata"]["name"]).endswith("-stable"):
            out.append(copy.deepcopy(stable_now))
        else:
            out.append(copy.deepcopy(obj))
    return out


def running_image(record: Mapping[str, Any] | None, app: str) -> str | None:
    """The stable track's image in a revision record (None: nothing runs)."""
    if not record:
        return None
    image = (record.get("images") or {}).get(f"{app}-stable")
    return str(image) if image else None


def render_plan(
    model: ModelConfig, objects: Sequence[Manifest]
) -> list[tuple[str, list[Manifest]]]:
    """What ``mlops render`` shows of model's rollout (empty without rollout.steps): per
    step the objects it applies, then the promotion's and the abort's."""
    if not progressive(model):
        return []
    assert model.rollout is not None and model.rollout.canary is not None
    ab = istio_routing.ab_matches(model.rollout)
    return step_plan(objects, model.rollout.steps, model.rollout.canary.replicas, ab)
