"""The release policy: may this build go to this target? A pure decision.

The deploy step (and ``rollback``/``promote`` where they put a model into service) gathers
the facts from the records — the blessed model, every model ever blessed, each image's
latest build and scan record — and this module says every reason it must not go (an
empty list: it may). ``--force`` overrides each reason, and the revision record says so.

The rules:

- the model the new build carries must be the blessed one: a model that did not pass the
  gate is not deployed; the stable track of a canary release must be a model that was
  blessed at some point;
- an image whose scan failed is not deployed;
- a build from a dirty git tree (its build record says so, or its tag carries the dirty
  suffix of :mod:`planning.tags`) does not go to a protected target (``deploy.protected``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from mlops_sessions.config import ModelConfig
from mlops_sessions.planning import tags
from mlops_sessions.planning.manifests import RenderInputs


@dataclass(frozen=True)
class ReleaseFacts:
    """What the records say about a model and its images."""

    blessed_hash: str | None  # model_hash of the blessed run (None: never blessed)
    ever_blessed: Collection[str]  # every model_hash ever blessed
    # Per image name (the model's stable and canary images): the latest build and scan
    # records (None where there is none) and where the scan record lives, for messages.
    builds: Mapping[str, Mapping[str, Any] | None] = field(default_factory=dict)
    scans: Mapping[str, Mapping[str, Any] | None] = field(default_factory=dict)
    scan_paths: Mapping[str, str] = field(default_factory=dict)


def image_names(model: ModelConfig) -> list[str]:
    """The images a deploy of model ships: stable, then a distinct canary image."""
    names = [model.image] if model.image else []
    if model.rollout is not None and model.rollout.canary is not None:
        canary = model.rollout.canary.image
        if canary and canary not in names:
            names.append(canary)
    return names


def built_dirty(record: Mapping[str, Any] | None) -> bool:
    """Whether a build record is of a dirty git tree: its flag, or its tags say so."""
    if not record:
        return False
    if record.get("git_dirty") or record.get("dirty"):
        return True
    return any(tags.is_dirty_tag(str(tag)) for tag in record.get("tags") or [])


def problems(
    model: ModelConfig,
    inputs: RenderInputs,
    facts: ReleaseFacts,
    *,
    overridden: Collection[str] = (),
    profile: str | None = None,
) -> list[str]:
    """Every reason the policy refuses this deploy (empty: it may go).

    overridden: image names given on the command line (``--image``): they carry no build
    record, so the dirty-tree rule cannot be judged for them.
    """
    found: list[str] = []
    incoming = inputs.canary_model_hash or inputs.model_hash
    if incoming is None:
        found.append(
            f"the image's model is unknown (no model_hash in its build record"
            f"{' — --image carries no lineage' if overridden else ''}); deploy a recorded "
            "build of a blessed model"
        )
    elif facts.blessed_hash is None:
        found.append(
            f"model {model.name!r} has no blessed run: it did not pass the gate; run "
            f"`mlops evaluate {model.name}`"
        )
    elif facts.blessed_hash != incoming:
        found.append(
            f"the image carries model {incoming[:12]}, but the blessed model is "
            f"{facts.blessed_hash[:12]}: this model did not pass the gate; "
            f"evaluate it (`mlops evaluate {model.name}`) or build the blessed one"
        )
    if (
        facts.blessed_hash is not None
        and inputs.canary_model_hash is not None
        and inputs.model_hash not in facts.ever_blessed
    ):
        found.append(f"the stable track's model {str(inputs.model_hash)[:12]} was never blessed")
    for name in image_names(model):
        verdict = facts.scans.get(name)
        if verdict is not None and verdict.get("passed") is False:
            summary = verdict.get("summary") or verdict.get("reason") or ""
            found.append(
                f"image {name!r} failed its scan ({facts.scan_paths.get(name, 'scan record')})"
                + (f": {summary}" if summary else "")
                + "; fix the findings and rebuild"
            )
        if (
            model.deploy.protected
            and name not in overridden
            and built_dirty(facts.builds.get(name))
        ):
            target = f"profile {profile!r}" if profile else "this target"
            found.append(
                f"image {name!r} was built from a dirty git tree and {target} is protected "
                "(deploy.protected); commit and rebuild"
            )
    return found
