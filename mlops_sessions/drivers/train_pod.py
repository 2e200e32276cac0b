"""The training pod's driver, started by ``python -m mlops_sessions.executors.train_pod``.

Runs inside the train image, in a pod of the Job that :mod:`planning.train_job` plans
(or of the TFJob :mod:`planning.train_tfjob` plans). It
reads the spec from ``$MLOPS_TRAIN_SPEC``, resolves each input in the image (a project
path relative to the working directory, or a package resource) and refuses one whose
sha256 differs from the one the run's key was computed over — an ``s3://`` input is
fetched from object storage into the pod's scratch directory and checked the same way
(:mod:`executors.s3.data`; endpoint and credentials as for ``store.remote``) — then trains with
:func:`executors.tf.train.run_training` (under ``MultiWorkerMirroredStrategy`` when
``TF_CONFIG`` names several workers).

The chief (task 0, :func:`executors.tf.train.is_chief`; in the pods of a TFJob, whose
``TF_CONFIG`` the Kubeflow operator writes, worker 0) stages the run like a local ``mlops
train`` does — run.json written in a staging directory that is renamed into place — in a
store under ``$TMPDIR`` and pushes it to ``store.remote`` (archive, manifest, then
run.json, which makes it trusted). Workers other than the chief train into a scratch
directory that dies with the pod: their copy of the model is the chief's, all-reduced
step by step.

Exit codes: 0 trained (and, for the chief, published); 2 the spec or an input is wrong
(retrying cannot help, the message says what to fix); 1 training failed, or the object
store did not answer (the Job's retries may get through).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mlops_sessions.errors import StepError
from mlops_sessions.executors.s3.fetch import FetchUnavailable
from mlops_sessions.hashing import FileHashCache
from mlops_sessions.planning.datainputs import package_resource
from mlops_sessions.planning.train_job import INPUT_ERROR_EXIT, SPEC_ENV, SPEC_FORMAT
from mlops_sessions.planning.training import TrainPlan, hash_data
from mlops_sessions.records import data as data_records
from mlops_sessions.records import runs
from mlops_sessions.records.io import now
from mlops_sessions.records.store import Store

INPUT_ERROR = INPUT_ERROR_EXIT


def read_spec() -> dict[str, Any]:
    raw = os.environ.get(SPEC_ENV)
    if not raw:
        raise StepError(f"${SPEC_ENV} is not set: this runs in a training pod `mlops train` made")
    try:
        spec = json.loads(raw)
    except ValueError as exc:
        raise StepError(f"${SPEC_ENV} is not JSON ({exc})") from None
    if not isinstance(spec, dict) or spec.get("format") != SPEC_FORMAT:
        raise StepError(
            f"${SPEC_ENV} is not a version-{SPEC_FORMAT} training spec; the train image and "
            "the mlops-sessions that created the Job differ: rebuild and push the train image"
        )
    return spec


def resolve_inputs(spec: dict[str, Any], cwd: Path, scratch: Path | None = None) -> dict[str, Path]:
    """Each input's path here, checked against the sha256 the run's key was computed over.

    An ``s3://`` input is downloaded into scratch (the pod's emptyDir) and checked there.
    """
    cache = FileHashCache(None)
    resolved: dict[str, Path] = {}
    for name, entry in spec["inputs"].items():
        if "uri" in entry:
            resolved[name] = _fetch(name, entry, spec, scratch or Path(tempfile.mkdtemp()))
            continue
        if "package" in entry:
            path = package_resource(name, entry["package"], entry["resource"])
        else:
            path = (cwd / entry["path"]).resolve()
            if not path.exists():
                raise StepError(
                    f"data input '{name}': {entry['path']} is not in the train image; rebuild "
                    "and push it (`mlops build` + `mlops push` of the train image)"
                )
        got = hash_data(cache, path)
        if got != entry["sha256"]:
            raise StepError(
                f"data input '{name}' ({path}) has sha256 {got[:12]}…, but the run's key was "
                f"computed over {entry['sha256'][:12]}…: the image holds other data than this "
                "checkout. Rebuild and push the train image, then train again"
            )
        resolved[name] = path
    return resolved


def _fetch(name: str, entry: dict[str, Any], spec: dict[str, Any], scratch: Path) -> Path:
    """An ``s3://`` input fetched into scratch, with the sha256 of the spec (the key's)."""
    from mlops_sessions.drivers import datainputs
    from mlops_sessions.executors.s3 import data as s3_data

    store = spec.get("store") or {}
    s3_data.require_boto3()
    result = datainputs.fetch_object(
        name,
        str(entry["uri"]),
        str(entry["sha256"]),
        data_records.object_file(scratch, str(entry["sha256"]), str(entry["uri"])),
        configured_endpoint=store.get("endpoint"),
        region=store.get("region"),
        log=lambda line: print(f"fetch: {line}", file=sys.stderr, flush=True),
        in_pod=True,
    )
    return result.dest


