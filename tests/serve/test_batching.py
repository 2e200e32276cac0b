"""The batcher and the request metrics in-process, with a numpy stand-in for the model.

The batcher is driven on a real event loop: concurrent submits share model calls, a lone
request goes at once, full batches go without waiting, a model failure reaches exactly the
requests of its batch, and close() cancels what never ran. The request metrics are checked
against the Prometheus text format the server exposes.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlops_sessions.server.batching import Batcher, Overloaded
from mlops_sessions.server.metrics import LATENCY_BUCKETS, ServerMetrics
from mlops_sessions.server.runtime import Signature, TensorInfo
from mlops_sessions.server.settings import ModelIdentity

IDENTITY = ModelIdentity(name="tiny", version="3", path=Path("."))
F32 = np.dtype("float32")


class Doubler:
    """y = 2x on [n, 2] rows; records every call's batch size; can be told to fail or wait."""

    signature = Signature(
        {"x": TensorInfo("x", F32, (None, 2))}, {"y": TensorInfo("y", F32, (None, 2))}
    )

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.fail = False
        self.gate = threading.Event()
        self.gate.set()

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.gate.wait(10)
        self.calls.append(len(inputs["x"]))
        if self.fail:
            raise RuntimeError("model exploded")
        return {"y": inputs["x"] * 2}


def _batcher(model: Doubler, max_batch_size: int = 64, max_queue: int = 256) -> Batcher:
    batcher = Batcher(
        model,
        ServerMetrics(IDENTITY, max_batch_size),
        max_batch_size=max_batch_size,
        max_wait_s=0.05,
        max_queue=max_queue,
        workers=1,
    )
    batcher.start()
    return batcher


def _rows(value: float, count: int = 1) -> dict[str, np.ndarray]:
    return {"x": np.full((count, 2), value, F32)}


def test_concurrent_requests_share_calls_and_get_their_own_rows() -> None:
    model = Doubler()

    async def main() -> list[dict[str, np.ndarray]]:
        batcher = _batcher(model)
        try:
            futures = [batcher.submit(_rows(i, 1 + i % 3), 1 + i % 3) for i in range(40)]
            return list(await asyncio.gather(*futures))
        finally:
            await batcher.close()

    results = asyncio.run(main())
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result["y"], np.full((1 + i % 3, 2), 2.0 * i))
    assert sum(model.calls) == sum(1 + i % 3 for i in range(40))
    assert len(model.calls) < 40


def test_a_lone_request_is_not_held_for_max_wait() -> None:
    model = Doubler()

    async def main() -> float:
        batcher = _batcher(model)  # max_wait 50 ms
        try:
            await batcher.submit(_rows(1.0), 1)  # first call: thread start-up
            started = time.perf_counter()
            await batcher.submit(_rows(1.0), 1)
            return time.perf_counter() - started
        finally:
            await batcher.close()

    assert asyncio.run(main()) < 0.025


def test_requests_arriving_a_few_loop_rounds_apart_share_a_call() -> None:
    model = Doubler()

    async def main() -> None:
        batcher = _batcher(model)
        try:
            await batcher.submit(_rows(0.0), 1)  # thread start-up, its own call
            first = batcher.submit(_rows(1.0), 1)
            for _ in range(3):  # a client answered just now sends again a few rounds later
                await asyncio.sleep(0)
            second = batcher.submit(_rows(2.0), 1)
            await asyncio.gather(first, second)
        finally:
            await batcher.close()

    asyncio.run(main())
    assert model.calls == [1, 2]


def test_an_open_batch_waits_for_a_body_still_being_read() -> None:
    model = Doubler()

    async def main() -> None:
        batcher = _batcher(model)  # max_wait 50 ms
        try:
            await batcher.submit(_rows(0.0), 1)
            batcher.arrive()  # a request whose body is still coming in
            first = batcher.submit(_rows(1.0), 1)
            await asyncio.sleep(0.01)  # longer than any number of quiet rounds
            assert model.calls == [1], "the batch left while a request was arriving"
            second = batcher.submit(_rows(2.0), 1)
            batcher.arrived()
            await asyncio.gather(first, second)
        finally:
            await batcher.close()

    asyncio.run(main())
    assert model.calls == [1, 2]


