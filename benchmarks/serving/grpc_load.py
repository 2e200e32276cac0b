"""A bounded asyncio gRPC load generator for TF Serving's ``PredictionService/Predict``.

(``ghz`` is not available here.) ``concurrency`` callers on one HTTP/2 channel each send
the same serialized ``PredictRequest`` back to back for ``seconds`` (after a short
warm-up); the request is serialized once and responses are not parsed, so the client
spends its time on gRPC itself. Prints one JSON line: requests, requests/s, p50/p99 ms,
errors. Runs in its own process (its own core), like wrk.

    python benchmarks/serving/grpc_load.py TARGET MODEL CONCURRENCY[,C2...] SECONDS [ROW_JSON]

With several concurrency levels, one phase each, one JSON line each.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import grpc
import numpy as np
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2

METHOD = "/tensorflow.serving.PredictionService/Predict"


def request_bytes(model: str, row: list[float]) -> bytes:
    values = np.asarray([row], np.float32)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_content=values.tobytes())
    for size in values.shape:
        proto.tensor_shape.dim.add(size=size)
    request.inputs["pixels"].CopyFrom(proto)
    return request.SerializeToString()


async def load(target: str, payload: bytes, concurrency: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    # One channel per caller (as wrk opens one connection per caller).
    channels = [grpc.aio.insecure_channel(target) for _ in range(concurrency)]
    try:
        calls = [c.unary_unary(METHOD) for c in channels]
        for call in calls:  # connect and warm up
            await call(payload, timeout=30)
        deadline = time.perf_counter() + seconds

        async def caller(index: int) -> None:
            nonlocal errors
            call = calls[index]
            while True:
                started = time.perf_counter()
                if started >= deadline:
                    return
                try:
                    await call(payload, timeout=10)
                except grpc.aio.AioRpcError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(caller(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - began
    finally:
        for channel in channels:
            await channel.close()
    ordered = sorted(latencies) or [0.0]
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50_ms": ordered[len(ordered) // 2] * 1e3,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e3,
        "errors": errors,
    }


def main() -> int:
    target, model, levels, seconds = sys.argv[1:5]
    row = json.loads(sys.argv[5]) if len(sys.argv) > 5 else [0.5] * 64
    payload = request_bytes(model, row)
    for concurrency in levels.split(","):
        result = asyncio.run(load(target, payload, int(concurrency), float(seconds)))
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
