"""HTTP routes of the model server (aiohttp): TF Serving REST API, probes and metrics.

Endpoints (docs/serving.md has the formats):

- ``POST /v1/models/<name>[/versions/<v>]:predict``  rows (``instances``) or columns (``inputs``)
- ``GET  /v1/models/<name>[/versions/<v>]``           version status
- ``GET  /v1/models/<name>[/versions/<v>]/metadata``  signature
- ``POST /v2/models/<name>[/versions/<v>]/infer``  Open Inference Protocol (KServe v2)
- ``GET  /v2/models/<name>[/versions/<v>][/ready]`` v2 metadata and model readiness
- ``GET  /healthz`` liveness, ``GET /ready`` readiness (also ``/v2/health/live|ready``),
  ``GET /metrics`` Prometheus text

Every client mistake is answered with a 4xx JSON ``{"error": ...}``; a 5xx means the model
itself failed. What happens before the model is called depends only on the request, so
:func:`_answer` maps any failure there to a 4xx: a body that does not match its
``Content-Encoding`` (400, or 415 for an unsupported coding; the app decodes bodies itself),
one shorter than its ``Content-Length`` or trickled in slower than ``serve.read_timeout``
(408), and anything unforeseen while reading or parsing (400, logged).

The :class:`ServerState` holds what the routes share: the served model once
loaded, the batcher, the metrics and the lifecycle phase that drives ``/ready``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError

from mlops_sessions.server.batching import Batcher, Overloaded
from mlops_sessions.server.codec import (
    RequestError,
    decode_content,
    encode_error,
    encode_json,
    encode_predict,
    parse_predict,
)
from mlops_sessions.server.faultlog import client_fault_line
from mlops_sessions.server.live import DriftReference
from mlops_sessions.server.metrics import ServerMetrics
from mlops_sessions.server.oip import datatype, encode_infer, parse_infer
from mlops_sessions.server.runtime import SERVING_SIGNATURE, Model, TensorInfo
from mlops_sessions.server.settings import ModelIdentity, ServerSettings

log = logging.getLogger("mlops_sessions.server")

JSON = "application/json"
_NAME = r"[^/:]+"
RETRY_AFTER_LOADING = 1
# Sent with answers after which the rest of the body cannot be trusted to follow.
_CLOSE = {"Connection": "close"}


class ServerState:
    """Shared by all routes; the lifecycle (loading -> ready -> draining) lives here."""

    def __init__(self, identity: ModelIdentity, settings: ServerSettings) -> None:
        self.identity = identity
        self.settings = settings
        reference = (
            DriftReference.load(settings.drift_reference)
            if settings.drift_reference is not None
            else None
        )
        self.metrics = ServerMetrics(identity, settings.max_batch_size, reference)
        self.model: Model | None = None
        self.batcher: Batcher | None = None
        self.phase = "loading"  # loading | ready | failed | draining
        self.failure = ""
        self.last_request = time.monotonic()
        self.in_flight = 0
        # Gauges read at scrape time: nothing to update on the request path.
        self.metrics.in_flight.set_function(lambda: self.in_flight)
        self.metrics.queue_depth.set_function(lambda: self.batcher.depth if self.batcher else 0)

    @property
    def ready(self) -> bool:
        return self.phase == "ready"

    def set_phase(self, phase: str) -> None:
        self.phase = phase
        self.metrics.ready.set(1 if phase == "ready" else 0)


STATE_KEY = web.AppKey("mlops_state", ServerState)


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=encode_json(body), content_type=JSON, headers=headers)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=encode_error(message), content_type=JSON, headers=headers
    )


def _check_target(state: ServerState, request: web.Request) -> None:
    """The path's model name and version must be the served ones (404 naming them if not)."""
    name = request.match_info["name"]
    version = request.match_info.get("version")
    identity = state.identity
    if name != identity.name:
        raise RequestError(
            404, f"no model named {name[:100]!r}; this server serves {identity.name!r}"
        )
    if version is not None and version != identity.version:
        raise RequestError(
            404,
            f"model {identity.name!r} has no version {version[:100]!r}; "
            f"serving version {identity.version!r}",
        )


class ClientGone(RequestError):
    """The client went away mid-body: nobody reads the answer, the metrics count a 4xx."""


def _too_big(limit: int) -> RequestError:
    return RequestError(
        413, f"request body over the limit of {limit} bytes (serve.max_body_bytes); send fewer rows"
    )


async def _read_body(state: ServerState, request: web.Request) -> bytes:
    """The request body, decoded per its Content-Encoding; a client fault is a RequestError.

    Everything that can go wrong here is the client's doing — too big, too slow, cut short,
    not matching its Content-Encoding — so it maps to a 4xx, never to a 500 that would page
    someone and count against the rollout's error rate.
    """
    try:
        return await _receive_body(state, request)
    except RequestError as exc:
        # One line per client fault (no traceback): operators see bad clients, not stacks.
        answered = None if isinstance(exc, ClientGone) else exc.status
        log.warning(client_fault_line(request.remote, exc.message, answered))
        raise


