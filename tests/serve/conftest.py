"""Fixtures for the model server tests: tiny SavedModels and real server processes.

Models are built here with Keras/TensorFlow (no dependency on the training step):

- ``dense_model``: Dense(64 -> 64 -> 10 softmax), input ``pixels`` float32[64], like the example;
- ``slow_model``: same signature, but every call spins a TF while-loop for tens of
  milliseconds, so overload and drain tests have requests that are really in flight.

``start_server`` runs ``python -m mlops_sessions serve`` in a subprocess on 127.0.0.1 and
free ports (REST and gRPC), waits for ``/ready``, and always stops the process (SIGTERM,
then kill) on exit.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
MODEL = "tiny"
READY_TIMEOUT_S = 120.0


def _export_dense(directory: Path) -> None:
    import keras

    keras.utils.set_random_seed(7)
    model = keras.Sequential(
        [
            keras.Input(shape=(64,), name="pixels"),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.export(str(directory), verbose=False)


def _export_slow(directory: Path, iterations: int) -> None:
    import tensorflow as tf

    class Slow(tf.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.weights_ = tf.Variable(tf.eye(64) * 0.5)

        @tf.function(input_signature=[tf.TensorSpec([None, 64], tf.float32, name="pixels")])  # type: ignore[untyped-decorator]
        def serve(self, pixels: Any) -> dict[str, Any]:
            def step(i: Any, x: Any) -> tuple[Any, Any]:
                return i + 1, tf.tanh(tf.matmul(x, self.weights_))

            _, out = tf.while_loop(lambda i, _: i < iterations, step, (tf.constant(0), pixels))
            return {"output_0": out[:, :10]}

    module = Slow()
    tf.saved_model.save(module, str(directory), signatures={"serving_default": module.serve})


@pytest.fixture(scope="session")
def dense_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("dense") / "model"
    _export_dense(directory)
    return directory


@pytest.fixture(scope="session")
def slow_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("slow") / "model"
    _export_slow(directory, iterations=6000)
    return directory


@pytest.fixture(scope="session")
def reference() -> Callable[[Path, np.ndarray], np.ndarray]:
    """The in-process model: call the SavedModel's serving signature directly."""
    import tensorflow as tf

    cache: dict[Path, Any] = {}

    def predict(model_dir: Path, rows: np.ndarray) -> np.ndarray:
        if model_dir not in cache:
            cache[model_dir] = tf.saved_model.load(str(model_dir))
        function = cache[model_dir].signatures["serving_default"]
        result: np.ndarray = function(pixels=tf.constant(rows, tf.float32))["output_0"].numpy()
        return result

    return predict


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_config(directory: Path, serve: dict[str, Any]) -> Path:
    """A minimal mlops.yaml with one model, ``tiny``, and the given serve section."""
    import yaml

    doc = {
        "apiVersion": "mlops/v1alpha1",
        "project": {"name": "serve-tests"},
        "models": {MODEL: {"serve": serve}},
    }
    path = directory / "mlops.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    host: str
    port: int
    log: Path
    grpc_port: int = 0

    @property
    def grpc_target(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def predict(self, document: Any, path: str = f"/v1/models/{MODEL}:predict") -> tuple[int, Any]:
        status, _, body = self.request("POST", path, json.dumps(document).encode())
        return status, json.loads(body)

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


def _wait_ready(server: Server) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(
                f"server exited with {server.process.returncode}:\n{server.logs()}"
            )
        with contextlib.suppress(OSError, http.client.HTTPException):
            status, _, _ = server.request("GET", "/ready")
            if status == 200:
                return
        time.sleep(0.1)
    raise AssertionError(f"server not ready after {READY_TIMEOUT_S}s:\n{server.logs()}")


def stop(server: Server, timeout: float = 30.0) -> int:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
    return server.process.returncode


@contextlib.contextmanager
def start_server(
    directory: Path,
    model_dir: Path | None,
    serve: dict[str, Any] | None = None,
    extra_args: tuple[str, ...] = (),
    wrapper: tuple[str, ...] = (),
) -> Iterator[Server]:
    """Run ``python -m mlops_sessions serve`` on a free port; stop it on exit."""
    directory.mkdir(parents=True, exist_ok=True)
    config = write_config(directory, serve or {})
    port = free_port()
    # A free gRPC port too (the default, 8500, would collide between servers), unless the
    # serve section or the arguments choose one.
    grpc_port = int((serve or {}).get("grpc_port", free_port()))
    if "--grpc-port" in extra_args:
        grpc_port = int(extra_args[extra_args.index("--grpc-port") + 1])
    else:
        extra_args = ("--grpc-port", str(grpc_port), *extra_args)
    log = directory / "server.log"
    args = [
        *wrapper,
        sys.executable,
        "-m",
        "mlops_sessions",
        "serve",
        "-c",
        str(config),
        MODEL,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *extra_args,
    ]
    if model_dir is not None:
        args += ["--model-dir", str(model_dir)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as sink:
        process = subprocess.Popen(args, cwd=directory, env=env, stdout=sink, stderr=sink)
    server = Server(process, "127.0.0.1", port, log, grpc_port)
    try:
        _wait_ready(server)
        yield server
    finally:
        stop(server)


def rows(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((count, 64), dtype=np.float32)


@pytest.fixture(scope="session")
def launch() -> Callable[..., contextlib.AbstractContextManager[Server]]:
    """``with launch(dir, model_dir, serve={...}) as server:`` (see start_server)."""
    return start_server


@pytest.fixture(scope="session")
def make_rows() -> Callable[[int, int], np.ndarray]:
    return rows


@pytest.fixture(scope="module")
def dense_server(tmp_path_factory: pytest.TempPathFactory, dense_model: Path) -> Iterator[Server]:
    """One server on the dense model shared by a test module (limits kept small to test them)."""
    directory = tmp_path_factory.mktemp("dense-server")
    serve = {
        "batching": {"max_batch_size": 16, "max_wait": "2ms"},
        "max_body_bytes": 65536,
        "drain": "5s",
    }
    with start_server(directory, dense_model, serve) as server:
        yield server
