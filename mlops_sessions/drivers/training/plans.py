"""Training plans with their facts resolved, and the stored runs they match.

The planner (:mod:`mlops_sessions.planning.training`) reads neither git nor the store; this
module gives it the checkout's state and git's view of the files (``gitinfo``), the data
cache's layout and the store's file-hash memo (saved after planning), and answers from the
store which complete run a plan's key already has. The train, evaluate, test and build
steps plan through here.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from mlops_sessions import gitinfo
from mlops_sessions.config import Config, ModelConfig
from mlops_sessions.drivers.datainputs import places
from mlops_sessions.hashing import FileHashCache
from mlops_sessions.planning.training import STEP, TrainPlan, plan_training
from mlops_sessions.records import runs
from mlops_sessions.records.store import Store


def hash_cache_for(config: Config) -> FileHashCache:
    """The persistent file-hash memo of a project's store (code trees as git lists them)."""
    return FileHashCache(runs.file_hash_table(config.store_path), gitinfo.list_files)


def plan_run(
    config: Config,
    model: ModelConfig,
    *,
    params_override: Mapping[str, Any] | None = None,
    hash_cache: FileHashCache | None = None,
) -> TrainPlan:
    """The training plan of model as the checkout stands now (git read here)."""
    cache = hash_cache if hash_cache is not None else hash_cache_for(config)
    plan = plan_training(
        config,
        model,
        params_override=params_override,
        hash_cache=cache,
        git=gitinfo.state(config.root),
        git_files=gitinfo,
        data_place=places(config),
    )
    cache.save()
    return plan


def current_run(config: Config, store: Store, model_name: str) -> dict[str, Any] | None:
    """The complete stored run whose key matches the current inputs, else None."""
    (model,) = config.select_models([model_name])
    if model.train is None:
        return None
    cache = FileHashCache(runs.file_hash_table(store.root), gitinfo.list_files)
    return reusable_run(store, plan_run(config, model, hash_cache=cache).key)


def reusable_run(store: Store, key: str) -> dict[str, Any] | None:
    """The run recorded for key if it is complete and its SavedModel is present (here, or
    on the remote store, downloaded only when a step needs it: ``Store.ensure_model``)."""
    run = store.cached_run(STEP, key)
    if run is None or run.get("status") != "complete" or run.get("key") != key:
        return None
    if not store.model_available(run):
        return None
    return run


def new_run_id(store: Store, key: str, now: datetime | None = None) -> str:
    """A unique run id, '<UTC yyyymmddThhmmssZ>-<6 random hex>-<key[:8]>' (records.runs)."""
    return runs.new_run_id(store.root, key, now)
