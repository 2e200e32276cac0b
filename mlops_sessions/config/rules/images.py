"""Images and GPUs: image sections that hold together, GPU work on an image whose base has
CUDA (training and serving), the base's TensorFlow against the requirements lock.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mlops_sessions.config.locate import Locator
from mlops_sessions.config.model import Config, ModelConfig
from mlops_sessions.config.rules.base import Finding, Path_
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


def tensorflow_pin_problems(doc: dict[str, Any], locator: Locator, root: Path) -> list[Problem]:
    """Train and serve use one TensorFlow: each base's version must match the lock's pin."""
    out: list[Problem] = []
    images = doc.get("images") or {}
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


def gpu_base_findings(config: Config, model: ModelConfig) -> list[Finding]:
    """The one rule for GPU work and images: GPUs requested for training in the train image,
    or for serving, need an image whose base has CUDA."""
    out: list[Finding] = []
    train = model.train
    if train is not None and train.in_image and train.resources.gpu:
        where: Path_ = ("models", model.name, "train", "resources", "gpu")
        out += _cuda_bases(config, [train.image or model.image], train.resources.gpu, where)
    gpus = model.deploy.resources.gpu_limit
    if gpus > 0:
        names = [model.image]
        if model.rollout is not None and model.rollout.canary is not None:
            names.append(model.rollout.canary.image or model.image)
        resources = ("models", model.name, "deploy", "resources")
        where = (*resources, "gpu") if model.deploy.resources.gpu else (*resources, "limits", "gpu")
        out += _cuda_bases(config, names, gpus, where, serving=True)
    return out


def _cuda_bases(
    config: Config, names: list[str | None], gpus: int, where: Path_, *, serving: bool = False
) -> list[Finding]:
    out: list[Finding] = []
    for name in dict.fromkeys(n for n in names if n is not None):
        image = config.images.get(name)
        if image is not None and not image.base.has_gpu:
            out.append(
                Finding(
                    where,
                    f"{gpus} GPU(s) requested{' for serving' if serving else ''} but image "
                    f"'{name}' has a CPU-only base",
                    f"set images.{name}.base.variant to 'gpu' (or gpu: true for a named CUDA "
                    "image)" + (", or drop the GPUs from deploy.resources" if serving else ""),
                )
            )
    return out
