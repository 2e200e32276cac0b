"""What git says about the project: commit, dirtiness, tracked files. Pure reads.

Used for cache keys, lineage and image tags. Works (returning None/unknown) outside a git
checkout, so a tarball of a project still trains.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class GitState:
    commit: str | None
    dirty: bool | None
    branch: str | None

    def as_dict(self) -> dict[str, object]:
        return {"commit": self.commit, "dirty": self.dirty, "branch": self.branch}


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def state(root: Path) -> GitState:
    commit = _git(root, "rev-parse", "HEAD")
    if commit is None:
        return GitState(None, None, None)
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    branch = _git(root, "rev-parse", "--abbrev-ref", "HEAD")
    return GitState(
        commit.strip(), bool(status and status.strip()), branch.strip() if branch else None
    )


def untracked(root: Path, paths: list[Path]) -> list[Path]:
    """Those of paths that git does not track (and does not ignore): a clean status does not
    cover them, yet a build that copies them is not the commit alone."""
    if not paths:
        return []
    out = _git(root, "ls-files", "-z", "--others", "--exclude-standard", "--", *map(str, paths))
    if not out:
        return []
    return sorted(root / name for name in out.split("\0") if name)


def resolve(root: Path, ref: str) -> str | None:
    """Full commit id for a ref (branch, tag, short sha), or None."""
    out = _git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    return out.strip() if out else None


def list_files(directory: Path) -> list[Path] | None:
    """Files git would consider part of directory (tracked + untracked, not ignored).

    None when directory is not inside a git checkout, or is itself git-ignored (git would
    list nothing there, yet every file counts); callers then walk the tree.
    """
    if _git(directory, "check-ignore", "-q", ".") is not None:
        return None
    out = _git(directory, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", ".")
    if out is None:
        return None
    return sorted(
        {directory / name for name in out.split("\0") if name and (directory / name).is_file()}
    )


def head_tags(root: Path) -> list[str]:
    """The tags that point at HEAD (none outside a checkout)."""
    out = _git(root, "tag", "--points-at", "HEAD")
    return out.split() if out else []


def origin_url(root: Path) -> str | None:
    """The ``origin`` remote's URL, as configured (it may carry credentials)."""
    return _git(root, "config", "--get", "remote.origin.url") or None
