"""The gate's thresholds against the metrics an evaluation produces (bounds a value can meet,
relative bounds that need a baseline).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlops_sessions.config import ALWAYS_PRODUCED, BUILTIN_METRICS, LATENCY_PERCENTILES
from mlops_sessions.config.locate import Locator, suggest
from mlops_sessions.config.rules.base import models_of
from mlops_sessions.errors import Problem


def threshold_problems(doc: dict[str, Any], locator: Locator, root: Path) -> list[Problem]:
    out: list[Problem] = []
    for name, model in models_of(doc):
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


def signing_problems(doc: dict[str, Any], locator: Locator, root: Path) -> list[Problem]:
    """evaluate.sign: model-signing signs with a PEM key it can read (a file or env://VAR);
    a KMS URI, which cosign takes for images, cannot sign a model."""
    out: list[Problem] = []
    for name, model in models_of(doc):
        sign = (model.get("evaluate") or {}).get("sign")
        if not isinstance(sign, dict):
            continue
        for field in ("key", "public_key"):
            ref = sign.get(field)
            if isinstance(ref, str) and "://" in ref and not ref.startswith("env://"):
                out.append(
                    locator.problem(
                        ("models", name, "evaluate", "sign", field),
                        f"{ref!r} is a KMS URI; a model is signed with a PEM key "
                        "(model-signing), not through a KMS",
                        "give a PEM file relative to the project or env://VAR holding the PEM "
                        "(docs/model-signing.md); KMS keys sign images (images.<name>.sign)",
                    )
                )
    return out
