"""The rules and the dashboard on real parts: a real Prometheus that loads the generated
rule file (evaluated every second) and scrapes two real `mlops serve` processes, stable on a
good model and a canary that fails on a share of its inputs, both with a training drift
reference. Under bounded load:

- every recording rule returns data: the series names and labels the server really
  exports are the ones the rules read (a rename upstream empties one, and this fails);
- every alert expression evaluates without error (the kube-state-metrics ones return
  nothing here: no cluster);
- every dashboard query returns data;
- the canary's error-rate alerts fire, labelled ``track="canary"``, and stable's do not.
"""

from __future__ import annotations

import concurrent.futures
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlops_sessions.config import Config
from mlops_sessions.planning import alerts, dashboard, drift
from tests.conftest import require_real
from tests.observe.conftest import rule_file, write_project
from tests.prometheus_server import Prometheus, binary
from tests.serve.conftest import MODEL, Server, _export_dense, start_server

pytestmark = pytest.mark.slow

WINDOW = "10s"
DEADLINE_S = 60.0
KSM_SERIES = ("kube_deployment_status_replicas_available", "kube_deployment_spec_replicas")


def _export_failing(directory: Path) -> None:
    """Fails (a model error: 500) on rows whose first pixel is above 0.6."""
    import tensorflow as tf

    class Failing(tf.Module):  # type: ignore[misc]
        @tf.function(input_signature=[tf.TensorSpec([None, 64], tf.float32, name="pixels")])  # type: ignore[untyped-decorator]
        def serve(self, pixels: Any) -> dict[str, Any]:
            check = tf.debugging.assert_less_equal(pixels[:, 0], 0.6, message="bad pixel")
            with tf.control_dependencies([check]):
                return {"output_0": tf.nn.softmax(pixels[:, :10])}

    module = Failing()
    tf.saved_model.save(module, str(directory), signatures={"serving_default": module.serve})


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Config:
    # for: 0s: an alert fires at the first evaluation that sees its condition.
    return write_project(tmp_path_factory.mktemp("observe"), window=WINDOW, hold="0s", model=MODEL)


@pytest.fixture(scope="module")
def ruled_prometheus(
    tmp_path_factory: pytest.TempPathFactory, project: Config
) -> Iterator[Prometheus]:
    found = binary()
    if found is None:
        require_real("Prometheus (Debian's prometheus package) is not installed")
    assert found is not None
    workdir = tmp_path_factory.mktemp("prometheus-rules")
    rules = rule_file(project, workdir / "rules.yml")
    server = Prometheus(found, workdir, rule_files=(rules,))
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def servers(
    tmp_path_factory: pytest.TempPathFactory, ruled_prometheus: Prometheus
) -> Iterator[dict[str, Server]]:
    root = tmp_path_factory.mktemp("observe-serve")
    reference = root / "drift_reference.json"
    rows = np.random.default_rng(1).random((500, 64))
    reference.write_text(json.dumps(drift.reference_table(rows, 10)))
    (root / "good").mkdir()
    (root / "failing").mkdir()
    _export_dense(root / "good" / "model")
    _export_failing(root / "failing" / "model")
    started: dict[str, Server] = {}
    with (
        start_server(
            root / "stable",
            root / "good" / "model",
            {"batching": {"max_batch_size": 8}},
            ("--track", "stable", "--drift-reference", str(reference)),
        ) as stable,
        start_server(
            root / "canary",
            root / "failing" / "model",
            {"batching": {"max_batch_size": 8}},
            ("--track", "canary", "--drift-reference", str(reference)),
        ) as canary,
    ):
        started = {"stable": stable, "canary": canary}
        addresses = [f"127.0.0.1:{s.port}" for s in started.values()]
        for address in addresses:
            ruled_prometheus.add_target(address)
        try:
            for address in addresses:
                ruled_prometheus.wait_scraped(address)
            yield started
        finally:
            for address in addresses:
                ruled_prometheus.remove_target(address)


