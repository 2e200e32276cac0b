"""Training as a Kubernetes Job or Kubeflow TFJob (``train.backend: kubernetes``): the
cluster Trainers.

Called only after the train step found no stored run for the key, so an unchanged key
never creates a Job.
Here: the shared rules (:func:`config.rules.train_backend_findings`), the train image by
digest (its pushed build, like render and deploy pin the serve image), the Job's objects
(:mod:`planning.train_job`; a Kubeflow TFJob from :mod:`planning.train_tfjob` with
``train.operator: tfjob`), then :class:`executors.kube.job.JobRunner` (or its TFJob
flavour, :class:`executors.kube.tfjob.TFJobRunner`) with the deploy section's kubeconfig
rules (``deploy.context`` pins the cluster). The chief pod writes the
run into ``store.remote``; this side then reads its run.json through the store, exactly as
a run trained on another machine is reused — the model itself is downloaded later, by the
step that needs it.

SIGTERM is turned into the same interruption as Ctrl-C while the Job runs, so a CI job
that is cancelled deletes the Job too. A cancelled or failed run leaves nothing under
``runs/`` here, and nothing trusted on the remote (run.json is the remote's last write).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType
from typing import TYPE_CHECKING, Any, ClassVar, TextIO

from mlops_sessions.config import Config, ModelConfig, rules, units
from mlops_sessions.drivers import render_inputs
from mlops_sessions.drivers.training.base import Trainer
from mlops_sessions.errors import StepError
from mlops_sessions.planning import train_job, train_tfjob
from mlops_sessions.planning.training import TrainPlan
from mlops_sessions.records import runs
from mlops_sessions.records.io import now

if TYPE_CHECKING:
    from mlops_sessions.executors.kube.job import JobRunner


class ClusterTrainer(Trainer):
    """Trains on the cluster of ``deploy.context``; the chief pod publishes the run."""

    backend = "kubernetes"
    fetches_inputs_here = False  # each pod fetches its s3:// inputs itself
    kind: ClassVar[str]

    def describe(self, plan: TrainPlan) -> dict[str, Any]:
        return {"kubernetes_job": describe_job(self.config, self.model, self.kind)}

    def train(self, plan: TrainPlan, run_id: str, out: TextIO) -> dict[str, Any]:
        return train_on_cluster(self, plan, run_id, out)

    def objects(
        self, target: train_job.JobTarget, spec: dict[str, Any]
    ) -> list[train_job.Manifest]:
        """The objects to create, in order (what :meth:`runner` then follows)."""
        return train_job.objects(self.config, self.model, target, spec)

    def runner(self) -> type[JobRunner]:
        """The executor that creates the objects and follows the run to its end."""
        from mlops_sessions.executors.kube.job import JobRunner

        return JobRunner

    def chief_ref(self, name: str) -> str:
        """What `kubectl logs` takes for the chief when its pod is not known by name."""
        return f"job/{name}"


class JobTrainer(ClusterTrainer):
    """``train.operator: job``: a Kubernetes Job (indexed, one pod per worker)."""

    kind = "Job"


class TFJobTrainer(ClusterTrainer):
    """``train.operator: tfjob``: a Kubeflow TFJob, whose operator writes ``TF_CONFIG``."""

    kind = train_tfjob.KIND

    def objects(
        self, target: train_job.JobTarget, spec: dict[str, Any]
    ) -> list[train_job.Manifest]:
        return train_tfjob.objects(self.config, self.model, target, spec)

    def runner(self) -> type[JobRunner]:
        from mlops_sessions.executors.kube.tfjob import TFJobRunner

        return TFJobRunner

    def chief_ref(self, name: str) -> str:
        return train_tfjob.worker_pod(name, 0)


def train_image(config: Config, model: ModelConfig) -> str:
    """The train image's pushed reference, by digest."""
    assert model.train is not None
    name = model.train.image or model.image
    if name is None:
        raise StepError(
            f"model '{model.name}': train.backend kubernetes runs the train image; set "
            "train.image to an image of kind 'train'"
        )
    if not render_inputs.build_record(config.store_path, name).is_file():
        raise StepError(
            f"model '{model.name}': no pushed build of the train image '{name}' is recorded; "
            f"the cluster pulls it by digest: run `mlops build {name}` then `mlops push {name}`"
        )
    return render_inputs.find_build(config, name, {}).image


