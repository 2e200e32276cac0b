"""Live training progress: a rich display on a terminal, plain lines in CI logs.

A :class:`Reporter` knows nothing about Keras; :func:`keras_callback` adapts one to a Keras
callback that the train step hands to the team's code through ``ctx.callbacks``. The choice
between the two reporters is made on the stream: rich only when it is a TTY, because a
live display in a CI log turns into thousands of redraw lines.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Mapping
from typing import Any, Protocol, TextIO


class Reporter(Protocol):
    def train_begin(self, epochs: int | None, steps: int | None) -> None: ...
    def batch_end(self, step: int, logs: Mapping[str, float]) -> None: ...
    def epoch_end(self, epoch: int, logs: Mapping[str, float]) -> None: ...
    def close(self) -> None: ...


def format_metrics(logs: Mapping[str, Any]) -> str:
    parts = []
    for name, value in logs.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        parts.append(f"{name} {number:.4f}" if math.isfinite(number) else f"{name} {number}")
    return "  ".join(parts)


class PlainReporter:
    """One line per epoch, flushed at once: readable in CI logs and `tail -f`."""

    def __init__(self, model: str, stream: TextIO) -> None:
        self.model = model
        self.stream = stream
        self.epochs: int | None = None
        self.started = time.monotonic()
        self.epoch_started = self.started

    def train_begin(self, epochs: int | None, steps: int | None) -> None:
        self.epochs = epochs
        self.started = self.epoch_started = time.monotonic()

    def batch_end(self, step: int, logs: Mapping[str, float]) -> None:
        return None

    def epoch_end(self, epoch: int, logs: Mapping[str, float]) -> None:
        now = time.monotonic()
        total = f"/{self.epochs}" if self.epochs else ""
        line = (
            f"[{self.model}] epoch {epoch + 1}{total}  {format_metrics(logs)}  "
            f"({now - self.epoch_started:.1f}s)"
        )
        self.epoch_started = now
        print(line, file=self.stream, flush=True)

    def close(self) -> None:
        return None


class RichReporter:
    """A live progress bar over epochs and batches, with the latest metrics beside it."""

    def __init__(self, model: str, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.model = model
        self.console = Console(file=stream)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[metrics]}"),
            console=self.console,
            transient=False,
        )
        self.epochs_task: Any = None
        self.batches_task: Any = None
        self.steps: int | None = None
        self.started = False

    def train_begin(self, epochs: int | None, steps: int | None) -> None:
        self.steps = steps
        if not self.started:
            self.progress.start()
            self.started = True
        self.epochs_task = self.progress.add_task(f"{self.model} epochs", total=epochs, metrics="")
        self.batches_task = self.progress.add_task("  batches", total=steps, metrics="")

    def batch_end(self, step: int, logs: Mapping[str, float]) -> None:
        if self.batches_task is not None:
            self.progress.update(
                self.batches_task, completed=step + 1, metrics=format_metrics(logs)
            )

    def epoch_end(self, epoch: int, logs: Mapping[str, float]) -> None:
        if self.epochs_task is not None:
            self.progress.update(
                self.epochs_task, completed=epoch + 1, metrics=format_metrics(logs)
            )
        if self.batches_task is not None:
            self.progress.reset(self.batches_task, total=self.steps, metrics="")

    def close(self) -> None:
        if self.started:
            self.progress.stop()
            self.started = False


def reporter_for(model: str, stream: TextIO | None = None) -> Reporter:
    """Rich on a terminal, plain lines otherwise."""
    out = stream if stream is not None else sys.stdout
    isatty = getattr(out, "isatty", None)
    if isatty is not None and isatty():
        return RichReporter(model, out)
    return PlainReporter(model, out)


def keras_callback(reporter: Reporter) -> Any:
    """A keras.callbacks.Callback that forwards fit() events to reporter."""
    import keras

    class _Progress(keras.callbacks.Callback):  # type: ignore[misc]
        def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
            params = self.params or {}
            reporter.train_begin(params.get("epochs"), params.get("steps"))

        def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
            reporter.batch_end(batch, logs or {})

        def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
            reporter.epoch_end(epoch, logs or {})

    return _Progress()