def where_ran() -> dict[str, Any]:
    """The pod's place, from the downward API variables the Job (or TFJob) sets."""
    return {
        "kind": os.environ.get("MLOPS_TRAIN_KIND") or "Job",
        "job": os.environ.get("MLOPS_TRAIN_JOB"),
        "namespace": os.environ.get("POD_NAMESPACE"),
        "pod": os.environ.get("POD_NAME"),
        "node": os.environ.get("NODE_NAME"),
        "image": os.environ.get("MLOPS_TRAIN_IMAGE"),
    }


def train(
    spec: dict[str, Any], cwd: Path, scratch: Path, inputs: dict[str, Path]
) -> dict[str, Any] | None:
    """Train; the chief returns the run record it published, a worker None."""
    from mlops_sessions.executors.tf.train import cluster_workers, is_chief, run_training

    plan = TrainPlan.from_spec(
        {
            **spec["plan"],
            "source": str((cwd / spec["plan"]["source"]).resolve()),
            "inputs": {name: str(path) for name, path in inputs.items()},
        }
    )
    if not is_chief():
        run_training(plan, scratch / "worker")
        return None
    from mlops_sessions.console.shared_store import remote_for

    store_spec = spec["store"]
    store = Store(
        scratch / "store",
        remote_for(store_spec["url"], store_spec.get("endpoint"), store_spec.get("region")),
    )
    run_id = str(spec["run_id"])
    started, clock = now(), time.monotonic()
    with store.staging(store.run_dir(run_id)) as stage:
        outcome = run_training(plan, stage)
        gpus = outcome.environment.get("gpus") or []
        record = runs.write_completed_run(
            stage,
            spec["record"],
            asdict(outcome),
            started_at=started,
            clock=clock,
            environment={
                **outcome.environment,
                "kubernetes": {
                    **where_ran(),
                    "workers": max(1, len(cluster_workers())),
                    "gpu_type": gpus[0].split(": ", 1)[-1] if gpus else None,
                },
            },
        )
    assert store.sync is not None
    store.sync.push_run(run_id)
    print(f"published run {run_id} to {store.remote_url}", flush=True)
    return record


def main() -> int:
    scratch = Path(tempfile.mkdtemp(prefix="mlops-train-"))
    try:
        spec = read_spec()
        inputs = resolve_inputs(spec, Path.cwd(), scratch)
    except FetchUnavailable as exc:
        print(f"train: {exc}", file=sys.stderr, flush=True)
        return 1  # the object store did not answer: the Job's next pod may get through
    except StepError as exc:
        print(f"train: {exc}", file=sys.stderr, flush=True)
        return INPUT_ERROR  # the Job's podFailurePolicy fails at once: a retry cannot help
    try:
        train(spec, Path.cwd(), scratch, inputs)
    except StepError as exc:
        print(f"train: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