async def _receive_body(state: ServerState, request: web.Request) -> bytes:
    settings = state.settings
    limit = settings.max_body_bytes
    length = request.content_length  # parses the header: read it once
    if length is not None and length > limit:
        raise _too_big(limit)
    payload = request.content
    try:
        if payload.is_eof():  # the common case: the whole body came with the headers
            body = await request.read()
        else:
            body = await asyncio.wait_for(request.read(), settings.read_timeout_s)
    except asyncio.TimeoutError:
        raise RequestError(
            408,
            f"request body not received within {settings.read_timeout_s:g}s "
            "(serve.read_timeout); send the whole body its Content-Length announces",
            _CLOSE,
        ) from None
    except web.HTTPRequestEntityTooLarge:
        raise _too_big(limit) from None
    except (web.RequestPayloadError, HttpProcessingError) as exc:
        # A malformed chunked body and the like: the HTTP parser's word, on one line.
        why = " ".join(str(exc).split())[:200]
        raise RequestError(400, f"malformed request body ({why})", _CLOSE) from None
    except ConnectionResetError:
        raise ClientGone(
            400, "closed the connection before the whole request body arrived", _CLOSE
        ) from None
    encoding = request.headers.get(hdrs.CONTENT_ENCODING)
    if encoding is not None:
        body = decode_content(body, encoding, limit)
    return body


def _client_fault(exc: Exception) -> RequestError:
    """An unforeseen error while reading or parsing a request: the request caused it.

    Before the model is called only the request's bytes are in play, so a 400 is the
    honest answer (a 500 would feed alerts and the rollout's error rate). The traceback
    is logged: it is still a gap in the codec's checks, to be closed with a clear message.
    """
    log.warning("request refused by an unforeseen error", exc_info=exc)
    why = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
    return RequestError(400, f"request could not be read ({why}); check its body and headers")


Handler = Callable[[ServerState, web.Request], Awaitable[web.Response]]


async def _answer(request: web.Request, endpoint: str, handle: Handler) -> web.StreamResponse:
    """Run a model request; map every failure to its status; count and time it."""
    state = request.app[STATE_KEY]
    started = time.perf_counter()
    state.last_request = time.monotonic()
    known = False
    state.in_flight += 1
    try:
        response = await handle(state, request)
        known = True
    except RequestError as exc:
        known = exc.status != 404
        headers = exc.headers
        if exc.status == 503:
            headers = {"Retry-After": str(RETRY_AFTER_LOADING)}
        response = _error(exc.status, exc.message, dict(headers) if headers else None)
        if headers is _CLOSE:
            response.force_close()  # the unread rest of the body must not be parsed as a request
    except Overloaded as exc:
        known = True
        response = _error(503, str(exc), {"Retry-After": str(exc.retry_after)})
    except Exception as exc:  # the model failed on valid input: a real server error
        log.exception("model call failed")
        known = True
        response = _error(500, f"model call failed: {type(exc).__name__}: {exc}")
    finally:
        state.in_flight -= 1
    if state.phase == "draining":
        # Tell keep-alive clients to reconnect: the next connection lands on another pod.
        response.force_close()
    state.metrics.observe(known, endpoint, response.status, time.perf_counter() - started)
    return response


def _ready_model(state: ServerState) -> tuple[Batcher, Model]:
    if state.batcher is None or state.model is None:
        raise RequestError(503, f"model is {state.phase}; retry shortly")
    return state.batcher, state.model


async def _predict(state: ServerState, request: web.Request) -> web.Response:
    verb = request.match_info["verb"]
    _check_target(state, request)
    if verb != "predict":
        if verb in ("classify", "regress"):
            raise RequestError(400, f":{verb} is not supported; use :predict")
        raise RequestError(404, f"unknown method :{verb[:50]}; use :predict")
    batcher, model = _ready_model(state)
    batcher.arrive()
    try:
        body = await _read_body(state, request)
        parsed = parse_predict(body, model.signature, SERVING_SIGNATURE)
    except RequestError:
        raise
    except Exception as exc:  # anything else raised by reading/parsing the request
        raise _client_fault(exc) from exc
    finally:
        batcher.arrived()
    outputs = await batcher.submit(parsed.inputs, parsed.rows)
    return web.Response(body=encode_predict(outputs, parsed.columnar), content_type=JSON)


async def _infer(state: ServerState, request: web.Request) -> web.Response:
    _check_target(state, request)
    batcher, model = _ready_model(state)
    batcher.arrive()
    try:
        body = await _read_body(state, request)
        parsed = parse_infer(body, model.signature)
    except RequestError:
        raise
    except Exception as exc:  # anything else raised by reading/parsing the request
        raise _client_fault(exc) from exc
    finally:
        batcher.arrived()
    outputs = await batcher.submit(parsed.inputs, parsed.rows)
    identity = state.identity
    return web.Response(
        body=encode_infer(outputs, identity.name, identity.version), content_type=JSON
    )


