"""The evaluation gate's decision, as a pure function: metric values in, Verdict out.

``decide`` compares every metric an evaluation produced (and every metric a threshold names)
against the declared bounds: absolute ``min``/``max`` and, relative to a baseline model,
``vs_baseline.max_regression`` (in the metric's unit) and ``max_regression_pct`` (percent of
the baseline value). "Regression" is a move in the bad direction, so the same limit works for
accuracy (higher is better) and latency (lower is better).

No I/O and no TensorFlow here: the evaluate step gathers the numbers, this module judges
them, and the tests cover every branch without a model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mlops_sessions.config import Threshold

# Comparisons forgive float noise of this relative size: 0.95 - 0.93 must not fail a 0.02
# limit because it comes out as 0.020000000000000018.
_TOLERANCE = 1e-9


@dataclass(frozen=True)
class MetricCheck:
    """One metric's value, its bounds, the baseline comparison and the outcome."""

    metric: str
    value: float | None
    higher_is_better: bool | None
    min: float | None = None
    max: float | None = None
    max_regression: float | None = None
    max_regression_pct: float | None = None
    baseline: float | None = None
    delta: float | None = None  # value - baseline, sign as measured
    delta_pct: float | None = None  # delta in percent of |baseline|
    failures: tuple[str, ...] = ()  # one readable sentence per violated bound
    notes: tuple[str, ...] = ()  # things a reviewer should know that are not failures

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def has_threshold(self) -> bool:
        return any(
            bound is not None
            for bound in (self.min, self.max, self.max_regression, self.max_regression_pct)
        )

    def threshold_text(self) -> str:
        """The bounds in a short human form, e.g. '>= 0.95; regression <= 0.02'."""
        parts = []
        if self.min is not None:
            parts.append(f">= {fmt(self.min)}")
        if self.max is not None:
            parts.append(f"<= {fmt(self.max)}")
        if self.max_regression is not None:
            parts.append(f"regression <= {fmt(self.max_regression)}")
        if self.max_regression_pct is not None:
            parts.append(f"regression <= {fmt(self.max_regression_pct)}%")
        return "; ".join(parts)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], metric: str | None = None) -> MetricCheck:
        """The check back from its recorded :meth:`as_dict` (verdict.json, rollout records)."""
        bounds = data.get("threshold") or {}
        direction = data.get("direction")
        return cls(
            metric=str(data["metric"] if metric is None else metric),
            value=data.get("value"),
            higher_is_better=None if direction is None else direction == "higher_is_better",
            min=bounds.get("min"),
            max=bounds.get("max"),
            max_regression=bounds.get("max_regression"),
            max_regression_pct=bounds.get("max_regression_pct"),
            baseline=data.get("baseline"),
            delta=data.get("delta"),
            delta_pct=data.get("delta_pct"),
            failures=tuple(data.get("failures") or ()),
            notes=tuple(data.get("notes") or ()),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "value": self.value,
            "direction": _direction_name(self.higher_is_better),
            "threshold": {
                "min": self.min,
                "max": self.max,
                "max_regression": self.max_regression,
                "max_regression_pct": self.max_regression_pct,
            },
            "baseline": self.baseline,
            "delta": self.delta,
            "delta_pct": self.delta_pct,
            "passed": self.passed,
            "failures": list(self.failures),
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class Verdict:
    """The gate's decision over all metrics."""

    checks: tuple[MetricCheck, ...]
    baseline_available: bool
    # True when relative thresholds were waved through because no baseline exists yet and
    # evaluate.allow_first_run is set: the verdict must say so, not pass silently.
    first_run: bool = False
    notes: tuple[str, ...] = field(default=())

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def failed_checks(self) -> list[MetricCheck]:
        return [check for check in self.checks if not check.passed]

    def failure_lines(self) -> list[str]:
        """One line per violated bound: 'FAIL <metric>: <what, by how much, against what>'."""
        return [
            f"FAIL {check.metric}: {reason}"
            for check in self.failed_checks
            for reason in check.failures
        ]

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> Verdict:
        """A Verdict back from its record (the inverse of :meth:`as_dict`); the gate's own
        notes are ``verdict_notes`` when the record carries other notes beside them."""
        checks = tuple(
            MetricCheck.from_dict(check, metric=str(name))
            for name, check in (record.get("metrics") or {}).items()
        )
        return cls(
            checks=checks,
            baseline_available=bool(record.get("baseline_available")),
            first_run=bool(record.get("first_run")),
            notes=tuple(str(n) for n in record.get("verdict_notes", record.get("notes") or [])),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "result": "pass" if self.passed else "fail",
            "first_run": self.first_run,
            "baseline_available": self.baseline_available,
            "failures": self.failure_lines(),
            "notes": list(self.notes),
            "metrics": {check.metric: check.as_dict() for check in self.checks},
        }


def fmt(value: float | None) -> str:
    """A number short enough for a table cell and precise enough to judge a threshold."""
    if value is None:
        return "—"
    if math.isnan(value):
        return "nan"
    if value == 0 or 1e-3 <= abs(value) < 1e6:
        return f"{value:.4g}" if abs(value) >= 1000 else f"{value:.4f}".rstrip("0").rstrip(".")
    return f"{value:.3e}"


def _direction_name(higher_is_better: bool | None) -> str | None:
    if higher_is_better is None:
        return None
    return "higher_is_better" if higher_is_better else "lower_is_better"


def _exceeds(amount: float, limit: float) -> bool:
    """amount > limit, forgiving float noise."""
    return amount > limit + _TOLERANCE * max(1.0, abs(limit))


def direction_for(
    metric: str, threshold: Threshold | None, directions: Mapping[str, bool]
) -> bool | None:
    """True when higher is better: threshold.direction overrides the produced-metric default."""
    if threshold is not None and threshold.direction is not None:
        return threshold.direction == "higher_is_better"
    return directions.get(metric)


def check_metric(
    metric: str,
    value: float | None,
    threshold: Threshold | None,
    higher_is_better: bool | None,
    baseline: float | None,
    *,
    baseline_exists: bool,
    baseline_label: str,
    allow_first_run: bool,
) -> MetricCheck:
    """Judge one metric. baseline_exists says whether a baseline model was found at all."""
    failures: list[str] = []
    notes: list[str] = []
    bound_min = threshold.min if threshold else None
    bound_max = threshold.max if threshold else None
    relative = threshold.vs_baseline if threshold else None
    max_regression = relative.max_regression if relative else None
    max_regression_pct = relative.max_regression_pct if relative else None

    usable = value is not None and not math.isnan(value)
    delta = delta_pct = None
    if usable and baseline is not None and not math.isnan(baseline):
        assert value is not None
        delta = value - baseline
        delta_pct = delta / abs(baseline) * 100 if baseline != 0 else None

    if threshold is not None and not usable:
        # A bound on a metric we could not measure must not pass by default.
        what = "was not produced by the evaluation" if value is None else "is NaN"
        failures.append(f"{what}; the threshold ({_bounds(threshold)}) cannot be checked")
    if usable:
        assert value is not None
        if bound_min is not None and _exceeds(bound_min, value):
            failures.append(
                f"{fmt(value)} is below the minimum {fmt(bound_min)} by {fmt(bound_min - value)}"
            )
        if bound_max is not None and _exceeds(value, bound_max):
            failures.append(
                f"{fmt(value)} is above the maximum {fmt(bound_max)} by {fmt(value - bound_max)}"
            )
    if relative is not None and usable:
        assert value is not None
        failures.extend(
            _relative(
                metric,
                value,
                baseline,
                higher_is_better,
                max_regression,
                max_regression_pct,
                baseline_exists=baseline_exists,
                baseline_label=baseline_label,
                allow_first_run=allow_first_run,
                notes=notes,
            )
        )
    return MetricCheck(
        metric=metric,
        value=value,
        higher_is_better=higher_is_better,
        min=bound_min,
        max=bound_max,
        max_regression=max_regression,
        max_regression_pct=max_regression_pct,
        baseline=baseline,
        delta=delta,
        delta_pct=delta_pct,
        failures=tuple(failures),
        notes=tuple(notes),
    )


def _relative(
    metric: str,
    value: float,
    baseline: float | None,
    higher_is_better: bool | None,
    max_regression: float | None,
    max_regression_pct: float | None,
    *,
    baseline_exists: bool,
    baseline_label: str,
    allow_first_run: bool,
    notes: list[str],
) -> list[str]:
    limits = _limits_text(max_regression, max_regression_pct)
    if higher_is_better is None:
        return [
            f"no direction is known for '{metric}', so a regression cannot be judged; "
            "set thresholds.<metric>.direction"
        ]
    if not baseline_exists:
        if allow_first_run:
            notes.append(
                f"no baseline model ({baseline_label}); relative threshold ({limits}) "
                "skipped because evaluate.allow_first_run is true"
            )
            return []
        return [
            f"relative threshold ({limits}) needs a baseline, but there is none "
            f"({baseline_label}); bless a model first, pick one with --baseline run:<id>, "
            "or set evaluate.allow_first_run: true for the first model"
        ]
    if baseline is None or math.isnan(baseline):
        # The baseline exists but never measured this metric: a comparison is impossible,
        # and skipping it would let an unchecked regression through.
        return [
            f"the baseline ({baseline_label}) has no value for this metric, so the relative "
            f"threshold ({limits}) cannot be checked; re-evaluate the baseline run"
        ]
    regression = (baseline - value) if higher_is_better else (value - baseline)
    worse = "lower" if higher_is_better else "higher"
    out = []
    if max_regression is not None and _exceeds(regression, max_regression):
        out.append(
            f"{fmt(value)} is {fmt(regression)} {worse} than the baseline {fmt(baseline)} "
            f"({baseline_label}); allowed regression is {fmt(max_regression)}"
        )
    if max_regression_pct is not None:
        if baseline == 0:
            pct = math.inf if regression > 0 else 0.0
        else:
            pct = regression / abs(baseline) * 100
        if _exceeds(pct, max_regression_pct):
            out.append(
                f"{fmt(value)} is {fmt(pct)}% {worse} than the baseline {fmt(baseline)} "
                f"({baseline_label}); allowed regression is {fmt(max_regression_pct)}%"
            )
    return out


def _limits_text(max_regression: float | None, max_regression_pct: float | None) -> str:
    parts = []
    if max_regression is not None:
        parts.append(f"max_regression {fmt(max_regression)}")
    if max_regression_pct is not None:
        parts.append(f"max_regression_pct {fmt(max_regression_pct)}%")
    return ", ".join(parts)


def _bounds(threshold: Threshold) -> str:
    parts = []
    if threshold.min is not None:
        parts.append(f"min {fmt(threshold.min)}")
    if threshold.max is not None:
        parts.append(f"max {fmt(threshold.max)}")
    if threshold.vs_baseline is not None:
        parts.append(
            _limits_text(
                threshold.vs_baseline.max_regression, threshold.vs_baseline.max_regression_pct
            )
        )
    return ", ".join(parts)


def decide(
    values: Mapping[str, float | None],
    thresholds: Mapping[str, Threshold],
    directions: Mapping[str, bool],
    baseline: Mapping[str, float] | None,
    *,
    allow_first_run: bool = False,
    baseline_label: str = "baseline",
) -> Verdict:
    """The verdict over every produced metric and every thresholded one.

    ``baseline`` is None when no baseline model exists (or the spec is 'none'); a mapping
    (possibly lacking some metrics) when one does. ``directions`` maps metric -> higher is
    better, usually ``EvaluateConfig.produced_metrics()``.
    """
    names = list(values) + [name for name in thresholds if name not in values]
    checks = []
    for name in names:
        threshold = thresholds.get(name)
        checks.append(
            check_metric(
                name,
                values.get(name),
                threshold,
                direction_for(name, threshold, directions),
                baseline.get(name) if baseline is not None else None,
                baseline_exists=baseline is not None,
                baseline_label=baseline_label,
                allow_first_run=allow_first_run,
            )
        )
    has_relative = any(t.vs_baseline is not None for t in thresholds.values())
    first_run = baseline is None and has_relative and allow_first_run
    notes = []
    if first_run:
        notes.append(
            f"FIRST RUN: no baseline model exists ({baseline_label}); relative thresholds "
            "were not checked because evaluate.allow_first_run is true"
        )
    return Verdict(
        checks=tuple(checks),
        baseline_available=baseline is not None,
        first_run=first_run,
        notes=tuple(notes),
    )
