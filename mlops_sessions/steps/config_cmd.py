"""``mlops config``: print the effective config — what every step actually sees."""

from __future__ import annotations

import argparse
import json

import yaml

from mlops_sessions.config.model import plain
from mlops_sessions.console.common import load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    config = load_config(args)
    document = plain(config.document)
    if args.json:
        print(json.dumps(document, indent=2, sort_keys=True))
    else:
        print(yaml.safe_dump(document, sort_keys=False), end="")
    return 0