async def predict(request: web.Request) -> web.StreamResponse:
    return await _answer(request, "predict", _predict)


async def infer(request: web.Request) -> web.StreamResponse:
    return await _answer(request, "infer", _infer)


async def _v2_metadata(state: ServerState, request: web.Request) -> web.Response:
    _check_target(state, request)
    _, model = _ready_model(state)

    def tensors(infos: Mapping[str, TensorInfo]) -> list[dict[str, Any]]:
        return [
            {
                "name": n,
                "datatype": datatype(t.dtype),
                "shape": [-1 if d is None else d for d in t.shape],
            }
            for n, t in infos.items()
        ]

    body = {
        "name": state.identity.name,
        "versions": [state.identity.version],
        "platform": "tensorflow_savedmodel",
        "inputs": tensors(model.signature.inputs),
        "outputs": tensors(model.signature.outputs),
    }
    return _json(200, body)


async def v2_metadata(request: web.Request) -> web.StreamResponse:
    return await _answer(request, "metadata", _v2_metadata)


async def v2_model_ready(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    try:
        _check_target(state, request)
    except RequestError as exc:
        return _error(exc.status, exc.message)
    return _json(200 if state.ready else 503, {"name": state.identity.name, "ready": state.ready})


def _version_status(state: ServerState) -> dict[str, Any]:
    tf_state = {"loading": "LOADING", "ready": "AVAILABLE", "draining": "UNLOADING"}.get(
        state.phase, "END"
    )
    error = {"error_code": "OK", "error_message": ""}
    if state.phase == "failed":
        error = {"error_code": "UNKNOWN", "error_message": state.failure}
    return {"version": state.identity.version, "state": tf_state, "status": error}


async def status(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    started = time.perf_counter()
    try:
        _check_target(state, request)
        response = _json(200, {"model_version_status": [_version_status(state)]})
    except RequestError as exc:
        response = _error(exc.status, exc.message)
    state.metrics.observe(
        response.status != 404, "status", response.status, time.perf_counter() - started
    )
    return response


async def metadata(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    started = time.perf_counter()
    try:
        _check_target(state, request)
        if state.model is None:
            raise RequestError(503, f"model is {state.phase}; metadata is available once loaded")
        signature = state.model.signature
        body = {
            "model_spec": {
                "name": state.identity.name,
                "signature_name": "",
                "version": state.identity.version,
            },
            "metadata": {
                "signature_def": {
                    "signature_def": {
                        SERVING_SIGNATURE: {
                            "inputs": {n: t.to_json() for n, t in signature.inputs.items()},
                            "outputs": {n: t.to_json() for n, t in signature.outputs.items()},
                            "method_name": "tensorflow/serving/predict",
                        }
                    }
                }
            },
            "mlops": {
                "model_hash": state.identity.model_hash,
                "git_commit": state.identity.git_commit,
            },
        }
        response = _json(200, body)
    except RequestError as exc:
        headers = {"Retry-After": str(RETRY_AFTER_LOADING)} if exc.status == 503 else None
        response = _error(exc.status, exc.message, headers)
    state.metrics.observe(
        response.status != 404, "metadata", response.status, time.perf_counter() - started
    )
    return response


async def healthz(request: web.Request) -> web.StreamResponse:
    # Liveness: the event loop answers. A failed model load is not fixed by a restart loop
    # hiding it, but the process exits on that anyway (see serve()).
    return _json(200, {"status": "ok"})


async def ready(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    if state.ready:
        return _json(
            200, {"ready": True, "model": state.identity.name, "version": state.identity.version}
        )
    body = {"ready": False, "phase": state.phase}
    if state.failure:
        body["error"] = state.failure
    return _json(503, body)


async def metrics(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    payload, content_type = state.metrics.render()
    response = web.Response(body=payload)
    # prometheus_client's content type carries parameters; aiohttp wants them as a header.
    response.headers["Content-Type"] = content_type
    return response


def build_app(state: ServerState) -> web.Application:
    app = web.Application(client_max_size=state.settings.max_body_bytes)
    app[STATE_KEY] = state
    base = f"/v1/models/{{name:{_NAME}}}"
    versioned = f"{base}/versions/{{version:{_NAME}}}"
    for prefix in (base, versioned):
        app.router.add_post(f"{prefix}:{{verb:[A-Za-z_]+}}", predict)
        app.router.add_get(prefix, status)
        app.router.add_get(f"{prefix}/metadata", metadata)
    v2 = f"/v2/models/{{name:{_NAME}}}"
    for prefix in (v2, f"{v2}/versions/{{version:{_NAME}}}"):
        app.router.add_post(f"{prefix}/infer", infer)
        app.router.add_get(prefix, v2_metadata)
        app.router.add_get(f"{prefix}/ready", v2_model_ready)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/ready", ready)
    app.router.add_get("/v2/health/live", healthz)
    app.router.add_get("/v2/health/ready", ready)
    app.router.add_get("/metrics", metrics)
    return app
