"""The project's Grafana dashboard, built from mlops.yaml with grafana-foundation-sdk.

Pure: a Config in, the dashboard's JSON model (a dict) out; ``mlops render`` ships it in a
ConfigMap labelled for Grafana's dashboard sidecar (``grafana_dashboard: "1"``) and
``mlops dashboard`` prints it. One row per model, each panel reading the series the
recording rules of :mod:`planning.alerts` record (the ones the alerts fire on, built by
the live analysis's own PromQL builders), with the live thresholds of mlops.yaml drawn as
threshold lines. Only the batch-size panel reads a raw histogram: no alert judges it.

grafana-foundation-sdk is Grafana Labs' own generated, typed builders for the current
dashboard schema (grafanalib is a community library that follows it by hand); it is
imported inside :func:`dashboard` so ``mlops validate`` and ``render`` without dashboards
need none of it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from mlops_sessions.config import Config, ModelConfig
from mlops_sessions.errors import StepError
from mlops_sessions.planning import alerts, k8s_common, live_analysis

if TYPE_CHECKING:
    from grafana_foundation_sdk.builders.timeseries import Panel

# The label Grafana's sidecar (the Helm chart's default) watches for dashboards.
SIDECAR_LABEL = "grafana_dashboard"
DATASOURCE_UID = "${datasource}"
BATCH_SIZE_BUCKETS = "mlops_serve_batch_size_bucket"


@dataclass(frozen=True)
class Query:
    """One panel query: the PromQL and how its series are named in the legend."""

    expr: str
    legend: str


@dataclass(frozen=True)
class PanelSpec:
    """What a panel shows, independent of the library that draws it."""

    title: str
    unit: str
    queries: tuple[Query, ...]
    thresholds: tuple[float, ...] = ()
    description: str = ""


def _bounds(model: ModelConfig, *metrics: str) -> tuple[float, ...]:
    """The absolute bounds (min and max) mlops.yaml sets on these live metrics."""
    thresholds = live_analysis.live_thresholds(model)
    found = {
        bound
        for metric in metrics
        if metric in thresholds
        for bound in (thresholds[metric].min, thresholds[metric].max)
        if bound is not None
    }
    return tuple(sorted(found))


def panels(config: Config, model: ModelConfig) -> list[PanelSpec]:
    """The panels of one model, in order."""
    window = alerts.window_text(config.alerts)
    sel = live_analysis.selector(model.name)

    def series(metric: str, track: str | None = None) -> str:
        chosen = live_analysis.selector(model.name, track) if track else sel
        return alerts.recorded(metric, window) + chosen

    requests = series("request_rate")
    per_track = "{{track}}"
    latency = tuple(
        Query(series(metric), f"{per_track} p{metric.split('_p')[1][:-3]}")
        for metric in live_analysis.PERCENTILES
    )
    batch = tuple(
        Query(
            f"histogram_quantile({q}, sum by (le, model) "
            f"(rate({BATCH_SIZE_BUCKETS}{sel}[{window}])))",
            f"p{round(q * 100)}",
        )
        for q in (0.5, 0.95)
    )
    return [
        PanelSpec(
            "Requests",
            "reqps",
            (Query(requests, per_track),),
            _bounds(model, "request_rate"),
            "Model requests per second (predict, infer) by track.",
        ),
        PanelSpec(
            "Errors",
            "percentunit",
            (Query(series("error_rate"), per_track),),
            _bounds(model, "error_rate"),
            "Share of model requests answered 5xx, by track; gaps where a track has no traffic.",
        ),
        PanelSpec(
            "Latency percentiles",
            "ms",
            latency,
            _bounds(model, *live_analysis.PERCENTILES),
            "Request latency percentiles from the server's histogram, by track.",
        ),
        PanelSpec(
            "Batch sizes",
            "short",
            batch,
            (),
            "Rows per model call (adaptive batching), all tracks.",
        ),
        PanelSpec(
            "Traffic per track and canary weight",
            "percent",
            (
                Query(
                    f"100 * sum by (model) ({series('request_rate', 'canary')}) "
                    f"/ sum by (model) ({requests})",
                    "canary share of requests",
                ),
            ),
            (),
            "The canary's share of model traffic: the weight a rollout step sets, as served.",
        ),
        PanelSpec(
            "Drift",
            "short",
            (
                Query(series("drift_psi_max"), f"{per_track} input PSI max (vs training)"),
                Query(series("drift_psi_mean"), f"{per_track} input PSI mean (vs training)"),
                Query(series("prediction_drift_psi"), "prediction PSI canary vs stable"),
            ),
            _bounds(model, "drift_psi_max", "drift_psi_mean", "prediction_drift_psi"),
            "Population stability index of inputs against the training reference, and of the "
            "canary's predicted classes against stable's.",
        ),
    ]


def queries(config: Config) -> list[str]:
    """Every PromQL expression the dashboard runs (for tests that evaluate them)."""
    return [
        query.expr
        for model in config.models.values()
        for panel in panels(config, model)
        for query in panel.queries
    ]


def _panel(spec: PanelSpec) -> Panel:
    from grafana_foundation_sdk.builders import common as common_builders
    from grafana_foundation_sdk.builders import dashboard as db
    from grafana_foundation_sdk.builders import prometheus, timeseries
    from grafana_foundation_sdk.models import common
    from grafana_foundation_sdk.models import dashboard as model

    steps = [model.Threshold(value=None, color="green")] + [
        model.Threshold(value=value, color="red") for value in spec.thresholds
    ]
    panel = (
        timeseries.Panel()
        .title(spec.title)
        .description(spec.description)
        .unit(spec.unit)
        .datasource(model.DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID))
        .thresholds(db.ThresholdsConfig().mode(model.ThresholdsMode("absolute")).steps(steps))
        .thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(
                common.GraphTresholdsStyleMode("line" if spec.thresholds else "off")
            )
        )
        .height(8)
        .span(12)
    )
    for index, query in enumerate(spec.queries):
        panel = panel.with_target(
            prometheus.Dataquery()
            .expr(query.expr)
            .legend_format(query.legend)
            .ref_id(chr(ord("A") + index))
        )
    return cast("Panel", panel)


def dashboard(config: Config) -> dict[str, Any]:
    """The project's dashboard as Grafana's JSON model."""
    try:
        from grafana_foundation_sdk.builders import dashboard as db
        from grafana_foundation_sdk.cog.encoder import JSONEncoder
    except ImportError:
        raise StepError(
            "the Grafana dashboard needs grafana-foundation-sdk: "
            "pip install 'mlops-sessions[deploy]'"
        ) from None

    board = (
        db.Dashboard(f"{config.project.name}: models (mlops-sessions)")
        .uid(f"mlops-{config.project.name}")
        .tags(["mlops-sessions", config.project.name])
        .time("now-6h", "now")
        .refresh("30s")
        .readonly()
        .with_variable(db.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
    )
    for model in config.models.values():
        board = board.with_row(db.Row(f"{model.name}"))
        for spec in panels(config, model):
            board = board.with_panel(_panel(spec))
    built: dict[str, Any] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    return built


def dashboard_json(config: Config) -> str:
    """The dashboard as the JSON text Grafana imports (stable key order)."""
    return json.dumps(dashboard(config), indent=2, sort_keys=True) + "\n"


def configmap(config: Config) -> dict[str, Any]:
    """A ConfigMap holding the dashboard, labelled for Grafana's dashboard sidecar. It goes
    to the first model's namespace (the sidecar watches every namespace by default)."""
    first = next(iter(config.models.values()))
    meta = k8s_common.metadata(
        config, first, f"{config.project.name}-mlops-dashboard", labels={SIDECAR_LABEL: "1"}
    )
    # The dashboard is the project's, not the first model's: no model labels on it.
    for key in ("app", "app.kubernetes.io/name"):
        meta["labels"].pop(key, None)
    if first.deploy.namespace is not None:
        meta["namespace"] = first.deploy.namespace
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta,
        "data": {f"{config.project.name}-mlops.json": dashboard_json(config)},
    }


MONITORING_DIR = "monitoring"


def monitoring_objects(
    config: Config, models: list[ModelConfig]
) -> list[tuple[str, dict[str, Any]]]:
    """What render writes to ``monitoring/``: each selected model's PrometheusRule, then
    the project's dashboard ConfigMap, as (file name, object). Kept out of ``all.yaml``:
    they need the prometheus-operator's CRD and Grafana's sidecar, which a cluster may not
    have, and a deploy never applies them."""
    out: list[tuple[str, dict[str, Any]]] = [
        (f"{model.name}-prometheusrule.yaml", alerts.prometheus_rule(config, model))
        for model in models
    ]
    out.append((f"{config.project.name}-dashboard.yaml", configmap(config)))
    return out
