"""The generated rules, judged by Prometheus's own engine: ``promtool check rules`` (syntax,
templates, names) and ``promtool test rules`` over synthetic series. The cases cover a
canary answering errors, zero traffic, no series at all, errors below ``min_requests``
(fail closed: no alert), kube-state-metrics' replica series, and the recorded drift
measurements against :mod:`planning.drift`'s own PSI.

The alert tests load the rules with the ``summary`` annotation left out: promtool compares
annotations after template expansion, and the summary quotes ``$value``; ``check rules``
checks that its template expands. The ``runbook`` annotation (static text) is compared.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops_sessions.config import Config
from mlops_sessions.config.loader import load
from mlops_sessions.planning import alerts, drift
from tests.observe.conftest import rule_file, run_promtool

REQ = "mlops_serve_requests_total"
BUCKET = "mlops_serve_request_duration_seconds_bucket"


def _series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{text}}}", "values": values}


def _req(track: str, code: str, values: str) -> dict[str, str]:
    labels = {"model": "digits", "version": "1", "track": track, "endpoint": "predict"}
    return _series(REQ, {**labels, "protocol": "rest", "code": code}, values)


def _sample(expr: str, name: str, labels: dict[str, str], value: float) -> dict[str, Any]:
    """A promql_expr_test: expr at 5m gives one sample of the series name{labels}."""
    text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {
        "expr": expr,
        "eval_time": "5m",
        "exp_samples": [{"labels": f"{name}{{{text}}}", "value": value}],
    }


def _close(name: str, labels: dict[str, str], value: float) -> dict[str, Any]:
    """The recorded series equals value up to float rounding (Prometheus sums in no fixed
    order, so the last bit may differ from Python's)."""
    expr = f"abs({name} - {value!r}) < bool 1e-9"
    return _sample(expr, "", {"model": "digits", **labels}, 1)


def _runbook(config: Config, name: str) -> str:
    rules = [r for g in alerts.rule_groups(config, config.models["digits"]) for r in g["rules"]]
    (rule,) = [r for r in rules if r.get("alert") == name]
    return str(rule["annotations"]["runbook"])


def _alert(
    config: Config, name: str, eval_time: str, fired: list[dict[str, str]]
) -> dict[str, Any]:
    return {
        "eval_time": eval_time,
        "alertname": name,
        "exp_alerts": [
            {"exp_labels": labels, "exp_annotations": {"runbook": _runbook(config, name)}}
            for labels in fired
        ],
    }


def _test_rules(tmp_path: Path, config: Config, tests: list[dict[str, Any]]) -> None:
    rules = rule_file(config, tmp_path / "rules.yml", keep_summary=False)
    spec = {"rule_files": [str(rules)], "evaluation_interval": "15s", "tests": tests}
    path = tmp_path / "rules_test.yml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    done = run_promtool("test", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_accepts_the_rules_of_every_profile(
    tmp_path: Path, config: Config, repo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGITS_REPLICAS", "3")
    configs = [config] + [load(repo_root / "mlops.yaml", profile=p) for p in ("ci", "prod")]
    for index, each in enumerate(configs):
        path = rule_file(each, tmp_path / f"rules-{index}.yml")
        done = run_promtool("check", "rules", str(path))
        assert done.returncode == 0, done.stdout + done.stderr
        assert "SUCCESS" in done.stdout


def test_promtool_refuses_a_broken_rule(tmp_path: Path) -> None:
    """The check above can fail: a rule with bad PromQL is refused."""
    path = tmp_path / "broken.yml"
    path.write_text(
        yaml.safe_dump({"groups": [{"name": "g", "rules": [{"record": "a:b", "expr": "sum(("}]}]})
    )
    assert run_promtool("check", "rules", str(path)).returncode != 0


def test_a_canary_answering_errors_fires_the_error_alerts(tmp_path: Path, config: Config) -> None:
    series = [
        # stable never answered 5xx: like the real server, it has no such series
        _req("stable", "200", "0+20x40"),
        _req("canary", "200", "0+10x40"),
        _req("canary", "500", "0+10x40"),  # half the canary's requests fail
    ]
    canary = {"model": "digits", "track": "canary", "severity": "critical", "team": "ml"}
    tests = [
        {
            "interval": "15s",
            "input_series": series,
            "promql_expr_test": [
                _sample(
                    'model_track:mlops_serve_error_ratio:rate1m{track="canary"}',
                    "model_track:mlops_serve_error_ratio:rate1m",
                    {"model": "digits", "track": "canary"},
                    0.5,
                ),
                # no 5xx series, but traffic: an error rate of 0, not "no data"
                _sample(
                    'model_track:mlops_serve_error_ratio:rate1m{track="stable"}',
                    "model_track:mlops_serve_error_ratio:rate1m",
                    {"model": "digits", "track": "stable"},
                    0,
                ),
            ],
            "alert_rule_test": [
                # `for: 1m`: not yet firing one minute in, firing after.
                _alert(config, "MlopsErrorRateAboveMax", "1m", []),
                _alert(config, "MlopsErrorRateAboveMax", "5m", [canary]),
                _alert(config, "MlopsCanaryErrorRateRegressed", "5m", [canary]),
                _alert(config, "MlopsNoTraffic", "5m", []),
                _alert(config, "MlopsRequestRateBelowMin", "5m", []),
            ],
        }
    ]
    _test_rules(tmp_path, config, tests)


def test_zero_traffic_and_no_series_page_as_no_traffic_only(tmp_path: Path, config: Config) -> None:
    page = {"model": "digits", "severity": "critical", "team": "ml"}
    flat = [
        _req(track, code, "0+0x40") for track in ("stable", "canary") for code in ("200", "500")
    ]
    tests = [
        {
            "interval": "15s",
            "input_series": flat,
            "alert_rule_test": [
                _alert(config, "MlopsNoTraffic", "5m", [page]),
                # 0 / 0 is NaN: no error rate is claimed for traffic nobody sent.
                _alert(config, "MlopsErrorRateAboveMax", "5m", []),
                _alert(config, "MlopsCanaryErrorRateRegressed", "5m", []),
                _alert(
                    config,
                    "MlopsRequestRateBelowMin",
                    "5m",
                    [{**page, "track": "canary"}, {**page, "track": "stable"}],
                ),
            ],
        },
        {
            "interval": "15s",
            # Nothing the server exports: an empty result everywhere.
            "input_series": [_series("up", {"job": "other"}, "1x40")],
            "alert_rule_test": [
                _alert(config, "MlopsNoTraffic", "5m", [page]),
                _alert(config, "MlopsErrorRateAboveMax", "5m", []),
                _alert(config, "MlopsLatencyP95MsAboveMax", "5m", []),
                _alert(config, "MlopsPredictionDriftPsiAboveMax", "5m", []),
            ],
        },
    ]
    _test_rules(tmp_path, config, tests)


def test_errors_below_min_requests_do_not_alert(tmp_path: Path, config: Config) -> None:
    """Like the analysis, fail closed: 4 requests a minute (min_requests is 20) that all
    fail are no verdict."""
    series = [_req("stable", "200", "0+20x40"), _req("canary", "500", "0+1x40")]
    tests = [
        {
            "interval": "15s",
            "input_series": series,
            "alert_rule_test": [_alert(config, "MlopsErrorRateAboveMax", "5m", [])],
        }
    ]
    _test_rules(tmp_path, config, tests)


def test_latency_alert_and_recorded_percentile(tmp_path: Path, config: Config) -> None:
    base = {"model": "digits", "version": "1", "endpoint": "predict", "protocol": "rest"}
    series = [_req("canary", "200", "0+10x40"), _req("stable", "200", "0+10x40")]
    for track, slow in (("canary", "0+0x40"), ("stable", "0+10x40")):
        labels = {**base, "track": track}
        series += [
            _series(BUCKET, {**labels, "le": "0.01"}, slow),  # stable: all under 10 ms
            _series(BUCKET, {**labels, "le": "0.25"}, "0+10x40"),  # canary: 10-250 ms
            _series(BUCKET, {**labels, "le": "+Inf"}, "0+10x40"),
        ]
    canary = {"model": "digits", "track": "canary", "severity": "critical", "team": "ml"}
    # p95 of the canary: 95% through the (10 ms, 250 ms] bucket, interpolated.
    expected = 1000 * (0.01 + 0.95 * (0.25 - 0.01))
    tests = [
        {
            "interval": "15s",
            "input_series": series,
            "promql_expr_test": [
                _sample(
                    'model_track:mlops_serve_latency_p95_ms:rate1m{track="canary"}',
                    "model_track:mlops_serve_latency_p95_ms:rate1m",
                    {"model": "digits", "track": "canary"},
                    expected,
                )
            ],
            "alert_rule_test": [
                _alert(config, "MlopsLatencyP95MsAboveMax", "5m", [canary]),
                _alert(config, "MlopsCanaryLatencyP95MsRegressed", "5m", [canary]),
            ],
        }
    ]
    _test_rules(tmp_path, config, tests)


def test_recorded_drift_is_the_psi_of_planning_drift(tmp_path: Path, config: Config) -> None:
    """The PromQL PSI (prediction drift between tracks, input drift against the training
    reference) equals :func:`drift.psi_of_counts` on the same counts."""
    base = {"model": "digits", "version": "1"}
    counts = {"canary": {"3": 4, "7": 1, "9": 0}, "stable": {"3": 1, "7": 4, "9": 2}}
    series = [
        _series("mlops_serve_predictions_total", {**base, "track": t, "class": c}, f"0+{n}x40")
        for t, by_class in counts.items()
        for c, n in by_class.items()
    ]
    bins = {"0": 3, "1": 1, "2": 0}
    reference = {"0": 0.5, "1": 0.3, "2": 0.2}
    for b, n in bins.items():
        labels = {**base, "track": "canary", "feature": "f0", "bin": b}
        series.append(_series("mlops_serve_input_bin_total", labels, f"0+{n}x40"))
        series.append(_series("mlops_serve_drift_reference_share", labels, f"{reference[b]}x40"))
    prediction_psi = drift.psi_of_counts(counts["stable"], counts["canary"])
    input_psi = drift.psi_of_counts(reference, bins)
    assert prediction_psi > 0.2  # the config's bound: the alert must fire
    tests = [
        {
            "interval": "15s",
            "input_series": series,
            "promql_expr_test": [
                _close("model:mlops_serve_prediction_drift_psi:rate1m", {}, prediction_psi),
                _close(
                    "model_track:mlops_serve_drift_psi_max:rate1m", {"track": "canary"}, input_psi
                ),
            ],
            "alert_rule_test": [
                # The guard counts canary requests (none here): drift without traffic is
                # no verdict, as in the analysis.
                _alert(config, "MlopsPredictionDriftPsiAboveMax", "5m", []),
            ],
        },
        {
            "interval": "15s",
            "input_series": [*series, _req("canary", "200", "0+10x40")],
            "alert_rule_test": [
                _alert(
                    config,
                    "MlopsPredictionDriftPsiAboveMax",
                    "5m",
                    [{"model": "digits", "track": "canary", "severity": "warning", "team": "ml"}],
                ),
            ],
        },
    ]
    _test_rules(tmp_path, config, tests)


def test_replicas_and_a_stuck_rollout_from_kube_state_metrics(
    tmp_path: Path, config: Config
) -> None:
    stable = {"namespace": "ml", "deployment": "digits-stable"}
    canary = {"namespace": "ml", "deployment": "digits-canary"}
    series = [
        _series("kube_deployment_spec_replicas", stable, "2x80"),
        _series("kube_deployment_status_replicas_available", stable, "2x8 0x72"),
        _series("kube_deployment_spec_replicas", canary, "1x80"),
    ]
    # The longest rollout of this config: 2 x rollout_timeout (1m) + 2 steps x
    # (inconclusive_limit 3 + failure_limit 1 + 1) windows of 1m = 12m.
    page = {**stable, "model": "digits", "severity": "critical", "team": "ml"}
    ticket = {**canary, "model": "digits", "severity": "warning", "team": "ml"}
    tests = [
        {
            "interval": "15s",
            "input_series": series,
            "alert_rule_test": [
                _alert(config, "MlopsNoReadyReplicas", "2m", []),
                _alert(config, "MlopsNoReadyReplicas", "4m", [page]),
                _alert(config, "MlopsRolloutStuck", "11m", []),
                _alert(config, "MlopsRolloutStuck", "13m", [ticket]),
            ],
        }
    ]
    _test_rules(tmp_path, config, tests)


def test_an_aborted_rollout_tickets_until_the_next_rollout_leaves_that_phase(
    tmp_path: Path, config: Config
) -> None:
    """The rollout-state ConfigMap's phase label, as kube-state-metrics exports it."""
    labels = {"namespace": "ml", "configmap": "digits-mlops-rollout"}
    phase = alerts.ksm_label("mlops-sessions.dev/rollout-phase")
    series = [
        # A label that changes ends the old series at the next scrape (a staleness marker).
        _series("kube_configmap_labels", {**labels, phase: "progressing"}, "1x20 stale"),
        _series("kube_configmap_labels", {**labels, phase: "aborted"}, "_x20 1x40 stale"),
        _series("kube_configmap_labels", {**labels, phase: "promoted"}, "_x60 1x20"),
    ]
    ticket = {**labels, "model": "digits", "severity": "warning", "team": "ml"}
    tests = [
        {
            "interval": "15s",
            "input_series": series,
            "alert_rule_test": [
                _alert(config, "MlopsRolloutAborted", "4m", []),
                _alert(config, "MlopsRolloutAborted", "11m", [ticket]),
                _alert(config, "MlopsRolloutAborted", "19m", []),
            ],
        }
    ]
    _test_rules(tmp_path, config, tests)


def test_a_model_older_than_max_model_age_tickets_and_the_server_exports_its_age(
    tmp_path: Path, config: Config
) -> None:
    import dataclasses

    from prometheus_client import generate_latest

    from mlops_sessions.server.metrics import ServerMetrics
    from mlops_sessions.server.settings import ModelIdentity

    aged = dataclasses.replace(
        config, alerts=dataclasses.replace(config.alerts, max_model_age="1h")
    )
    # What the server exports, with the series name the rule reads.
    identity = ModelIdentity("digits", "run-1", tmp_path, track="stable", trained_at=0.0)
    text = generate_latest(ServerMetrics(identity, max_batch_size=8).registry).decode()
    assert (
        'mlops_serve_model_trained_timestamp_seconds{model="digits",track="stable",'
        'version="run-1"} 0.0'
    ) in text
    # Trained at time 0: promtool's clock starts there, so the age is the evaluation time.
    labels = {"model": "digits", "version": "run-1", "track": "stable"}
    series = [_series(alerts.TRAINED_AT, labels, "0x600")]
    ticket = {"model": "digits", "track": "stable", "severity": "warning", "team": "ml"}
    tests = [
        {
            "interval": "15s",
            "input_series": series,
            "alert_rule_test": [
                _alert(aged, "MlopsModelTooOld", "50m", []),
                _alert(aged, "MlopsModelTooOld", "70m", [ticket]),
            ],
        }
    ]
    _test_rules(tmp_path, aged, tests)
    # Not declared: no age alert at all.
    rules = [r for g in alerts.rule_groups(config, config.models["digits"]) for r in g["rules"]]
    assert "MlopsModelTooOld" not in {r.get("alert") for r in rules}


def test_a_model_without_rollout_gets_the_state_alerts_only(tmp_path: Path) -> None:
    """No live thresholds and no alerts section: the defaults still make valid rules."""
    path = tmp_path / "mlops.yaml"
    path.write_text(
        "apiVersion: mlops/v1alpha1\n"
        "project: {name: plain}\n"
        "models:\n"
        "  digits: {deploy: {replicas: 1}}\n"
    )
    config = load(path)
    groups = alerts.rule_groups(config, config.models["digits"])
    names = [rule["alert"] for rule in groups[1]["rules"]]
    assert names == ["MlopsNoTraffic", "MlopsNoReadyReplicas"]
    assert {rule["for"] for rule in groups[1]["rules"]} == {"5m"}
    assert "namespace=" not in groups[1]["rules"][1]["expr"]  # no namespace declared
    done = run_promtool("check", "rules", str(rule_file(config, tmp_path / "rules.yml")))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("alerts_section", "words"),
    [
        ("{window: 0s}", "alerts.window"),
        ("{labels: {severity: low}}", "other than severity, model and track"),
        ("{labels: {team-name: ml}}", "use a Prometheus label name"),
        ("{severity: {urgent: critical}}", "alerts.severity"),
    ],
)
def test_bad_alerts_sections_are_refused_where_they_stand(
    tmp_path: Path, alerts_section: str, words: str
) -> None:
    from mlops_sessions.errors import ConfigError

    path = tmp_path / "mlops.yaml"
    path.write_text(
        "apiVersion: mlops/v1alpha1\n"
        "project: {name: plain}\n"
        f"alerts: {alerts_section}\n"
        "models:\n"
        "  digits: {deploy: {replicas: 1}}\n"
    )
    with pytest.raises(ConfigError) as raised:
        load(path)
    assert words in str(raised.value)
