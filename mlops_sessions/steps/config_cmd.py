"""``mlops config``: print the effective config — what every step actually sees."""

from __future__ import annotations

import argparse
import json

import yaml

from mlops_sessions.console.common import load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def _plain(value: object) -> object:
    if isinstance(value, dict) or hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def run(args: argparse.Namespace) -> int:
    config = load_config(args)
    document = _plain(config.document)
    if args.json:
        print(json.dumps(document, indent=2, sort_keys=True))
    else:
        print(yaml.safe_dump(document, sort_keys=False), end="")
    return 0
