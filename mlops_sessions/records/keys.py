"""The one table of record keys: every layout under ``.mlops/``, on the remote and on the cluster.

A key is a relative POSIX path (``runs/<run-id>/run.json``). The local store puts it under its
root (:func:`local`); the shared store (:mod:`.remote`) uses it as the object key under the
remote's prefix. Both spell the layout through this module, so the two cannot drift apart.
The record modules (``runs``, ``evaluations``, ``blessings`` ...) keep their read/write
policies and take their paths from here.

The cluster's record names (the deploy history ConfigMap, the deploy Lease, the rollout
ConfigMap) are here too: they are the layout of the records kept on the cluster.

Imports only the standard library.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

# --- top-level folders ---------------------------------------------------------------------
RUNS = "runs"
CACHE = "cache"
MODELS = "models"
BUILDS = "builds"
DEPLOYMENTS = "deployments"
ROLLOUTS = "rollouts"
DATA = "data"
WHEELS = "wheels"
CANCELLED = "cancelled"
TMP = "tmp"
# The layout version marker at the root of the store.
STORE_MARKER = "store.json"

# --- file names inside a record's folder ---------------------------------------------------
RUN_FILE = "run.json"
MODEL_DIR = "model"
# The remote holds a run's model as one archive plus its checked manifest.
MODEL_ARCHIVE = "model.tar.gz"
MODEL_MANIFEST = "model.json"
# Marker in a local run directory whose model is still only on the remote (lazy download).
REMOTE_MARKER = ".remote-model.json"
EVAL_DIR = "eval"
METRICS = "metrics.json"
VERDICT = "verdict.json"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
# The training reference's bins per feature (planning.drift.reference_table), written next
# to the verdict where evaluate.drift is declared: the model server counts live inputs in
# these bins, so a rollout can judge input drift with the gate's own PSI.
DRIFT_REFERENCE = "drift_reference.json"
# With evaluate.sign, the gate's signature of the model it blessed: a Sigstore bundle
# (model-signing) over the run's SavedModel, carrying this evaluation's verdict. It lives
# with the evaluation whose verdict it carries, beside the run's model, here and on the
# remote; fetch-model and `mlops serve` verify the model against it (docs/model-signing.md).
MODEL_SIGNATURE = "model.sig"
# An evaluation's files in the order they are published; the verdict goes last, because an
# evaluation is complete once its verdict exists.
EVAL_FILES = (METRICS, REPORT_MD, REPORT_HTML, DRIFT_REFERENCE, MODEL_SIGNATURE)
EVAL_PUBLISH_ORDER = (*EVAL_FILES, VERDICT)
BLESSED = "blessed.json"
BLESSINGS_LOG = "blessings.jsonl"
# On the remote, each blessing is its own object under this folder (never overwritten).
BLESSINGS_OBJECTS = "blessings"
FILE_HASH_TABLE = "filehash.json"
LOCK = ".lock"
BUILD_KINDS = ("build", "scan", "latest")
REVISIONS = "revisions"
EVENTS_LOG = "events.jsonl"
ROLLOUT_STATE = "state.json"
ROLLOUT_REPORT = "report.md"
# On the remote, the lines of a local ``.jsonl`` log live as objects under ``<log>.d/``.
LOG_OBJECTS_SUFFIX = ".d"

# --- cluster record names ------------------------------------------------------------------
HISTORY_CONFIGMAP_SUFFIX = "-mlops-history"
DEPLOY_LEASE_SUFFIX = "-mlops-deploy"
ROLLOUT_CONFIGMAP_SUFFIX = "-mlops-rollout"

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def join(*parts: str) -> str:
    """parts as one relative key (no leading or trailing slash)."""
    return "/".join(part.strip("/") for part in parts if part)


def local(root: Path, key: str) -> Path:
    """Where key lives in the local store rooted at root."""
    return root.joinpath(*PurePosixPath(key).parts)


def parts(key: str) -> tuple[str, ...]:
    return PurePosixPath(key).parts


# --- runs ----------------------------------------------------------------------------------
def run(run_id: str) -> str:
    return join(RUNS, run_id)


def run_file(run_id: str) -> str:
    return join(run(run_id), RUN_FILE)


def run_model(run_id: str) -> str:
    return join(run(run_id), MODEL_DIR)


def model_archive(run_id: str) -> str:
    return join(run(run_id), MODEL_ARCHIVE)


def model_manifest(run_id: str) -> str:
    return join(run(run_id), MODEL_MANIFEST)


def is_run_file(key: str) -> bool:
    """key is ``runs/<run-id>/run.json``."""
    found = parts(key)
    return len(found) == 3 and found[0] == RUNS and found[2] == RUN_FILE


def cancelled(run_id: str) -> str:
    return join(CANCELLED, f"{run_id}.json")


# --- evaluations ---------------------------------------------------------------------------
def evaluations(run_id: str) -> str:
    return join(run(run_id), EVAL_DIR)


def evaluation(run_id: str, eval_id: str) -> str:
    return join(evaluations(run_id), eval_id)


def evaluation_file(run_id: str, eval_id: str, name: str) -> str:
    return join(evaluation(run_id, eval_id), name)


def model_signature(run_id: str, eval_id: str) -> str:
    """The gate's signature of the run's model, made when evaluation eval_id blessed it."""
    return evaluation_file(run_id, eval_id, MODEL_SIGNATURE)


def is_verdict(key: str) -> bool:
    """key is ``runs/<run-id>/eval/<eval-id>/verdict.json``."""
    found = parts(key)
    return len(found) == 5 and found[0] == RUNS and found[2] == EVAL_DIR and found[4] == VERDICT


# --- caches --------------------------------------------------------------------------------
def cache(step: str) -> str:
    return join(CACHE, step)


def cache_entry(step: str, key: str) -> str:
    return join(cache(step), f"{key}.json")


def file_hash_table() -> str:
    return join(CACHE, FILE_HASH_TABLE)


# --- blessings -----------------------------------------------------------------------------
def model(name: str) -> str:
    return join(MODELS, name)


def blessed(name: str) -> str:
    return join(model(name), BLESSED)


def blessings_log(name: str) -> str:
    return join(model(name), BLESSINGS_LOG)


def blessing_objects(name: str) -> str:
    """The remote's folder of one-object-per-blessing records."""
    return join(model(name), BLESSINGS_OBJECTS)


