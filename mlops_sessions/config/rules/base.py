"""The ground every rule module stands on: a rule on the document (:data:`Check`) returns
located problems, a rule on the typed Config returns :class:`Finding` s; :func:`require` is
how a planner enforces typed rules on a Config that did not come through ``validate``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops_sessions.config.locate import Locator, dotted, suggest
from mlops_sessions.errors import Problem, StepError

Check = Callable[[dict[str, Any], Locator, Path], list[Problem]]


Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Finding:
    """One broken rule: where (JSON path in the effective document), what, and the fix."""

    path: Path_
    message: str
    hint: str = ""

    def text(self) -> str:
        return f"{dotted(self.path)}: {self.message}" + (f"; {self.hint}" if self.hint else "")


def require(findings: Iterable[Finding]) -> None:
    """Raise StepError naming every finding: how the planners enforce the shared rules."""
    found = list(findings)
    if found:
        raise StepError(
            "\n".join(f.text() for f in found)
            + ("\n" if len(found) > 1 else " ")
            + "(`mlops validate` reports this with its line in mlops.yaml)"
        )


def models_of(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return list(doc.get("models", {}).items())


def name_hint(word: str, names: list[str], kind: str, section: str) -> str:
    return suggest(word, names) or (
        f"declared {kind}: {', '.join(names)}" if names else f"declare it under '{section}'"
    )


def trains_in_image(train: dict[str, Any]) -> bool:
    """Training runs in the train image: backend container or kubernetes (or container: true)."""
    backend = train.get("backend")
    return backend in ("container", "kubernetes") or (
        backend is None and bool(train.get("container"))
    )
