"""Megabyte-sized hostile bodies over real HTTP: every one is a 4xx and the server lives on.

The server here is the real one (aiohttp app, codec, batcher, metrics, lifecycle) with the
default 4 MiB body limit and a numpy stand-in for the model, so it starts in a second and
these bodies are not cut short by the small limit of the TensorFlow-backed test server.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.serve.conftest import free_port

PREDICT = "/v1/models/stub:predict"
STUB = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import numpy as np
    from mlops_sessions.server.lifecycle import serve
    from mlops_sessions.server.runtime import Signature, TensorInfo
    from mlops_sessions.server.settings import ModelIdentity, ServerSettings

    F32 = np.dtype("float32")

    class Stub:
        signature = Signature(
            {"pixels": TensorInfo("pixels", F32, (None, 64))},
            {"output_0": TensorInfo("output_0", F32, (None, 10))},
        )

        def predict(self, inputs):
            return {"output_0": inputs["pixels"][:, :10] * 2}

    serve(
        ModelIdentity("stub", "1", Path(".")),
        ServerSettings(port=int(sys.argv[1]), drain_s=2.0),
        lambda url: print("ready", url, flush=True),
        loader=lambda path, rows: Stub(),
    )
    """
)
MIB = 1024 * 1024


@dataclass
class Stub:
    port: int

    def post(self, body: bytes) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request("POST", PREDICT, body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def get(self, path: str) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()


@pytest.fixture(scope="module")
def stub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stub]:
    port = free_port()
    log = tmp_path_factory.mktemp("stub-server") / "server.log"
    with open(log, "wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-c", STUB, str(port)],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=sink,
            stderr=sink,
        )
    server = Stub(port)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text(errors="replace")[-2000:]
            assert time.monotonic() < deadline, "stub server not ready in 60 s"
            try:
                if server.get("/ready")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


BODIES = {
    "2 MiB of [": b"[" * (2 * MIB),
    "2 MiB of balanced [ ]": b"[" * MIB + b"]" * MIB,
    "deep objects": b'{"a": ' * 200_000 + b"1" + b"}" * 200_000,
    "deep instances": b'{"instances": ' + b"[" * MIB + b"]" * MIB + b"}",
    "3 MiB of ragged rows": b'{"instances": [' + b"[[[[1]]]]," * 300_000 + b"[1]]}",
    "truncated 3 MiB": (b'{"instances": [' + b"[0.5, 0.25]," * 250_000)[:-1],
    "3 MiB string": b'{"instances": "' + b"x" * (3 * MIB) + b'"}',
}


@pytest.mark.parametrize("name", list(BODIES))
def test_hostile_body_is_a_400(stub: Stub, name: str) -> None:
    status, payload = stub.post(BODIES[name])
    assert status == 400, payload[:500]
    assert "error" in json.loads(payload)


def test_server_still_answers_and_counted_no_5xx(stub: Stub) -> None:
    for body in BODIES.values():  # also when they come back to back on one server
        assert stub.post(body)[0] == 400
    status, payload = stub.post(json.dumps({"instances": [[0.5] * 64]}).encode())
    assert status == 200
    assert json.loads(payload) == {"predictions": [[1.0] * 10]}
    metrics = stub.get("/metrics")[1].decode()
    assert 'code="400"' in metrics and 'code="5' not in metrics
