"""gRPC routes of the model server: TensorFlow Serving's gRPC API and ``grpc.health.v1``.

Services (the protos and stubs of the ``tensorflow-serving-api`` package, so existing TF
Serving gRPC clients work unchanged):

- ``tensorflow.serving.PredictionService``: ``Predict`` and ``GetModelMetadata``
  (``signature_def``); ``Classify``, ``Regress`` and ``MultiInference`` answer UNIMPLEMENTED
  (as TF Serving does for a model without such signatures);
- ``tensorflow.serving.ModelService``: ``GetModelStatus``;
- ``grpc.health.v1.Health``: SERVING only while ``/ready`` is 200 (loaded, warmed up, not
  draining), for the whole server (``""``) and for each service name.

The server is a ``grpc.aio`` server on the same event loop as the HTTP server, so both
protocols feed one :class:`~mlops_sessions.server.batching.Batcher`: a gRPC request and a
REST request that arrive together share one model call. Requests are validated against
the signature before they are queued, with the same checks (:func:`codec.to_array`) as
REST, and answered with the status codes TF Serving uses: INVALID_ARGUMENT for a bad
tensor, NOT_FOUND for another model or version, FAILED_PRECONDITION for an unknown
signature; a message over ``serve.grpc_max_message_bytes`` is refused by gRPC itself with
RESOURCE_EXHAUSTED. UNAVAILABLE (which clients retry) means loading or a full queue;
INTERNAL only that the model failed on a valid request.

Counted in the same request series as REST with ``protocol="grpc"``; the ``code`` label
carries the HTTP status a gRPC code corresponds to (gRPC's own HTTP mapping), so one
``code=~"5.."`` error-rate query covers both protocols.

Imported lazily by the lifecycle (``tensorflow_serving``'s protos import TensorFlow's).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import grpc
import numpy as np
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    predict_pb2,
)

from mlops_sessions.server.app import ServerState
from mlops_sessions.server.batching import Overloaded
from mlops_sessions.server.codec import RequestError, to_array
from mlops_sessions.server.faultlog import client_fault_line
from mlops_sessions.server.runtime import SERVING_SIGNATURE, TensorInfo

log = logging.getLogger("mlops_sessions.server")

PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"
HEALTH_SERVICES = ("", PREDICTION_SERVICE, MODEL_SERVICE)
PROTOCOL = "grpc"

# numpy dtype name <-> TensorProto dtype, and the repeated field each dtype's values use
# when tensor_content is empty (tensorflow/core/framework/tensor.proto).
_DTYPES: dict[str, int] = {
    "float16": types_pb2.DT_HALF,
    "float32": types_pb2.DT_FLOAT,
    "float64": types_pb2.DT_DOUBLE,
    "int8": types_pb2.DT_INT8,
    "int16": types_pb2.DT_INT16,
    "int32": types_pb2.DT_INT32,
    "int64": types_pb2.DT_INT64,
    "uint8": types_pb2.DT_UINT8,
    "uint16": types_pb2.DT_UINT16,
    "uint32": types_pb2.DT_UINT32,
    "uint64": types_pb2.DT_UINT64,
    "bool": types_pb2.DT_BOOL,
}
_NUMPY: dict[int, np.dtype[Any]] = {code: np.dtype(name) for name, code in _DTYPES.items()}
_VALUE_FIELDS: dict[int, str] = {
    types_pb2.DT_HALF: "half_val",
    types_pb2.DT_FLOAT: "float_val",
    types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_INT8: "int_val",
    types_pb2.DT_INT16: "int_val",
    types_pb2.DT_INT32: "int_val",
    types_pb2.DT_INT64: "int64_val",
    types_pb2.DT_UINT8: "int_val",
    types_pb2.DT_UINT16: "int_val",
    types_pb2.DT_UINT32: "uint32_val",
    types_pb2.DT_UINT64: "uint64_val",
    types_pb2.DT_BOOL: "bool_val",
}

# gRPC's own mapping of status codes to HTTP statuses (the `code` metric label).
_HTTP_OF: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNKNOWN: 500,
}
# The HTTP layer's status for a RequestError -> the gRPC code TF Serving would send.
_CODE_OF: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}


class RpcError(Exception):
    """A request answered with a gRPC status other than OK (message says what to fix)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _fail(code: grpc.StatusCode, message: str) -> NoReturn:
    raise RpcError(code, message)


