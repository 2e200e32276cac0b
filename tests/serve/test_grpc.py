"""TF Serving's gRPC API of ``mlops serve``, through the real ``tensorflow-serving-api`` stubs.

Every test runs a real ``python -m mlops_sessions serve`` process (conftest's fixtures)
and talks to it with the clients TF Serving users already have:
``PredictionServiceStub``, ``ModelServiceStub`` and the standard ``grpc.health.v1`` stub.
Answers are compared with the REST API of the same process and with the SavedModel called
in-process; malformed requests must get TF Serving's status codes, never INTERNAL.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

grpc = pytest.importorskip("grpc")
pytest.importorskip("tensorflow_serving.apis.prediction_service_pb2_grpc")

from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from tensorflow.core.framework import tensor_pb2, types_pb2  # noqa: E402
from tensorflow_serving.apis import (  # noqa: E402
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tests.serve.conftest import MODEL, Server, write_config  # noqa: E402

pytestmark = pytest.mark.slow
Rows = Callable[[int, int], np.ndarray]
Code = grpc.StatusCode
# Codes a client fault may get; INTERNAL and UNKNOWN would mean the server broke.
CLIENT_FAULT_CODES = {
    Code.INVALID_ARGUMENT,
    Code.NOT_FOUND,
    Code.FAILED_PRECONDITION,
    Code.RESOURCE_EXHAUSTED,
    Code.UNIMPLEMENTED,
}


def tensor(value: Any, dtype: Any = None) -> tensor_pb2.TensorProto:
    import tensorflow as tf

    return tf.make_tensor_proto(value, dtype=dtype)


def ndarray(proto: tensor_pb2.TensorProto) -> np.ndarray:
    import tensorflow as tf

    result: np.ndarray = tf.make_ndarray(proto)
    return result


def predict_request(inputs: dict[str, Any], **spec: Any) -> Any:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = spec.pop("name", MODEL)
    for key, value in spec.items():
        if key == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, key, value)
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(
            value if isinstance(value, tensor_pb2.TensorProto) else tensor(value)
        )
    return request


@pytest.fixture(scope="module")
def channel(dense_server: Server) -> Iterator[Any]:
    with grpc.insecure_channel(dense_server.grpc_target) as chan:
        yield chan


@pytest.fixture(scope="module")
def stub(channel: Any) -> Any:
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


def _export_multi(directory: Path) -> None:
    """A model with float32, float64, int64, int32 and bool inputs and outputs of each kind."""
    import tensorflow as tf

    class Multi(tf.Module):  # type: ignore[misc]
        @tf.function(  # type: ignore[untyped-decorator]
            input_signature=[
                tf.TensorSpec([None, 3], tf.float32, name="x"),
                tf.TensorSpec([None, 2, 2], tf.float64, name="grid"),
                tf.TensorSpec([None, 4], tf.int64, name="ids"),
                tf.TensorSpec([None], tf.int32, name="step"),
                tf.TensorSpec([None, 2], tf.bool, name="mask"),
            ]
        )
        def serve(self, x: Any, grid: Any, ids: Any, step: Any, mask: Any) -> dict[str, Any]:
            return {
                "scaled": x * tf.cast(tf.reduce_sum(ids, axis=1, keepdims=True), tf.float32),
                "grid_sum": tf.reduce_sum(grid, axis=[1, 2]),
                "id_max": tf.reduce_max(ids, axis=1) + tf.cast(step, tf.int64),
                "any": tf.reduce_any(mask, axis=1),
            }

    module = Multi()
    tf.saved_model.save(module, str(directory), signatures={"serving_default": module.serve})


@pytest.fixture(scope="module")
def multi_server(tmp_path_factory: pytest.TempPathFactory, launch: Any) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("multi")
    _export_multi(directory / "model")
    with launch(directory / "server", directory / "model", {"drain": "3s"}) as server:
        yield server


def multi_inputs(rows: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "x": rng.random((rows, 3), dtype=np.float32),
        "grid": rng.random((rows, 2, 2)),
        "ids": rng.integers(-(2**40), 2**40, (rows, 4), dtype=np.int64),
        "step": rng.integers(-1000, 1000, rows, dtype=np.int32),
        "mask": rng.random((rows, 2)) < 0.3,
    }


@pytest.mark.parametrize("count", [1, 7])
def test_predict_matches_rest_and_the_model_in_process(
    dense_server: Server,
    stub: Any,
    dense_model: Path,
    reference: Callable[[Path, np.ndarray], np.ndarray],
    make_rows: Rows,
    count: int,
) -> None:
    batch = make_rows(count, count)
    response = stub.Predict(predict_request({"pixels": batch}), timeout=30)
    assert response.model_spec.name == MODEL
    assert response.model_spec.signature_name == "serving_default"
    assert list(response.outputs) == ["output_0"]
    got = ndarray(response.outputs["output_0"])
    assert got.dtype == np.float32 and got.shape == (count, 10)
    status, body = dense_server.predict({"instances": batch.tolist()})
    assert status == 200
    np.testing.assert_allclose(got, np.asarray(body["predictions"], np.float32), rtol=1e-6)
    np.testing.assert_allclose(got, reference(dense_model, batch), rtol=1e-5, atol=1e-7)


def test_values_in_repeated_fields_and_one_value_filling_the_shape(
    stub: Any, make_rows: Rows
) -> None:
    """TensorProto's other encodings (float_val, one broadcast value) give the same answer."""
    batch = make_rows(2, 3)
    packed = stub.Predict(predict_request({"pixels": batch}), timeout=30)
    listed = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    listed.tensor_shape.dim.add(size=2)
    listed.tensor_shape.dim.add(size=64)
    listed.float_val.extend(batch.reshape(-1).tolist())
    assert stub.Predict(predict_request({"pixels": listed}), timeout=30) == packed
    filled = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    filled.tensor_shape.dim.add(size=3)
    filled.tensor_shape.dim.add(size=64)
    filled.float_val.append(0.25)
    same = stub.Predict(predict_request({"pixels": np.full((3, 64), 0.25, np.float32)}), timeout=30)
    assert stub.Predict(predict_request({"pixels": filled}), timeout=30) == same


