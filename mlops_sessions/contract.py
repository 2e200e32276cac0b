"""The contract between mlops-sessions and a team's model code.

A training entrypoint is any callable ``train(ctx: TrainContext)`` named in mlops.yaml as
``module:function``. It may

* return a Keras model (its ``.history`` is recorded) — we export it as a SavedModel with
  a ``serving_default`` signature, or
* return a :class:`TrainResult` with the model and/or a history dict, or
* write a SavedModel to ``ctx.model_dir`` itself and return ``TrainResult(history=...)``.

Data functions (``evaluate.dataset``, ``evaluate.drift.reference``) are callables
``f(ctx: DataContext) -> (features, labels)``.

Nothing here imports TensorFlow, and nothing assumes a venv or a container: paths come in
through the context, so the same code runs in both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class DataContext:
    """What a data function receives."""

    model: str
    params: Mapping[str, Any]
    seed: int
    inputs: Mapping[str, Path]


@dataclass(frozen=True)
class TrainContext(DataContext):
    """What a training entrypoint receives.

    ``callbacks`` are Keras callbacks the step wants attached (live progress); pass them to
    ``model.fit(..., callbacks=list(ctx.callbacks))``.

    ``strategy`` is the ``tf.distribute`` strategy to build and compile the model under
    (``with ctx.strategy.scope(): ...``): ``MultiWorkerMirroredStrategy`` when ``TF_CONFIG``
    names more than one worker (``train.workers`` > 1 on Kubernetes), TensorFlow's default
    strategy otherwise, so the same code runs on one process or many. ``is_chief`` is true
    for the process whose model is kept (task 0); the others write to a scratch directory.
    """

    output_dir: Path = Path(".")
    callbacks: Sequence[Any] = ()
    strategy: Any = None
    is_chief: bool = True

    @property
    def model_dir(self) -> Path:
        return self.output_dir / "model"


@dataclass
class TrainResult:
    model: Any = None
    history: Mapping[str, Sequence[float]] = field(default_factory=dict)
