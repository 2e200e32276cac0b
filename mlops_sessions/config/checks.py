"""Cross-field checks: rules JSON Schema cannot express, run after the schema passes.

Each check reads the effective document and appends problems located by the loader's
Locator. They are pure: no file other than the requirements lock is read, nothing imported.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_sessions.config import ALWAYS_PRODUCED, BUILTIN_METRICS, LATENCY_PERCENTILES
from mlops_sessions.errors import Problem

if TYPE_CHECKING:
    from mlops_sessions.config.loader import Locator

Check = Callable[[dict[str, Any], "Locator", Path], list[Problem]]


def cross_field(doc: dict[str, Any], locator: Locator, root: Path) -> list[Problem]:
    problems: list[Problem] = []
    for check in (_references, _resources, _thresholds, _rollout, _images, _deploy, _gpu_images):
        problems.extend(check(doc, locator, root))
    return problems


def _suggest(word: str, names: list[str]) -> str:
    from mlops_sessions.config.loader import suggest

    return suggest(word, names)


def _name_hint(word: str, names: list[str], kind: str, section: str) -> str:
    return _suggest(word, names) or (
        f"declared {kind}: {', '.join(names)}" if names else f"declare it under '{section}'"
    )


def _models(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return list(doc.get("models", {}).items())


def _references(doc: dict[str, Any], locator: Locator, root: Path) -> list[Problem]:
    images = list(doc.get("images", {}))
    data = list(doc.get("data", {}))
    out: list[Problem] = []
    for name, model in _models(doc):
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
                        path, f"unknown image '{ref}'", _name_hint(ref, images, "images", "images")
                    )
                )
        for index, item in enumerate(train.get("inputs", [])):
            if item not in data:
                out.append(
                    locator.problem(
                        (*base, "train", "inputs", index),
                        f"unknown data input '{item}'",
                        _name_hint(item, data, "data inputs", "data"),
                    )
                )
        train_image = train.get("image") or model.get("image")
        if train.get("container") and not train_image:
            out.append(
                locator.problem(
                    (*base, "train", "container"),
                    "container training needs an image",
                    "set train.image (or the model's image) to an entry under 'images'",
                )
            )
        elif train.get("container") and train_image in images:
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


_CPU = re.compile(r"^([0-9.]+)(m?)$")
_MEM_UNITS = {
    "": 1,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def cpu_cores(value: str | float | int) -> float:
    if isinstance(value, (int, float)):
        return float(value)  # `cpu: 0.00001` is a number; str() would give '1e-05'
    match = _CPU.match(value)
    assert match, value
    number = float(match.group(1))
    return number / 1000 if match.group(2) else number


def memory_bytes(value: str) -> float:
    match = re.match(r"^([0-9.]+)([A-Za-z]*)$", value)
    assert match, value
    return float(match.group(1)) * _MEM_UNITS[match.group(2)]


# Quantities whose limit must not be below the request: (key, name in messages, parser).
_LIMITED: tuple[tuple[str, str, Callable[[Any], float]], ...] = (
    ("cpu", "CPU", cpu_cores),
    ("memory", "memory", memory_bytes),
)


def _resources(doc: dict[str, Any], locator: Locator, root: Path) -> list[Problem]:
    out: list[Problem] = []
    for name, model in _models(doc):
        for section in ("train", "deploy"):
            res = (model.get(section) or {}).get("resources")
            if not res:
                continue
            base = ("models", name, section, "resources")
            limits = res.get("limits") or {}
            if "gpu" in limits and limits["gpu"] < res.get("gpu", 0):
                out.append(
                    locator.problem(
                        (*base, "limits", "gpu"),
                        f"GPU limit {limits['gpu']} is below the request {res.get('gpu', 0)}",
                        "raise limits.gpu or lower gpu; Kubernetes needs limit >= request",
                    )
                )
            for field, label, measure in _LIMITED:
                if (
                    field in limits
                    and field in res
                    and measure(limits[field]) < measure(res[field])
                ):
                    out.append(
                        locator.problem(
                            (*base, "limits", field),
                            f"{label} limit {limits[field]} is below the request {res[field]}",
                            f"raise limits.{field} or lower {field}",
                        )
                    )
    return out


def _thresholds(doc: dict[str, Any], locator: Locator, root: Path) -> list[Problem]:
    out: list[Problem] = []
    for name, model in _models(doc):
        ev = model.get("evaluate")
        if not ev:
            continue
        base = ("models", name, "evaluate")
        produced = dict(ALWAYS_PRODUCED)
        custom_names: set[str] = set()
        for index, metric in enumerate(ev.get("metrics", ["accuracy"])):
            if isinstance(metric, dict):
                if metric["name"] in BUILTIN_METRICS or metric["name"] in custom_names:
                    out.append(
                        locator.problem(
                            (*base, "metrics", index, "name"),
                            f"metric name '{metric['name']}' is already taken",
                            "give the custom metric a name of its own",
                        )
                    )
                custom_names.add(metric["name"])
                produced[metric["name"]] = metric.get("higher_is_better", True)
            else:
                produced[metric] = BUILTIN_METRICS[metric]
        for batch in (ev.get("latency") or {}).get(
            "batch_sizes", [1] if ev.get("latency") is not None else []
        ):
            for pct in LATENCY_PERCENTILES:
                produced[f"latency_b{batch}_p{pct}_ms"] = False
        if ev.get("drift"):
            produced.update(drift_psi_max=False, drift_psi_mean=False)
        for metric, bound in (ev.get("thresholds") or {}).items():
            path = (*base, "thresholds", metric)
            if metric not in produced:
                hint = _suggest(metric, list(produced)) or (
                    "add it to evaluate.metrics (or evaluate.latency / evaluate.drift); "
                    "produced now: " + ", ".join(sorted(produced))
                )
                out.append(
                    locator.problem(
                        path,
                        f"threshold for '{metric}', a metric this evaluation never produces",
                        hint,
                        key=True,
                    )
                )
            if "min" in bound and "max" in bound and bound["min"] > bound["max"]:
                out.append(
                    locator.problem(
                        path,
                        f"min {bound['min']} is greater than max {bound['max']}",
                        "no value can pass; swap them",
                    )
                )
            if bound.get("vs_baseline") and ev.get("baseline", "blessed") == "none":
                out.append(
                    locator.problem(
                        (*path, "vs_baseline"),
                        "a relative threshold needs a baseline, but evaluate.baseline is 'none'",
                        "set evaluate.baseline to 'blessed', 'run:<id>' or 'git:<ref>', "
                        "or drop vs_baseline",
                    )
                )
    return out


def _rollout(doc: dict[str, Any], locator: Locator, root: Path) -> list[Problem]:
    out: list[Problem] = []
    for name, model in _models(doc):
        rollout = model.get("rollout")
        if not rollout:
            continue
        base = ("models", name, "rollout")
        stable = (rollout.get("stable") or {}).get("weight")
        canary = (rollout.get("canary") or {}).get("weight")
        if stable is not None and canary is not None and stable + canary != 100:
            out.append(
                locator.problem(
                    (*base, "canary", "weight"),
                    f"weights add up to {stable + canary}, not 100 "
                    f"(stable {stable} + canary {canary})",
                    f"set canary.weight to {100 - stable}, or adjust stable.weight",
                )
            )
        elif stable is not None and canary is None and stable != 100:
            out.append(
                locator.problem(
                    (*base, "stable", "weight"),
                    f"stable weight is {stable} but there is no canary "
                    f"to take the other {100 - stable}",
                    "declare rollout.canary, or set stable.weight to 100",
                )
            )
        if rollout.get("ab") and not rollout.get("canary"):
            out.append(
                locator.problem(
                    (*base, "ab"),
                    "an A/B route sends traffic to the canary, but no canary is declared",
                    "declare rollout.canary (its weight may be 0)",
                )
            )
        steps = rollout.get("steps", [])
        stalled = next((i for i in range(1, len(steps)) if steps[i] <= steps[i - 1]), None)
        if stalled is not None:
            out.append(
                locator.problem(
                    (*base, "steps", stalled),
                    f"steps {steps} must increase, "
                    f"but {steps[stalled]} follows {steps[stalled - 1]}",
                    "list canary weights in rising order, e.g. [10, 25, 50, 100]",
                )
            )
        if steps and not rollout.get("canary"):
            out.append(
                locator.problem(
                    (*base, "steps"), "rollout steps need a canary", "declare rollout.canary"
                )
            )
    return out


def _images(doc: dict[str, Any], locator: Locator, root: Path) -> list[Problem]:
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


def _deploy(doc: dict[str, Any], locator: Locator, root: Path) -> list[Problem]:
    out: list[Problem] = []
    for name, model in _models(doc):
        deploy = model.get("deploy") or {}
        base = ("models", name, "deploy")
        auto = deploy.get("autoscaling")
        if auto and auto["min_replicas"] > auto["max_replicas"]:
            out.append(
                locator.problem(
                    (*base, "autoscaling", "min_replicas"),
                    f"min_replicas {auto['min_replicas']} is above "
                    f"max_replicas {auto['max_replicas']}",
                    "swap them",
                )
            )
        source = deploy.get("model_source") or {}
        if source.get("type") == "s3" and not source.get("uri"):
            out.append(
                locator.problem(
                    (*base, "model_source"),
                    "model_source type 's3' needs a uri",
                    "add uri: s3://bucket/path/model.tar.gz",
                )
            )
        seen: dict[str, int] = {}
        for index, secret in enumerate(deploy.get("secrets", [])):
            if secret["env"] in seen:
                out.append(
                    locator.problem(
                        (*base, "secrets", index, "env"),
                        f"environment variable '{secret['env']}' is set twice",
                        f"remove one of secrets[{seen[secret['env']]}] and secrets[{index}]",
                    )
                )
            seen[secret["env"]] = index
    return out


_TF_PIN = re.compile(
    r"^\s*(tensorflow|tensorflow-cpu|tensorflow-gpu|tensorflow\[and-cuda\])\s*==\s*([0-9.]+)",
    re.I | re.M,
)


def _gpu_images(doc: dict[str, Any], locator: Locator, root: Path) -> list[Problem]:
    """GPU training must run on a GPU-capable base; the base's TF must match the lock."""
    out: list[Problem] = []
    images = doc.get("images") or {}
    for name, model in _models(doc):
        train = model.get("train") or {}
        gpus = (train.get("resources") or {}).get("gpu", 0)
        image_name = train.get("image") or model.get("image")
        if not (train.get("container") and gpus and image_name in images):
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
