"""Training inside the train image (``train.container: true``): the container Trainer.

Build the model's train image if no image with its input digest exists (the same build as
``mlops build``, so layers and records are shared), write the training spec with paths as
the container sees them, run ``python -m mlops_sessions.executors.tf.train`` in the image
with the project mounted read-only and the run's staging directory mounted writable, and
read back ``result.json``. The run that comes out has the same files and the same
run.json as a venv run, plus the image it ran in.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from mlops_sessions.config import Config
from mlops_sessions.drivers.training.local import StagedTrainer
from mlops_sessions.errors import StepError
from mlops_sessions.planning.container_run import WORKSPACE, ContainerRun, train_run
from mlops_sessions.planning.images import LABEL_PREFIX, ImagePlan
from mlops_sessions.planning.training import TrainPlan
from mlops_sessions.records.store import Store

if TYPE_CHECKING:
    from mlops_sessions.executors.docker.run import ContainerExit
    from mlops_sessions.executors.tf.train import TrainOutcome

SPEC_FILE = "train-spec.json"
RESULT_FILE = "result.json"
_EXECUTOR_PREFIX = "train: "  # how the entry point prints a StepError


class ContainerTrainer(StagedTrainer):
    """``train.backend: container``: the venv run's code and spec, run in the train image."""

    backend = "container"

    def describe(self, plan: TrainPlan) -> dict[str, Any]:
        return {"container_run": describe_container(self.config, self.store, plan)}

    def produce(self, plan: TrainPlan, stage: Path, run_id: str, out: TextIO) -> TrainOutcome:
        return train_in_container(self.config, self.store, plan, stage, run_id, out)


def host_user() -> str:
    """UID:GID the container runs as, so what it writes belongs to the caller.

    Empty (the image's own user) where the OS has no UIDs (Windows).
    """
    if not hasattr(os, "getuid"):
        return ""
    return f"{os.getuid()}:{os.getgid()}"


def image_plan(config: Config, store: Store, plan: TrainPlan, *, dry_run: bool) -> ImagePlan:
    from mlops_sessions.drivers import imaging as build_step

    assert plan.image is not None
    planned = build_step.plan(config, store, plan.image, force=False, dry_run=dry_run, local=True)
    if planned.environment_digest != plan.environment_digest:
        raise StepError(
            f"the train image '{plan.image}' changed while '{plan.model}' was being planned "
            "(its base, Dockerfile or requirements were edited); run the step again"
        )
    return planned


def container_spec(
    config: Config, plan: TrainPlan, output: Path, run_id: str
) -> tuple[ContainerRun, dict[str, Any]]:

    labels = {f"{LABEL_PREFIX}.run-id": run_id, f"{LABEL_PREFIX}.model": plan.model}
    train = config.models[plan.model].train
    return train_run(
        plan,
        root=config.root,
        output=output,
        user=host_user(),
        labels=labels,
        resources=train.resources if train is not None else None,
    )


def describe_container(config: Config, store: Store, plan: TrainPlan) -> dict[str, Any]:
    """What --dry-run shows: the image that would be built or reused, and the container."""
    planned = image_plan(config, store, plan, dry_run=True)
    run, _ = container_spec(config, plan, store.tmp / "<run>", "<run>")
    return {
        "image": planned.image,
        "refs": planned.refs,
        "input_digest": planned.input_digest,
        "environment_digest": planned.environment_digest,
        "dockerfile": planned.dockerfile,
        **run.describe(),
    }


def train_in_container(
    config: Config, store: Store, plan: TrainPlan, stage: Path, run_id: str, out: TextIO
) -> TrainOutcome:
    """Train plan in its image into stage; returns what the executor in the image reported."""
    from mlops_sessions.drivers.imaging import build_one
    from mlops_sessions.executors.docker import run as docker_run
    from mlops_sessions.executors.docker.engine import connect
    from mlops_sessions.executors.tf.train import TrainOutcome

    planned = image_plan(config, store, plan, dry_run=False)
    run, inside = container_spec(config, plan, stage, run_id)
    (stage / SPEC_FILE).write_text(json.dumps(inside, indent=2, sort_keys=True))
    what = f"training '{plan.model}' in image '{plan.image}'"
    with contextlib.closing(connect()) as client:
        built = build_one(client, planned, store, out=out)
        state = "reused" if built["skipped"] else f"built in {built['seconds']:.1f}s"
        print(
            f"[{plan.model}] train image {', '.join(built['refs'])} {state}; training in it",
            file=out,
            flush=True,
        )
        warnings: list[str] = []
        try:
            ended = docker_run.run(client, built["image_id"], run, out=out, what=what)
        except docker_run.GpusUnavailable as exc:
            if not plan.allow_cpu_fallback:
                raise StepError(
                    f"{exc}; install the NVIDIA Container Toolkit on this host (and restart "
                    "dockerd), or set train.allow_cpu_fallback: true to train on the CPU, or "
                    "train.resources.gpu: 0"
                ) from None
            warning = f"{exc}; training on the CPU (train.allow_cpu_fallback is true)"
            print(f"[{plan.model}] warning: {warning}", file=out, flush=True)
            warnings.append(warning)
            ended = docker_run.run(
                client, built["image_id"], dataclasses.replace(run, gpus=0), out=out, what=what
            )
    if ended.code != 0:
        raise _failure(plan, what, ended, config.root)
    result = stage / RESULT_FILE
    try:
        outcome = TrainOutcome(**json.loads(result.read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise StepError(
            f"{what}: the container exited 0 but left no readable {RESULT_FILE} ({exc}); the "
            "image's mlops-sessions may be older than this one — rebuild it with "
            f"`mlops build {plan.image} --no-cache`"
        ) from None
    result.unlink()
    outcome.warnings = [*warnings, *outcome.warnings]
    outcome.environment = {
        **outcome.environment,
        "container": {
            "image": plan.image,
            "image_id": built["image_id"],
            "refs": built["refs"],
            "input_digest": built["input_digest"],
            "environment_digest": built["environment_digest"],
            "gpus_requested": plan.gpu,
            "gpus_given": 0 if warnings else plan.gpu,
        },
    }
    return outcome


def _failure(plan: TrainPlan, what: str, ended: ContainerExit, root: Path) -> StepError:
    if ended.oom_killed:
        return StepError(
            f"{what}: the container was killed for lack of memory; give Docker more memory "
            "(Docker Desktop: Settings > Resources) or make training smaller (batch_size)"
        )
    reported = [line for line in ended.tail if line.startswith(_EXECUTOR_PREFIX)]
    if reported:
        # Name files as the user knows them: /workspace is the project root mounted.
        message = reported[-1][len(_EXECUTOR_PREFIX) :].replace(f"{WORKSPACE}/", f"{root}/")
        return StepError(f"{message} (in image '{plan.image}')")
    return StepError(
        f"{what}: the container exited with code {ended.code}; its last lines are above "
        f"(the same code runs in the venv with train.container: false)"
    )
