"""Adaptive batching: gather concurrent requests into one model call, off the event loop.

Handlers ``submit`` validated arrays and await a future. Batches are formed by a callback on
the event loop: when a model worker is free it takes every waiting request that fits into
``max_batch_size`` rows and keeps the batch open, for up to ``max_wait``, only while more
requests keep arriving: while one is still being read, or until :data:`QUIET_ROUNDS` loop
rounds pass without a request joining. A lone request is not delayed for nothing (idle loop
rounds take microseconds). The batch runs in a worker thread; outputs are split back by row
offsets. While the model is busy the queue fills, so batches grow with load by themselves.

The request path does as little as possible on the event loop thread, which is what limits
a small model's requests/s: a submit appends to a deque and, only when a worker is idle,
schedules the batch former; one thread hand-off and one wake-up of the loop per *batch*,
not per request.

The queue is bounded (``max_queue`` requests): beyond it ``submit`` raises
:class:`Overloaded` at once, and the HTTP layer answers 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import functools
import time

import numpy as np

from mlops_sessions.server.codec import as_model_input
from mlops_sessions.server.metrics import ServerMetrics
from mlops_sessions.server.runtime import Model

Arrays = dict[str, np.ndarray]

# An open batch goes once this many event loop rounds pass without a request joining it
# (or at max_wait, or when full). A request whose bytes the loop has received needs two
# rounds to reach submit() (the protocol callback wakes the connection's task, which parses
# and submits on the next round); the rounds after that catch clients that were just
# answered and send their next request at once. Under load a round handles many requests,
# so the batch keeps growing while requests keep coming; on an idle loop the eight rounds
# take some 30 microseconds, so a lone request is not delayed for nothing. Fewer, fuller
# batches matter because TensorFlow's fixed cost per call (hundreds of microseconds for a
# small model) dominates a small model's time, and part of it holds the GIL.
QUIET_ROUNDS = 8


class Overloaded(Exception):
    """The queue is full; the client should retry after ``retry_after`` seconds."""

    def __init__(self, depth: int, retry_after: int = 1) -> None:
        super().__init__(f"server overloaded: {depth} requests already queued; retry later")
        self.retry_after = retry_after


class _Item:
    __slots__ = ("future", "inputs", "rows")

    def __init__(self, inputs: Arrays, rows: int, future: asyncio.Future[Arrays]) -> None:
        self.inputs = inputs
        self.rows = rows
        self.future = future


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
        self._free_workers = workers
        # A batch held open for requests being parsed, its row count and its deadline.
        self._open: list[_Item] = []
        self._open_rows = 0
        self._open_until = 0.0
        self._timer: asyncio.TimerHandle | None = None
        # Requests submitted so far; the count at the last look and the rounds since a join.
        self._submitted = 0
        self._seen = 0
        self._quiet = 0
        self._scheduled = False
        self._closed = False
        self._running: set[asyncio.Future[Arrays]] = set()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="mlops-model"
        )
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()

    def arrive(self) -> None:
        """A request is being read/parsed: an open batch may wait for it (pair with arrived)."""
        self._arriving += 1

    def arrived(self) -> None:
        """The request was submitted or rejected; an open batch re-checks whether to go."""
        self._arriving -= 1
        if self._open:
            self._schedule()

    def submit(self, inputs: Arrays, rows: int) -> asyncio.Future[Arrays]:
        """Queue a validated request; await the returned future for its output rows."""
        if len(self._pending) >= self._max_queue:
            raise Overloaded(len(self._pending))
        loop = self._loop
        assert loop is not None, "Batcher.start() was not called"
        future: asyncio.Future[Arrays] = loop.create_future()
        self._pending.append(_Item(inputs, rows, future))
        self._submitted += 1
        # With every worker busy, the batch that finishes forms the next one: nothing to do.
        if self._free_workers:
            self._schedule()
        return future

    def _schedule(self) -> None:
        if not self._scheduled and self._loop is not None:
            self._scheduled = True
            self._loop.call_soon(self._form)

    def _take(self, batch: list[_Item], rows: int) -> int:
        """Move waiting requests that fit into the batch; returns the new row count."""
        pending = self._pending
        while pending:
            head = pending[0]
            if head.future.done():  # the client went away while queued
                pending.popleft()
                continue
            if batch and (not self._stackable or rows + head.rows > self._max_rows):
                break
            batch.append(pending.popleft())
            rows += head.rows
            if not self._stackable:
                break
        return rows

    def _form(self) -> None:
        """Start batches while a worker is free; hold one open only while requests arrive."""
        self._scheduled = False
        loop = self._loop
        assert loop is not None
        while self._free_workers and not self._closed and (self._pending or self._open):
            batch, self._open = self._open, []
            was_open = bool(batch)
            rows = self._take(batch, self._open_rows)
            self._open_rows = 0
            if not batch:
                return
            now = loop.time()
            if not was_open:
                self._open_until = now + self._max_wait
                self._seen, self._quiet = self._submitted, 0
            if self._stackable and rows < self._max_rows and now < self._open_until:
                if self._submitted != self._seen:  # a request joined during the last round
                    self._seen, self._quiet = self._submitted, 0
                elif not self._arriving:
                    self._quiet += 1
                if self._arriving or self._quiet < QUIET_ROUNDS:
                    self._open, self._open_rows = batch, rows
                    if self._arriving:
                        # A body is still being read: arrived() or the deadline re-forms the
                        # batch; no spinning through loop rounds meanwhile.
                        if self._timer is None:
                            self._timer = loop.call_at(self._open_until, self._on_timer)
                    else:
                        self._schedule()
                    return
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._dispatch(loop, batch, rows)

    def _on_timer(self) -> None:
        self._timer = None
        # The loop may run a timer a clock tick early: mark the deadline as passed outright.
        self._open_until = 0.0
        self._form()

    def _dispatch(self, loop: asyncio.AbstractEventLoop, batch: list[_Item], rows: int) -> None:
        self._free_workers -= 1
        running = loop.run_in_executor(self._executor, self._call, batch)
        self._running.add(running)
        running.add_done_callback(functools.partial(self._finish, batch, rows))

    def _finish(self, batch: list[_Item], rows: int, running: asyncio.Future[Arrays]) -> None:
        """Event loop: hand each request its rows; the next batch forms on the next round."""
        self._running.discard(running)
        self._free_workers += 1
        exc = running.exception() if not running.cancelled() else asyncio.CancelledError()
        if exc is not None:  # a model failure fails this batch's requests, not the server
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
        else:
            outputs = running.result()
            self._metrics.batch_size.observe(rows)
            if len(batch) == 1:
                item = batch[0]
                if not item.future.done():
                    item.future.set_result(outputs)
            else:
                offset = 0
                for item in batch:
                    end = offset + item.rows
                    if not item.future.done():
                        item.future.set_result(
                            {name: value[offset:end] for name, value in outputs.items()}
                        )
                    offset = end
        # Not at once: the loop first answers these requests and reads the ones that came
        # in meanwhile, so they can join the next batch (see QUIET_ROUNDS).
        self._schedule()

    def _call(self, batch: list[_Item]) -> Arrays:
        """Worker thread: stack and cast to the signature's dtypes, call the model, time it."""
        inputs = {
            name: as_model_input([item.inputs[name] for item in batch], info)
            for name, info in self._model.signature.inputs.items()
        }
        started = time.perf_counter()
        outputs = self._model.predict(inputs)
        self._metrics.model_call.observe(time.perf_counter() - started)
        # Count predicted classes and input bins here, on the worker thread, once per batch:
        # the event loop answering requests pays nothing for the rollout's live metrics.
        if len(inputs) == 1 and len(outputs) == 1:
            (features,) = inputs.values()
            (output,) = outputs.values()
            self._metrics.live.observe(features, output)
        elif outputs:
            self._metrics.live.observe(None, outputs[sorted(outputs)[0]])
        return outputs

    @property
    def depth(self) -> int:
        return len(self._pending)

    async def close(self) -> None:
        """Finish running batches, stop forming new ones, release the worker threads."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        for item in (*self._open, *self._pending):
            if not item.future.done():
                item.future.cancel()
        self._open.clear()
        self._pending.clear()
        self._executor.shutdown(wait=True)