@pytest.mark.parametrize("count", [1, 5])
def test_several_dtypes_and_shapes_match_rest_and_the_model(
    multi_server: Server, count: int
) -> None:
    import tensorflow as tf

    inputs = multi_inputs(count, count)
    with grpc.insecure_channel(multi_server.grpc_target) as chan:
        response = prediction_service_pb2_grpc.PredictionServiceStub(chan).Predict(
            predict_request(inputs), timeout=30
        )
    got = {name: ndarray(proto) for name, proto in response.outputs.items()}
    loaded = tf.saved_model.load(str(multi_server.log.parent.parent / "model"))
    want = {
        name: value.numpy()
        for name, value in loaded.signatures["serving_default"](
            **{k: tf.constant(v) for k, v in inputs.items()}
        ).items()
    }
    assert sorted(got) == sorted(want) == ["any", "grid_sum", "id_max", "scaled"]
    for name, value in want.items():
        assert got[name].dtype == value.dtype and got[name].shape == value.shape, name
        np.testing.assert_array_equal(got[name], value, err_msg=name)
    columns = {k: v.tolist() for k, v in inputs.items()}
    status, body = multi_server.predict({"inputs": columns})
    assert status == 200
    for name, value in want.items():
        np.testing.assert_array_equal(np.asarray(body["outputs"][name], value.dtype), value)
    # output_filter: only the outputs asked for.
    filtered = predict_request(inputs)
    filtered.output_filter.append("any")
    with grpc.insecure_channel(multi_server.grpc_target) as chan:
        only = prediction_service_pb2_grpc.PredictionServiceStub(chan).Predict(filtered, timeout=30)
    assert list(only.outputs) == ["any"]


