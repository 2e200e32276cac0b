"""Deploy and rollout: traffic weights that add up, A/B routes Istio can match, progressive
rollout steps and live thresholds that agree with the offline gate.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mlops_sessions.config import ALWAYS_PRODUCED, BUILTIN_METRICS
from mlops_sessions.config.locate import Locator, suggest
from mlops_sessions.config.model import (
    LIVE_METRICS,
    SHARED_METRICS,
    ABRoute,
    Config,
    ModelConfig,
)
from mlops_sessions.config.rules.base import Finding, Path_, models_of
from mlops_sessions.errors import Problem


def rollout_problems(doc: dict[str, Any], locator: Locator, root: Path) -> list[Problem]:
    out: list[Problem] = []
    for name, model in models_of(doc):
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


def deploy_problems(doc: dict[str, Any], locator: Locator, root: Path) -> list[Problem]:
    out: list[Problem] = []
    for name, model in models_of(doc):
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


def verified_image_findings(config: Config) -> list[Finding]:
    """One image verified for two models: its provenance names one model, so ``deploy``
    (and the cluster's admission policy) would refuse it for the other."""
    owner: dict[str, str] = {}
    out: list[Finding] = []
    for model in config.models.values():
        verify = model.deploy.verify
        if verify is None or not {"provenance", "verdict"} & set(verify.require):
            continue
        canary = model.rollout.canary if model.rollout is not None else None
        for name in dict.fromkeys(n for n in (model.image, canary and canary.image) if n):
            if name in owner and owner[name] != model.name:
                out.append(
                    Finding(
                        ("models", model.name, "deploy", "verify", "require"),
                        f"image '{name}' is verified for model '{owner[name]}' too, but its "
                        "provenance names one model",
                        "give each verified model an image of its own, or drop provenance "
                        "and verdict from one model's deploy.verify.require",
                    )
                )
            owner.setdefault(name, model.name)
    return out
