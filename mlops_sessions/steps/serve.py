"""``mlops serve``: run the built-in model server on the blessed (or a named) SavedModel.

Front end only: it picks the SavedModel (blessed run of the model by default, or
``--run`` / ``--model-dir``), builds server settings from ``serve:`` in mlops.yaml and
hands over to :mod:`mlops_sessions.server.lifecycle`, which runs until SIGTERM.

When the project signs its models (``evaluate.sign``) or ``--signature`` is given, the
model is verified against the gate's signature before anything loads it
(:mod:`mlops_sessions.drivers.model_signing`): unsigned, changed, signed by another key or
not a pass, it is refused in one line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_sessions.config import Config, ModelConfig
from mlops_sessions.console import argtypes
from mlops_sessions.console.common import load_config, store_for
from mlops_sessions.errors import StepError
from mlops_sessions.records import evaluations as evaluation_records
from mlops_sessions.records.io import read_record

if TYPE_CHECKING:
    from mlops_sessions.server.settings import ServerSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", nargs="?", metavar="MODEL", help="model to serve (default: the only model)"
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--run", type=argtypes.label, metavar="RUN_ID", help="serve this training run's model"
    )
    source.add_argument(
        "--model-dir", type=argtypes.path, metavar="PATH", help="serve this SavedModel directory"
    )
    parser.add_argument(
        "--host", type=argtypes.host, default=None, help="bind address (default: serve.host)"
    )
    parser.add_argument(
        "--port", type=argtypes.port, default=None, help="port (default: serve.port; 0 = any)"
    )
    parser.add_argument(
        "--grpc-port",
        type=argtypes.port,
        default=None,
        help="gRPC port (default: serve.grpc_port; 0 = no gRPC)",
    )
    parser.add_argument(
        "--track",
        type=argtypes.dns_label,
        default=os.environ.get(TRACK_ENV) or None,
        help="rollout track label of the metrics, stable or canary (default: $MLOPS_TRACK, "
        "which the rendered Deployment sets from the pod's track label)",
    )
    parser.add_argument(
        "--drift-reference",
        type=argtypes.path,
        default=None,
        metavar="PATH",
        help="training reference bins for live input drift (default: the one `mlops "
        "evaluate` wrote for the served run; the serve image carries its own)",
    )
    parser.add_argument(
        "--signature",
        type=argtypes.path,
        default=None,
        metavar="PATH",
        help="verify the model against this model signature before serving (default with "
        "evaluate.sign: the signature the gate made when it blessed the served run)",
    )
    parser.add_argument(
        "--public-key",
        type=argtypes.path,
        default=None,
        metavar="PATH",
        help="PEM public key the signature must verify with (default: evaluate.sign.public_key)",
    )
    parser.add_argument(
        "--version",
        dest="model_version",
        type=argtypes.label,
        default=None,
        help="version label in URLs and metrics (default: the run id, or '1')",
    )


TRACK_ENV = "MLOPS_TRACK"
# Where a serve image puts the drift reference next to the model (planning/images.py).
IMAGE_REFERENCE_ENV = "MLOPS_DRIFT_REFERENCE"


def _drift_reference(config: Config, args: argparse.Namespace, run_id: str | None) -> Path | None:
    """The drift reference the server counts live inputs against, if there is one."""
    if args.drift_reference is not None:
        return Path(args.drift_reference)
    from_image = os.environ.get(IMAGE_REFERENCE_ENV)
    if from_image:
        return Path(from_image)
    if run_id is None:
        return None
    return evaluation_records.drift_reference(config.store_path, run_id)


def _grpc_or_rest_only(
    config: Config, model: ModelConfig, args: argparse.Namespace, settings: ServerSettings
) -> ServerSettings:
    """The settings to serve with, given whether gRPC can run here.

    gRPC needs tensorflow-serving-api's protos, which ``.[serve]`` cannot install (it
    would pull a second TensorFlow; docs/serving.md). A newcomer's first ``mlops serve``
    must still work, so when gRPC is only the default it is dropped with one warning and
    REST serves; when the user asked for it (``--grpc-port`` or ``serve.grpc_port`` in
    mlops.yaml) a server without it is refused, naming the install.
    """
    if not settings.grpc_port:
        return settings
    from mlops_sessions.server.lifecycle import GRPC_INSTALL, missing_grpc_packages

    missing = missing_grpc_packages()
    if not missing:
        return settings
    needs = f"needs {', '.join(missing)}, which is not installed"
    if args.grpc_port is not None or _declares_grpc_port(config, model):
        asked = "--grpc-port" if args.grpc_port is not None else "serve.grpc_port:"
        raise StepError(
            f"gRPC ({asked} {settings.grpc_port}) {needs}: {GRPC_INSTALL}; "
            "or serve REST only with --grpc-port 0"
        )
    print(
        f"warning: serving REST only: gRPC on the default port {settings.grpc_port} {needs} "
        f"({GRPC_INSTALL}); set serve.grpc_port to require gRPC, or 0 to silence this",
        file=sys.stderr,
        flush=True,
    )
    return dataclasses.replace(settings, grpc_port=0)


def _declares_grpc_port(config: Config, model: ModelConfig) -> bool:
    """Whether the effective mlops.yaml writes serve.grpc_port for model (in the model, its
    profile or ``defaults``, all merged into the document) rather than leaving the default."""
    written = (config.document or {}).get("models", {}).get(model.name) or {}
    serve = written.get("serve") if isinstance(written, dict) else None
    return isinstance(serve, dict) and "grpc_port" in serve


def _pick_model(config: Config, name: str | None) -> ModelConfig:
    if name is not None:
        (model,) = config.select_models([name])
        return model
    if len(config.models) == 1:
        return next(iter(config.models.values()))
    raise StepError(
        f"several models are declared; name one: mlops serve {{{','.join(config.models)}}}"
    )


def _run_record(config: Config, run_id: str) -> tuple[Path, dict[str, Any]]:
    store = store_for(config)
    record = store.load_run(run_id)
    if record is None:
        known = [str(r.get("run_id")) for r in store.list_runs()][-5:]
        hint = (
            f" (recent runs: {', '.join(known)})" if known else " (no runs yet: run `mlops train`)"
        )
        raise StepError(f"no training run {run_id!r} in {store.runs}{hint}")
    return store.ensure_model(record), record  # a run pulled from store.remote: fetch now


def _identity_source(
    config: Config, model: ModelConfig, args: argparse.Namespace
) -> tuple[Path, dict[str, Any] | None, str | None]:
    """The SavedModel path, its run.json record (if any) and the run id (if any)."""
    if args.model_dir is not None:
        path = Path(args.model_dir).resolve()
        beside = path.parent / "run.json"
        record = read_record(beside, fix=f"delete {beside} or pass a --model-dir of a complete run")
        run_id = str(record["run_id"]) if record and "run_id" in record else None
        return path, record, run_id
    run_id = args.run
    if run_id is None:
        blessed = store_for(config).blessed(model.name)
        if blessed is None or "run_id" not in blessed:
            raise StepError(
                f"model {model.name!r} has no blessed run to serve; run `mlops evaluate "
                f"{model.name}` to bless one, or pass --run RUN_ID or --model-dir PATH"
            )
        run_id = str(blessed["run_id"])
    path, record = _run_record(config, run_id)
    recorded_model = record.get("model")
    if recorded_model not in (None, model.name):
        raise StepError(f"run {run_id!r} trained model {recorded_model!r}, not {model.name!r}")
    return path, record, run_id


def _timestamp(stamp: object) -> float | None:
    """A record's ISO-8601 time as Unix seconds; None when absent or unreadable (the age
    metric is then left out rather than wrong)."""
    if not isinstance(stamp, str):
        return None
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def run(args: argparse.Namespace) -> int:
    config = load_config(args)
    model = _pick_model(config, args.model)
    path, record, run_id = _identity_source(config, model, args)
    if model.serve.runtime != "mlops":
        raise StepError(
            f"model {model.name!r} declares serve.runtime: {model.serve.runtime}; "
            "`mlops serve` runs the built-in server (set runtime: mlops to use it locally)"
        )
    _verify_signature(config, model, args, path, run_id)
    # A broken export is named in one line here, before TensorFlow is imported (its
    # start-up noise and a long C++ status would bury the reason).
    from mlops_sessions.server import savedmodel

    damaged = savedmodel.problem(path)
    if damaged is not None:
        raise StepError(damaged)
    # Lazily imported: aiohttp, prometheus_client and orjson are the 'serve' extra.
    from mlops_sessions.server.lifecycle import ServerFailed, serve
    from mlops_sessions.server.settings import ModelIdentity, ServerSettings

    record = record or {}
    git = record.get("lineage", {}).get("git", {}) or {}
    identity = ModelIdentity(
        name=model.name,
        version=args.model_version or run_id or "1",
        path=path,
        model_hash=str(record.get("model_hash") or ""),
        git_commit=str(git.get("commit") or ""),
        track=args.track or "",
        trained_at=_timestamp(record.get("finished_at")),
    )
    settings = dataclasses.replace(
        ServerSettings.from_config(
            model.serve, host=args.host, port=args.port, grpc_port=args.grpc_port
        ),
        drift_reference=_drift_reference(config, args, run_id),
    )
    settings = _grpc_or_rest_only(config, model, args, settings)
    if settings.drift_reference is not None:
        from mlops_sessions.server.live import DriftReference, ReferenceError

        try:
            DriftReference.load(settings.drift_reference)
        except ReferenceError as exc:
            raise StepError(str(exc)) from None
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    def on_ready(url: str) -> None:
        endpoint = f"{url}/v1/models/{identity.name}"
        result = {
            "event": "ready",
            "url": url,
            "model": identity.name,
            "version": identity.version,
            "predict": f"{endpoint}:predict",
        }
        if settings.grpc_port:
            # host:port, the target a gRPC channel is opened on.
            result["grpc"] = f"{url.split('//', 1)[1].rsplit(':', 1)[0]}:{settings.grpc_port}"
        grpc = f", gRPC on port {settings.grpc_port}" if settings.grpc_port else ""
        _event(
            args,
            result,
            f"serving {identity.name} (version {identity.version}) at {endpoint}{grpc} — ready",
        )

    try:
        serve(identity, settings, on_ready)
    except ServerFailed as exc:
        raise StepError(str(exc)) from None
    _event(args, {"event": "stopped", "model": identity.name}, f"stopped serving {identity.name}")
    return 0


def _verify_signature(
    config: Config, model: ModelConfig, args: argparse.Namespace, path: Path, run_id: str | None
) -> None:
    """Refuse a model that does not verify, when the project signs models (evaluate.sign)
    or a --signature is given. The signing library is imported only then: an unsigned
    project's start-up does not pay for it."""
    signs = model.evaluate is not None and model.evaluate.sign is not None
    if not signs and args.signature is None:
        if args.public_key is not None:
            raise StepError("--public-key needs --signature (or evaluate.sign in mlops.yaml)")
        return
    from mlops_sessions.drivers import model_signing

    if args.public_key is not None:
        try:
            public_pem = Path(args.public_key).read_bytes()
        except OSError as exc:
            raise StepError(f"--public-key {args.public_key}: {exc.strerror or exc}") from None
    elif signs:
        public_pem = model_signing.public_key(config, model)
    else:
        raise StepError("--signature needs --public-key (or evaluate.sign.public_key)")
    if args.signature is not None:
        signature = Path(args.signature)
        if not signature.is_file():
            raise StepError(f"--signature {signature} does not exist")
    elif run_id is not None:
        store = store_for(config)
        blessed = store.blessed(model.name) or {}
        eval_id = blessed.get("eval_id") if blessed.get("run_id") == run_id else None
        signature = model_signing.find_signature(
            store, model.name, run_id, str(eval_id) if eval_id else None
        )
    else:
        raise StepError(
            f"{path} is not a run of the store and models.{model.name}.evaluate.sign is set: "
            "pass its --signature (or serve a blessed run)"
        )
    verified = model_signing.check(path, signature, public_pem, model=model.name)
    print(
        f"model signature ok: {model.name} sha256:{verified.digest[:16]}…, verdict pass, "
        f"key sha256:{verified.key_fingerprint[:16]}… ({verified.seconds:.2f}s)",
        file=sys.stderr,
        flush=True,
    )


def _event(args: argparse.Namespace, result: dict[str, Any], text: str) -> None:
    """A long-running step reports events, one compact JSON object per line with --json
    (JSON Lines), so a supervisor can read each as it arrives."""
    print(json.dumps(result, sort_keys=True) if args.json else text, flush=True)
