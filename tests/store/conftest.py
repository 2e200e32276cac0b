"""Fixtures for the shared store: a real S3 API (moto's server) and checkouts that share it.

- ``moto``: one ``moto_server`` process per module on 127.0.0.1:<free port>, stopped by PID
  (tests/fixtures/moto.py, shared with fetch-model's tests); when it cannot start,
  ``require_real`` skips locally and fails in CI;
- ``bucket``: credentials for it in the environment (nothing else boto3 could find on the
  machine), a fresh bucket per test and a boto3 client to look inside;
- ``checkout(name, ...)``: a project directory with a tiny real Keras model, its
  mlops.yaml pointing ``store.remote`` at the bucket. Two checkouts of the same files are
  "the laptop" and "CI": same cache keys, separate ``.mlops/`` caches;
- ``slow_s3(upstream, Faults(...))``: a proxy in front of moto that answers 503 SlowDown.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import textwrap
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tests.fixtures.moto import HOST, free_port, isolate_s3_env, moto, moto_server

boto3 = pytest.importorskip("boto3")

# Re-exported: the fixture for this package's tests, the helpers for tests that import them.
__all__ = ["HOST", "free_port", "moto", "moto_server"]

TOY_MODEL = '''
"""A tiny real Keras classifier: trains in about a second."""
import numpy as np


def load(ctx):
    table = np.loadtxt(ctx.inputs["toy"], delimiter=",", dtype=np.float32)
    return table[:, :-1], table[:, -1].astype(np.int64)


def heldout(ctx):
    x, y = load(ctx)
    return x[180:], y[180:]


def train(ctx):
    import keras

    x, y = load(ctx)
    model = keras.Sequential([
        keras.Input(shape=(x.shape[1],), name="features"),
        keras.layers.Dense(int(ctx.params.get("hidden", 8)), activation="relu"),
        keras.layers.Dense(2, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.05),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[:180], y[:180], epochs=int(ctx.params.get("epochs", 3)), batch_size=32,
              verbose=0)
    return model
'''


@dataclass
class Bucket:
    endpoint: str
    name: str
    client: Any

    @property
    def url(self) -> str:
        return f"s3://{self.name}/team/digits"

    def objects(self, prefix: str = "") -> list[str]:
        found = self.client.list_objects_v2(Bucket=self.name, Prefix=f"team/digits/{prefix}")
        return sorted(str(o["Key"])[len("team/digits/") :] for o in found.get("Contents", []))

    def json(self, key: str) -> dict[str, Any]:
        body = self.client.get_object(Bucket=self.name, Key=f"team/digits/{key}")["Body"]
        data: dict[str, Any] = json.loads(body.read())
        return data


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only the credentials we set: no ~/.aws files, no instance metadata lookups."""
    isolate_s3_env(monkeypatch, tmp_path, "AKIDSHAREDSTORE", "shared-store-secret")


@pytest.fixture
def bucket(moto: str, s3_env: None, request: pytest.FixtureRequest) -> Bucket:
    client = boto3.client("s3", endpoint_url=moto)
    name = f"store-{abs(hash(request.node.nodeid)) % 10**10}"
    client.create_bucket(Bucket=name)
    return Bucket(moto, name, client)


# --- checkouts of one project ----------------------------------------------------------------


@dataclass
class Checkout:
    root: Path
    capsys: pytest.CaptureFixture[str]

    @property
    def config(self) -> Path:
        return self.root / "mlops.yaml"

    @property
    def store(self) -> Path:
        return self.root / ".mlops"

    def local_runs(self) -> list[str]:
        return sorted(p.parent.name for p in (self.store / "runs").glob("*/run.json"))

    def mlops(self, *args: str) -> tuple[int, Any, str]:
        """`mlops <step> --json ...` in-process; (exit code, JSON or None, stderr)."""
        from mlops_sessions.frontends.cli import main

        self.capsys.readouterr()
        code = main([args[0], "-c", str(self.config), "--json", *args[1:]])
        out, err = self.capsys.readouterr()
        return code, (json.loads(out) if out.strip() else None), err


