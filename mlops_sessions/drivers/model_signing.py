"""The gate's signature of the model it blesses, and its check wherever a model is loaded.

``evaluate.sign`` (docs/model-signing.md): when the gate blesses a run, :func:`sign_blessed`
signs the run's SavedModel with the team's EC private key into a Sigstore bundle
(:mod:`mlops_sessions.executors.modelsign`) whose signed statement carries the model's
digest AND the gate's claim: model, run, evaluation id, verdict and the metrics it judged.
The bundle is written into that evaluation's record (``keys.model_signature``), so it
travels with the run here and through ``store.remote``.

:func:`check` is the one rule every loader applies (``mlops fetch-model`` in the
init container, ``mlops serve``): the bundle verifies with the public key, the files are
those signed, the claim is a ``pass`` of this model. Anything else is refused in one line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlops_sessions.config import Config, ModelConfig
from mlops_sessions.config.model import ModelSigning
from mlops_sessions.errors import StepError
from mlops_sessions.executors.modelsign.bundle import (
    ModelSignatureError,
    Signed,
    Verified,
    key_fingerprint,
    sign_model,
    signer_fingerprint,
    verify_model,
)
from mlops_sessions.executors.s3.fetch import MARKER as FETCH_MARKER
from mlops_sessions.planning import k8s_model_signing
from mlops_sessions.planning.k8s_model_signing import ModelSignatures
from mlops_sessions.planning.manifests import RenderInputs
from mlops_sessions.records import keys
from mlops_sessions.records.io import now, read_record
from mlops_sessions.records.store import Store

# The password of an encrypted PEM private key (an unencrypted key needs none).
PASSWORD_ENV = "MLOPS_MODEL_KEY_PASSWORD"
ENV_PREFIX = "env://"
# fetch-model's marker lands inside the downloaded model directory: not part of the model.
NOT_MODEL_FILES = (FETCH_MARKER,)
PASS = "pass"

__all__ = [
    "ModelSignatureError",
    "check",
    "find_signature",
    "public_key",
    "render_facts",
    "sign_blessed",
]


def signing(model: ModelConfig) -> ModelSigning | None:
    """The model's evaluate.sign, or None when its models are not signed."""
    return model.evaluate.sign if model.evaluate is not None else None


def read_key(root: Path, ref: str, setting: str) -> bytes:
    """PEM bytes of a key reference: a file relative to the project, or env://VAR."""
    if ref.startswith(ENV_PREFIX):
        name = ref[len(ENV_PREFIX) :]
        value = os.environ.get(name)
        if not value:
            raise StepError(
                f"{setting}: the environment variable {name} is not set; put the PEM key in it"
            )
        return value.encode()
    if "://" in ref:
        raise StepError(
            f"{setting}: {ref!r} is a KMS URI; model signing (model-signing) takes a PEM key "
            "in a file or env://VAR (KMS keys sign images through cosign)"
        )
    path = root / ref
    try:
        return path.read_bytes()
    except OSError as exc:
        raise StepError(f"{setting}: cannot read {path}: {exc.strerror or exc}") from None


def public_key(config: Config, model: ModelConfig) -> bytes:
    sign = signing(model)
    assert sign is not None
    return read_key(config.root, sign.public_key, f"models.{model.name}.evaluate.sign.public_key")


