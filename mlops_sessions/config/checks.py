"""Cross-field checks: rules JSON Schema cannot express, run after the schema passes.

Two kinds, both run by ``validate`` (every load) and located like schema errors:

- checks on the effective document (:func:`cross_field`): references between sections,
  limits against requests, thresholds against the metrics an evaluation produces...;
- rules on the typed :class:`~mlops_sessions.config.Config` that the later steps enforce
  too (:func:`config_findings`): traffic weights, A/B routes, GPU requests and limits,
  model downloads, AppArmor profiles, durations Kubernetes counts in int32 seconds,
  disruption budgets, hosts claimed twice, serving GPUs on CPU-only images, tolerations,
  Kubernetes versions. The planners call the SAME functions (through :func:`require`)
  before they render, so a config ``validate`` accepts is a config render accepts.

Pure: no file other than the requirements lock is read; kubernetes-validate's list of
shipped schema versions is consulted when it is installed.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops_sessions.config import (
    ALWAYS_PRODUCED,
    BUILTIN_METRICS,
    LATENCY_PERCENTILES,
    s3uri,
    units,
)
from mlops_sessions.config.locate import Locator, dotted, suggest
from mlops_sessions.config.model import (
    LIVE_METRICS,
    SHARED_METRICS,
    ABRoute,
    Config,
    ModelConfig,
    Resources,
)
from mlops_sessions.errors import Problem, StepError

Check = Callable[[dict[str, Any], Locator, Path], list[Problem]]
Path_ = tuple[str | int, ...]


def cross_field(doc: dict[str, Any], locator: Locator, root: Path) -> list[Problem]:
    problems: list[Problem] = []
    for check in (
        _references,
        _resources,
        _thresholds,
        _rollout,
        _images,
        _deploy,
        _gpu_images,
        _object_inputs,
    ):
        problems.extend(check(doc, locator, root))
    return problems


def _object_inputs(doc: dict[str, Any], locator: Locator, root: Path) -> list[Problem]:
    """The S3 rules of ``data.<name>.uri`` / ``sha256`` a schema pattern cannot say."""
    out: list[Problem] = []
    for name, entry in (doc.get("data") or {}).items():
        if not isinstance(entry, dict) or entry.get("uri") is None:
            continue
        for key, rule in (("uri", s3uri.object_uri_problem), ("sha256", s3uri.sha256_problem)):
            value = entry.get(key)
            found = rule(value) if isinstance(value, str) else None
            if found is not None:
                out.append(locator.problem(("data", name, key), *found))
    return out


def _in_image(train: dict[str, Any]) -> bool:
    """Training runs in the train image: backend container or kubernetes (or container: true)."""
    backend = train.get("backend")
    return backend in ("container", "kubernetes") or (
        backend is None and bool(train.get("container"))
    )


def _name_hint(word: str, names: list[str], kind: str, section: str) -> str:
    return suggest(word, names) or (
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
        if _in_image(train) and not train_image:
            out.append(
                locator.problem(
                    (*base, "train", "backend" if train.get("backend") else "container"),
                    "container training needs an image",
                    "set train.image (or the model's image) to an entry under 'images'",
                )
            )
        elif _in_image(train) and train_image in images:
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


# Quantities whose limit must not be below the request: (key, name in messages, parser).
_LIMITED: tuple[tuple[str, str, Callable[[Any], float]], ...] = (
    ("cpu", "CPU", units.cpu_cores),
    ("memory", "memory", units.memory_bytes),
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
            # deploy's GPU rule is gpu_findings (render calls it too); train's is this one.
            if section == "train" and "gpu" in limits and limits["gpu"] < res.get("gpu", 0):
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
                hint = suggest(metric, list(produced)) or (
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
        # `canary: {}` declares a canary (with steps it has no weight): only absence counts.
        if rollout.get("ab") and rollout.get("canary") is None:
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
        if steps and rollout.get("canary") is None:
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
        if not (_in_image(train) and gpus and image_name in images):
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


# --- rules on the typed Config, shared with the planners ---------------------------------


@dataclass(frozen=True)
class Finding:
    """One broken rule: where (JSON path in the effective document), what, and the fix."""

    path: Path_
    message: str
    hint: str = ""

    def text(self) -> str:
        return f"{dotted(self.path)}: {self.message}" + (f"; {self.hint}" if self.hint else "")


def require(findings: Iterable[Finding]) -> None:
    """Raise StepError naming every finding: how the planners enforce the shared rules."""
    found = list(findings)
    if found:
        raise StepError(
            "\n".join(f.text() for f in found)
            + ("\n" if len(found) > 1 else " ")
            + "(`mlops validate` reports this with its line in mlops.yaml)"
        )


def config_findings(config: Config) -> list[Finding]:
    """Every typed rule, for every model, plus the rules across models."""
    out: list[Finding] = []
    for model in config.models.values():
        out += model_findings(config, model)
    out += host_findings(config)
    return out


def model_findings(config: Config, model: ModelConfig) -> list[Finding]:
    """The rules render and deploy enforce on one model's config."""
    return [
        *weight_findings(model),
        *ab_findings(model),
        *gpu_findings(model.deploy.resources, ("models", model.name, "deploy", "resources")),
        *model_source_findings(model),
        *apparmor_findings(model),
        *duration_findings(model),
        *pdb_findings(model),
        *serving_gpu_findings(config, model),
        *toleration_findings(model),
        *train_backend_findings(config, model),
        *label_key_findings(model),
        *kubernetes_version_findings(model),
        *rollout_findings(model),
    ]


