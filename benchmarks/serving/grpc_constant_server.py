"""Limit (c3) of the serving benchmark: the server's gRPC stack with no model.

The same stack as ``mlops serve``'s gRPC listener (a ``grpc.aio`` server, generic handler
taking the raw request bytes, one process) on TF Serving's ``PredictionService/Predict``;
it parses the ``PredictRequest`` (as the real server does) and answers a constant,
precomputed ``PredictResponse`` of the real model's size. Its requests/s is the ceiling a
model server built on grpcio's Python server can reach on this machine — the gRPC
counterpart of (c2) ``constant_server.py``. An HTTP ``/ready`` on PORT tells the runner
it is up.

Usage: python benchmarks/serving/grpc_constant_server.py PORT GRPC_PORT
"""

from __future__ import annotations

import asyncio
import signal
import sys

import grpc
import numpy as np
from aiohttp import web
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2

SERVICE = "tensorflow.serving.PredictionService"


def constant_response() -> bytes:
    """A prediction of the same size as the real model's (10 float32 probabilities)."""
    values = np.full((1, 10), 0.1, np.float32)
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_content=values.tobytes())
    for size in values.shape:
        proto.tensor_shape.dim.add(size=size)
    response = predict_pb2.PredictResponse()
    response.model_spec.name = "digits"
    response.outputs["output_0"].CopyFrom(proto)
    return response.SerializeToString()


async def main(port: int, grpc_port: int) -> None:
    answer = constant_response()

    async def predict(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        predict_pb2.PredictRequest.FromString(raw)
        return answer

    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                SERVICE, {"Predict": grpc.unary_unary_rpc_method_handler(predict)}
            ),
        )
    )
    server.add_insecure_port(f"127.0.0.1:{grpc_port}")
    await server.start()

    async def ready(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/ready", ready)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"gRPC constant server ready on 127.0.0.1:{grpc_port}", flush=True)
    await stop.wait()
    await server.stop(1)
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
