"""Image driver shared by the build, scan, push, train and test steps: the model artifact a
serve image carries, the image plan (with the git facts it is made of), and one build, scan
or push that records its result.

The Docker executors act and return facts; this module keeps the hermetic wheel cache and
writes the image records (``records.builds``), publishing them to ``store.remote`` as they
are written so another machine's render and deploy see the pushed image."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from mlops_sessions import gitinfo
from mlops_sessions.config import Config
from mlops_sessions.errors import StepError
from mlops_sessions.planning.images import ImagePlan, ModelArtifact, plan_image, served_model
from mlops_sessions.planning.tags import tag_facts
from mlops_sessions.records import builds
from mlops_sessions.records import evaluations as evaluation_records
from mlops_sessions.records.io import now
from mlops_sessions.records.store import Store


def model_artifact(config: Config, store: Store, image: str, force: bool) -> ModelArtifact | None:
    """The SavedModel a serving image carries: the blessed run's (or, with force, the newest)."""
    if config.images[image].kind == "train":
        return None
    model = served_model(config, image).name
    blessed = store.blessed(model)
    if blessed is not None and blessed.get("run_id"):
        run = store.load_run(str(blessed["run_id"]))
        if run is None:
            raise StepError(
                f"model '{model}' is blessed as run {blessed['run_id']}, which is not in "
                f"{store.runs}; retrain and re-evaluate: mlops train {model} && "
                f"mlops evaluate {model}"
            )
        return _artifact(store, run, blessed=True)
    if not force:
        raise StepError(
            f"model '{model}' has no blessed run, so image '{image}' would ship an ungated "
            f"model; run `mlops evaluate {model}` to bless one, or pass --force"
        )
    runs = [r for r in store.list_runs() if r.get("model") == model]
    if not runs:
        raise StepError(f"model '{model}' has no trained run; run `mlops train {model}` first")
    return _artifact(store, runs[-1], blessed=False)


def _artifact(store: Store, run: dict[str, Any], *, blessed: bool) -> ModelArtifact:
    run_id = str(run["run_id"])
    return ModelArtifact(
        model=str(run["model"]),
        run_id=run_id,
        model_hash=str(run.get("model_hash", "")),
        path=store.ensure_model(run),  # a run pulled from store.remote is downloaded now
        blessed=blessed,
        record=run,
        drift_reference=evaluation_records.drift_reference(store.root, run_id),
    )


def plan(
    config: Config,
    store: Store,
    image: str,
    *,
    force: bool,
    dry_run: bool = False,
    local: bool = False,
) -> ImagePlan:
    from mlops_sessions.drivers.training.plans import hash_cache_for

    cache = hash_cache_for(config)
    facts = tag_facts(
        gitinfo.state(config.root),
        gitinfo.head_tags(config.root),
        gitinfo.origin_url(config.root),
        datetime.now(timezone.utc),
    )
    result = plan_image(
        config,
        image,
        facts=facts,
        artifact=model_artifact(config, store, image, force),
        hash_cache=cache,
        local=local,
        git_files=gitinfo,
    )
    if not dry_run:  # a dry run writes nothing, not even the hash memo
        cache.save()
    return result


def record(store: Store, image: str, kind: str, data: dict[str, Any]) -> None:
    """Append data to the kind's history and make it builds/<image>/<kind>.json.

    kind is "build" (local build), "scan" (checks) or "latest" (the pushed image that
    render/deploy use; its history is history.jsonl).
    """
    builds.record(store.root, image, kind, data)
    # Another machine's render/deploy reads the pushed image from the shared store.
    warning = store.publish(
        [builds.record_path(store.root, image, kind), builds.history_path(store.root, image, kind)]
    )
    if warning:
        print(warning, file=sys.stderr, flush=True)


def load_record(store: Store, image: str, kind: str) -> dict[str, Any] | None:
    return builds.load_record(store.root, image, kind)


def wheels(image_plan: ImagePlan, store: Store, out: TextIO) -> Path:
    """The wheels of the plan's requirement files, downloaded once per requirement set."""
    from mlops_sessions.executors.docker import build as docker_build

    spec = image_plan.wheels
    assert spec is not None
    final = builds.wheel_set_dir(store.root, spec.digest)
    if builds.wheels_complete(final, spec.digest):
        return final
    with store.staging(final) as stage:
        docker_build.download_wheels(image_plan, stage, out)
        builds.mark_wheels_complete(stage, spec.digest, spec.python_version)
    return final