def make_tensor_proto(value: np.ndarray) -> tensor_pb2.TensorProto:
    """An output array as TF Serving sends it: dtype, shape and the raw little-endian bytes."""
    proto = tensor_pb2.TensorProto(dtype=_DTYPES[value.dtype.name])
    proto.tensor_shape.dim.extend(
        tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in value.shape
    )
    proto.tensor_content = np.ascontiguousarray(
        value, dtype=value.dtype.newbyteorder("<")
    ).tobytes()
    return proto


def to_ndarray(proto: tensor_pb2.TensorProto, info: TensorInfo, limit: int) -> np.ndarray:
    """A request TensorProto as an array of the signature's dtype (checks as TF does).

    The dtype must be the signature's (TF Serving does not convert either). Values come
    from ``tensor_content`` (raw bytes) or the dtype's repeated field; as in TensorFlow, one
    value fills the whole shape and none gives zeros, but never more than ``limit`` bytes:
    a tiny message cannot make the server allocate gigabytes.
    """
    where = f"input {info.name!r}"
    if proto.dtype != _DTYPES.get(info.dtype.name):
        got = (
            types_pb2.DataType.Name(proto.dtype)
            if proto.dtype in types_pb2.DataType.values()
            else str(proto.dtype)
        )
        _fail(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"{where}: dtype {got}, expected {types_pb2.DataType.Name(_DTYPES[info.dtype.name])} "
            f"({info.expected})",
        )
    if proto.tensor_shape.unknown_rank:
        _fail(grpc.StatusCode.INVALID_ARGUMENT, f"{where}: tensor_shape has unknown rank")
    shape = tuple(int(d.size) for d in proto.tensor_shape.dim)
    if any(d < 0 for d in shape):
        _fail(grpc.StatusCode.INVALID_ARGUMENT, f"{where}: negative dimension in {list(shape)}")
    dtype = info.dtype
    count = math.prod(shape)
    if count * dtype.itemsize > limit:
        _fail(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"{where}: shape {list(shape)} holds more than {limit} bytes "
            "(serve.grpc_max_message_bytes); send fewer rows",
        )
    content = proto.tensor_content
    if content:
        if len(content) != count * dtype.itemsize:
            _fail(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{where}: tensor_content has {len(content)} bytes, shape {list(shape)} "
                f"needs {count * dtype.itemsize}",
            )
        return np.frombuffer(content, dtype=dtype.newbyteorder("<")).astype(dtype).reshape(shape)
    field = _VALUE_FIELDS[proto.dtype]
    values: Any = getattr(proto, field)
    if dtype.kind in "iu" or dtype.name == "float16":
        # Integer fields are wider than the dtype (int_val is int32 for int8..uint16;
        # half_val holds float16 bit patterns) and numpy would wrap 300 to 44 silently:
        # read them wide, then check the range.
        bits = np.dtype(np.uint16) if dtype.name == "float16" else dtype
        wide = np.array(values, dtype=np.uint64 if field == "uint64_val" else np.int64)
        limits = np.iinfo(bits)
        if wide.size and (int(wide.min()) < limits.min or int(wide.max()) > limits.max):
            _fail(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{where}: value out of range for {dtype.name} in {field}",
            )
        array = wide.astype(bits).view(dtype)
    else:
        array = np.array(values, dtype=dtype)
    if array.size == count:
        return array.reshape(shape)
    if array.size == 0:
        return np.zeros(shape, dtype=dtype)
    if array.size == 1:
        return np.full(shape, array[0], dtype=dtype)
    _fail(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"{where}: {array.size} values for shape {list(shape)} ({count} values)",
    )