def weight_findings(model: ModelConfig) -> list[Finding]:
    rollout = model.rollout
    if rollout is None:
        return []
    base = ("models", model.name, "rollout")
    # Only weights written in the file can disagree: an unset stable weight is what the
    # canary leaves (render's default), an unset canary is no canary.
    stable = rollout.stable.weight if rollout.stable is not None else None
    canary = rollout.canary.weight if rollout.canary is not None else None
    if stable is not None and canary is not None and stable + canary != 100:
        return [
            Finding(
                (*base, "canary", "weight"),
                f"weights add up to {stable + canary}, not 100 (stable {stable} + canary {canary})",
                f"set canary.weight to {100 - stable}, or adjust stable.weight so that "
                "stable.weight + canary.weight = 100",
            )
        ]
    if stable is not None and canary is None and stable != 100:
        return [
            Finding(
                (*base, "stable", "weight"),
                f"stable weight is {stable} but there is no canary "
                f"to take the other {100 - stable}",
                "declare rollout.canary, or set stable.weight to 100",
            )
        ]
    return []


# Istio matches regexes with RE2: no look-around, no back-references.
_NOT_RE2 = re.compile(r"\(\?<?[=!]|\(\?P=|\\[1-9]")


def ab_findings(model: ModelConfig) -> list[Finding]:
    ab = model.rollout.ab if model.rollout is not None else None
    if ab is None:
        return []
    return ab_route_findings(ab, ("models", model.name, "rollout", "ab"))


def ab_route_findings(ab: ABRoute, base: Path_) -> list[Finding]:
    """An A/B route selects by a header or a cookie; the cookie is an RE2 regex."""
    if ab.header is None and ab.cookie is None:
        return [
            Finding(
                base,
                "rollout.ab needs a header or a cookie to select the A/B slice",
                "add header: x-canary (with value: ...) or cookie: <regex>",
            )
        ]
    out: list[Finding] = []
    if ab.value is not None and ab.header is None:
        out.append(
            Finding(
                (*base, "value"),
                "'value' is the header's exact value, but rollout.ab names no header",
                "add header: <name> next to value, or remove value",
            )
        )
    if ab.cookie is not None:
        problem = ""
        try:
            re.compile(ab.cookie)
        except re.error as exc:
            problem = str(exc)
        if not problem and _NOT_RE2.search(ab.cookie):
            problem = "look-arounds and back-references are not RE2, which Istio uses"
        if not problem and re.search(ab.cookie, "") is not None:
            problem = "it matches the empty string, so every request would go to the canary"
        if problem:
            out.append(
                Finding(
                    (*base, "cookie"),
                    f"rollout.ab.cookie {ab.cookie!r} is not a valid regular expression "
                    f"({problem})",
                    "write e.g. 'beta=1' or 'group=(a|b)'",
                )
            )
    return out


