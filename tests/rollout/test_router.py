"""The test router (tests/rollout/router.py): Envoy's route choice for the fields render
emits. Routing a bounded load by the VirtualService a rollout wrote on the real API server
is tested in tests/kube/test_rollout_flows_real.py."""

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
from tests.rollout.router import Router, matches


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


def test_no_virtual_service_is_a_lookup_error() -> None:
    with pytest.raises(LookupError, match="no VirtualService"):
        Router(lambda: None, {}).pick({})
