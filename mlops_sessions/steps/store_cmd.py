"""``mlops store status|pull|push|gc``: the artifact store for people.

* ``status`` — what is local, what is on the shared store (``store.remote``), which runs
  only one side has, and each model's blessed run on both sides;
* ``pull``   — every record of the remote into the local cache (runs' metadata,
  evaluations, blessings, image and deploy records); ``--models`` also downloads the
  blessed runs' models;
* ``push``   — what the remote lacks (runs with their models, evaluations, cache pointers,
  blessing log lines, image and deploy records); the blessed pointer is never pushed: it
  moves only through ``mlops evaluate``'s judged, conditional bless;
* ``gc``     — delete runs older than ``--older-than`` days that were never blessed,
  deployed or shipped in an image (``--dry-run`` lists them), here and on the remote; and
  clean the local cache of ``s3://`` data inputs (``data/``): copies whose sha256 and file
  name no ``data:`` entry of mlops.yaml declares, under the file as written or any of its
  profiles, temp files of downloads that are not running, empty directories and unused
  lock files. A download in progress (its object's lock is held) is skipped.

Store paths and object names stay the records package's; this module only orchestrates.
"""

from __future__ import annotations

import argparse
import os
from datetime import datetime, timedelta, timezone
from typing import Any

from mlops_sessions.config import Config
from mlops_sessions.console.common import emit, load_config, store_for
from mlops_sessions.errors import ConfigError, StepError
from mlops_sessions.records import blessings as blessing_records
from mlops_sessions.records import data as data_records
from mlops_sessions.records.store import Store


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("status", "pull", "push", "gc"), help="what to do")
    parser.add_argument(
        "--models",
        action="store_true",
        help="pull: also download the models of the blessed runs",
    )
    parser.add_argument(
        "--older-than",
        type=float,
        default=30.0,
        metavar="DAYS",
        help="gc: prune unblessed, undeployed runs finished more than DAYS ago (default: 30)",
    )
    parser.add_argument("--dry-run", action="store_true", help="gc: list what would go")


def run(args: argparse.Namespace) -> int:
    config = load_config(args)
    store = store_for(config)
    action: str = args.action
    if action != "status" and action != "gc" and store.sync is None:
        raise StepError(
            f"`mlops store {action}` needs a shared store: set store.remote in "
            f"{config.source_file} (store: {{path: {config.store}, remote: s3://bucket/prefix}})"
        )
    if action == "status":
        result = status(store)
        emit(args, result, _status_text(result))
    elif action == "pull":
        counts = store.pull()
        fetched = []
        if args.models:
            for model in sorted({str(r.get("model")) for r in store.list_runs()}):
                blessed = store.blessed(model)
                run = store.load_run(str(blessed["run_id"])) if blessed else None
                if run is not None:
                    store.ensure_model(run)
                    fetched.append(str(run["run_id"]))
        result = {**counts, "models": fetched, "downloaded_bytes": store.downloaded}
        emit(args, result, f"pulled from {store.remote_url}: {_counts(result)}")
    elif action == "push":
        result = store.push()
        emit(args, result, f"pushed to {store.remote_url}: {_counts(result)}")
    else:
        result = gc(store, args.older_than, dry_run=args.dry_run)
        result["data"] = gc_data(args, config, dry_run=args.dry_run)
        verb = "would prune" if args.dry_run else "pruned"
        lines = [f"{verb} {len(result['pruned'])} run(s) older than {args.older_than:g} days"]
        lines += [f"  {run_id}" for run_id in result["pruned"]]
        lines += [f"  kept {run_id}: {why}" for run_id, why in sorted(result["kept"].items())]
        lines += _data_text(result["data"], dry_run=args.dry_run)
        emit(args, result, "\n".join(lines))
    return 0


def status(store: Store) -> dict[str, Any]:
    local_runs = store.list_runs()
    local_ids = {str(r["run_id"]) for r in local_runs}
    models = sorted({str(r.get("model")) for r in local_runs})
    result: dict[str, Any] = {
        "local": {
            "path": str(store.root),
            "runs": len(local_ids),
            "models_downloaded": sum(1 for r in local_runs if _model_here(store, r)),
        },
        "remote": None,
    }
    if store.sync is not None:
        remote_ids = set(store.sync.remote_run_ids())
        result["remote"] = {
            "url": store.remote_url,
            "runs": len(remote_ids),
            "only_local": sorted(local_ids - remote_ids),
            "only_remote": sorted(remote_ids - local_ids),
        }
    blessed = {}
    for model in models:
        here = blessing_records.blessed(store.root, model)  # the local cache's pointer
        there = store.blessed(model) if store.sync is not None else None
        blessed[model] = {
            "local": here.get("run_id") if here else None,
            "remote": there.get("run_id") if there else None,
        }
    result["blessed"] = blessed
    return result