def test_batches_never_exceed_max_batch_size() -> None:
    model = Doubler()
    model.gate.clear()  # hold the first call so the rest queue up

    async def main() -> None:
        batcher = _batcher(model, max_batch_size=8)
        try:
            futures = [batcher.submit(_rows(i, 3), 3) for i in range(10)]
            await asyncio.sleep(0.05)
            model.gate.set()
            await asyncio.gather(*futures)
        finally:
            await batcher.close()

    asyncio.run(main())
    assert max(model.calls) <= 8 and sum(model.calls) == 30


def test_a_model_failure_fails_its_batch_and_the_next_batch_runs() -> None:
    model = Doubler()

    async def main() -> tuple[list[BaseException | dict[str, np.ndarray]], dict[str, np.ndarray]]:
        batcher = _batcher(model)
        try:
            model.fail = True
            failed = await asyncio.gather(
                *(batcher.submit(_rows(i), 1) for i in range(3)), return_exceptions=True
            )
            model.fail = False
            return failed, await batcher.submit(_rows(5.0), 1)
        finally:
            await batcher.close()

    failed, after = asyncio.run(main())
    assert all(isinstance(r, RuntimeError) for r in failed)
    np.testing.assert_array_equal(after["y"], [[10.0, 10.0]])


def test_full_queue_is_overloaded_and_close_cancels_what_never_ran() -> None:
    model = Doubler()
    model.gate.clear()

    async def main() -> list[BaseException | dict[str, np.ndarray]]:
        batcher = _batcher(model, max_batch_size=1, max_queue=2)
        running = batcher.submit(_rows(0.0), 1)
        await asyncio.sleep(0.02)  # the first request is in the model now
        queued = [batcher.submit(_rows(1.0), 1), batcher.submit(_rows(2.0), 1)]
        with pytest.raises(Overloaded):
            batcher.submit(_rows(3.0), 1)
        assert batcher.depth == 2
        model.gate.set()
        await running
        closing = asyncio.ensure_future(batcher.close())
        results = await asyncio.gather(*queued, return_exceptions=True)
        await closing
        return results

    results = asyncio.run(main())
    # Each queued request either ran or was cancelled by close(); none is left hanging.
    assert all(isinstance(r, dict | asyncio.CancelledError) for r in results)


def test_request_metrics_expose_counter_and_histogram_series() -> None:
    metrics = ServerMetrics(IDENTITY, 16)
    for seconds in (0.0001, 0.0005, 0.003, 20.0):
        metrics.observe(True, "predict", 200, seconds)
    metrics.observe(True, "predict", 400, 0.001)
    metrics.observe(False, "predict", 404, 0.001)
    payload, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(payload.decode())}

    requests = families["mlops_serve_requests"]
    assert requests.type == "counter"
    totals = {
        (s.labels["model"], s.labels["version"], s.labels["code"]): s.value
        for s in requests.samples
        if s.name == "mlops_serve_requests_total"
    }
    assert totals == {("tiny", "3", "200"): 4, ("tiny", "3", "400"): 1, ("", "", "404"): 1}
    # The text format carries _created series as gauges of their own, as prometheus_client's
    # Counter and Histogram expose them.
    assert "mlops_serve_requests_created" in families
    assert "mlops_serve_request_duration_seconds_created" in families

    latency = families["mlops_serve_request_duration_seconds"]
    assert latency.type == "histogram"
    served = [s for s in latency.samples if s.labels.get("model") == "tiny"]
    buckets = {s.labels["le"]: s.value for s in served if s.name.endswith("_bucket")}
    assert len(buckets) == len(LATENCY_BUCKETS) + 1
    assert buckets["0.0005"] == 2  # a value on a bound falls into that bucket
    assert buckets["0.004"] == 4 and buckets["10.0"] == 4 and buckets["+Inf"] == 5
    (count,) = (s.value for s in served if s.name.endswith("_count"))
    (total,) = (s.value for s in served if s.name.endswith("_sum"))
    assert count == 5 and total == pytest.approx(20.0046)
