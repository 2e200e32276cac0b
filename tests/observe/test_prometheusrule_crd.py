"""The rendered PrometheusRule against the prometheus-operator's published CRD.

The CRD comes from the operator's Go module at a pinned version, fetched by the Go
toolchain (:mod:`tests.components.gomod`), and the rendered object is validated against its
``openAPIV3Schema`` with jsonschema. The API server prunes fields a structural schema does
not declare, silently; here an undeclared field is an error (``additionalProperties: false``
wherever the schema lists ``properties``), so a misspelt key cannot pass.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from mlops_sessions.config import Config
from mlops_sessions.config.loader import load
from mlops_sessions.planning import alerts
from tests.components.crdschema import strict
from tests.components.gomod import module_dir

MODULE = "github.com/prometheus-operator/prometheus-operator"
VERSION = "v0.86.1"
CRD_FILE = "example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml"


@functools.cache
def crd_schema() -> dict[str, Any]:
    crd = yaml.safe_load((module_dir(MODULE, VERSION) / CRD_FILE).read_text())
    assert crd["spec"]["group"] == "monitoring.coreos.com"
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema: dict[str, Any] = strict(served["schema"]["openAPIV3Schema"])
    return schema


def _validate(obj: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(crd_schema())
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)
    ]


def test_the_rendered_rules_of_every_profile_match_the_crd(
    config: Config, repo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGITS_REPLICAS", "3")
    configs = [config] + [load(repo_root / "mlops.yaml", profile=p) for p in ("ci", "prod")]
    for each in configs:
        for model in each.models.values():
            obj = alerts.prometheus_rule(each, model)
            assert (obj["apiVersion"], obj["kind"]) == (
                "monitoring.coreos.com/v1",
                "PrometheusRule",
            )
            assert _validate(obj) == []


def test_the_crd_check_notices_a_broken_rule(config: Config) -> None:
    obj = alerts.prometheus_rule(config, config.models["digits"])
    broken = copy.deepcopy(obj)
    rule = broken["spec"]["groups"][1]["rules"][0]
    rule["fore"] = rule.pop("for")  # misspelt
    del broken["spec"]["groups"][0]["name"]  # required
    errors = _validate(broken)
    assert any("fore" in e for e in errors), errors
    assert any("'name' is a required property" in e for e in errors), errors


def test_rule_labels_reach_the_object_for_the_operators_rule_selector(config: Config) -> None:
    obj = alerts.prometheus_rule(config, config.models["digits"])
    assert obj["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert obj["metadata"]["namespace"] == "ml"
