"""Training on this machine: in the session's venv, or (a subclass) in the train image.

Both stage the run the same way: a staging directory under ``.mlops/tmp`` with an owner
file (pid, host) so a later ``mlops train`` can tell a killed run's leftovers from a live
one, the model trained into it, run.json written last (``records.runs``), and the directory
renamed into ``runs/<run-id>`` only then. A run killed at any point leaves nothing under
``runs/``.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from abc import abstractmethod
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from mlops_sessions.drivers.training.base import Trainer
from mlops_sessions.planning.training import TrainPlan
from mlops_sessions.records import runs
from mlops_sessions.records.io import RecordError, now, read_record, write_json_atomic
from mlops_sessions.records.store import Store

if TYPE_CHECKING:
    from mlops_sessions.executors.tf.train import TrainOutcome

OWNER_FILE = ".mlops-owner.json"
# Staging dirs without an owner file (another step's, or killed before writing it) are
# removed only once they are clearly abandoned.
ABANDONED_AFTER_S = 24 * 3600


class StagedTrainer(Trainer):
    """A trainer whose run is produced into a staging directory on this machine."""

    def train(self, plan: TrainPlan, run_id: str, out: TextIO) -> dict[str, Any]:
        fetch_objects(plan, out)
        started = now()
        clock = time.monotonic()
        with self.store.staging(self.store.run_dir(run_id)) as stage:
            owner = stage / OWNER_FILE
            write_json_atomic(
                owner,
                {
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "run_id": run_id,
                    "started_at": started,
                },
            )
            outcome = self.produce(plan, stage, run_id, out)
            owner.unlink()
            record = runs.write_completed_run(
                stage,
                {"run_id": run_id, **plan.run_fields(), "lineage": plan.lineage()},
                asdict(outcome),
                started_at=started,
                clock=clock,
                environment=outcome.environment,
            )
        return record

    @abstractmethod
    def produce(self, plan: TrainPlan, stage: Path, run_id: str, out: TextIO) -> TrainOutcome:
        """Train plan into stage (the model under ``stage/model``); returns the outcome."""


class LocalTrainer(StagedTrainer):
    """``train.backend: local``: TensorFlow in this process, in the session's venv."""

    backend = "local"

    def describe(self, plan: TrainPlan) -> dict[str, Any]:
        return {}

    def produce(self, plan: TrainPlan, stage: Path, run_id: str, out: TextIO) -> TrainOutcome:
        from mlops_sessions.executors.tf.progress import reporter_for
        from mlops_sessions.executors.tf.train import quiet_tensorflow, run_training

        quiet_tensorflow()
        return run_training(plan, stage, reporter_for(plan.model, out))


def fetch_objects(plan: TrainPlan, out: TextIO) -> None:
    """Download the plan's s3:// inputs that the store's cache does not hold yet (checked,
    atomic: :mod:`drivers.datainputs`); cached ones need no network at all."""
    if not plan.pending_objects:
        return
    from mlops_sessions.drivers.datainputs import ensure

    def log(line: str) -> None:
        print(f"[{plan.model}] {line}", file=out, flush=True)

    ensure(plan.pending_objects, log=log)


def clean_stale_staging(store: Store) -> int:
    """Remove staging dirs of runs whose process is gone; returns how many were removed."""
    if not store.tmp.is_dir():
        return 0
    removed = 0
    host = socket.gethostname()
    for child in store.tmp.iterdir():
        if not child.is_dir():
            continue
        owner = child / OWNER_FILE
        if owner.is_file():
            try:
                info = read_record(owner) or {}
                stale = info.get("host") == host and not _alive(int(info["pid"]))
            except (RecordError, ValueError, KeyError, TypeError):
                stale = False
        else:
            try:
                stale = time.time() - child.stat().st_mtime > ABANDONED_AFTER_S
            except OSError:
                stale = False
        if stale:
            shutil.rmtree(child, ignore_errors=True)
            removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True
