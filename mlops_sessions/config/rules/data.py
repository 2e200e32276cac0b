"""Data inputs: the S3 rules of ``data.<name>.uri`` / ``sha256`` a schema pattern cannot say."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlops_sessions.config import s3uri
from mlops_sessions.config.locate import Locator
from mlops_sessions.errors import Problem


def object_input_problems(doc: dict[str, Any], locator: Locator, root: Path) -> list[Problem]:
    """The S3 rules of ``data.<name>.uri`` / ``sha256`` a schema pattern cannot say."""
    out: list[Problem] = []
    for name, entry in (doc.get("data") or {}).items():
        if not isinstance(entry, dict) or entry.get("uri") is None:
            continue
        for key, rule in (("uri", s3uri.object_uri_problem), ("sha256", s3uri.sha256_problem)):
            value = entry.get(key)
            found = rule(value) if isinstance(value, str) else None
            if found is not None:
                out.append(locator.problem(("data", name, key), *found))
    return out