def _numeric_version(version: str) -> int | None:
    return int(version) if version.isdigit() and len(version) < 19 else None


def _model_spec(state: ServerState, spec: Any) -> Any:
    """Check a request's ModelSpec against the served model; the response's ModelSpec."""
    identity = state.identity
    if spec.name != identity.name:
        _fail(
            grpc.StatusCode.NOT_FOUND,
            f"Servable not found for request: no model named {spec.name[:100]!r}; "
            f"this server serves {identity.name!r}",
        )
    which = spec.WhichOneof("version_choice")
    number = _numeric_version(identity.version)
    if which == "version" and spec.version.value != number:
        _fail(
            grpc.StatusCode.NOT_FOUND,
            f"Servable not found for request: model {identity.name!r} has no version "
            f"{spec.version.value}; serving version {identity.version!r}",
        )
    if which == "version_label" and spec.version_label != identity.version:
        _fail(
            grpc.StatusCode.NOT_FOUND,
            f"Servable not found for request: model {identity.name!r} has no version label "
            f"{spec.version_label[:100]!r}; serving version {identity.version!r}",
        )
    out = model_pb2.ModelSpec(name=identity.name, signature_name=SERVING_SIGNATURE)
    if number is not None:
        out.version.value = number
    return out


def _check_signature(name: str) -> None:
    if name not in ("", SERVING_SIGNATURE):
        # TF Serving's own answer for an unknown signature key.
        _fail(
            grpc.StatusCode.FAILED_PRECONDITION,
            f'Serving signature key "{name[:100]}" not found; this model serves '
            f'"{SERVING_SIGNATURE}"',
        )


class _Predictions:
    def __init__(self, state: ServerState) -> None:
        self._state = state

    async def predict(self, request: Any) -> Any:
        state = self._state
        batcher = state.batcher
        try:
            spec, arrays, rows = self._validated(request)
        except (RpcError, RequestError):
            raise
        except Exception as exc:
            # Before the model is called only the request is in play: a client fault, not
            # INTERNAL (which would feed alerts). Logged: a gap in the checks to close.
            log.warning("gRPC request refused by an unforeseen error", exc_info=exc)
            why = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
            _fail(grpc.StatusCode.INVALID_ARGUMENT, f"request could not be read ({why})")
        assert batcher is not None  # _validated checked it
        outputs = await batcher.submit(arrays, rows)
        wanted = request.output_filter or outputs
        response = predict_pb2.PredictResponse(model_spec=spec)
        for name in wanted:
            response.outputs[name].CopyFrom(make_tensor_proto(outputs[name]))
        return response

    def _validated(self, request: Any) -> tuple[Any, dict[str, np.ndarray], int]:
        """The response's ModelSpec and the request's arrays, checked against the signature."""
        state = self._state
        spec = _model_spec(state, request.model_spec)
        _check_signature(request.model_spec.signature_name)
        batcher, model = state.batcher, state.model
        if batcher is None or model is None:
            _fail(grpc.StatusCode.UNAVAILABLE, f"model is {state.phase}; retry shortly")
        signature = model.signature
        inputs = request.inputs
        if len(inputs) != len(signature.inputs) or any(n not in inputs for n in signature.inputs):
            got = ", ".join(repr(n[:50]) for n in sorted(inputs)[:5])
            _fail(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"inputs [{got}] do not match the signature; expected exactly "
                f"{', '.join(map(repr, signature.inputs))}",
            )
        unknown = [n for n in request.output_filter if n not in signature.outputs]
        if unknown:
            _fail(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"output_filter names unknown output {unknown[0][:50]!r}; outputs are "
                f"{', '.join(map(repr, signature.outputs))}",
            )
        limit = state.settings.grpc_max_message_bytes
        arrays: dict[str, np.ndarray] = {}
        rows: int | None = None
        for name, info in signature.inputs.items():
            array = to_ndarray(inputs[name], info, limit)
            arrays[name] = to_array(array, info, f"input {name!r}", rows)
            rows = arrays[name].shape[0]
        assert rows is not None  # a signature has at least one input
        return spec, arrays, rows

    async def metadata(self, request: Any) -> Any:
        state = self._state
        spec = _model_spec(state, request.model_spec)
        fields = list(request.metadata_field)
        if not fields:
            _fail(
                grpc.StatusCode.INVALID_ARGUMENT,
                "GetModelMetadataRequest must specify at least one metadata_field: signature_def",
            )
        for field in fields:
            if field != "signature_def":
                _fail(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"Metadata field {field[:50]} is not supported; ask for signature_def",
                )
        if state.model is None:
            _fail(grpc.StatusCode.UNAVAILABLE, f"model is {state.phase}; retry shortly")
        signature = state.model.signature
        definition = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
        for target, infos in (
            (definition.inputs, signature.inputs),
            (definition.outputs, signature.outputs),
        ):
            for name, info in infos.items():
                target[name].CopyFrom(_tensor_info(info))
        signatures = get_model_metadata_pb2.SignatureDefMap()
        signatures.signature_def[SERVING_SIGNATURE].CopyFrom(definition)
        response = get_model_metadata_pb2.GetModelMetadataResponse(model_spec=spec)
        response.metadata["signature_def"].Pack(signatures)
        return response


