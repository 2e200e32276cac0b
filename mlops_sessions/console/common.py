"""Helpers shared by step modules: loading the config from CLI args, printing results,
parsing `--param KEY=VALUE` overrides."""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

import yaml

from mlops_sessions.config import Config
from mlops_sessions.errors import StepError
from mlops_sessions.records.store import Store


def load_config(args: argparse.Namespace) -> Config:
    from mlops_sessions.config.loader import load

    return load(args.config, profile=args.profile)


def store_for(config: Config, *, offline: bool = False) -> Store:
    """The project's store; with ``store.remote``, reading through it and writing to it.

    The S3 client is the executor's (records stays stdlib-only); it is built here, where
    steps are allowed to reach executors, and injected into the Store.
    """
    remote = None
    if config.store_remote is not None:
        from mlops_sessions.console.shared_store import remote_for

        spec = config.store_remote
        remote = remote_for(spec.url, spec.endpoint, spec.region)
    return Store(config.store_path, remote, offline=offline)


def tracker_for(config: Config) -> Any:
    """The MLflow mirror of ``tracking.mlflow`` (an
    ``executors.tracking.mlflow_runs.MlflowTracker``), or None. Its failures are warnings on
    stderr: the store is the source of truth."""
    if config.tracking.mlflow is None:
        return None
    from mlops_sessions.executors.tracking.mlflow_runs import MlflowTracker

    def warn(line: str) -> None:
        print(f"warning: {line}", file=sys.stderr, flush=True)

    return MlflowTracker(config.tracking.mlflow, config.project.name, warn=warn)


def add_offline(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--offline",
        action="store_true",
        help="with store.remote: do not contact it; work from the local cache (the verdict "
        "says so). s3:// data inputs are never downloaded: a cached copy is used, a missing "
        "one is an error",
    )


def add_models(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="*", metavar="MODEL", help="models to run (default: all)")


def emit(args: argparse.Namespace, result: Any, text: str) -> None:
    """Print result as JSON with --json, else the human text."""
    if getattr(args, "json", False):
        json.dump(result, sys.stdout, indent=2, sort_keys=True, default=str)
        sys.stdout.write("\n")
    elif text:
        print(text)


_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def parse_params(items: list[str]) -> dict[str, Any]:
    """'KEY=VALUE' strings -> {key: YAML-typed value}."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise StepError(f"--param '{item}' is not KEY=VALUE (for example --param epochs=5)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise StepError(f"--param {key}: '{raw}' is not a YAML value ({exc})") from None
        overrides[key] = _number_or_same(value)
    return overrides


def _number_or_same(value: Any) -> Any:
    """YAML 1.1 reads '1e-3' (no dot) as a string; on a command line it means a float."""
    if isinstance(value, str):
        try:
            return float(value) if _FLOAT.match(value) else value
        except ValueError:
            return value
    return value
