"""``mlops schema``: print the JSON Schema (for editors, CI linters and docs)."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    from mlops_sessions.config.loader import schema

    print(json.dumps(schema(), indent=2))
    return 0
