"""Refuse rendered manifests that carry a secret as a literal value.

Secrets reach pods only by reference (``secretKeyRef``): rendered manifests are committed,
diffed and pasted into reviews, so a literal password in them is a leak. After rendering,
every string is checked against shapes that secrets have (cloud access keys, private key
blocks, tokens, URLs with a password), and every literal environment variable against
names that secrets have (``*_PASSWORD``, ``*_TOKEN`` ...). The error names the object and
the field, never the value.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from mlops_sessions.errors import StepError

_SECRET_SHAPES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("an AWS access key id", re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("a private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
    ("a URL with a password", re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@")),
    ("a GitHub token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b")),
    ("a Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    ("a JSON Web Token", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.")),
)
_SECRET_NAME = re.compile(
    r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|CREDENTIAL)",
    re.IGNORECASE,
)


def refuse_literal_secrets(objects: list[dict[str, Any]]) -> None:
    """Raise StepError listing every place a rendered object holds a secret-looking literal."""
    found: list[str] = []
    for obj in objects:
        where = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        for path, value in _strings(obj, ""):
            for what, shape in _SECRET_SHAPES:
                if shape.search(value):
                    found.append(f"{where} {path} holds what looks like {what}")
        for path, name in _literal_env(obj, ""):
            found.append(
                f"{where} {path} sets {name} to a literal value; its name says it is a secret"
            )
    if found:
        raise StepError(
            "refusing to render secrets as literal values:\n  "
            + "\n  ".join(found)
            + "\nput the value in a Kubernetes Secret and reference it: "
            "deploy.secrets: [{env: NAME, secret: <secret name>, key: <key>}] "
            "(for S3 credentials: deploy.model_source.credentials_secret)"
        )


def _strings(node: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _strings(value, f"{path}[{index}]")


def _literal_env(node: Any, path: str) -> Iterator[tuple[str, str]]:
    """(path, name) of every env entry with a literal ``value`` and a secret-like name."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "env" and isinstance(value, list):
                for index, entry in enumerate(value):
                    if (
                        isinstance(entry, dict)
                        and "value" in entry
                        and _SECRET_NAME.search(str(entry.get("name", "")))
                    ):
                        yield f"{path}.env[{index}]", str(entry["name"])
            else:
                yield from _literal_env(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _literal_env(value, f"{path}[{index}]")
