"""Adaptive batching: gather concurrent requests into one model call, off the event loop.

Handlers ``submit`` validated arrays and await a future. One asyncio task forms batches:
it waits for a free model worker, takes every waiting request that fits into
``max_batch_size`` rows, and keeps the batch open for up to ``max_wait`` only while more
requests are already being parsed (so a lone request is not delayed for nothing). The batch
runs in a worker thread; outputs are split back by row offsets. While the model is busy the
queue fills, so batches grow with load by themselves.

The queue is bounded (``max_queue`` requests): beyond it ``submit`` raises
:class:`Overloaded` at once, and the HTTP layer answers 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from mlops_sessions.executors.server.metrics import ServerMetrics
from mlops_sessions.executors.server.runtime import Model


class Overloaded(Exception):
    """The queue is full; the client should retry after ``retry_after`` seconds."""

    def __init__(self, depth: int, retry_after: int = 1) -> None:
        super().__init__(f"server overloaded: {depth} requests already queued; retry later")
        self.retry_after = retry_after


@dataclass
class _Item:
    inputs: dict[str, np.ndarray]
    rows: int
    future: asyncio.Future[dict[str, np.ndarray]]


class Batcher:
    def __init__(
        self,
        model: Model,
        metrics: ServerMetrics,
        *,
        max_batch_size: int,
        max_wait_s: float,
        max_queue: int,
        workers: int,
    ) -> None:
        self._model = model
        self._metrics = metrics
        self._max_rows = max_batch_size
        self._max_wait = max_wait_s
        self._max_queue = max_queue
        # Inputs with variable inner dimensions cannot be stacked: one request per call.
        self._stackable = model.signature.batchable
        self._pending: collections.deque[_Item] = collections.deque()
        self._arriving = 0
        self._changed = asyncio.Event()
        self._slots = asyncio.Semaphore(workers)
        self._running: set[asyncio.Task[None]] = set()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="mlops-model"
        )
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._form_batches())

    @contextlib.contextmanager
    def arriving(self) -> Iterator[None]:
        """Mark a request as being read/parsed: the open batch may wait for it."""
        self._arriving += 1
        try:
            yield
        finally:
            self._arriving -= 1
            self._changed.set()

    async def submit(self, inputs: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
        if len(self._pending) >= self._max_queue:
            raise Overloaded(len(self._pending))
        future: asyncio.Future[dict[str, np.ndarray]] = asyncio.get_running_loop().create_future()
        self._pending.append(_Item(inputs, rows, future))
        self._changed.set()
        return await future

    async def _wait_changed(self, timeout: float | None) -> None:
        self._changed.clear()
        if timeout is None:
            await self._changed.wait()
            return
        timer = asyncio.get_running_loop().call_later(timeout, self._changed.set)
        try:
            await self._changed.wait()
        finally:
            timer.cancel()

    def _take(self, batch: list[_Item], rows: int) -> int:
        """Move waiting requests that fit into the batch; returns the new row count."""
        while self._pending:
            head = self._pending[0]
            if head.future.done():  # the client went away while queued
                self._pending.popleft()
                continue
            if batch and (not self._stackable or rows + head.rows > self._max_rows):
                break
            batch.append(self._pending.popleft())
            rows += head.rows
            if not self._stackable:
                break
        return rows

    async def _form_batches(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                await self._wait_changed(None)
            await self._slots.acquire()
            batch: list[_Item] = []
            rows = self._take(batch, 0)
            deadline = loop.time() + self._max_wait
            # Keep the batch open only while someone is about to join it.
            while self._stackable and rows < self._max_rows and self._arriving > 0:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                await self._wait_changed(remaining)
                rows = self._take(batch, rows)
            if not batch:
                self._slots.release()
                continue
            task = loop.create_task(self._execute(batch, rows))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _execute(self, batch: list[_Item], rows: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            outputs = await loop.run_in_executor(self._executor, self._call, batch)
        except Exception as exc:  # a model failure fails this batch's requests, not the server
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        finally:
            self._slots.release()
        self._metrics.batch_size.observe(rows)
        offset = 0
        for item in batch:
            end = offset + item.rows
            if not item.future.done():
                item.future.set_result({name: value[offset:end] for name, value in outputs.items()})
            offset = end

    def _call(self, batch: list[_Item]) -> dict[str, np.ndarray]:
        """Worker thread: stack, call the model once, time it."""
        if len(batch) == 1:
            inputs = batch[0].inputs
        else:
            inputs = {
                name: np.concatenate([item.inputs[name] for item in batch])
                for name in batch[0].inputs
            }
        started = time.perf_counter()
        outputs = self._model.predict(inputs)
        self._metrics.model_call.observe(time.perf_counter() - started)
        return outputs

    @property
    def depth(self) -> int:
        return len(self._pending)

    async def close(self) -> None:
        """Finish running batches, stop forming new ones, release the worker threads."""
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for item in self._pending:
            if not item.future.done():
                item.future.cancel()
        self._executor.shutdown(wait=True)
