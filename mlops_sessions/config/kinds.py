"""Values that parse but mean nothing: one rule per kind of value, wherever the kind appears.

The schema says what a value looks like; some values that look right still cannot work: a
timeout of ``0s``, a threshold whose ``min`` is above its ``max``, an accuracy that must be
at least 1.5, an S3 bucket name S3 refuses. The schema marks every value of such a kind
with the annotation keyword ``x-mlops-kind`` (:data:`KEYWORD`), and the loader's validator
runs the rule of that kind on it wherever the schema walk meets it: a new key of an
existing kind gets its rule by being annotated, never by a new check.

Each rule takes the instance and yields :class:`Finding` s, located relative to it (a
threshold's ``min``, say), with the fix. They are reported like every other schema
problem: file, line, column, JSON path and hint. Values of the wrong type or spelling are
left to the schema's own keywords, so one mistake gives one message.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from mlops_sessions.config import s3uri, units
from mlops_sessions.config.model import BUILTIN_METRICS, LIVE_METRICS

KEYWORD = "x-mlops-kind"

# Metrics that are fractions: no value outside [0, 1] is ever measured.
RATIO_METRICS = frozenset({"accuracy", "precision", "recall", "f1", "auc", "error_rate"})
# Every other known metric counts something (milliseconds, MB, requests, PSI): never < 0.
NON_NEGATIVE_METRICS = frozenset(BUILTIN_METRICS) | frozenset(LIVE_METRICS) | {"model_size_mb"}
_LATENCY_METRIC = re.compile(r"^latency_(b[0-9]+_)?p[0-9]+_ms$")
# Pairs of keys of one mapping where the first may not exceed the second, and the verb
# that says so (the words each section's messages have used since they were written).
BOUND_PAIRS = (("min", "max", "is greater than"), ("min_replicas", "max_replicas", "is above"))


@dataclass(frozen=True)
class Finding:
    """What is wrong with a value of a kind, where under it, and the fix."""

    where: tuple[str | int, ...]
    message: str
    hint: str


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def positive_duration(value: Any) -> Iterator[Finding]:
    """A window, interval or timeout: zero would end before anything could happen."""
    if not isinstance(value, str):
        return
    try:
        seconds = units.duration_seconds(value)
    except units.UnitError:
        return  # the schema's pattern explains a misspelt duration
    if seconds <= 0:
        yield Finding(
            (),
            f"{value!r} is a zero duration: a window, interval or timeout must last some time",
            "give it a positive duration, e.g. '30s' or '5m'",
        )


def bounds(value: Any) -> Iterator[Finding]:
    """A lower and an upper bound in one mapping: no value can lie between them when the
    lower is above the upper."""
    if not isinstance(value, dict):
        return
    for low_key, high_key, verb in BOUND_PAIRS:
        low, high = _number(value.get(low_key)), _number(value.get(high_key))
        if low is not None and high is not None and low > high:
            yield Finding(
                (low_key,),
                f"{low_key} {value[low_key]} {verb} {high_key} {value[high_key]}: "
                "no value can meet both",
                f"swap them, or lower {low_key} to at most {value[high_key]}",
            )


def _range_of(metric: str) -> tuple[float, float] | None:
    if metric in RATIO_METRICS:
        return 0.0, 1.0
    if metric in NON_NEGATIVE_METRICS or _LATENCY_METRIC.match(metric):
        return 0.0, math.inf
    return None  # a custom metric: its range is the team's to know


def metric_thresholds(value: Any) -> Iterator[Finding]:
    """Thresholds by metric name: a bound outside every value the metric can take (an
    accuracy of at least 1.5, a latency of at most -1 ms) can never be met."""
    if not isinstance(value, dict):
        return
    for metric, bound in value.items():
        span = _range_of(str(metric))
        if span is None or not isinstance(bound, dict):
            continue
        low, high = span
        shown = "[0, 1]" if high == 1.0 else "0 or more"
        minimum, maximum = _number(bound.get("min")), _number(bound.get("max"))
        if minimum is not None and minimum > high:
            yield Finding(
                (metric, "min"),
                f"min {bound['min']} for '{metric}' can never be met: the metric is in {shown}",
                f"write the bound in the metric's own unit (e.g. 0.9 for 90 %), at most {high:g}",
            )
        if maximum is not None and maximum < low:
            yield Finding(
                (metric, "max"),
                f"max {bound['max']} for '{metric}' can never be met: the metric is {shown}",
                f"give a max of at least {low:g}",
            )


def s3_uri(value: Any) -> Iterator[Finding]:
    """``s3://bucket[/prefix]`` wherever a bucket is named: S3's bucket naming rules."""
    if not isinstance(value, str) or not value.startswith("s3://"):
        return  # the schema's pattern explains another scheme
    bucket = value.removeprefix("s3://").partition("/")[0]
    problem = s3uri.bucket_problem(bucket)
    if problem is not None:
        reason, fix = problem
        yield Finding((), f"bucket {bucket[:80]!r} {reason}: S3 refuses that name", fix)


RULES: dict[str, Callable[[Any], Iterator[Finding]]] = {
    "positive-duration": positive_duration,
    "bounds": bounds,
    "metric-thresholds": metric_thresholds,
    "s3-uri": s3_uri,
}


def findings(kind: str, value: Any) -> list[Finding]:
    """Everything wrong with value as a value of kind (a kind the schema names must exist:
    tests/robustness/test_config_value_kinds.py checks every annotation has a rule)."""
    return list(RULES[kind](value))