def _write_data(path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 4)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, np.column_stack([x, y]), delimiter=",", fmt="%.6f")


def write_checkout(
    root: Path,
    remote: str | None,
    endpoint: str | None,
    *,
    max_regression: float = 0.5,
    drift: bool = False,
) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "src").mkdir(exist_ok=True)
    (root / "src" / "toy_model.py").write_text(textwrap.dedent(TOY_MODEL))
    _write_data(root / "data" / "toy.csv")
    store: Any = ".mlops"
    if remote is not None:
        store = {"path": ".mlops", "remote": remote}
        if endpoint:
            store["endpoint"] = endpoint
    doc = {
        "apiVersion": "mlops/v1alpha1",
        "project": {"name": "toy"},
        "store": store,
        "data": {"toy": {"path": "data/toy.csv"}},
        "models": {
            "toy": {
                "train": {
                    "source": "src",
                    "entrypoint": "toy_model:train",
                    "inputs": ["toy"],
                    "seed": 7,
                    "params": {"epochs": 3, "hidden": 8},
                },
                "evaluate": {
                    "dataset": "toy_model:heldout",
                    "metrics": ["accuracy"],
                    "baseline": "blessed",
                    "allow_first_run": True,
                    "thresholds": {
                        "accuracy": {
                            "min": 0.5,
                            "vs_baseline": {"max_regression": max_regression},
                        }
                    },
                },
            }
        },
    }
    if drift:
        doc["models"]["toy"]["evaluate"]["drift"] = {"reference": "toy_model:heldout", "bins": 5}
    (root / "mlops.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


@pytest.fixture
def checkout(
    tmp_path: Path, bucket: Bucket, capsys: pytest.CaptureFixture[str]
) -> Callable[..., Checkout]:
    def make(name: str, *, endpoint: str | None = None, **kwargs: Any) -> Checkout:
        root = tmp_path / name
        write_checkout(root, bucket.url, endpoint or bucket.endpoint, **kwargs)
        return Checkout(root, capsys)

    return make


# --- a struggling object store in front of moto ----------------------------------------------


@dataclass
class Faults:
    slowdown: int = 0  # answer this many requests with 503 SlowDown
    answered_503: int = 0
    requests: list[tuple[str, str]] = field(default_factory=list)


def _handler(upstream: str, faults: Faults) -> type[BaseHTTPRequestHandler]:
    host, port = upstream.removeprefix("http://").split(":")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _relay(self) -> None:
            faults.requests.append((self.command, self.path))
            length = int(self.headers.get("Content-Length") or 0)
            payload = self.rfile.read(length) if length else None
            if faults.slowdown > 0:
                faults.slowdown -= 1
                faults.answered_503 += 1
                body = b"<Error><Code>SlowDown</Code><Message>Reduce your rate.</Message></Error>"
                self.send_response(503)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            conn = http.client.HTTPConnection(host, int(port), timeout=30)
            try:
                conn.request(self.command, self.path, body=payload, headers=dict(self.headers))
                answer = conn.getresponse()
                data = answer.read()
            finally:
                conn.close()
            self.send_response(answer.status)
            for name, value in answer.getheaders():
                if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _relay

    return Handler


@contextlib.contextmanager
def slow_s3(upstream: str, faults: Faults) -> Iterator[str]:
    server = ThreadingHTTPServer((HOST, 0), _handler(upstream, faults))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture
def slowdown_proxy(bucket: Bucket) -> Iterator[tuple[str, Faults]]:
    """(endpoint URL, Faults) of a proxy in front of moto; set Faults.slowdown to use it."""
    faults = Faults()
    with slow_s3(bucket.endpoint, faults) as endpoint:
        yield endpoint, faults