def describe_job(config: Config, model: ModelConfig, kind: str) -> dict[str, Any]:
    """What ``--dry-run`` shows of the Job: nothing is created, nothing contacted."""
    train = model.train
    assert train is not None
    try:
        image = train_image(config, model)
    except StepError:
        image = "(not pushed yet: `mlops build` + `mlops push` of the train image)"
    return {
        "kind": kind,
        "namespace": train_job.namespace(model),
        "context": model.deploy.context,
        "workers": train.workers,
        "image": image,
        "timeout": train.timeout,
        "retries": train.retries,
    }


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """While the Job runs, SIGTERM raises KeyboardInterrupt (the Job is then deleted)."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals to whoever owns them
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def train_on_cluster(
    trainer: ClusterTrainer,
    plan: TrainPlan,
    run_id: str,
    out: TextIO,
    *,
    poll_s: float = 1.0,
) -> dict[str, Any]:
    """Run the trainer's Job (or TFJob) for run_id; returns run.json as the chief published it."""
    from mlops_sessions.executors.kube.client import connect

    config, store, model = trainer.config, trainer.store, trainer.model
    rules.require(rules.train_backend_findings(config, model))
    if store.sync is None:
        raise StepError(
            f"model '{model.name}': a Kubernetes training Job writes its run to store.remote, "
            "and this process cannot reach it (--offline?); run without --offline"
        )
    image = train_image(config, model)
    target = train_job.JobTarget(train_job.job_name(model.name, run_id), image, run_id, plan.key)
    objects = trainer.objects(target, train_job.pod_spec(config, model, plan, run_id))
    cluster = connect(model.deploy.context, train_job.namespace(model))

    def line(text: str) -> None:
        # The chief's progress lines already carry the model's name, as a local run's do.
        prefix = "" if text.startswith(f"[{model.name}]") else f"[{model.name}] "
        print(f"{prefix}{text}", file=out, flush=True)

    assert model.train is not None
    what = trainer.kind
    line(
        f"{what} {cluster.namespace}/{target.name} on context {cluster.context}: "
        f"{model.train.workers} worker(s), image {image}"
    )
    runner = trainer.runner()(
        cluster,
        on_line=line,
        poll_s=poll_s,
        unschedulable_after_s=units.duration_seconds(model.train.pending_timeout),
    )
    started = now()
    try:
        with sigterm_interrupts():
            outcome = runner.run(objects, target.name)
    except KeyboardInterrupt as exc:
        where = runs.record_cancelled(
            store.root,
            run_id,
            {
                "model": model.name,
                "key": plan.key,
                "started_at": started,
                "cancelled_at": now(),
                "why": str(exc) or "interrupted (Ctrl-C)",
                "kubernetes": {
                    "kind": what,
                    "context": cluster.context,
                    "namespace": cluster.namespace,
                    "job": target.name,
                    "image": image,
                },
            },
        )
        line(
            f"cancelled: {what} {cluster.namespace}/{target.name} deleted; run {run_id} not kept "
            f"(recorded in {where})"
        )
        raise
    record = store.load_run(run_id)
    if record is None:
        # The Job says done, yet the chief never published: its code did not run to the
        # end (a node agent that completes pods without running them, such as KWOK, or an
        # entry point that exits 0 early). Not a success: nothing downstream has a model.
        chief = outcome.pod or trainer.chief_ref(target.name)
        raise StepError(
            f"training {what} {cluster.namespace}/{target.name} finished, but its pods wrote "
            f"no run record: run {run_id} is not in {store.remote_url}; see what the chief "
            f"printed with `kubectl -n {cluster.namespace} logs {chief}`"
        )
    line(
        f"{what} {target.name} completed on node {outcome.node or '?'} in "
        f"{outcome.duration_s:.1f}s"
        f" ({outcome.attempts} attempt(s))"
    )
    return record
