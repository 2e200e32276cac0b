"""Names and references: images and data inputs a model names must be declared, a model
trained in a container names an image of kind ``train``, label keys Kubernetes accepts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlops_sessions.config.locate import Locator
from mlops_sessions.config.model import ModelConfig
from mlops_sessions.config.rules.base import Finding, Path_, models_of, name_hint, trains_in_image
from mlops_sessions.errors import Problem


def reference_problems(doc: dict[str, Any], locator: Locator, root: Path) -> list[Problem]:
    images = list(doc.get("images", {}))
    data = list(doc.get("data", {}))
    out: list[Problem] = []
    for name, model in models_of(doc):
        base = ("models", name)
        refs: list[tuple[tuple[str | int, ...], Any]] = [((*base, "image"), model.get("image"))]
        train = model.get("train") or {}
        refs.append(((*base, "train", "image"), train.get("image")))
        canary = (model.get("rollout") or {}).get("canary") or {}
        refs.append(((*base, "rollout", "canary", "image"), canary.get("image")))
        for path, ref in refs:
            if ref is not None and ref not in images:
                out.append(
                    locator.problem(
                        path, f"unknown image '{ref}'", name_hint(ref, images, "images", "images")
                    )
                )
        for index, item in enumerate(train.get("inputs", [])):
            if item not in data:
                out.append(
                    locator.problem(
                        (*base, "train", "inputs", index),
                        f"unknown data input '{item}'",
                        name_hint(item, data, "data inputs", "data"),
                    )
                )
        train_image = train.get("image") or model.get("image")
        if trains_in_image(train) and not train_image:
            out.append(
                locator.problem(
                    (*base, "train", "backend" if train.get("backend") else "container"),
                    "container training needs an image",
                    "set train.image (or the model's image) to an entry under 'images'",
                )
            )
        elif trains_in_image(train) and train_image in images:
            kind = ((doc.get("images") or {}).get(train_image) or {}).get("kind", "serve")
            if kind != "train":
                # A serve image carries the blessed model: it cannot exist before training.
                out.append(
                    locator.problem(
                        (*base, "train", "image" if train.get("image") else "container"),
                        f"container training needs an image of kind 'train', and image "
                        f"'{train_image}' is of kind '{kind}'",
                        "add an image with kind: train under 'images' and set train.image to it",
                    )
                )
    return out


def label_key_problem(key: str) -> str:
    """What is wrong with a label key beyond the schema's pattern ('' when nothing)."""
    prefix, _, _name = key.rpartition("/")
    if len(prefix) > 253:
        return f"the prefix of label key {key[:40]!r}... is longer than 253 characters"
    return ""


def label_key_findings(model: ModelConfig) -> list[Finding]:
    base = ("models", model.name, "deploy")
    keys: list[tuple[Path_, str]] = [
        ((*base, "node_selector", key), key) for key in model.deploy.node_selector
    ]
    for index, toleration in enumerate(model.deploy.tolerations):
        if toleration.get("key"):
            keys.append(((*base, "tolerations", index, "key"), str(toleration["key"])))
    return [
        Finding(path, problem, "a label key prefix is a DNS subdomain of at most 253 characters")
        for path, key in keys
        if (problem := label_key_problem(key))
    ]