def test_metadata_is_the_signature_def(stub: Any) -> None:
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = MODEL
    request.metadata_field.append("signature_def")
    response = stub.GetModelMetadata(request, timeout=30)
    assert response.model_spec.name == MODEL and response.model_spec.version.value == 1
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signatures)
    definition = signatures.signature_def["serving_default"]
    assert definition.method_name == "tensorflow/serving/predict"
    pixels = definition.inputs["pixels"]
    assert pixels.dtype == types_pb2.DT_FLOAT
    assert [d.size for d in pixels.tensor_shape.dim] == [-1, 64]
    assert [d.size for d in definition.outputs["output_0"].tensor_shape.dim] == [-1, 10]
    request.ClearField("metadata_field")
    with pytest.raises(grpc.RpcError) as empty:
        stub.GetModelMetadata(request, timeout=30)
    assert empty.value.code() == Code.INVALID_ARGUMENT
    request.metadata_field.append("graph_def")
    with pytest.raises(grpc.RpcError) as unknown:
        stub.GetModelMetadata(request, timeout=30)
    assert unknown.value.code() == Code.INVALID_ARGUMENT and "graph_def" in unknown.value.details()


def test_model_status_and_health(channel: Any) -> None:
    models = model_service_pb2_grpc.ModelServiceStub(channel)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL
    (status,) = models.GetModelStatus(request, timeout=30).model_version_status
    assert status.version == 1
    assert status.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert status.status.error_code == 0
    request.model_spec.name = "other"
    with pytest.raises(grpc.RpcError) as missing:
        models.GetModelStatus(request, timeout=30)
    assert missing.value.code() == Code.NOT_FOUND
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "tensorflow.serving.PredictionService", "tensorflow.serving.ModelService"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=30)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, service
    with pytest.raises(grpc.RpcError) as unknown:
        health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=30)
    assert unknown.value.code() == Code.NOT_FOUND


def _bad_tensor(**fields: Any) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(dtype=fields.pop("dtype", types_pb2.DT_FLOAT))
    for size in fields.pop("shape", (1, 64)):
        proto.tensor_shape.dim.add(size=size)
    for key, value in fields.items():
        if key == "unknown_rank":
            proto.tensor_shape.unknown_rank = value
        elif isinstance(value, list):
            getattr(proto, key).extend(value)
        else:
            setattr(proto, key, value)
    return proto


