"""A small stand-in for Istio's data plane: routes HTTP requests by a VirtualService read
from the (emulated) Kubernetes API, to real backends (e.g. `mlops serve` processes).

No Istio can run here. This router reads the VirtualService the rollout itself wrote, with
the real ``kubernetes`` client, and applies its ``http`` routes as Envoy would for the
fields render emits: routes in order, the first whose ``match`` list has an entry whose
``headers`` all match (``exact`` / ``prefix`` / ``regex``, header names lower-case) wins;
within a route, destinations are chosen by ``weight`` with smooth weighted round-robin
(deterministic: 100 requests at 90/10 give exactly 90 and 10, so a test can count).

Use it in two ways:

- ``Router.route(path, body, headers)`` / ``Router.load(n, ...)``: send requests (a bounded
  load) and count where they went;
- ``with Router.serve() as url``: an HTTP front on 127.0.0.1 that forwards each request,
  for code that wants a URL (the Prometheus end-to-end test).

The VirtualService is re-read every ``refresh_s`` seconds, so a step's weight change
reaches the traffic within that time, as a mesh would after its config push.
"""

from __future__ import annotations

import contextlib
import http.server
import re
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

VirtualService = dict[str, Any]


def vs_reader(kubeconfig: str, name: str, namespace: str) -> Callable[[], VirtualService | None]:
    """Read the VirtualService through the real client (None while it does not exist)."""
    from kubernetes import client, config

    api = client.CustomObjectsApi(config.new_client_from_config(config_file=kubeconfig))

    def read() -> VirtualService | None:
        try:
            found: VirtualService = api.get_namespaced_custom_object(
                "networking.istio.io", "v1", namespace, "virtualservices", name
            )
        except client.exceptions.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return found

    return read


def _string_match(rule: Mapping[str, str], value: str | None) -> bool:
    if value is None:
        return False
    if "exact" in rule:
        return value == rule["exact"]
    if "prefix" in rule:
        return value.startswith(rule["prefix"])
    if "regex" in rule:
        # Envoy matches the whole value with RE2; Python's re is close enough for the
        # RE2-compatible patterns render allows (config.rules refuses the rest).
        return re.fullmatch(rule["regex"], value) is not None
    return False


def matches(route: Mapping[str, Any], headers: Mapping[str, str]) -> bool:
    """Whether a request with headers takes this HTTP route (no match list: every request)."""
    conditions = route.get("match")
    if not conditions:
        return True
    lowered = {k.lower(): v for k, v in headers.items()}
    return any(
        all(
            _string_match(rule, lowered.get(name.lower()))
            for name, rule in (condition.get("headers") or {}).items()
        )
        for condition in conditions
    )


@dataclass
class _Balancer:
    """Smooth weighted round-robin over one route's destinations."""

    current: dict[str, int] = field(default_factory=dict)

    def pick(self, weights: Mapping[str, int]) -> str:
        total = sum(weights.values())
        if total <= 0:
            raise LookupError("every destination of the route has weight 0")
        for name, weight in weights.items():
            self.current[name] = self.current.get(name, 0) + weight
        chosen = max(weights, key=lambda n: (self.current[n], n))
        self.current[chosen] -= total
        return chosen


@dataclass
class Sent:
    subset: str
    status: int
    body: bytes


class Router:
    """Routes requests to ``backends`` (subset -> base URL) by a VirtualService."""

    def __init__(
        self,
        read_vs: Callable[[], VirtualService | None],
        backends: Mapping[str, str],
        *,
        refresh_s: float = 0.2,
        timeout_s: float = 10.0,
    ) -> None:
        self.read_vs = read_vs
        self.backends = dict(backends)
        self.refresh_s = refresh_s
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._vs: VirtualService | None = None
        self._read_at = 0.0
        self._balancers: dict[str, _Balancer] = {}
        self.counts: Counter[str] = Counter()

    def routes(self) -> list[dict[str, Any]]:
        with self._lock:
            if self._vs is None or time.monotonic() - self._read_at >= self.refresh_s:
                self._vs = self.read_vs()
                self._read_at = time.monotonic()
            vs = self._vs
        if vs is None:
            raise LookupError("no VirtualService to route by")
        return list((vs.get("spec") or {}).get("http") or [])

    def pick(self, headers: Mapping[str, str]) -> str:
        """The subset a request with headers goes to."""
        for index, route in enumerate(self.routes()):
            if not matches(route, headers):
                continue
            weights: dict[str, int] = {}
            for dest in route.get("route") or []:
                subset = str((dest.get("destination") or {}).get("subset"))
                weights[subset] = weights.get(subset, 0) + int(dest.get("weight", 100))
            key = str(route.get("name") or index)
            with self._lock:
                balancer = self._balancers.setdefault(key, _Balancer())
                return balancer.pick(weights)
        raise LookupError(f"no route matches headers {dict(headers)}")

    def route(
        self,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        method: str = "POST",
    ) -> Sent:
        headers = dict(headers or {})
        subset = self.pick(headers)
        with self._lock:
            self.counts[subset] += 1
        request = urllib.request.Request(
            self.backends[subset] + path,
            data=body,
            headers={"Content-Type": "application/json", **headers},
            method=method,
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
                return Sent(subset, answer.status, answer.read())
        except urllib.error.HTTPError as exc:
            return Sent(subset, exc.code, exc.read())

    def load(
        self,
        requests: int,
        path: str,
        body: Callable[[int], bytes],
        *,
        headers: Callable[[int], Mapping[str, str]] = lambda i: {},
        concurrency: int = 4,
        rate: float | None = None,
    ) -> list[Sent]:
        """A bounded load: ``requests`` requests (at most ``rate`` per second), in order of
        their index; returns what each got."""
        start = time.monotonic()

        def one(index: int) -> Sent:
            if rate is not None:
                delay = start + index / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            return self.route(path, body(index), headers(index))

        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            return list(pool.map(one, range(requests)))

    @contextlib.contextmanager
    def serve(self) -> Iterator[str]:
        """An HTTP front on 127.0.0.1 forwarding every request; yields its base URL."""
        router = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _forward(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length) if length else None
                try:
                    sent = router.route(
                        self.path, data, {k: v for k, v in self.headers.items()}, method
                    )
                except LookupError as exc:
                    self.send_error(503, str(exc))
                    return
                self.send_response(sent.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(sent.body)))
                self.send_header("X-Routed-To", sent.subset)
                self.end_headers()
                self.wfile.write(sent.body)

            def do_POST(self) -> None:
                self._forward("POST")

            def do_GET(self) -> None:
                self._forward("GET")

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: tests read counts, not access logs

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)
