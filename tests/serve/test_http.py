"""The server over real HTTP: TF Serving REST formats, probes, metrics and 4xx answers.

One real ``python -m mlops_sessions serve`` process per module (``dense_server``); every
prediction is compared with the in-process SavedModel's output.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

MODEL = "tiny"
PREDICT = f"/v1/models/{MODEL}:predict"
Rows = Callable[[int, int], np.ndarray]


def test_row_format_predictions_equal_in_process_model(
    dense_server: Any, dense_model: Path, reference: Any, make_rows: Rows
) -> None:
    batch = make_rows(5, 1)
    status, body = dense_server.predict({"instances": batch.tolist()})
    assert status == 200, body
    np.testing.assert_allclose(
        np.array(body["predictions"]), reference(dense_model, batch), rtol=1e-5, atol=1e-7
    )


def test_named_rows_signature_name_and_version_path(
    dense_server: Any, dense_model: Path, reference: Any, make_rows: Rows
) -> None:
    batch = make_rows(3, 2)
    document = {
        "signature_name": "serving_default",
        "instances": [{"pixels": row} for row in batch.tolist()],
    }
    status, body = dense_server.predict(document, f"/v1/models/{MODEL}/versions/1:predict")
    assert status == 200, body
    np.testing.assert_allclose(
        np.array(body["predictions"]), reference(dense_model, batch), rtol=1e-5, atol=1e-7
    )


@pytest.mark.parametrize("named", [False, True])
def test_columnar_format_answers_outputs(
    dense_server: Any, dense_model: Path, reference: Any, make_rows: Rows, named: bool
) -> None:
    batch = make_rows(4, 3)
    inputs: Any = {"pixels": batch.tolist()} if named else batch.tolist()
    status, body = dense_server.predict({"inputs": inputs})
    assert status == 200, body
    assert set(body) == {"outputs"}
    np.testing.assert_allclose(
        np.array(body["outputs"]), reference(dense_model, batch), rtol=1e-5, atol=1e-7
    )


def test_concurrent_requests_are_batched_and_each_gets_its_own_rows(
    dense_server: Any, dense_model: Path, reference: Any, make_rows: Rows
) -> None:
    batches = [make_rows(1 + i % 3, 100 + i) for i in range(64)]

    async def fire() -> list[tuple[int, Any]]:
        async with aiohttp.ClientSession() as session:

            async def one(batch: np.ndarray) -> tuple[int, Any]:
                async with session.post(
                    dense_server.url + PREDICT, json={"instances": batch.tolist()}
                ) as response:
                    return response.status, await response.json()

            return await asyncio.gather(*(one(b) for b in batches))

    before = _metric(dense_server, "mlops_serve_batch_size", "_count")
    results = asyncio.run(fire())
    for batch, (status, body) in zip(batches, results, strict=True):
        assert status == 200, body
        np.testing.assert_allclose(
            np.array(body["predictions"]), reference(dense_model, batch), rtol=1e-5, atol=1e-7
        )
    calls = _metric(dense_server, "mlops_serve_batch_size", "_count") - before
    assert 0 < calls < len(batches), "concurrent requests should share model calls"


def test_status_and_metadata_follow_tf_serving(dense_server: Any) -> None:
    status, _, body = dense_server.request("GET", f"/v1/models/{MODEL}")
    assert status == 200
    (version,) = json.loads(body)["model_version_status"]
    assert version["state"] == "AVAILABLE" and version["version"] == "1"
    status, _, body = dense_server.request("GET", f"/v1/models/{MODEL}/metadata")
    assert status == 200
    meta = json.loads(body)
    signature = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["inputs"]["pixels"]["dtype"] == "DT_FLOAT"
    dims = [d["size"] for d in signature["inputs"]["pixels"]["tensor_shape"]["dim"]]
    assert dims == ["-1", "64"]
    assert meta["model_spec"] == {"name": MODEL, "signature_name": "", "version": "1"}


def test_probes(dense_server: Any) -> None:
    assert dense_server.request("GET", "/healthz")[0] == 200
    status, _, body = dense_server.request("GET", "/ready")
    assert status == 200 and json.loads(body)["ready"] is True


@pytest.mark.parametrize(
    ("path", "body", "status", "needle"),
    [
        (PREDICT, b"{not json", 400, "invalid JSON"),
        (PREDICT, b"[1, 2]", 400, "JSON object"),
        (PREDICT, b'{"instances": [[1, 2, 3]]}', 400, "expected [n, 64]"),
        (PREDICT, b'{"instances": [["a"]]}', 400, "expected numbers"),
        (PREDICT, b'{"instances": [[1, 2], [3]]}', 400, "rectangular"),
        (PREDICT, b'{"instances": []}', 400, "non-empty list"),
        (PREDICT, b'{"instances": [[NaN]]}', 400, "finite numbers"),
        (PREDICT, b'{"instances": [[' + b",".join([b"1e999"] * 64) + b"]]}", 400, "out of range"),
        (PREDICT, b'{"instance": [[1]]}', 400, "'instances' or 'inputs'"),
        (PREDICT, b'{"instances": [[1]], "inputs": [[1]]}', 400, "exactly one of"),
        (PREDICT, b'{"instances": [{"pixel": [1]}]}', 400, "missing 'pixels'"),
        (PREDICT, b'{"signature_name": "other", "inputs": [[1]]}', 400, "serving_default"),
        (PREDICT, b"\xff\xfe", 400, "UTF-8"),
        (PREDICT, b"[" * 60_000, 400, "nested too deeply"),
        ("/v1/models/nope:predict", b'{"instances": [[1]]}', 404, "serves 'tiny'"),
        (
            f"/v1/models/{MODEL}/versions/7:predict",
            b'{"inputs": [[1]]}',
            404,
            "serving version '1'",
        ),
        (f"/v1/models/{MODEL}:classify", b'{"inputs": [[1]]}', 400, "use :predict"),
    ],
)
def test_bad_requests_get_a_4xx_naming_what_was_expected(
    dense_server: Any, path: str, body: bytes, status: int, needle: str
) -> None:
    got, headers, payload = dense_server.request("POST", path, body)
    assert got == status, payload
    assert headers["Content-Type"].startswith("application/json")
    assert needle in json.loads(payload)["error"]


def test_body_over_limit_is_413(dense_server: Any) -> None:
    big = json.dumps({"instances": [[0.5] * 64] * 400}).encode()
    assert len(big) > 65536
    status, _, payload = dense_server.request("POST", PREDICT, big)
    assert status == 413
    assert "serve.max_body_bytes" in json.loads(payload)["error"]


def test_chunked_body_over_limit_is_413(dense_server: Any) -> None:
    import http.client

    chunk = json.dumps([[0.5] * 64] * 100).encode()  # ~32 KB: four of them pass the 64 KB limit
    conn = http.client.HTTPConnection(dense_server.host, dense_server.port, timeout=30)
    try:
        parts = [b'{"instances": ', chunk[:-1] + b",", *([chunk[1:-1] + b","] * 2), chunk[1:], b"}"]
        conn.request(
            "POST",
            PREDICT,
            body=iter(parts),
            encode_chunked=True,
            headers={"Transfer-Encoding": "chunked"},
        )
        response = conn.getresponse()
        assert response.status == 413
        assert "max_body_bytes" in json.loads(response.read())["error"]
    finally:
        conn.close()


def _families(server: Any) -> dict[str, Any]:
    status, headers, body = server.request("GET", "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    return {family.name: family for family in text_string_to_metric_families(body.decode())}


def _metric(server: Any, family: str, suffix: str) -> float:
    total = 0.0
    for sample in _families(server)[family].samples:
        if sample.name == family + suffix:
            total += sample.value
    return total


def test_metrics_parse_and_name_what_was_served(dense_server: Any) -> None:
    dense_server.predict({"instances": [[0.0] * 64]})
    dense_server.request("POST", PREDICT, b"{bad")
    families = _families(dense_server)
    requests = families["mlops_serve_requests"]
    assert requests.type == "counter"
    codes = {
        s.labels["code"]
        for s in requests.samples
        if s.name == "mlops_serve_requests_total" and s.labels["model"] == MODEL
    }
    assert {"200", "400"} <= codes
    assert families["mlops_serve_request_duration_seconds"].type == "histogram"
    assert families["mlops_serve_batch_size"].type == "histogram"
    assert families["mlops_serve_queue_depth"].type == "gauge"
    # The text format exposes an Info metric as a gauge named ..._info with value 1.
    (info,) = families["mlops_serve_model_info"].samples
    assert info.value == 1.0
    assert info.name == "mlops_serve_model_info"
    assert set(info.labels) == {"model", "version", "model_hash", "git_commit"}
    ready = families["mlops_serve_ready"].samples[0].value
    assert ready == 1.0


def test_unknown_model_names_do_not_create_series(dense_server: Any) -> None:
    for index in range(5):
        dense_server.request("POST", f"/v1/models/m{index}:predict", b"{}")
    names = {
        s.labels["model"]
        for s in _families(dense_server)["mlops_serve_requests"].samples
        if "model" in s.labels
    }
    assert names <= {MODEL, ""}


def test_open_inference_protocol_infer_equals_in_process_model(
    dense_server: Any, dense_model: Path, reference: Any, make_rows: Rows
) -> None:
    batch = make_rows(3, 21)
    document = {
        "inputs": [
            {"name": "pixels", "shape": [3, 64], "datatype": "FP32", "data": batch.ravel().tolist()}
        ]
    }
    status, body = dense_server.predict(document, f"/v2/models/{MODEL}/infer")
    assert status == 200, body
    assert body["model_name"] == MODEL and body["model_version"] == "1"
    (output,) = body["outputs"]
    assert output["shape"] == [3, 10] and output["datatype"] == "FP32"
    np.testing.assert_allclose(
        np.array(output["data"]).reshape(3, 10), reference(dense_model, batch), rtol=1e-5, atol=1e-7
    )


@pytest.mark.parametrize(
    ("tensor", "needle"),
    [
        ({"name": "pixels", "shape": [1, 64], "datatype": "INT64", "data": [0] * 64}, "'FP32'"),
        (
            {"name": "pixels", "shape": [2, 64], "datatype": "FP32", "data": [0.5] * 64},
            "128 values",
        ),
        ({"name": "pixels", "shape": [1, 3], "datatype": "FP32", "data": [0.5] * 3}, "[n, 64]"),
        ({"name": "pixels", "shape": "1x64", "datatype": "FP32", "data": []}, "shape"),
        ({"name": "image", "shape": [1, 64], "datatype": "FP32", "data": [0.5] * 64}, "'pixels'"),
    ],
)
def test_open_inference_protocol_bad_tensors_get_400(
    dense_server: Any, tensor: dict[str, Any], needle: str
) -> None:
    status, body = dense_server.predict({"inputs": [tensor]}, f"/v2/models/{MODEL}/infer")
    assert status == 400
    assert needle in body["error"]


def test_open_inference_protocol_metadata_and_health(dense_server: Any) -> None:
    status, _, body = dense_server.request("GET", f"/v2/models/{MODEL}")
    assert status == 200
    meta = json.loads(body)
    assert meta["inputs"] == [{"name": "pixels", "datatype": "FP32", "shape": [-1, 64]}]
    assert dense_server.request("GET", f"/v2/models/{MODEL}/ready")[0] == 200
    assert dense_server.request("GET", "/v2/health/live")[0] == 200
    assert dense_server.request("GET", "/v2/health/ready")[0] == 200
    assert dense_server.request("GET", "/v2/models/other")[0] == 404