ONE_ROW = np.zeros((1, 64), np.float32)
BAD_REQUESTS: dict[str, tuple[Any, Code, str]] = {
    "other model": (predict_request({"pixels": ONE_ROW}, name="other"), Code.NOT_FOUND, "other"),
    "other version": (predict_request({"pixels": ONE_ROW}, version=7), Code.NOT_FOUND, "7"),
    "other version label": (
        predict_request({"pixels": ONE_ROW}, version_label="canary"),
        Code.NOT_FOUND,
        "canary",
    ),
    "unknown signature": (
        predict_request({"pixels": ONE_ROW}, signature_name="classify"),
        Code.FAILED_PRECONDITION,
        "classify",
    ),
    "missing input": (predict_request({}), Code.INVALID_ARGUMENT, "pixels"),
    "extra input": (
        predict_request({"pixels": ONE_ROW, "extra": ONE_ROW}),
        Code.INVALID_ARGUMENT,
        "extra",
    ),
    "wrong dtype": (
        predict_request({"pixels": ONE_ROW.astype(np.float64)}),
        Code.INVALID_ARGUMENT,
        "DT_DOUBLE",
    ),
    "wrong shape": (
        predict_request({"pixels": np.zeros((2, 63), np.float32)}),
        Code.INVALID_ARGUMENT,
        "[2, 63]",
    ),
    "no batch dimension": (
        predict_request({"pixels": np.zeros(64, np.float32)}),
        Code.INVALID_ARGUMENT,
        "shape",
    ),
    "content of the wrong length": (
        predict_request({"pixels": _bad_tensor(tensor_content=b"\0" * 10)}),
        Code.INVALID_ARGUMENT,
        "tensor_content",
    ),
    "too few values": (
        predict_request({"pixels": _bad_tensor(float_val=[1.0, 2.0])}),
        Code.INVALID_ARGUMENT,
        "values",
    ),
    "NaN": (
        predict_request({"pixels": np.full((1, 64), np.nan, np.float32)}),
        Code.INVALID_ARGUMENT,
        "out of range",
    ),
    "one value filling a huge shape": (
        predict_request({"pixels": _bad_tensor(shape=(2**40, 64), float_val=[1.0])}),
        Code.INVALID_ARGUMENT,
        "grpc_max_message_bytes",
    ),
    "unknown rank": (
        predict_request({"pixels": _bad_tensor(unknown_rank=True)}),
        Code.INVALID_ARGUMENT,
        "rank",
    ),
    "unknown dtype number": (
        predict_request({"pixels": _bad_tensor(dtype=999)}),
        Code.INVALID_ARGUMENT,
        "999",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_requests_get_tf_serving_status_codes(stub: Any, case: str) -> None:
    request, code, mentioned = BAD_REQUESTS[case]
    with pytest.raises(grpc.RpcError) as error:
        stub.Predict(request, timeout=30)
    assert error.value.code() == code, error.value.details()
    assert mentioned in error.value.details()


def test_unparsable_oversized_and_unsupported_calls(
    dense_server: Server, channel: Any, stub: Any
) -> None:
    raw = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
    with pytest.raises(grpc.RpcError) as garbage:
        raw(b"\xff\xff\xff\xff not a protobuf", timeout=30)
    assert garbage.value.code() == Code.INVALID_ARGUMENT
    # The fixture's limit is the default 4 MiB: a 5 MiB message is refused by gRPC itself.
    huge = predict_request({"pixels": np.zeros((20480, 64), np.float32)})
    with pytest.raises(grpc.RpcError) as oversized:
        stub.Predict(huge, timeout=30)
    assert oversized.value.code() == Code.RESOURCE_EXHAUSTED
    with pytest.raises(grpc.RpcError) as classify:
        stub.Classify(classification_pb2.ClassificationRequest(), timeout=30)
    assert classify.value.code() == Code.UNIMPLEMENTED
    # The same series as REST, labelled by protocol; a client fault is a 4xx, never a 5xx.
    _, _, text = dense_server.request("GET", "/metrics")
    samples = [
        line
        for line in text.decode().splitlines()
        if line.startswith("mlops_serve_requests_total{") and 'protocol="grpc"' in line
    ]
    assert any('endpoint="predict"' in s and 'code="200"' in s for s in samples), samples
    assert any('code="400"' in s for s in samples), samples
    assert not any('code="5' in s for s in samples), samples


def _fuzz_requests(count: int, seed: int) -> Iterator[bytes]:
    """Malformed PredictRequests: wrong names, dtypes, shapes, counts, encodings, bytes."""
    rng = np.random.default_rng(seed)
    valid = predict_request({"pixels": np.zeros((2, 64), np.float32)}).SerializeToString()
    dtypes = [*types_pb2.DataType.values(), 999, -1]
    for index in range(count):
        kind = index % 4
        if kind == 0:  # bytes of a valid message with a few flipped
            data = bytearray(valid)
            for position in rng.integers(0, len(data), rng.integers(1, 8)):
                data[position] ^= int(rng.integers(1, 256))
            yield bytes(data)
        elif kind == 1:  # random bytes
            yield rng.bytes(int(rng.integers(0, 300)))
        else:  # a well-formed message with a random, mostly wrong tensor
            proto = tensor_pb2.TensorProto(dtype=int(rng.choice(dtypes)))
            if rng.random() < 0.1:
                proto.tensor_shape.unknown_rank = True
            for _ in range(int(rng.integers(0, 4))):
                proto.tensor_shape.dim.add(
                    size=int(rng.choice([-1, 0, 1, 2, 63, 64, 2**31, 2**62]))
                )
            choice = rng.integers(0, 5)
            if choice == 0:
                proto.tensor_content = rng.bytes(int(rng.choice([0, 3, 256, 512])))
            elif choice == 1:
                proto.float_val.extend(rng.random(int(rng.choice([0, 1, 64, 128]))).tolist())
            elif choice == 2:
                proto.int64_val.extend(rng.integers(-(2**63), 2**63 - 1, 5).tolist())
            elif choice == 3:
                proto.half_val.extend(rng.integers(0, 2**16, 64).tolist())
            else:
                proto.bool_val.extend([True] * int(rng.integers(0, 70)))
            request = predict_pb2.PredictRequest()
            request.model_spec.name = str(rng.choice([MODEL, MODEL, "", "x" * 300]))
            if rng.random() < 0.2:
                request.model_spec.signature_name = str(rng.choice(["", "serving_default", "?"]))
            request.inputs[str(rng.choice(["pixels", "pixels", "other", ""]))].CopyFrom(proto)
            if rng.random() < 0.1:
                request.output_filter.append(str(rng.choice(["output_0", "nope"])))
            yield request.SerializeToString()


async def _send_all(target: str, payloads: list[bytes], concurrency: int) -> Counter[Any]:
    codes: Counter[Any] = Counter()
    async with grpc.aio.insecure_channel(target) as chan:
        call = chan.unary_unary("/tensorflow.serving.PredictionService/Predict")
        queue = list(reversed(payloads))

        async def client() -> None:
            while queue:
                payload = queue.pop()
                try:
                    await call(payload, timeout=30)
                    codes[Code.OK] += 1
                except grpc.aio.AioRpcError as exc:
                    codes[exc.code()] += 1

        await asyncio.gather(*(client() for _ in range(concurrency)))
    return codes


def test_fuzzed_requests_never_break_the_server(
    dense_server: Server, stub: Any, make_rows: Rows
) -> None:
    payloads = list(_fuzz_requests(4000, seed=14))
    started = time.monotonic()
    codes = asyncio.run(_send_all(dense_server.grpc_target, payloads, concurrency=16))
    assert sum(codes.values()) == len(payloads)
    assert set(codes) <= CLIENT_FAULT_CODES | {Code.OK}, codes
    assert codes[Code.INVALID_ARGUMENT] > len(payloads) // 2, codes
    assert time.monotonic() - started < 120
    # Still healthy and still right.
    batch = make_rows(3, 9)
    response = stub.Predict(predict_request({"pixels": batch}), timeout=30)
    status, body = dense_server.predict({"instances": batch.tolist()})
    assert status == 200
    np.testing.assert_allclose(
        ndarray(response.outputs["output_0"]), np.asarray(body["predictions"], np.float32)
    )
    assert dense_server.process.poll() is None
    assert "Traceback" not in dense_server.logs()


def test_sigterm_under_grpc_load_loses_no_request(
    tmp_path: Path, launch: Any, dense_model: Path, make_rows: Rows
) -> None:
    request = predict_request({"pixels": make_rows(2, 5)}).SerializeToString()
    with launch(tmp_path, dense_model, {"drain": "10s"}) as server:
        signalled: list[float] = []

        async def scenario() -> tuple[Counter[Any], list[str], int, int]:
            codes: Counter[Any] = Counter()
            failures: list[str] = []
            remaining = list(range(900))
            async with grpc.aio.insecure_channel(server.grpc_target) as chan:
                call = chan.unary_unary("/tensorflow.serving.PredictionService/Predict")
                health = health_pb2_grpc.HealthStub(chan)

                async def client() -> None:
                    while remaining:
                        remaining.pop()
                        try:
                            await call(request, timeout=30)
                            codes[Code.OK] += 1
                        except grpc.aio.AioRpcError as exc:
                            failures.append(f"{exc.code()}: {exc.details()}")
                        if sum(codes.values()) == 150 and not signalled:
                            server.process.send_signal(signal.SIGTERM)
                            signalled.append(time.monotonic())

                load = asyncio.gather(*(client() for _ in range(16)))
                while not signalled:
                    await asyncio.sleep(0.005)
                await asyncio.sleep(0.05)
                check = await health.Check(health_pb2.HealthCheckRequest(), timeout=10)
                rest_ready, _, _ = await asyncio.to_thread(server.request, "GET", "/ready")
                await load
            return codes, failures, check.status, rest_ready

        codes, failures, health_status, rest_ready = asyncio.run(scenario())
        assert failures == []
        assert codes == Counter({Code.OK: 900})
        assert health_status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert rest_ready == 503
        assert server.process.wait(timeout=15) == 0, server.logs()
        assert time.monotonic() - signalled[0] < 10 + 2, "exit within serve.drain"


def test_grpc_port_zero_disables_grpc_and_a_taken_port_is_named(
    tmp_path: Path, launch: Any, dense_model: Path
) -> None:
    with launch(tmp_path / "off", dense_model, {"grpc_port": 0}) as server:
        assert server.grpc_port == 0
        status, body = server.predict({"instances": [[0.0] * 64]})
        assert status == 200, body
    second = tmp_path / "second"
    second.mkdir()
    config = write_config(second, {})
    with launch(tmp_path / "first", dense_model) as first:
        result = subprocess.run(
            [
                sys.executable, "-m", "mlops_sessions", "serve", "-c", str(config), MODEL,
                "--model-dir", str(dense_model), "--port", "0",
                "--grpc-port", str(first.grpc_port), "--json",
            ],
            capture_output=True, text=True, timeout=120, cwd=second,
        )  # fmt: skip
    assert result.returncode != 0
    assert f"cannot listen for gRPC on 127.0.0.1:{first.grpc_port}" in result.stderr
    assert "--grpc-port" in result.stderr
    assert '"event": "ready"' not in result.stdout


@pytest.mark.parametrize(
    ("dtype", "field", "values"),
    [
        ("int8", "int_val", [300]),
        ("uint8", "int_val", [-1]),
        ("uint16", "int_val", [70000]),
        ("float16", "half_val", [70000]),
    ],
)
def test_values_out_of_range_for_the_dtype_are_invalid_argument(
    dtype: str, field: str, values: list[int]
) -> None:
    from mlops_sessions.server.grpc_api import _DTYPES, RpcError, to_ndarray
    from mlops_sessions.server.runtime import TensorInfo

    info = TensorInfo("x", np.dtype(dtype), (None, 1))
    proto = tensor_pb2.TensorProto(dtype=_DTYPES[dtype])
    proto.tensor_shape.dim.add(size=1)
    proto.tensor_shape.dim.add(size=1)
    getattr(proto, field).extend(values)
    with pytest.raises(RpcError) as error:
        to_ndarray(proto, info, 1 << 20)
    assert error.value.code == Code.INVALID_ARGUMENT
    assert "out of range" in error.value.message
    # The limits themselves are read exactly.
    limits = np.iinfo(np.uint16 if dtype == "float16" else dtype)
    proto.ClearField(field)
    getattr(proto, field).extend([limits.max])
    got = to_ndarray(proto, info, 1 << 20)
    assert got.dtype == np.dtype(dtype) and got.shape == (1, 1)
    assert got.view(np.uint16 if dtype == "float16" else dtype)[0, 0] == limits.max