def gpu_findings(res: Resources, base: Path_) -> list[Finding]:
    """GPUs on Kubernetes: a limit below the request, or a request that differs from it."""
    limit = res.limits.gpu if res.limits is not None else None
    if limit is None:
        return []
    if limit < res.gpu:
        return [
            Finding(
                (*base, "limits", "gpu"),
                f"GPU limit {limit} is below the request {res.gpu}",
                "raise limits.gpu or lower gpu; Kubernetes needs limit >= request",
            )
        ]
    if res.gpu and res.gpu != limit:
        return [
            Finding(
                (*base, "limits", "gpu"),
                f"GPU request {res.gpu} differs from GPU limit {limit}; Kubernetes cannot "
                "overcommit extended resources such as GPUs, so the two must be equal",
                f"set limits.gpu to {res.gpu}, or remove it",
            )
        ]
    return []


def model_source_findings(model: ModelConfig) -> list[Finding]:
    source = model.deploy.model_source
    if source.type != "s3":
        return []
    path = ("models", model.name, "deploy", "model_source")
    if source.uri is None:
        return [
            Finding(
                path,
                "model_source type 's3' needs a uri"
                + (" and a sha256" if source.sha256 is None else ""),
                "add uri: s3://bucket/path/model.tar.gz"
                + (" and sha256: <64 hex> of the archive" if source.sha256 is None else ""),
            )
        ]
    if source.sha256 is None:
        return [
            Finding(
                path,
                f"model_source downloads {source.uri} without a checksum",
                "add sha256: <64 hex> (sha256sum of the archive) so a corrupt or swapped "
                "model is refused before it is served",
            )
        ]
    return []


def apparmor_profile(profile: str) -> dict[str, str] | None:
    """The securityContext form of an AppArmor profile, or None when Kubernetes knows none."""
    if profile == "runtime/default":
        return {"type": "RuntimeDefault"}
    if profile == "unconfined":
        return {"type": "Unconfined"}
    name = profile[len("localhost/") :]
    if profile.startswith("localhost/") and name and not any(c.isspace() for c in name):
        return {"type": "Localhost", "localhostProfile": name}
    return None


def apparmor_findings(model: ModelConfig) -> list[Finding]:
    profile = model.deploy.security.apparmor_profile
    if profile is None or apparmor_profile(profile) is not None:
        return []
    return [
        Finding(
            ("models", model.name, "deploy", "security", "apparmor_profile"),
            f"AppArmor profile {profile!r} is not one Kubernetes knows",
            "use 'runtime/default', 'localhost/<profile loaded on the node>' or 'unconfined'",
        )
    ]


def duration_findings(model: ModelConfig) -> list[Finding]:
    """Durations render writes as Kubernetes seconds, which are int32 fields."""
    base = ("models", model.name)
    durations: list[tuple[Path_, str | None]] = [
        ((*base, "deploy", "rollout_timeout"), model.deploy.rollout_timeout),
        ((*base, "serve", "drain"), model.serve.drain),
        ((*base, "deploy", "model_source", "timeout"), model.deploy.model_source.timeout),
    ]
    for kind in ("liveness", "readiness", "startup"):
        probe = getattr(model.deploy.probes, kind)
        if probe is not None:
            for field in ("initial_delay", "period", "timeout"):
                durations.append(((*base, "deploy", "probes", kind, field), getattr(probe, field)))
    out: list[Finding] = []
    for path, text in durations:
        if text is None:
            continue
        try:
            whole = units.whole_seconds(text)
        except (units.UnitError, OverflowError):
            whole = units.INT32_MAX + 1
        if whole > units.INT32_MAX - 60:  # room for the drain's exit margin
            out.append(
                Finding(
                    path,
                    f"{text!r} is more seconds than Kubernetes can count here",
                    f"use a duration below {units.INT32_MAX - 60} seconds (about 68 years)",
                )
            )
    return out


