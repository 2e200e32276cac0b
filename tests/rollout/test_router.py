"""The test router (tests/rollout/router.py): Envoy's route choice for the fields render
emits, and routing a bounded load by the VirtualService a real rollout wrote on kmock."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from mlops_sessions.config import ABRoute, RolloutConfig
from mlops_sessions.planning import istio_routing
from mlops_sessions.steps import deploy as deploy_step
from tests.rollout.conftest import cli_args
from tests.rollout.fakes import FakeAnalysis
from tests.rollout.router import Router, matches, vs_reader


@contextlib.contextmanager
def backend(name: str) -> Iterator[str]:
    """An HTTP server that answers every POST with its own name (stands in for a track)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = json.dumps({"track": name}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_header_and_cookie_matches_as_render_writes_them() -> None:
    rollout = RolloutConfig(hosts=("h",), ab=ABRoute(header="X-Canary", cookie="beta=1"))
    route = {"match": istio_routing.ab_matches(rollout)}
    assert matches(route, {"x-canary": "anything"})
    assert matches(route, {"Cookie": "a=b; beta=1; c=d"})
    assert not matches(route, {"Cookie": "a=b; beta=10"})
    assert not matches(route, {})
    exact = {"match": istio_routing.ab_matches(RolloutConfig(hosts=("h",), ab=ABRoute(
        header="x-canary", value="always")))}  # fmt: skip
    assert matches(exact, {"X-Canary": "always"}) and not matches(exact, {"x-canary": "no"})
    assert matches({"name": "weighted"}, {})


def test_weights_are_split_exactly_and_a_zero_weight_gets_nothing() -> None:
    vs = {"spec": {"http": [{"name": "weighted", "route": [
        {"destination": {"subset": "stable"}, "weight": 90},
        {"destination": {"subset": "canary"}, "weight": 10},
    ]}]}}  # fmt: skip
    router = Router(lambda: vs, {})
    assert Counter(router.pick({}) for _ in range(100)) == {"stable": 90, "canary": 10}
    vs["spec"]["http"][0]["route"][1]["weight"] = 0
    vs["spec"]["http"][0]["route"][0]["weight"] = 100
    router = Router(lambda: vs, {})
    assert Counter(router.pick({}) for _ in range(50)) == {"stable": 50}


@pytest.mark.slow
def test_a_rollout_s_traffic_follows_its_virtual_service(cluster, project) -> None:
    """Through a real progressive deploy: at each step's window the router, reading the
    VirtualService from the emulated API, sends the step's share and the A/B cohort to
    the canary."""
    project.build("v1", "model-aaa")
    assert deploy_step.run(cli_args(project, "deploy"), analyse=FakeAnalysis()) == 0
    project.build("v2", "model-bbb")
    with backend("stable") as stable_url, backend("canary") as canary_url:
        router = Router(
            vs_reader(str(cluster.kubeconfig), "digits", "ml"),
            {"stable": stable_url, "canary": canary_url},
            refresh_s=0.0,
        )
        seen: list[tuple[Counter[str], Counter[str]]] = []

        def send() -> None:
            plain = router.load(100, "/v1/models/digits:predict", lambda i: b"{}")
            cohort = router.load(
                10, "/v1/models/digits:predict", lambda i: b"{}",
                headers=lambda i: {"x-digits-canary": "always"},
            )  # fmt: skip
            answered = [json.loads(s.body)["track"] for s in plain]
            assert answered == [s.subset for s in plain]  # it reached that backend
            seen.append((Counter(s.subset for s in plain), Counter(s.subset for s in cohort)))

        fake = FakeAnalysis(probe=send)
        assert deploy_step.run(cli_args(project, "deploy"), analyse=fake) == 0
        assert [dict(plain) for plain, _ in seen] == [
            {"stable": 90, "canary": 10},
            {"stable": 50, "canary": 50},
            {"canary": 100},
        ]
        assert all(cohort == {"canary": 10} for _, cohort in seen)
        # Promoted: everything to stable, and the A/B route is gone with the canary.
        with router.serve() as url:
            import urllib.request

            request = urllib.request.Request(
                url + "/v1/models/digits:predict", data=b"{}",
                headers={"x-digits-canary": "always"}, method="POST",
            )  # fmt: skip
            with urllib.request.urlopen(request, timeout=5) as answer:
                assert answer.headers["X-Routed-To"] == "stable"


def test_no_virtual_service_is_a_lookup_error() -> None:
    with pytest.raises(LookupError, match="no VirtualService"):
        Router(lambda: None, {}).pick({})