def model_lock(name: str) -> str:
    return join(model(name), LOCK)


# --- builds --------------------------------------------------------------------------------
def build(image: str) -> str:
    return join(BUILDS, image)


def build_record(image: str, kind: str) -> str:
    return join(build(image), f"{kind}.json")


def build_history(image: str, kind: str) -> str:
    name = "history.jsonl" if kind == "latest" else f"{kind}-history.jsonl"
    return join(build(image), name)


# --- data cache ----------------------------------------------------------------------------
def data_object(sha256: str, file_name: str) -> str:
    return join(DATA, sha256, file_name)


# --- deployments and rollouts --------------------------------------------------------------
def target_name(context: str, namespace: str) -> str:
    """The folder name of a deploy target: its context and namespace, file-name safe."""
    return _UNSAFE.sub("_", f"{context}--{namespace}")


def deployment_target(model_name: str, context: str, namespace: str) -> str:
    return join(DEPLOYMENTS, model_name, target_name(context, namespace))


def revision_name(revision: int) -> str:
    return f"r{revision:06d}"


def deployment_revision(target: str, revision: int) -> str:
    """A revision's record under a deployment target key."""
    return join(target, REVISIONS, f"{revision_name(revision)}.json")


def rollout_target(model_name: str, context: str, namespace: str) -> str:
    return join(ROLLOUTS, model_name, target_name(context, namespace))


def rollout(target: str, revision: int) -> str:
    return join(target, revision_name(revision))


def log_objects(log_key: str) -> str:
    """The remote folder holding the lines of the local log at log_key."""
    return f"{log_key}{LOG_OBJECTS_SUFFIX}"


# --- cluster -------------------------------------------------------------------------------
def history_configmap(app: str) -> str:
    """The ConfigMap that keeps an app's last deploy revisions on the cluster."""
    return f"{app}{HISTORY_CONFIGMAP_SUFFIX}"


def deploy_lease(app: str) -> str:
    """The Lease one deploy of an app holds while it applies."""
    return f"{app}{DEPLOY_LEASE_SUFFIX}"


def rollout_configmap(model_name: str) -> str:
    """The ConfigMap a progressive rollout keeps its state and operator requests in."""
    return f"{model_name}{ROLLOUT_CONFIGMAP_SUFFIX}"