def _model_here(store: Store, run: dict[str, Any]) -> bool:
    return (store.run_dir(str(run["run_id"])) / str(run.get("model_dir", "model"))).is_dir()


def gc(store: Store, older_than_days: float, *, dry_run: bool = False) -> dict[str, Any]:
    """Prune runs older than the cutoff that nothing protects; see the module docstring."""
    if older_than_days < 0:
        raise StepError(f"--older-than {older_than_days:g} must be 0 days or more")
    store.pull()  # judge protection with every pipeline's blessings and deployments
    cutoff = datetime.now(timezone.utc) - timedelta(days=older_than_days)
    protected = store.protected_runs()
    pruned, kept = [], {}
    for run in store.list_runs():
        run_id = str(run["run_id"])
        finished = _parse_time(str(run.get("finished_at") or run.get("started_at") or ""))
        if finished is None or finished > cutoff:
            continue
        if run_id in protected:
            kept[run_id] = protected[run_id]
            continue
        pruned.append(run_id)
    if not dry_run:
        store.prune_runs(pruned)
    return {"pruned": pruned, "kept": kept, "dry_run": dry_run}


def gc_data(args: argparse.Namespace, config: Config, *, dry_run: bool = False) -> dict[str, Any]:
    """Clean the store's cache of s3:// data inputs; keeps what any profile declares."""
    from mlops_sessions.drivers.datainputs import declared_objects

    try:
        configs = every_profile(args, config)
    except ConfigError as exc:
        first = exc.problems[0].render() if exc.problems else str(exc)
        return {
            "removed": [],
            "skipped": [],
            "kept": [],
            "freed_bytes": 0,
            "not_cleaned": f"a profile of {config.source_file} does not load ({first}); "
            "the data cache was left alone: fix it (`mlops validate`), then gc again",
        }
    keep = set().union(*(declared_objects(c) for c in configs))
    return data_records.sweep(config.store_path, keep, dry_run=dry_run).as_dict()


def every_profile(args: argparse.Namespace, config: Config) -> list[Config]:
    """config, the file as written and the file under each of its profiles (as
    ``mlops validate`` enumerates them): the data any of them declares is in use."""
    from mlops_sessions.config.loader import PROFILE_ENV, load

    env = {key: value for key, value in os.environ.items() if key != PROFILE_ENV}
    base = load(args.config, profile=None, env=env)
    return [config, base, *(load(args.config, profile=p, env=env) for p in base.profiles)]


def _data_text(data: dict[str, Any], *, dry_run: bool) -> list[str]:
    if data.get("not_cleaned"):
        return [f"data cache: {data['not_cleaned']}"]
    files = [r for r in data["removed"] if r["why"] in ("not declared", "interrupted download")]
    other = len(data["removed"]) - len(files)
    verb = "would remove" if dry_run else "removed"
    lines = [
        f"data cache: {verb} {len(files)} file(s), {_bytes(int(data['freed_bytes']))} "
        f"{'would be ' if dry_run else ''}freed ({other} empty dir(s) / unused lock(s)); "
        f"kept {len(data['kept'])} declared cop{'y' if len(data['kept']) == 1 else 'ies'}"
    ]
    lines += [f"  {r['path']}: {r['why']} ({_bytes(int(r['bytes']))})" for r in files]
    lines += [f"  skipped {s['path']}: {s['why']}" for s in data["skipped"]]
    return lines


def _bytes(count: int) -> str:
    size = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{count} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{count} bytes"


def _parse_time(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _counts(result: dict[str, Any]) -> str:
    return ", ".join(
        f"{value} {name.replace('_', ' ')}"
        for name, value in result.items()
        if isinstance(value, int) and not isinstance(value, bool)
    )


def _status_text(result: dict[str, Any]) -> str:
    local = result["local"]
    lines = [
        f"local  {local['path']}: {local['runs']} run(s), "
        f"{local['models_downloaded']} with their model here"
    ]
    remote = result["remote"]
    if remote is None:
        lines.append("remote: none (set store.remote to share the store)")
    else:
        lines.append(f"remote {remote['url']}: {remote['runs']} run(s)")
        if remote["only_local"]:
            lines.append(f"  not pushed: {', '.join(remote['only_local'])}")
        if remote["only_remote"]:
            lines.append(f"  not pulled: {len(remote['only_remote'])} run(s)")
    for model, where in result["blessed"].items():
        lines.append(
            f"blessed {model}: local {where['local'] or '—'}, remote {where['remote'] or '—'}"
        )
    return "\n".join(lines)
