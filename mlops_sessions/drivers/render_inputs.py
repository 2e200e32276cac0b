"""Resolve render's inputs from the store: the recorded latest build of each image a model
runs (or its ``--image`` override), handed to the pure planner as data.

A pushed image is recorded in the store (``records.builds``) as
``.mlops/builds/<image-name>/latest.json``::

    {"image": "registry/repo@sha256:<64 hex>", "model_hash": "...",
     "run_id": "...", "git_commit": "..."}

A model with no digest from either source cannot be rendered: tags move, digests do not.
This module only reads files; it never builds, pulls or asks a registry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from mlops_sessions.config import Config, ModelConfig
from mlops_sessions.errors import StepError
from mlops_sessions.planning import k8s_inputs
from mlops_sessions.planning.k8s_pod import Build
from mlops_sessions.planning.manifests import IMAGE_BY_DIGEST, RenderInputs
from mlops_sessions.records import builds
from mlops_sessions.records.io import read_record


def build_record(store_root: Path, image_name: str) -> Path:
    """Where the pushed build of an image is recorded (the layout is records.builds')."""
    return builds.record_path(store_root, image_name, "latest")


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
    stable_name, canary_name = k8s_inputs.image_names(config, model)
    stable = find_build(config, stable_name, overrides)
    canary = find_build(config, canary_name, overrides) if canary_name is not None else None
    inputs = k8s_inputs.inputs_for(config, model, stable, canary)
    if model.evaluate is not None and model.evaluate.sign is not None:
        # evaluate.sign: the pods that fetch the model verify it (docs/model-signing.md).
        from mlops_sessions.drivers import model_signing

        inputs = replace(inputs, model_signatures=model_signing.render_facts(config, model, inputs))
    return inputs
