"""The :class:`Trainer` interface: one planned run, on one backend, to a completed run.json.

``mlops train`` plans a run (:mod:`mlops_sessions.planning.training`), finds no stored run
for its key, and hands the plan to the trainer that :func:`mlops_sessions.drivers.training.
factory.trainer_for` picks from the model's config. A trainer describes what it would do
(``--dry-run``: nothing is built, created or contacted) and runs the plan as a given run
id, returning the run's run.json once the run is complete in the store.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, TextIO

from mlops_sessions.config import Config, ModelConfig
from mlops_sessions.planning.training import TrainPlan
from mlops_sessions.records.store import Store


class Trainer(ABC):
    """Trains one model's planned runs on one backend."""

    # The name the plan and run.json use for the backend (``train.effective_backend``).
    backend: ClassVar[str]
    # Whether the plan's s3:// inputs are fetched on this machine before training; a
    # Kubernetes pod fetches its own, so ``--offline`` does not stop a cluster run.
    fetches_inputs_here: ClassVar[bool] = True

    def __init__(self, config: Config, store: Store, model: ModelConfig) -> None:
        self.config = config
        self.store = store
        self.model = model

    @abstractmethod
    def describe(self, plan: TrainPlan) -> dict[str, Any]:
        """What ``--dry-run`` shows of this backend beside the plan (may be empty)."""

    @abstractmethod
    def train(self, plan: TrainPlan, run_id: str, out: TextIO) -> dict[str, Any]:
        """Run plan as run_id, progress on out; returns the completed run's run.json."""
