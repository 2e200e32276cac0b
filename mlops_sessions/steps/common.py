"""Helpers shared by step modules: loading the config from CLI args, printing results."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from mlops_sessions.config import Config
from mlops_sessions.records.store import Store


def load_config(args: argparse.Namespace) -> Config:
    from mlops_sessions.config.loader import load

    return load(args.config, profile=args.profile)


def store_for(config: Config) -> Store:
    return Store(config.store_path)


def add_models(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="*", metavar="MODEL", help="models to run (default: all)")


def emit(args: argparse.Namespace, result: Any, text: str) -> None:
    """Print result as JSON with --json, else the human text."""
    if getattr(args, "json", False):
        json.dump(result, sys.stdout, indent=2, sort_keys=True, default=str)
        sys.stdout.write("\n")
    elif text:
        print(text)