def sign_blessed(
    config: Config,
    store: Store,
    model: ModelConfig,
    run_record: Mapping[str, Any],
    eval_id: str,
) -> Signed | None:
    """Sign the run's model for evaluation eval_id (a pass) unless it is signed already.

    Returns what was signed; None when the model does not sign (no evaluate.sign) or the
    evaluation already holds a signature by the current key (a signature by another key,
    after a key rotation, is replaced). Written before the blessing moves, and shared
    with the remote, so a blessed model is never without its signature.
    """
    sign = signing(model)
    if sign is None:
        return None
    run_id = str(run_record["run_id"])
    existing = store.model_signature(run_id, eval_id)
    if existing is not None and signer_fingerprint(existing) == key_fingerprint(
        public_key(config, model)
    ):
        return None
    evaluation = keys.local(store.root, keys.evaluation(run_id, eval_id))
    verdict = read_record(
        evaluation / keys.VERDICT, fix=f"delete {evaluation} and run `mlops evaluate --force`"
    )
    if verdict is None or verdict.get("result") != PASS:
        raise StepError(f"evaluation {eval_id} of run {run_id} is not a pass; nothing to sign")
    judged = verdict.get("metrics") or {}
    claim = {
        "model": model.name,
        "run_id": run_id,
        "model_hash": run_record.get("model_hash"),
        "config_hash": verdict.get("config_hash"),
        "evaluation": {
            "id": eval_id,
            "verdict": verdict.get("result"),
            "metrics": {name: (check or {}).get("value") for name, check in judged.items()},
        },
        "signed_at": now(),
    }
    private = read_key(config.root, sign.key, f"models.{model.name}.evaluate.sign.key")
    password = os.environ.get(PASSWORD_ENV)
    signed = sign_model(
        store.ensure_model(run_record),
        keys.local(store.root, keys.model_signature(run_id, eval_id)),
        private,
        claim,
        password=password.encode() if password else None,
        ignore=NOT_MODEL_FILES,
    )
    store.share_model_signature(run_id, eval_id)
    return signed


def find_signature(store: Store, model: str, run_id: str, eval_id: str | None = None) -> Path:
    """The signature of run_id's model: eval_id's, else the newest blessing's that signed it."""
    candidates = [eval_id] if eval_id else []
    for record in reversed(store.blessings(model)):
        if str(record.get("run_id")) == run_id and record.get("eval_id"):
            candidates.append(str(record["eval_id"]))
    for candidate in candidates:
        found = store.model_signature(run_id, candidate)
        if found is not None:
            return found
    raise ModelSignatureError(
        f"the model of run {run_id} is not signed (models.{model}.evaluate.sign is set); "
        f"sign it at the gate with `mlops evaluate {model}` (re-run after setting "
        "evaluate.sign), or serve a signed run"
    )


def check(
    model_dir: Path, signature: Path, public_pem: bytes, *, model: str | None = None
) -> Verified:
    """Verify model_dir against signature and the claim in it; refuse in one line.

    Refused: a damaged bundle, another key, files changed, added or removed since signing,
    a verdict that is not ``pass``, a claim for another model (when model is given).
    """
    verified = verify_model(model_dir, signature, public_pem)
    claim = verified.claim
    evaluation = claim.get("evaluation") if isinstance(claim.get("evaluation"), dict) else {}
    verdict = evaluation.get("verdict") if evaluation else None
    if verdict != PASS:
        said = f"verdict {verdict!r}" if verdict is not None else "no gate verdict"
        raise ModelSignatureError(
            f"{signature} verifies, but carries {said} for {model_dir} (only a 'pass' of "
            "the gate may be loaded); bless a model that passes `mlops evaluate`"
        )
    if model is not None and claim.get("model") != model:
        raise ModelSignatureError(
            f"{signature} verifies, but its verdict is for model {claim.get('model')!r}, "
            f"not {model!r}; use the signature of this model's blessed run"
        )
    return verified


def render_facts(
    config: Config, model: ModelConfig, inputs: RenderInputs
) -> ModelSignatures | None:
    """What render puts in the pods for a signed model fetched from S3: the public key and
    the signature of each track's run (the build's run; the blessed run when the build
    names none, e.g. an --image override). None when the model's pods do not verify."""
    if not k8s_model_signing.applies(model):
        return None
    from mlops_sessions.console.common import store_for

    store = store_for(config)
    blessed = store.blessed(model.name) or {}
    by_track: dict[str, str] = {}
    for track, run_id in (
        ("stable", inputs.run_id),
        ("canary", inputs.canary_run_id if inputs.canary_image else inputs.run_id),
    ):
        run = run_id or (str(blessed["run_id"]) if blessed.get("run_id") else None)
        if run is None:
            continue  # render names the track without a signature in one line
        eval_id = blessed.get("eval_id") if blessed.get("run_id") == run else None
        try:
            path = find_signature(store, model.name, run, str(eval_id) if eval_id else None)
        except ModelSignatureError:
            continue
        by_track[track] = path.read_text(encoding="utf-8")
    return ModelSignatures(public_key(config, model).decode(), by_track)
