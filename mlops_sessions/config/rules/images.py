"""Images and GPUs: image sections that hold together, GPU work on an image whose base has
CUDA (training and serving), the base's TensorFlow against the requirements lock.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mlops_sessions.config.locate import Locator
from mlops_sessions.config.model import Config, ModelConfig
from mlops_sessions.config.rules.base import Finding, models_of, trains_in_image
from mlops_sessions.errors import Problem


def image_problems(doc: dict[str, Any], locator: Locator, root: Path) -> list[Problem]:
    out: list[Problem] = []
    for name, image in (doc.get("images") or {}).items():
        tag = image.get("tag") or {}
        path = ("images", name, "tag")
        if tag.get("policy") == "template" and not tag.get("template"):
            out.append(
                locator.problem(
                    (*path, "policy"),
                    "policy 'template' needs a template",
                    "add tag.template, e.g. 'prod-{date}'",
                )
            )
        if tag.get("template") and tag.get("policy", "git-commit") != "template":
            out.append(
                locator.problem(
                    (*path, "template"),
                    "a template is only used with policy 'template'",
                    "set tag.policy: template, or remove tag.template",
                )
            )
        template = tag.get("template", "")
        if template and template.strip().lower() == "latest":
            out.append(
                locator.problem(
                    (*path, "template"),
                    "the tag 'latest' is never produced: it is not reproducible",
                    "use a template with {commit}, {date} or {version}",
                )
            )
        elif template and not re.search(r"\{(commit|short|date|version)\}", template):
            out.append(
                locator.problem(
                    (*path, "template"),
                    f"template '{template}' gives every build the same tag",
                    "include {commit}, {short}, {date} or {version} so each build is unique",
                )
            )
        if image.get("base", {}).get("gpu") is not None and "image" not in image.get("base", {}):
            out.append(
                locator.problem(
                    ("images", name, "base", "gpu"),
                    "'gpu' only applies to a named base image",
                    "remove it; variants say it already",
                )
            )
    return out


_TF_PIN = re.compile(
    r"^\s*(tensorflow|tensorflow-cpu|tensorflow-gpu|tensorflow\[and-cuda\])\s*==\s*([0-9.]+)",
    re.I | re.M,
)


def gpu_image_problems(doc: dict[str, Any], locator: Locator, root: Path) -> list[Problem]:
    """GPU training must run on a GPU-capable base; the base's TF must match the lock."""
    out: list[Problem] = []
    images = doc.get("images") or {}
    for name, model in models_of(doc):
        train = model.get("train") or {}
        gpus = (train.get("resources") or {}).get("gpu", 0)
        image_name = train.get("image") or model.get("image")
        if not (trains_in_image(train) and gpus and image_name in images):
            continue
        base = images[image_name].get("base", {})
        has_gpu = base.get("variant") in ("gpu", "gpu-jupyter") or bool(base.get("gpu"))
        if not has_gpu:
            out.append(
                locator.problem(
                    ("models", name, "train", "resources", "gpu"),
                    f"{gpus} GPU(s) requested but image '{image_name}' has a CPU-only base",
                    f"set images.{image_name}.base.variant to 'gpu' "
                    "(or gpu: true for a named CUDA image)",
                )
            )
    requirements = (doc.get("python") or {}).get("requirements")
    pinned = None
    if requirements:
        try:
            match = _TF_PIN.search((root / requirements).read_text())
            pinned = match.group(2) if match else None
        except (OSError, UnicodeDecodeError, ValueError):
            pinned = None  # an unreadable lock is reported by the steps that install it
    for image_name, image in images.items():
        tf_version = image.get("base", {}).get("tensorflow")
        if (
            pinned
            and tf_version
            and not pinned.startswith(tf_version)
            and not tf_version.startswith(pinned)
        ):
            out.append(
                locator.problem(
                    ("images", image_name, "base", "tensorflow"),
                    f"base TensorFlow {tf_version} differs from {pinned} pinned in {requirements}",
                    "train and serve must use the same TensorFlow: align the base with the lock",
                )
            )
    return out


def serving_gpu_findings(config: Config, model: ModelConfig) -> list[Finding]:
    """GPUs requested for serving need a serve image whose base has CUDA."""
    gpus = model.deploy.resources.gpu_limit
    if gpus <= 0:
        return []
    names = [model.image]
    if model.rollout is not None and model.rollout.canary is not None:
        names.append(model.rollout.canary.image or model.image)
    resources = ("models", model.name, "deploy", "resources")
    where = (*resources, "gpu") if model.deploy.resources.gpu else (*resources, "limits", "gpu")
    out: list[Finding] = []
    for name in dict.fromkeys(n for n in names if n is not None):
        image = config.images.get(name)
        if image is not None and not image.base.has_gpu:
            out.append(
                Finding(
                    where,
                    f"{gpus} GPU(s) requested for serving but image '{name}' has a CPU-only base",
                    f"set images.{name}.base.variant to 'gpu' (or gpu: true for a named CUDA "
                    "image), or drop the GPUs from deploy.resources",
                )
            )
    return out