def _tensor_info(info: TensorInfo) -> Any:
    proto = meta_graph_pb2.TensorInfo(name=info.name, dtype=_DTYPES[info.dtype.name])
    proto.tensor_shape.dim.extend(
        tensor_shape_pb2.TensorShapeProto.Dim(size=-1 if d is None else d) for d in info.shape
    )
    return proto


_STATES = {
    "loading": get_model_status_pb2.ModelVersionStatus.LOADING,
    "ready": get_model_status_pb2.ModelVersionStatus.AVAILABLE,
    "draining": get_model_status_pb2.ModelVersionStatus.UNLOADING,
}


class _Models:
    def __init__(self, state: ServerState) -> None:
        self._state = state

    async def status(self, request: Any) -> Any:
        state = self._state
        _model_spec(state, request.model_spec)
        status = get_model_status_pb2.ModelVersionStatus(
            version=_numeric_version(state.identity.version) or 0,
            state=_STATES.get(state.phase, get_model_status_pb2.ModelVersionStatus.END),
        )
        if state.phase == "failed":
            status.status.error_code = 2  # tensorflow.error.Code.UNKNOWN
            status.status.error_message = state.failure
        return get_model_status_pb2.GetModelStatusResponse(model_version_status=[status])


async def _answer(
    state: ServerState,
    context: Any,
    endpoint: str,
    handle: Callable[[Any], Awaitable[Any]],
    parse: Callable[[bytes], Any],
    raw: bytes,
) -> Any:
    """Run one RPC on its raw bytes; map every failure to its gRPC status; count and time it.

    The request is parsed here, not by gRPC's deserializer: gRPC answers a message its
    deserializer cannot parse with INTERNAL, and bytes that are not a valid message are
    the client's fault (INVALID_ARGUMENT).
    """
    started = time.perf_counter()
    state.last_request = time.monotonic()
    state.in_flight += 1
    code = grpc.StatusCode.OK
    message = ""
    response = None
    try:
        try:
            request = parse(raw)
        except DecodeError as exc:
            what = f"gRPC {endpoint} request is not a valid message"
            log.warning(client_fault_line(context.peer(), what, "INVALID_ARGUMENT"))
            _fail(grpc.StatusCode.INVALID_ARGUMENT, f"request is not a valid message: {exc}")
        response = await handle(request)
    except RpcError as exc:
        code, message = exc.code, exc.message
    except RequestError as exc:  # the shared codec's checks (to_array)
        code, message = _CODE_OF.get(exc.status, grpc.StatusCode.INVALID_ARGUMENT), exc.message
    except Overloaded as exc:
        code, message = grpc.StatusCode.UNAVAILABLE, str(exc)
    except Exception as exc:  # the model failed on valid input: a real server error
        log.exception("model call failed")
        code, message = grpc.StatusCode.INTERNAL, f"model call failed: {type(exc).__name__}: {exc}"
    finally:
        state.in_flight -= 1
    known = code != grpc.StatusCode.NOT_FOUND
    state.metrics.observe(
        known, endpoint, _HTTP_OF.get(code, 500), time.perf_counter() - started, PROTOCOL
    )
    if code is not grpc.StatusCode.OK:
        context.set_code(code)
        context.set_details(message)
    return response