def pdb_findings(model: ModelConfig) -> list[Finding]:
    deploy = model.deploy
    wanted = deploy.pdb.min_available if deploy.pdb is not None else None
    if wanted is None:
        return []
    auto = deploy.autoscaling
    replicas = auto.min_replicas if auto is not None else deploy.replicas
    if wanted <= replicas:
        return []
    source = "autoscaling.min_replicas" if auto is not None else "replicas"
    return [
        Finding(
            ("models", model.name, "deploy", "pdb", "min_available"),
            f"min_available {wanted} is above the {replicas} replica(s) of the stable track "
            f"(deploy.{source}): no pod could ever be evicted, so node drains would hang",
            f"lower pdb.min_available to at most {replicas}, or raise deploy.{source}",
        )
    ]


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


def toleration_findings(model: ModelConfig) -> list[Finding]:
    """The API server's toleration rules that a per-entry schema cannot say."""
    return _toleration_list(model.deploy.tolerations, ("models", model.name, "deploy"))


def _toleration_list(tolerations: Iterable[Any], base: Path_) -> list[Finding]:
    out: list[Finding] = []
    for index, toleration in enumerate(tolerations):
        path = (*base, "tolerations", index)
        operator = toleration.get("operator", "Equal")
        if operator == "Exists" and toleration.get("value"):
            out.append(
                Finding(
                    (*path, "value"),
                    "a toleration with operator 'Exists' takes no value",
                    "remove value, or use operator: Equal",
                )
            )
        if not toleration.get("key") and operator != "Exists":
            out.append(
                Finding(
                    path,
                    "a toleration without a key must use operator 'Exists'",
                    "add key: <taint key>, or set operator: Exists to tolerate every taint",
                )
            )
        if "tolerationSeconds" in toleration and toleration.get("effect") != "NoExecute":
            out.append(
                Finding(
                    (*path, "tolerationSeconds"),
                    "tolerationSeconds only applies to effect 'NoExecute'",
                    "set effect: NoExecute, or remove tolerationSeconds",
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


@functools.cache
def supported_kubernetes_versions() -> tuple[str, ...]:
    """Kubernetes minors ('1.30') whose schemas the installed kubernetes-validate ships.

    Empty when kubernetes-validate is not installed (render then says how to install it).
    """
    # Read the package's schema directory without importing it: kubernetes-validate pulls
    # in jsonschema, which an unchanged, already-validated file must not pay for.
    spec = importlib.util.find_spec("kubernetes_validate")
    if spec is None or not spec.submodule_search_locations:
        return ()
    found: set[str] = set()
    for location in spec.submodule_search_locations:
        schemas = Path(location) / "kubernetes-json-schema"
        names = [p.name for p in schemas.iterdir()] if schemas.is_dir() else []
        found.update(m.group(1) for n in names if (m := _SCHEMA_DIR.match(n)))
    return tuple(sorted(found, key=lambda v: tuple(int(p) for p in v.split("."))))


_SCHEMA_DIR = re.compile(r"^v(\d+\.\d+)\.")


def kubernetes_version_minor(version: str) -> str:
    return ".".join(version.lstrip("v").split(".")[:2])


def kubernetes_version_findings(model: ModelConfig) -> list[Finding]:
    version = model.deploy.kubernetes_version
    supported = supported_kubernetes_versions()
    if not supported or kubernetes_version_minor(version) in supported:
        return []
    return [
        Finding(
            ("models", model.name, "deploy", "kubernetes_version"),
            f"deploy.kubernetes_version {version!r} is not supported: the installed "
            f"kubernetes-validate ships schemas for {supported[0]} to {supported[-1]} "
            f"({', '.join(supported)})",
            "set deploy.kubernetes_version to your cluster's version from that list, or "
            "upgrade kubernetes-validate (pip install -U kubernetes-validate) for a newer "
            "cluster",
        )
    ]


def host_findings(config: Config) -> list[Finding]:
    """Two models answering for one host: Istio would merge their routes in no set order."""
    owner: dict[str, str] = {}
    out: list[Finding] = []
    for model in config.models.values():
        if model.rollout is None:
            continue
        for index, host in enumerate(model.rollout.hosts):
            if host in owner and owner[host] != model.name:
                out.append(
                    Finding(
                        ("models", model.name, "rollout", "hosts", index),
                        f"host '{host}' is already claimed by model '{owner[host]}'",
                        "give each model a host of its own",
                    )
                )
            owner.setdefault(host, model.name)
    return out


def rollout_findings(model: ModelConfig) -> list[Finding]:
    """A progressive rollout's rules (``rollout.steps`` with ``rollout.analysis``).

    With steps the weights are the steps' (``canary.weight``/``stable.weight`` must be
    absent: outside a rollout stable takes 100 %); without steps ``canary.weight`` is
    required. Steps rise, each in 1..100, and end at 100 — the promotion follows the last.
    Live thresholds name metrics a rollout can measure; a metric measured both offline
    and live is declared once, in ``evaluate.thresholds``.
    """
    rollout = model.rollout
    if rollout is None:
        return []
    base: Path_ = ("models", model.name, "rollout")
    out: list[Finding] = []
    if not rollout.steps:
        if rollout.canary is not None and rollout.canary.weight is None:
            out.append(
                Finding(
                    (*base, "canary"),
                    "the canary has no weight and there are no rollout.steps to set one",
                    "set canary.weight (0 keeps it out of the split), or declare "
                    "rollout.steps and rollout.analysis for a progressive rollout",
                )
            )
        if rollout.analysis is not None:
            out.append(
                Finding(
                    (*base, "analysis"),
                    "rollout.analysis judges the steps of a progressive rollout, but "
                    "rollout.steps is empty",
                    "declare rollout.steps (e.g. [10, 50, 100]) or drop rollout.analysis",
                )
            )
        return out
    steps = list(rollout.steps)
    if rollout.analysis is None:
        out.append(
            Finding(
                (*base, "steps"),
                "rollout steps need rollout.analysis: each step is judged before the next",
                "add rollout.analysis with prometheus and interval, e.g. "
                "{prometheus: '${PROMETHEUS_URL:-http://prometheus.istio-system:9090}', "
                "interval: 5m}",
            )
        )
    if rollout.canary is not None and rollout.canary.weight is not None:
        out.append(
            Finding(
                (*base, "canary", "weight"),
                "with rollout.steps the canary's weight comes from the steps",
                "remove canary.weight: outside a rollout stable takes 100% and the canary "
                "runs nothing; during one the steps set the split",
            )
        )
    if rollout.canary is not None and rollout.canary.image is not None:
        out.append(
            Finding(
                (*base, "canary", "image"),
                "with rollout.steps the canary runs the new build of the model's image",
                f"remove canary.image: a deploy of a new build of models.{model.name}.image "
                "goes to the canary first, then to stable",
            )
        )
    if rollout.stable is not None:
        out.append(
            Finding(
                (*base, "stable", "weight"),
                "with rollout.steps the stable weight comes from the steps",
                "remove rollout.stable: stable takes 100% outside a rollout",
            )
        )
    if steps[-1] != 100:
        out.append(
            Finding(
                (*base, "steps", len(steps) - 1),
                f"the last step is {steps[-1]}, not 100: promotion follows the last step, so "
                "the canary must have carried all the traffic by then",
                f"end the steps with 100, e.g. {[*steps, 100] if steps[-1] < 100 else [100]}",
            )
        )
    if rollout.analysis is not None:
        out += _live_threshold_findings(model, (*base, "analysis", "thresholds"))
    return out


def _live_threshold_findings(model: ModelConfig, base: Path_) -> list[Finding]:
    assert model.rollout is not None and model.rollout.analysis is not None
    offline = model.evaluate.thresholds if model.evaluate is not None else {}
    has_drift = model.evaluate is not None and model.evaluate.drift is not None
    out: list[Finding] = []
    for metric in model.rollout.analysis.thresholds:
        path = (*base, metric)
        if metric not in LIVE_METRICS:
            offline_names = set(BUILTIN_METRICS) | set(ALWAYS_PRODUCED)
            label_based = metric in offline_names or metric.startswith("latency_b")
            hint = (
                "needs labels; live traffic has none — keep it in evaluate.thresholds"
                if metric in BUILTIN_METRICS
                else "a batch-latency metric of the offline evaluation; live, use "
                "latency_p50_ms / latency_p95_ms / latency_p99_ms"
                if metric.startswith("latency_b")
                else "an offline metric — keep it in evaluate.thresholds"
                if label_based
                else suggest(metric, list(LIVE_METRICS))
                or "live metrics: " + ", ".join(LIVE_METRICS)
            )
            out.append(Finding(path, f"'{metric}' cannot be measured on live traffic", hint))
            continue
        if metric in SHARED_METRICS and metric in offline:
            out.append(
                Finding(
                    path,
                    f"'{metric}' is declared in evaluate.thresholds too; one declaration "
                    "checks both places",
                    f"remove it here: evaluate.thresholds.{metric} is judged offline and "
                    "on every rollout step",
                )
            )
        elif metric in ("drift_psi_max", "drift_psi_mean") and not has_drift:
            out.append(
                Finding(
                    path,
                    f"'{metric}' compares live inputs with the training reference, but "
                    "evaluate.drift declares none",
                    "add evaluate.drift: {reference: module:function, bins: 10}",
                )
            )
    return out


def train_backend_findings(config: Config, model: ModelConfig) -> list[Finding]:
    """``train.backend`` and the keys only a Kubernetes Job reads (the Job planner and the
    train step call this too, through :func:`require`)."""
    train = model.train
    if train is None:
        return []
    base: Path_ = ("models", model.name, "train")
    backend = train.effective_backend
    out: list[Finding] = []
    if train.backend not in (None, "container") and train.container:
        out.append(
            Finding(
                (*base, "container"),
                f"container: true contradicts backend: {train.backend}",
                "remove container (backend says where training runs)",
            )
        )
    if train.workers > 1 and backend != "kubernetes":
        out.append(
            Finding(
                (*base, "workers"),
                f"{train.workers} workers need backend: kubernetes (backend is {backend!r})",
                "set train.backend: kubernetes, or workers: 1",
            )
        )
    if train.operator != "job" and backend != "kubernetes":
        out.append(
            Finding(
                (*base, "operator"),
                f"operator: {train.operator} runs training on a Kubernetes cluster, and "
                f"backend is {backend!r}",
                "set train.backend: kubernetes, or remove operator",
            )
        )
    if backend != "kubernetes":
        return out
    if config.store_remote is None:
        out.append(
            Finding(
                (*base, "backend"),
                "a Kubernetes training Job writes its run to the shared store, and no "
                "store.remote is set",
                "add store: {remote: s3://<bucket>/<prefix>} (docs/store.md), or use "
                "backend: container",
            )
        )
    out += gpu_findings(train.resources, (*base, "resources"))
    if train.tolerations is not None:
        out += _toleration_list(train.tolerations, base)
    if train.timeout is not None:
        try:
            whole = units.whole_seconds(train.timeout)
        except (units.UnitError, OverflowError):
            whole = units.INT32_MAX + 1
        if whole > units.INT32_MAX:
            out.append(
                Finding(
                    (*base, "timeout"),
                    f"{train.timeout!r} is more seconds than a Job's activeDeadlineSeconds holds",
                    f"use a duration below {units.INT32_MAX} seconds",
                )
            )
    return out
