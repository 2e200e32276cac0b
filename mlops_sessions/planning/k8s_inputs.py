"""Render's inputs: which images a model's tracks run, the ``--image`` overrides, and the
RenderInputs made from the builds the caller resolved.

``<image-name>`` is the key under ``images:`` in mlops.yaml. ``--image NAME=REF@sha256:...``
on the command line wins over the recorded build (lineage is then unknown and left out).
Pure: the recorded builds are read by :mod:`mlops_sessions.drivers.render_inputs` and passed
in as :class:`~mlops_sessions.planning.k8s_pod.Build` values.
"""

from __future__ import annotations

from collections.abc import Sequence

from mlops_sessions.config import Config, ModelConfig
from mlops_sessions.errors import StepError
from mlops_sessions.planning.k8s_pod import Build
from mlops_sessions.planning.manifests import IMAGE_BY_DIGEST, RenderInputs


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


def image_names(config: Config, model: ModelConfig) -> tuple[str, str | None]:
    """(the stable track's image name, the canary's when it runs another image)."""
    if model.image is None:
        raise StepError(
            f"model {model.name!r} names no image to deploy; set models.{model.name}.image "
            f"to one of the images under 'images:' ({', '.join(config.images) or 'none'})"
        )
    rollout = model.rollout
    if rollout is not None and rollout.canary is not None:
        canary_name = rollout.canary.image or model.image
        # The same image name on both tracks means the same build: the canary runs stable.
        if canary_name != model.image:
            return model.image, canary_name
    return model.image, None


def inputs_for(
    config: Config, model: ModelConfig, stable: Build, canary: Build | None = None
) -> RenderInputs:
    """RenderInputs for one model from its builds, resolved by the caller (the recorded
    latest build of each image, or an --image override)."""
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