class GrpcServer:
    """The gRPC listener: services bound to the shared state, health tied to readiness."""

    def __init__(self, state: ServerState) -> None:
        settings = state.settings
        self.state = state
        limit = settings.grpc_max_message_bytes
        self.server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", limit),
                # Large batches of outputs may exceed the default 4 MiB answer size.
                ("grpc.max_send_message_length", -1),
                # gRPC sets SO_REUSEPORT by default: a second server on the same port would
                # start and silently share the traffic instead of failing to bind.
                ("grpc.so_reuseport", 0),
            ]
        )
        self.health = HealthServicer()
        predictions, models = _Predictions(state), _Models(state)

        def method(
            endpoint: str,
            handle: Callable[[Any], Awaitable[Any]],
            request: Any,
            response: Any,
        ) -> Any:
            async def call(raw: bytes, context: Any) -> Any:
                return await _answer(state, context, endpoint, handle, request.FromString, raw)

            # No request deserializer: _answer parses (see there).
            return grpc.unary_unary_rpc_method_handler(
                call, response_serializer=response.SerializeToString
            )

        # Methods not listed (Classify, Regress, MultiInference, HandleReloadConfigRequest)
        # are answered UNIMPLEMENTED by gRPC itself.
        self.server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    PREDICTION_SERVICE,
                    {
                        "Predict": method(
                            "predict",
                            predictions.predict,
                            predict_pb2.PredictRequest,
                            predict_pb2.PredictResponse,
                        ),
                        "GetModelMetadata": method(
                            "metadata",
                            predictions.metadata,
                            get_model_metadata_pb2.GetModelMetadataRequest,
                            get_model_metadata_pb2.GetModelMetadataResponse,
                        ),
                    },
                ),
                grpc.method_handlers_generic_handler(
                    MODEL_SERVICE,
                    {
                        "GetModelStatus": method(
                            "status",
                            models.status,
                            get_model_status_pb2.GetModelStatusRequest,
                            get_model_status_pb2.GetModelStatusResponse,
                        )
                    },
                ),
            )
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.port = 0

    async def start(self) -> int:
        """Listen on serve.grpc_port (NOT_SERVING until ready); the port bound, or raise OSError."""
        for service in HEALTH_SERVICES:
            await self.health.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
        settings = self.state.settings
        address = f"{settings.host}:{settings.grpc_port}"
        try:
            self.port = self.server.add_insecure_port(address)
        except RuntimeError as exc:  # grpc raises RuntimeError when it cannot bind
            raise OSError(f"cannot bind {address}: {exc}") from None
        if self.port == 0:
            raise OSError(f"cannot bind {address}")
        await self.server.start()
        return self.port

    async def ready(self) -> None:
        for service in HEALTH_SERVICES:
            await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)

    async def draining(self) -> None:
        """NOT_SERVING from now on, for every service; requests are still answered."""
        await self.health.enter_graceful_shutdown()

    async def stop(self, grace_s: float) -> None:
        """Refuse new RPCs; let running ones finish within grace_s."""
        await self.server.stop(grace_s)