def build_one(
    client: Any, image_plan: ImagePlan, store: Store, *, out: TextIO, no_cache: bool = False
) -> dict[str, Any]:
    """Build (or reuse) one planned image and record it in the store; returns the record."""
    from mlops_sessions.executors.docker import build as docker_build

    built = docker_build.build(
        client,
        image_plan,
        wheels=lambda: wheels(image_plan, store, out),
        scratch=store.tmp,
        out=out,
        no_cache=no_cache,
    )
    entry = {
        "image": image_plan.image,
        "kind": image_plan.kind,
        "image_id": built.image_id,
        "refs": list(built.refs),
        "input_digest": image_plan.input_digest,
        "environment_digest": image_plan.environment_digest,
        "base": image_plan.base,
        "model": image_plan.model,
        "model_hash": image_plan.artifact.model_hash if image_plan.artifact else None,
        "run_id": image_plan.artifact.run_id if image_plan.artifact else None,
        "blessed": image_plan.artifact.blessed if image_plan.artifact else None,
        "git_commit": image_plan.git_commit,
        "skipped": built.skipped,
        "reason": built.reason,
        "seconds": round(built.seconds, 3),
        "size_bytes": built.size_bytes,
        "built_at": now(),
    }
    record(store, image_plan.image, "build", entry)
    return entry


def built_record(store: Store, image: str) -> dict[str, Any]:
    built = load_record(store, image, "build")
    if built is None:
        raise StepError(f"image '{image}' has not been built; run `mlops build {image}` first")
    return built


def scan_image(client: Any, config: Config, store: Store, image: str) -> dict[str, Any]:
    """Scan the last build of image, record scan.json, return the report as a dict."""
    from mlops_sessions.executors.docker import scan as docker_scan

    built = built_record(store, image)
    try:
        report = docker_scan.scan(
            client, built["image_id"], built["refs"][0], config.images[image], built["base"]
        )
    except docker_scan.ImageGone:
        raise StepError(
            f"the last build of '{image}' ({built['image_id'][:19]}) is no longer on this Docker "
            f"engine; run `mlops build {image}` again"
        ) from None
    result = {**report.as_dict(), "image": image, "scanned_at": now(), "text": report.render()}
    record(store, image, "scan", result)
    return result


def push_image(
    client: Any, config: Config, store: Store, name: str, built: dict[str, Any]
) -> dict[str, Any]:
    """Push the last build of image name (scanning it first if its scan is not of this
    build), sign and attest it when ``images.<name>.sign`` says so, and record the pushed
    digest as ``latest``; returns that record and the name."""
    from mlops_sessions.executors.docker.push import push

    scanned = load_record(store, name, "scan")
    if scanned is None or scanned.get("image_id") != built["image_id"]:
        scanned = scan_image(client, config, store, name)
    if not scanned.get("passed"):
        raise StepError(
            f"push of '{name}' blocked: its scan failed\n{scanned.get('text', '')}\n"
            f"fix the findings, then `mlops build {name}` and push again"
        )
    digest = ""
    for ref in built["refs"]:
        digest = push(client, ref, image=name, out=sys.stderr)
    repository = built["refs"][0].rsplit(":", 1)[0]
    latest = {
        "image": f"{repository}@{digest}",
        "digest": digest,
        "tags": built["refs"],
        "image_id": built["image_id"],
        "input_digest": built["input_digest"],
        "model": built.get("model"),
        "model_hash": built.get("model_hash"),
        "run_id": built.get("run_id"),
        "git_commit": built.get("git_commit"),
        "pushed_at": now(),
    }
    if config.images[name].sign is not None:
        # Signed before it is recorded: a push whose signing failed leaves the previous
        # record in place, and pushing again signs the same digest.
        from mlops_sessions.drivers.signing import sign_pushed

        latest["signing"] = sign_pushed(config, store, name, latest, built, scanned)
    record(store, name, "latest", latest)
    return {"name": name, **latest}
