"""What the planners know about the project's git checkout, as facts passed in.

Planning runs no git: the caller (a step or driver) reads git through ``gitinfo`` and hands
the planners its answers. These protocols say what a planner needs; ``gitinfo.GitState``
is a :class:`GitFacts`, and the ``gitinfo`` module itself is a :class:`ProjectFiles`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class GitFacts(Protocol):
    """The checkout's state: HEAD's commit, whether tracked files changed, the branch."""

    @property
    def commit(self) -> str | None: ...

    @property
    def dirty(self) -> bool | None: ...

    @property
    def branch(self) -> str | None: ...

    def as_dict(self) -> dict[str, object]: ...


@dataclass(frozen=True)
class UnknownGit:
    """Git facts nobody read (or no checkout): every one unknown."""

    commit: str | None = None
    dirty: bool | None = None
    branch: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {"commit": self.commit, "dirty": self.dirty, "branch": self.branch}


class ProjectFiles(Protocol):
    """Git's view of the project's files, asked for while an image is planned."""

    def list_files(self, directory: Path) -> list[Path] | None:
        """The files git would count under directory; None: not a checkout (walk it)."""

    def untracked(self, root: Path, paths: list[Path]) -> list[Path]:
        """Those of paths (relative to root) that git does not track."""
