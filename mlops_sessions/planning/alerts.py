"""The PrometheusRule of a model: recording rules and alerts derived from mlops.yaml.

Pure, like the rest of ``planning``: a Config and a model in, a ``monitoring.coreos.com/v1``
PrometheusRule (a dict) out, which ``mlops render`` writes to ``monitoring/``.

Where the numbers come from:

- **Recording rules** record, per model and track, the series the live analysis measures
  (request and error rates, the error ratio, latency percentiles, input drift against the
  training reference, predicted-class drift of the canary against stable) over
  ``alerts.window``. Their PromQL is built by the same builders the analysis queries with
  (:mod:`planning.live_analysis`: ``requests_expr``, ``latency_ms_expr`` ...), with
  ``rate`` over every track instead of ``increase`` over one window. The alerts and the
  Grafana dashboard (:mod:`planning.dashboard`) read these recorded series, so all three
  look at the same numbers.
- **Alerts on thresholds** are the thresholds the rollout judges live
  (:func:`live_analysis.live_thresholds`: ``rollout.analysis.thresholds`` plus the drift
  bounds ``evaluate.thresholds`` declares for both places), each bound one alert: ``max``,
  ``min``, and ``vs_baseline`` as the canary against stable. Like the analysis they stay
  quiet below ``min_requests`` requests in the window (fail closed: too little traffic is
  not a verdict).
- **State alerts**: no traffic, no ready replicas (kube-state-metrics), and with
  ``rollout.steps`` a rollout that holds the canary up longer than any rollout of this
  config legitimately can.

``for:``, the severity label values and extra labels come from ``alerts:``; every alert has
a ``summary`` and a ``runbook`` annotation naming the ``mlops`` command to run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from mlops_sessions.config import LIVE_METRICS, Config, ModelConfig, Threshold
from mlops_sessions.config.model import AlertsConfig, Analysis
from mlops_sessions.config.units import duration_seconds
from mlops_sessions.planning import drift, k8s_common, live_analysis
from mlops_sessions.planning import rollout as rollout_plan
from mlops_sessions.planning.gate import direction_for, fmt

API_VERSION = "monitoring.coreos.com/v1"
KIND = "PrometheusRule"
# The label names kube-state-metrics gives a Deployment's series.
KSM_AVAILABLE = "kube_deployment_status_replicas_available"
KSM_SPEC = "kube_deployment_spec_replicas"
# kube-state-metrics exports a ConfigMap's labels that its --metric-labels-allowlist names,
# each as label_<name with every other character than [a-zA-Z0-9_] as "_">.
KSM_CONFIGMAP_LABELS = "kube_configmap_labels"
# Exported by `mlops serve` when the model's run record says when its training ended.
TRAINED_AT = "mlops_serve_model_trained_timestamp_seconds"


def ksm_label(name: str) -> str:
    return "label_" + "".join(c if c.isalnum() or c == "_" else "_" for c in name)


# A metric's level in a recorded name: per model and track, or per model only.
PER_TRACK = ("model", "track")
# Live metrics judged between the tracks (they have no per-track value).
CROSS_TRACK = frozenset({"prediction_drift_psi"})
# Alerts on these metrics page someone; the others (drift) open a ticket.
PAGING_METRICS = frozenset(
    {"error_rate", "request_rate", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms"}
)


def prom_duration(seconds: float) -> str:
    """A Prometheus duration for whole seconds: '5m', '1h', '90s' (at least 1s)."""
    whole = max(1, math.ceil(seconds))
    for unit, size in (("h", 3600), ("m", 60)):
        if whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"


def window_text(alerts: AlertsConfig) -> str:
    return prom_duration(duration_seconds(alerts.window))


def recorded(metric: str, window: str) -> str:
    """The recorded series of a live metric (or of ``requests``/``errors`` per second)."""
    level = "model" if metric in CROSS_TRACK else "model_track"
    name = "error_ratio" if metric == "error_rate" else metric
    name = "requests" if metric == "request_rate" else name
    return f"{level}:mlops_serve_{name}:rate{window}"


def _prediction_share(window: str) -> str:
    return f"model_track_class:mlops_serve_prediction_share:rate{window}"


def _input_share(window: str) -> str:
    return f"model_track_feature_bin:mlops_serve_input_share:rate{window}"


def _input_psi(window: str) -> str:
    return f"model_track_feature:mlops_serve_input_psi:rate{window}"


def _floored(expr: str) -> str:
    """A share floored like :data:`drift.SHARE_FLOOR`, so an empty bin is not infinite."""
    return f"clamp_min({expr}, {drift.SHARE_FLOOR})"


def _psi(current: str, reference: str, join: str, by: tuple[str, ...]) -> str:
    """PSI = sum of (cur - ref) * ln(cur / ref) over the bins both sides have, as
    :func:`drift.psi`; ``join`` is the vector matching between the two sides."""
    cur, ref = _floored(current), _floored(reference)
    return f"sum by ({', '.join(by)}) (({cur} - {join} {ref}) * ln({cur} / {join} {ref}))"


def _share(counts: str, drop: str) -> str:
    """Each series's share of its group's total; a group with no count has no share."""
    return f"{counts} / ignoring ({drop}) group_left () (sum without ({drop}) ({counts}) > 0)"


def recording_rules(model: str, window: str) -> list[dict[str, str]]:
    """The per-track series of one model over ``window``, in evaluation order (a rule may
    read the ones above it: Prometheus evaluates a group's rules in order)."""
    sel = live_analysis.selector(model)
    requests = recorded("request_rate", window)
    rules = [
        {
            "record": requests,
            "expr": live_analysis.requests_expr(model, None, window, func="rate", by=PER_TRACK),
        },
        {
            "record": f"model_track:mlops_serve_errors:rate{window}",
            "expr": live_analysis.requests_expr(
                model, None, window, errors=True, func="rate", by=PER_TRACK
            ),
        },
        {
            # The server exports a code's series only once it answered that code: a track
            # with traffic and no 5xx has no error series, and its error rate is 0 (as in
            # the analysis). NaN at zero traffic: no alert compares true against it, and
            # the dashboard draws a gap, not a zero error rate nobody measured.
            "record": recorded("error_rate", window),
            "expr": f"(model_track:mlops_serve_errors:rate{window}{sel} or 0 * {requests}{sel})"
            f" / {requests}{sel}",
        },
    ]
    for metric, quantile in live_analysis.PERCENTILES.items():
        expr = live_analysis.latency_ms_expr(
            model, None, quantile, window, func="rate", by=PER_TRACK
        )
        rules.append({"record": recorded(metric, window), "expr": expr})
    by_class = live_analysis.predictions_expr(model, None, window, func="rate", by=PER_TRACK)
    by_bin = live_analysis.input_bins_expr(model, None, window, func="rate", by=PER_TRACK)
    reference = live_analysis.reference_shares_expr(model, None, by=PER_TRACK)
    canary = live_analysis.selector(model, "canary")
    stable = live_analysis.selector(model, "stable")
    rules += [
        {"record": _prediction_share(window), "expr": _share(by_class, "class")},
        {"record": _input_share(window), "expr": _share(by_bin, "bin")},
        {
            "record": _input_psi(window),
            "expr": _psi(
                _input_share(window) + sel,
                reference,
                "on (model, track, feature, bin)",
                ("model", "track", "feature"),
            ),
        },
        {
            "record": recorded("drift_psi_max", window),
            "expr": f"max by (model, track) ({_input_psi(window)}{sel})",
        },
        {
            "record": recorded("drift_psi_mean", window),
            "expr": f"avg by (model, track) ({_input_psi(window)}{sel})",
        },
        {
            # The canary's predicted classes against stable's, like the analysis's
            # prediction_drift_psi (stable is the reference).
            "record": recorded("prediction_drift_psi", window),
            "expr": _psi(
                _prediction_share(window) + canary,
                _prediction_share(window) + stable,
                "ignoring (track)",
                ("model",),
            ),
        },
    ]
    return rules


@dataclass(frozen=True)
class _Context:
    config: Config
    model: ModelConfig
    alerts: AlertsConfig
    window: str
    window_s: float
    min_requests: int

    @property
    def name(self) -> str:
        return self.model.name

    def command(self, text: str) -> str:
        """An mlops command line for this config (its profile included)."""
        profile = f" -p {self.config.profile}" if self.config.profile else ""
        return f"mlops {text}{profile}"

    def alert(
        self,
        name: str,
        expr: str,
        *,
        page: bool,
        summary: str,
        runbook: str,
        hold: str | None = None,
        track: str | None = None,
    ) -> dict[str, Any]:
        severity = self.alerts.severity.page if page else self.alerts.severity.ticket
        labels = {**self.alerts.labels, "severity": severity, "model": self.name}
        if track is not None:  # an alert about one track whose expression drops the label
            labels["track"] = track
        return {
            "alert": name,
            "expr": expr,
            "for": hold if hold is not None else prom_duration(duration_seconds(self.alerts.for_)),
            "labels": labels,
            "annotations": {"summary": summary, "runbook": runbook},
        }


def _camel(metric: str) -> str:
    return "".join(part.capitalize() for part in metric.split("_"))


def _enough_traffic(ctx: _Context, per_track: bool) -> str:
    """True where the track (or the canary, for a cross-track metric) served
    ``min_requests`` requests in the window, like the analysis's fail-closed rule."""
    requests = recorded("request_rate", ctx.window)
    if per_track:
        sel = live_analysis.selector(ctx.name)
        return f"on (model, track) ({requests}{sel} * {fmt(ctx.window_s)} >= {ctx.min_requests})"
    sel = live_analysis.selector(ctx.name, "canary")
    return f"on (model) ({requests}{sel} * {fmt(ctx.window_s)} >= {ctx.min_requests})"


def _threshold_alerts(ctx: _Context, metric: str, threshold: Threshold) -> list[dict[str, Any]]:
    series = recorded(metric, ctx.window)
    per_track = metric not in CROSS_TRACK
    sel = live_analysis.selector(ctx.name)
    guard = _enough_traffic(ctx, per_track)
    page = metric in PAGING_METRICS
    where = "{{ $labels.track }} track of " if per_track else "canary of "
    abort = ctx.command(f"abort {ctx.name}")
    rollback = ctx.command(f"rollback {ctx.name}")
    status = ctx.command("status")
    runbook = (
        f"Run `{status}`. During a rollout the analysis aborts a failing canary by itself; "
        f"to stop it now: `{abort}`. On stable: `{rollback}` returns to the previous revision."
    )
    # request_rate is the traffic itself: no minimum traffic to guard it with.
    guarded = "" if metric == "request_rate" else f" and {guard}"
    out = []
    if threshold.max is not None:
        out.append(
            ctx.alert(
                f"Mlops{_camel(metric)}AboveMax",
                f"{series}{sel} > {fmt(threshold.max)}{guarded}",
                page=page,
                summary=f"{metric} of the {where}{ctx.name} is {{{{ $value }}}}, above the "
                f"maximum {fmt(threshold.max)} of mlops.yaml",
                runbook=runbook,
                track=None if per_track else "canary",
            )
        )
    if threshold.min is not None:
        out.append(
            ctx.alert(
                f"Mlops{_camel(metric)}BelowMin",
                f"{series}{sel} < {fmt(threshold.min)}{guarded}",
                page=page,
                summary=f"{metric} of the {where}{ctx.name} is {{{{ $value }}}}, below the "
                f"minimum {fmt(threshold.min)} of mlops.yaml",
                runbook=runbook,
                track=None if per_track else "canary",
            )
        )
    relative = threshold.vs_baseline
    if relative is not None and per_track:
        higher_is_better = direction_for(metric, threshold, LIVE_METRICS)
        canary = f"{series}{live_analysis.selector(ctx.name, 'canary')}"
        stable = f"{series}{live_analysis.selector(ctx.name, 'stable')}"
        # A regression is a move in the bad direction (the gate's rule).
        regression = (
            f"({stable} - ignoring (track) {canary})"
            if higher_is_better
            else f"({canary} - ignoring (track) {stable})"
        )
        canary_guard = _enough_traffic(ctx, per_track=False)
        bounds = []
        if relative.max_regression is not None:
            bounds.append(f"{regression} > {fmt(relative.max_regression)}")
        if relative.max_regression_pct is not None:
            bounds.append(
                f"{regression} / ignoring (track) abs({stable} != 0) * 100 "
                f"> {fmt(relative.max_regression_pct)}"
            )
        for suffix, condition in zip(("", "Pct"), bounds, strict=False):
            bound = (
                fmt(relative.max_regression)
                if suffix == "" and relative.max_regression is not None
                else f"{fmt(relative.max_regression_pct)}%"
            )
            out.append(
                ctx.alert(
                    f"MlopsCanary{_camel(metric)}Regressed{suffix}",
                    f"({condition}) and {canary_guard}",
                    page=page,
                    track="canary",
                    summary=f"{metric} of the canary of {ctx.name} regressed by "
                    f"{{{{ $value }}}} against stable (allowed: {bound})",
                    runbook=(
                        f"Run `{status}`: the rollout's analysis judges the same numbers and "
                        f"aborts on its own; to stop it now: `{abort}`."
                    ),
                )
            )
    return out


def _deployment(ctx: _Context, track: str) -> str:
    namespace = ctx.model.deploy.namespace
    on_namespace = f'namespace="{namespace}",' if namespace else ""
    return f'{{{on_namespace}deployment="{ctx.name}-{track}"}}'


def _longest_rollout_s(model: ModelConfig, analysis: Analysis) -> float:
    """The longest a rollout of this config can take before its driver must have ended it:
    the canary getting ready, every step judged through its tolerated inconclusive and
    failed windows, and the promotion's rollout."""
    interval = duration_seconds(analysis.interval)
    windows_per_step = analysis.inconclusive_limit + analysis.failure_limit + 1
    rollout = model.rollout
    steps = len(rollout.steps) if rollout is not None else 0
    return 2 * duration_seconds(model.deploy.rollout_timeout) + steps * windows_per_step * interval


def _state_alerts(ctx: _Context) -> list[dict[str, Any]]:
    requests = recorded("request_rate", ctx.window)
    sel = live_analysis.selector(ctx.name)
    status = ctx.command("status")
    rollback = ctx.command(f"rollback {ctx.name}")
    out = [
        ctx.alert(
            "MlopsNoTraffic",
            f"sum by (model) ({requests}{sel}) == 0 or absent({requests}{sel})",
            page=True,
            summary=f"{ctx.name} served no model requests in the last {ctx.window}",
            runbook=f"Run `{status}`: are the pods ready and the VirtualService routing to "
            "them? A model that answers nothing also gives the rollout no verdict.",
        ),
        ctx.alert(
            "MlopsNoReadyReplicas",
            f"{KSM_AVAILABLE}{_deployment(ctx, 'stable')} == 0 "
            f"and on (namespace, deployment) {KSM_SPEC}{_deployment(ctx, 'stable')} > 0",
            page=True,
            summary=f"the stable Deployment of {ctx.name} has no available replica",
            runbook=f"Run `{status}` and `kubectl describe deployment {ctx.name}-stable`; "
            f"if the last deploy caused it: `{rollback}`.",
        ),
    ]
    if ctx.alerts.max_model_age is not None:
        age = duration_seconds(ctx.alerts.max_model_age)
        trained = f'{TRAINED_AT}{{model="{ctx.name}"}}'
        retrain = ctx.command(f"train {ctx.name}")
        out.append(
            ctx.alert(
                "MlopsModelTooOld",
                f"time() - max by (model, track) ({trained}) > {age:g}",
                page=False,
                summary=f"a served model of {ctx.name} was trained more than "
                f"{ctx.alerts.max_model_age} ago (alerts.max_model_age)",
                runbook=f"Retrain and ship: `{retrain}`, `{ctx.command(f'evaluate {ctx.name}')}`, "
                f"then build, push and `{ctx.command('deploy')}`.",
            )
        )
    rollout = ctx.model.rollout
    if rollout is not None and rollout.steps and rollout.analysis is not None:
        longest = prom_duration(_longest_rollout_s(ctx.model, rollout.analysis))
        out.append(
            ctx.alert(
                "MlopsRolloutStuck",
                f"{KSM_SPEC}{_deployment(ctx, 'canary')} > 0",
                page=False,
                hold=longest,
                summary=f"the canary of {ctx.name} has run for over {longest}, longer than "
                "any rollout of mlops.yaml takes: its driver may be gone",
                runbook=f"Run `{status}`: continue with `{ctx.command('deploy --resume')}` or "
                f"stop with `{ctx.command(f'abort {ctx.name}')}`.",
            )
        )
        namespace = ctx.model.deploy.namespace
        on_namespace = f'namespace="{namespace}",' if namespace else ""
        phase = ksm_label(rollout_plan.PHASE_LABEL)
        out.append(
            ctx.alert(
                "MlopsRolloutAborted",
                f"max by (namespace, configmap) ({KSM_CONFIGMAP_LABELS}{{{on_namespace}"
                f'configmap="{ctx.name}-mlops-rollout",{phase}="{rollout_plan.ABORTED}"}}) == 1',
                page=False,
                summary=f"the last rollout of {ctx.name} was aborted: its canary build is not "
                "serving, the stable track is",
                runbook=f"Run `{status}` and read the rollout report it names; fix the canary "
                f"and deploy again (`{ctx.command('deploy')}`).",
            )
        )
    return out


def context(config: Config, model: ModelConfig) -> _Context:
    rollout = model.rollout
    analysis = rollout.analysis if rollout is not None else None
    alerts = config.alerts
    return _Context(
        config=config,
        model=model,
        alerts=alerts,
        window=window_text(alerts),
        window_s=duration_seconds(window_text(alerts)),
        min_requests=(
            analysis.min_requests
            if analysis is not None
            else Analysis(prometheus="", interval="1m").min_requests
        ),
    )


def rule_groups(config: Config, model: ModelConfig) -> list[dict[str, Any]]:
    """The rule groups of one model: its recording rules, then its alerts."""
    ctx = context(config, model)
    alerts: list[dict[str, Any]] = []
    for metric, threshold in sorted(live_analysis.live_thresholds(model).items()):
        alerts += _threshold_alerts(ctx, metric, threshold)
    alerts += _state_alerts(ctx)
    return [
        {"name": f"mlops-{model.name}.records", "rules": recording_rules(model.name, ctx.window)},
        {"name": f"mlops-{model.name}.alerts", "rules": alerts},
    ]


def prometheus_rule(config: Config, model: ModelConfig) -> dict[str, Any]:
    """The ``PrometheusRule`` object of one model (in the model's namespace)."""
    name = f"{model.name}-mlops"
    meta = k8s_common.metadata(config, model, name, labels=dict(config.alerts.rule_labels))
    if model.deploy.namespace is not None:
        meta["namespace"] = model.deploy.namespace
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": meta,
        "spec": {"groups": rule_groups(config, model)},
    }
