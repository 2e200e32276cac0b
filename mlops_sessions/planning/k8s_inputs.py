"""Where render's image digests come from: recorded builds, or ``--image`` overrides.

A pushed image is recorded in the store (``records.builds``) as
``.mlops/builds/<image-name>/latest.json``::

    {"image": "registry/repo@sha256:<64 hex>", "model_hash": "...",
     "run_id": "...", "git_commit": "..."}

``<image-name>`` is the key under ``images:`` in mlops.yaml. ``--image NAME=REF@sha256:...``
on the command line wins over the record (lineage is then unknown and left out). A model
with no digest from either source cannot be rendered: tags move, digests do not.
This module only reads files; it never builds, pulls or asks a registry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from mlops_sessions.config import Config, ModelConfig
from mlops_sessions.errors import StepError
from mlops_sessions.planning.k8s_pod import Build
from mlops_sessions.planning.manifests import IMAGE_BY_DIGEST, RenderInputs
from mlops_sessions.records import builds
from mlops_sessions.records.io import read_record


def build_record(store_root: Path, image_name: str) -> Path:
    """Where the pushed build of an image is recorded (the layout is records.builds')."""
    return builds.record_path(store_root, image_name, "latest")


def parse_overrides(values: Sequence[str], config: Config) -> dict[str, str]:
    """``["serve=reg/repo@sha256:..."]`` -> ``{"serve": "reg/repo@sha256:..."}``, checked."""
    out: dict[str, str] = {}
    for value in values:
        name, sep, ref = value.partition("=")
        if not sep or not name or not ref:
            raise StepError(
                f"--image {value!r}: expected NAME=REGISTRY/REPO@sha256:<digest>, where NAME "
                f"is an image under 'images:' ({', '.join(config.images) or 'none declared'})"
            )
        if name not in config.images:
            raise StepError(
                f"--image {value!r}: no image named {name!r} under 'images:' in the config "
                f"(declared: {', '.join(config.images) or 'none'})"
            )
        if IMAGE_BY_DIGEST.match(ref) is None:
            raise StepError(
                f"--image {value!r}: the reference must be pinned by digest, "
                "REGISTRY/REPO@sha256:<64 hex> (get it from `docker buildx imagetools "
                "inspect` or the push output); tags are refused because they can move"
            )
        out[name] = ref
    return out


def find_build(config: Config, image_name: str, overrides: Mapping[str, str]) -> Build:
    """The build of one image: an override, else the recorded latest build."""
    if image_name in overrides:
        return Build(overrides[image_name])
    path = build_record(config.store_path, image_name)
    record = read_record(
        path,
        fix=f"push the image again (`mlops push`) or pass "
        f"--image {image_name}=REGISTRY/REPO@sha256:<digest>",
    )
    if record is None:
        raise StepError(
            f"no image digest recorded for image {image_name!r} (looked for {path}); "
            f"build and push it first (`mlops build` then `mlops push`, or `nox -s push`), "
            f"or pass --image {image_name}=REGISTRY/REPO@sha256:<digest>"
        )
    image = record.get("image")
    if not isinstance(image, str) or IMAGE_BY_DIGEST.match(image) is None:
        raise StepError(
            f"the build record {path} has no image pinned by digest (found {image!r}); "
            f"push the image so its digest is recorded, or pass "
            f"--image {image_name}=REGISTRY/REPO@sha256:<digest>"
        )

    def text(key: str) -> str | None:
        value = record.get(key)
        return str(value) if value is not None else None

    return Build(image, text("run_id"), text("model_hash"), text("git_commit"))


def inputs_for(
    config: Config, model: ModelConfig, overrides: Mapping[str, str] | None = None
) -> RenderInputs:
    """RenderInputs for one model from the store's build records and the overrides."""
    overrides = overrides or {}
    if model.image is None:
        raise StepError(
            f"model {model.name!r} names no image to deploy; set models.{model.name}.image "
            f"to one of the images under 'images:' ({', '.join(config.images) or 'none'})"
        )
    stable = find_build(config, model.image, overrides)
    canary: Build | None = None
    rollout = model.rollout
    if rollout is not None and rollout.canary is not None:
        canary_name = rollout.canary.image or model.image
        # The same image name on both tracks means the same build: the canary runs stable.
        if canary_name != model.image:
            canary = find_build(config, canary_name, overrides)
    return RenderInputs(
        stable_image=stable.image,
        run_id=stable.run_id,
        model_hash=stable.model_hash,
        git_commit=stable.git_commit,
        config_hash=config.model_hash(model.name),
        canary_image=canary.image if canary else None,
        canary_run_id=canary.run_id if canary else None,
        canary_model_hash=canary.model_hash if canary else None,
        canary_git_commit=canary.git_commit if canary else None,
    )
