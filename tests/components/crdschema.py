"""A published CRD's openAPIV3Schema made strict for tests: every object that lists its
``properties`` refuses the ones it does not list, so a misspelt or invented field in a
rendered object fails validation instead of being silently pruned, as a structural schema
on a real API server would prune it."""

from __future__ import annotations

from typing import Any


def strict(node: Any) -> Any:
    """A copy of the schema node with ``additionalProperties: false`` added wherever an
    object lists ``properties`` and says nothing about others."""
    if isinstance(node, dict):
        out = {key: strict(value) for key, value in node.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [strict(value) for value in node]
    return node
