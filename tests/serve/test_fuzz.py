"""Fuzzing a real server process with malformed requests (hypothesis): never a 5xx.

Bodies range from random bytes and arbitrary JSON to near-valid TF Serving requests with
the wrong shape, dtype, nesting or keys; paths name unknown models, versions and verbs.
After the run the server must still answer correctly and its metrics must show no 5xx.
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

MODEL = "tiny"
PREDICT = f"/v1/models/{MODEL}:predict"
EXAMPLES = 1200

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=6)
        | st.dictionaries(
            st.sampled_from(["pixels", "instances", "inputs", "x", ""]), children, max_size=3
        )
    ),
    max_leaves=40,
)
# Rows of numbers whose count and width are usually wrong, sometimes right.
number = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False) | st.integers(-5, 5)
row = st.lists(number, min_size=0, max_size=70) | st.just([0.5] * 64)
rows = st.lists(row, min_size=0, max_size=4)
near_valid = st.one_of(
    st.builds(lambda r: {"instances": r}, rows),
    st.builds(lambda r: {"inputs": r}, rows),
    st.builds(lambda r: {"inputs": {"pixels": r}}, rows),
    st.builds(lambda r: {"instances": [{"pixels": x} for x in r]}, rows),
    st.builds(lambda r, v: {"instances": r, "signature_name": v}, rows, json_values),
    st.builds(lambda v: {"instances": [[v] * 64]}, scalars),
    st.builds(lambda v: {"instances": v}, json_values),
    st.builds(lambda v: {"inputs": v}, json_values),
    st.builds(
        lambda shape, dtype, data: {
            "inputs": [{"name": "pixels", "shape": shape, "datatype": dtype, "data": data}]
        },
        st.lists(st.integers(-1, 70), max_size=3) | json_values,
        st.sampled_from(["FP32", "FP64", "INT64", "BOOL", "BYTES", ""]),
        st.lists(number, max_size=130) | json_values,
    ),
)


def _mutate(data: bytes, position: int, byte: int, cut: bool) -> bytes:
    if not data:
        return data
    index = position % len(data)
    return data[:index] if cut else data[:index] + bytes([byte]) + data[index + 1 :]


valid = json.dumps({"instances": [[0.25] * 64, [0.75] * 64]}).encode()
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    near_valid.map(lambda v: json.dumps(v).encode()),
    st.builds(_mutate, st.just(valid), st.integers(0, 10**6), st.integers(0, 255), st.booleans()),
    st.sampled_from([b"", b"NaN", b'{"instances": [[Infinity]]}', b"[" * 5000, b"\x00" * 10]),
)
segment = st.text(min_size=1, max_size=12).map(lambda s: urllib.parse.quote(s, safe=""))
paths = st.one_of(
    st.just(PREDICT),
    st.just(PREDICT),
    st.builds(lambda n: f"/v1/models/{n}:predict", segment),
    st.builds(lambda v: f"/v1/models/{MODEL}/versions/{v}:predict", segment),
    st.builds(lambda v: f"/v1/models/{MODEL}:{v}", segment),
    st.builds(lambda v: f"/v1/models/{v}/metadata", segment),
    st.just(f"/v2/models/{MODEL}/infer"),
    st.builds(lambda v: f"/v2/models/{MODEL}/versions/{v}/infer", segment),
)


class Client:
    """A keep-alive connection that reconnects when the server closes it (e.g. after a 413)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.conn = http.client.HTTPConnection(host, port, timeout=30)

    def post(self, path: str, body: bytes) -> int:
        for attempt in range(2):
            try:
                self.conn.request(
                    "POST", path, body=body, headers={"Content-Type": "application/json"}
                )
                response = self.conn.getresponse()
                response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                return response.status
            except (ConnectionError, http.client.HTTPException):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")


@pytest.mark.slow
def test_malformed_requests_never_get_a_5xx(
    dense_server: Any, dense_model: Path, reference: Any
) -> None:
    client = Client(dense_server.host, dense_server.port)
    seen: dict[int, int] = {}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(path=paths, body=bodies)
    def fuzz(path: str, body: bytes) -> None:
        status = client.post(path, body)
        seen[status] = seen.get(status, 0) + 1
        assert status < 500, f"{status} for POST {path} {body[:200]!r}"

    try:
        fuzz()
    finally:
        client.conn.close()
    assert sum(seen.values()) >= EXAMPLES
    assert any(400 <= s < 500 for s in seen)

    # Still alive and still right.
    batch = np.random.default_rng(9).random((3, 64), dtype=np.float32)
    status, answer = dense_server.predict({"instances": batch.tolist()})
    assert status == 200
    np.testing.assert_allclose(
        np.array(answer["predictions"]), reference(dense_model, batch), rtol=1e-5, atol=1e-7
    )
    metrics = dense_server.request("GET", "/metrics")[2].decode()
    assert 'code="5' not in metrics
    assert dense_server.process.poll() is None
