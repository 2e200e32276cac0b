"""``mlops serve`` on a real SavedModel: serve.read_timeout and Content-Encoding, end to end.

The CLI reads ``serve.read_timeout`` from mlops.yaml and the server applies it: a body
shorter than its Content-Length is answered 408 after that long. A gzip body is decoded
and predicted like the plain one; a body that does not match its Content-Encoding is a 400;
neither ever counts as a 5xx. (tests/robustness/test_server_client_faults.py fuzzes the
same classes against a stand-in model.)
"""

from __future__ import annotations

import gzip
import json
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

PREDICT = "/v1/models/tiny:predict"


@pytest.mark.slow  # a real `mlops serve` on a SavedModel (TensorFlow: seconds); the stub
# server of tests/robustness/test_server_client_faults.py covers the class in the fast tier
def test_read_timeout_from_mlops_yaml_and_encodings(
    launch: Any, dense_model: Path, tmp_path: Path, reference: Any, make_rows: Any
) -> None:
    serve = {"read_timeout": "1s", "max_body_bytes": 65536}
    with launch(tmp_path / "server", dense_model, serve) as server:
        batch = make_rows(2, 3)
        plain = json.dumps({"instances": batch.tolist()}).encode()

        status, _, body = server.request(
            "POST", PREDICT, gzip.compress(plain), {"Content-Encoding": "gzip"}
        )
        assert status == 200, body[:300]
        np.testing.assert_allclose(
            np.array(json.loads(body)["predictions"]),
            reference(dense_model, batch),
            rtol=1e-5,
            atol=1e-7,
        )

        status, _, body = server.request("POST", PREDICT, plain, {"Content-Encoding": "gzip"})
        assert status == 400 and "gzip" in json.loads(body)["error"]

        with socket.create_connection((server.host, server.port), timeout=30) as sock:
            head = f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(plain)}\r\n"
            sock.sendall(head.encode() + b"\r\n" + plain[:20])
            started = time.monotonic()
            answer = sock.recv(65536)
            took = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert 0.9 <= took < 10, took

        metrics = server.request("GET", "/metrics")[2].decode()
        assert 'code="408"' in metrics and 'code="400"' in metrics
        assert 'code="5' not in metrics
