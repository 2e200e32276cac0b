"""Server lifecycle: listen, load and warm up, serve, and drain on SIGTERM.

Order of events:

1. Listen at once (``/healthz`` answers, ``/ready`` is 503 "loading"), then on
   ``grpc_port`` when set (gRPC health NOT_SERVING).
2. Load the SavedModel and warm it up in a thread; then ``/ready`` turns 200, gRPC health
   SERVING, and ``on_ready(url)`` is called. A model that cannot load ends the process
   with an error.
3. On SIGTERM/SIGINT: ``/ready`` turns 503 and gRPC health NOT_SERVING at once; new
   requests on either protocol are still served (the load balancer needs a moment to drop
   the pod) until no request came for ``quiet_s`` or 40% of ``drain`` passed; then both
   listeners close, in-flight requests finish (bounded by the rest of ``drain``) and the
   process exits.

Nothing is written to disk: the server runs on a read-only root filesystem.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import importlib.util
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from mlops_sessions.server import faultlog
from mlops_sessions.server.app import ServerState, build_app
from mlops_sessions.server.batching import Batcher
from mlops_sessions.server.runtime import Model, load_saved_model
from mlops_sessions.server.settings import ModelIdentity, ServerSettings

# Share of the drain period spent still accepting requests after SIGTERM.
ACCEPT_SHARE = 0.4
# Share of the drain period left for in-flight requests once the listener is closed.
FINISH_SHARE = 0.5
# aiohttp's default lingering time: the longest a refused body's rest is read and dropped.
LINGER_MAX_S = 10.0


class ServerFailed(Exception):
    """The server could not start (port taken, model not loadable); message says why."""


def _load(path: Path, max_batch_size: int) -> Model:
    runtime = load_saved_model(path)
    runtime.warmup(max_batch_size)
    return runtime


async def _serve(
    identity: ModelIdentity,
    settings: ServerSettings,
    on_ready: Callable[[str], None],
    loader: Callable[[Path, int], Model],
) -> None:
    loop = asyncio.get_running_loop()
    faultlog.install()  # a client's malformed request is one log line, not a traceback
    state = ServerState(identity, settings)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    grpc_server: Any = None  # grpc_api.GrpcServer, imported lazily
    runner = web.AppRunner(
        build_app(state),
        handle_signals=False,
        access_log=None,
        shutdown_timeout=settings.drain_s * FINISH_SHARE,
        # The app decodes Content-Encoding itself (codec.decode_content): aiohttp's own
        # decoding answered a body that does not match its header with a 500.
        auto_decompress=False,
        # After an answer sent before the whole body arrived (408, 413), aiohttp reads and
        # drops the rest for a while so the client sees the answer, not a reset; no longer
        # than a body may take to arrive at all, so a slow client is let go then.
        lingering_time=min(settings.read_timeout_s, LINGER_MAX_S),
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port, backlog=1024)
        try:
            await site.start()
        except OSError as exc:
            raise ServerFailed(
                f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}; "
                "pick another port with --port"
            ) from None
        host, port = runner.addresses[0][:2]
        url = f"http://{host}:{port}"
        if settings.grpc_port:
            grpc_server = await _start_grpc(state, settings)
        await _load_then_wait(state, settings, loader, stop, on_ready, url, grpc_server)
        state.set_phase("draining")
        if grpc_server is not None:
            await grpc_server.draining()
        await _accept_until_quiet(state, settings, stop)
    finally:
        # Both listeners close together; each lets its in-flight requests finish.
        closing = [runner.cleanup()]
        if grpc_server is not None:
            closing.append(grpc_server.stop(settings.drain_s * FINISH_SHARE))
        await asyncio.gather(*closing)
        if state.batcher is not None:
            await state.batcher.close()


# The top-level packages the gRPC listener imports (grpc_api): grpcio, its health service,
# and tensorflow-serving-api's protos, which `.[serve]` cannot install (see docs/serving.md).
GRPC_PACKAGES = {
    "grpc": "grpcio",
    "grpc_health": "grpcio-health-checking",
    "tensorflow_serving": "tensorflow-serving-api",
}
GRPC_INSTALL = (
    "pip install grpcio grpcio-health-checking && pip install --no-deps tensorflow-serving-api"
)


def missing_grpc_packages() -> list[str]:
    """The distributions gRPC serving needs that are not importable here (without importing
    them: tensorflow_serving's protos import TensorFlow, seconds)."""
    missing = []
    for module, distribution in GRPC_PACKAGES.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(distribution)
    return missing


async def _start_grpc(state: ServerState, settings: ServerSettings) -> Any:
    """The gRPC listener on the same loop; its module is imported off the loop (seconds:
    tensorflow_serving's protos import TensorFlow's) while REST already answers probes."""
    try:
        module = await asyncio.to_thread(importlib.import_module, "mlops_sessions.server.grpc_api")
    except ImportError as exc:
        raise ServerFailed(
            f"gRPC (serve.grpc_port: {settings.grpc_port}) needs {exc.name or 'its packages'}: "
            f"{GRPC_INSTALL}; or set serve.grpc_port: 0 (--grpc-port 0)"
        ) from None
    server = module.GrpcServer(state)
    try:
        await server.start()
    except OSError as exc:
        raise ServerFailed(
            f"cannot listen for gRPC on {settings.host}:{settings.grpc_port} ({exc}); "
            "pick another port with --grpc-port (serve.grpc_port; 0 disables gRPC)"
        ) from None
    return server


async def _load_then_wait(
    state: ServerState,
    settings: ServerSettings,
    loader: Callable[[Path, int], Model],
    stop: asyncio.Event,
    on_ready: Callable[[str], None],
    url: str,
    grpc_server: Any,
) -> None:
    load = asyncio.ensure_future(
        asyncio.to_thread(loader, state.identity.path, settings.max_batch_size)
    )
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({load, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not load.done():  # stopped while loading: nothing to drain
        stopping.cancel()
        return
    try:
        model = load.result()
    except Exception as exc:
        stopping.cancel()
        state.failure = f"{type(exc).__name__}: {exc}"
        state.set_phase("failed")
        raise ServerFailed(f"cannot load model {state.identity.path}: {state.failure}") from None
    # TensorFlow leaves some 400,000 objects for the garbage collector to walk on every full
    # collection: 20-200 ms with the event loop stopped, a stall every few seconds under
    # load. They live as long as the process, so move them out of its reach once, here.
    gc.collect()
    gc.freeze()
    state.model = model
    state.batcher = Batcher(
        model,
        state.metrics,
        max_batch_size=settings.max_batch_size,
        max_wait_s=settings.max_wait_s,
        max_queue=settings.max_queue,
        workers=settings.workers,
    )
    state.batcher.start()
    state.set_phase("ready")
    if grpc_server is not None:
        await grpc_server.ready()
    on_ready(url)
    await stopping


async def _accept_until_quiet(
    state: ServerState, settings: ServerSettings, stop: asyncio.Event
) -> None:
    """After SIGTERM: keep serving until traffic stops or the accept window closes."""
    window_ends = time.monotonic() + settings.drain_s * ACCEPT_SHARE
    while True:
        now = time.monotonic()
        if now >= window_ends or now - state.last_request >= settings.quiet_s:
            return
        await asyncio.sleep(min(0.05, settings.quiet_s))


def serve(
    identity: ModelIdentity,
    settings: ServerSettings,
    on_ready: Callable[[str], None],
    loader: Callable[[Path, int], Model] = _load,
) -> None:
    """Run the server until SIGTERM/SIGINT; raise ServerFailed if it cannot start."""
    asyncio.run(_serve(identity, settings, on_ready, loader))