def _load_until(servers: list[Server], stop: threading.Event) -> None:
    """Bounded load: two clients per server, one row per request, until stop is set."""

    def client(server: Server, seed: int) -> None:
        rng = np.random.default_rng(seed)
        while not stop.is_set():
            server.predict({"instances": [rng.random(64).astype(np.float32).tolist()]})

    with concurrent.futures.ThreadPoolExecutor(max_workers=2 * len(servers)) as pool:
        futures = [
            pool.submit(client, s, i * 7 + k) for i, s in enumerate(servers) for k in range(2)
        ]
        for future in futures:
            future.result()


def _query(url: str, expr: str) -> list[tuple[dict[str, str], float]]:
    """An instant query now; an error answer (bad PromQL) raises with Prometheus's words."""
    address = url + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(address, timeout=10) as answer:
            body = json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"{expr}: {exc.read().decode(errors='replace')}") from None
    assert body["status"] == "success", body
    return [(r["metric"], float(r["value"][1])) for r in body["data"]["result"]]


def _firing(prometheus: Prometheus) -> list[dict[str, Any]]:
    with urllib.request.urlopen(prometheus.url + "/api/v1/alerts", timeout=5) as answer:
        found: list[dict[str, Any]] = json.loads(answer.read())["data"]["alerts"]
    return [a for a in found if a["state"] == "firing"]


def _rules(project: Config) -> list[dict[str, Any]]:
    model = project.models[MODEL]
    return [rule for group in alerts.rule_groups(project, model) for rule in group["rules"]]


def _wait_for(check: Any, what: str) -> Any:
    deadline = time.monotonic() + DEADLINE_S
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(1)
    raise AssertionError(f"{what} not within {DEADLINE_S}s (last: {last})")


def test_rules_and_dashboard_read_what_the_server_exports(
    project: Config, ruled_prometheus: Prometheus, servers: dict[str, Server]
) -> None:
    stop = threading.Event()
    loader = threading.Thread(target=_load_until, args=(list(servers.values()), stop))
    loader.start()
    try:
        url = ruled_prometheus.url

        def ask(expr: str) -> list[tuple[dict[str, str], float]]:
            return _query(url, expr)

        def every_record_has_data() -> list[str] | None:
            empty = [r["record"] for r in _rules(project) if "record" in r and not ask(r["record"])]
            return None if empty else ["ok"]

        _wait_for(every_record_has_data, "data in every recording rule")
        for rule in _rules(project):
            if "record" in rule:
                continue
            result = ask(rule["expr"])  # raises PrometheusError on a bad expression
            if any(name in rule["expr"] for name in KSM_SERIES):
                assert result == [], rule["alert"]  # no kube-state-metrics here
        empty = [q for q in dashboard.queries(project) if not ask(q)]
        assert empty == [], f"dashboard queries without data: {empty}"

        def canary_error_alerts() -> list[dict[str, Any]] | None:
            names = {
                (a["labels"]["alertname"], a["labels"].get("track"))
                for a in _firing(ruled_prometheus)
            }
            wanted = {
                ("MlopsErrorRateAboveMax", "canary"),
                ("MlopsCanaryErrorRateRegressed", "canary"),
            }
            return sorted(names) if wanted <= names else None

        try:
            fired = _wait_for(canary_error_alerts, "the canary's error alerts")
        except AssertionError as exc:
            ratio = ask(alerts.recorded("error_rate", WINDOW))
            names = sorted(a["labels"]["alertname"] for a in _firing(ruled_prometheus))
            raise AssertionError(f"{exc}; error ratio {ratio}; firing {names}") from None
        assert ("MlopsErrorRateAboveMax", "stable") not in fired
        share = ask(dashboard.queries(project)[dashboard_canary_share_index(project)])
        assert share and 20 < share[0][1] < 80, share  # both tracks get traffic
    finally:
        stop.set()
        loader.join(timeout=30)


def dashboard_canary_share_index(project: Config) -> int:
    """The position of the canary-share query among the dashboard's queries."""
    queries = dashboard.queries(project)
    (index,) = [i for i, q in enumerate(queries) if q.startswith("100 * sum by (model)")]
    return index
