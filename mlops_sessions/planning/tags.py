"""Image tags from the config's tag policy: git commit, semver, date or a template.

Pure: the facts (commit, dirtiness, the version tag on HEAD, the date, the input digest)
are read from git by the caller (``gitinfo``) and passed in, so the policy is
unit-tested without a repository. Two rules hold for every policy: the tag ``latest`` is
never produced (it is not reproducible), and a build from a dirty tree either refuses or
carries a suffix made from the build's input digest, so two different dirty trees never
share a tag.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from mlops_sessions.config import TagPolicy
from mlops_sessions.errors import StepError
from mlops_sessions.planning.sourcefacts import GitFacts

# Docker's grammar for a tag: 128 characters of word characters, '.' and '-', not starting
# with '.' or '-'.
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_SEMVER = re.compile(
    r"^v?(?P<version>(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?)$"
)
DIRTY_SUFFIX_LEN = 12


@dataclass(frozen=True)
class TagFacts:
    """What a tag can be made of; gathered once per build."""

    commit: str | None
    dirty: bool | None
    version: str | None  # a semver git tag on HEAD, without the leading 'v'
    date: datetime
    source: str | None = None  # the origin remote's URL, for org.opencontainers.image.source
    # Untracked files the build copies: the commit alone does not describe the image.
    untracked: tuple[str, ...] = ()


def tag_facts(
    state: GitFacts,
    head_tags: list[str],
    origin_url: str | None,
    now: datetime,
) -> TagFacts:
    """The facts for a build, from what git said (``gitinfo``: the caller reads git).

    head_tags are the tags pointing at HEAD: the highest semver among them is the version.
    """
    # A remote URL may carry credentials (https://user:token@host/...): never label those.
    source = re.sub(r"//[^/@]*@", "//", origin_url.strip()) if origin_url else None
    versions = [m.group("version") for m in map(_SEMVER.match, head_tags) if m]
    # Several version tags on one commit: the highest release wins.
    version = max(versions, key=_version_key) if versions else None
    return TagFacts(state.commit, state.dirty, version, now, source or None)


def _version_key(version: str) -> tuple[tuple[int, ...], int, str]:
    core, _, pre = version.partition("-")
    # A release sorts after its pre-releases (1.0.0 > 1.0.0-rc1).
    return tuple(int(p) for p in core.split(".")), 0 if pre else 1, pre


def make_tag(
    policy: TagPolicy,
    facts: TagFacts,
    input_digest: str,
    *,
    model: str = "",
    local: bool = False,
) -> str:
    """The tag for one build under policy; raises StepError when the policy cannot be met.

    local: the image stays on this engine (a train image that `mlops train` builds to run
    in); a dirty tree then always gets the digest suffix, since 'refuse' guards what ships.
    """
    short = facts.commit[:12] if facts.commit else None
    date = facts.date.strftime("%Y%m%d")
    if policy.policy == "git-commit":
        if facts.commit is None:
            raise StepError(
                "tag policy 'git-commit' needs a git checkout, but this project has no commit; "
                "run `git init && git commit`, or set images.<name>.tag.policy to 'date'"
            )
        tag = facts.commit
    elif policy.policy == "semver":
        if facts.version is None:
            raise StepError(
                "tag policy 'semver' needs a version tag on HEAD (e.g. `git tag v1.2.3`); "
                "none points at the current commit"
            )
        tag = facts.version
    elif policy.policy == "date":
        tag = f"{facts.date.strftime('%Y%m%d-%H%M%S')}-{short or input_digest[:12]}"
    else:
        tag = _fill_template(policy.template or "", facts, model, short, date)
    if facts.dirty or facts.untracked:
        if policy.dirty == "refuse" and not local:
            shown = ", ".join(facts.untracked[:5]) + (" ..." if len(facts.untracked) > 5 else "")
            what = (
                "uncommitted changes"
                if facts.dirty
                else f"untracked files that go into the image ({shown})"
            )
            raise StepError(
                f"the working tree has {what} and images.<name>.tag.dirty is 'refuse'; commit "
                "(or stash, or git-ignore) them, or set tag.dirty: digest-suffix"
            )
        tag = dirty_tag(tag, input_digest)
    return check_tag(tag)


# A dirty-tree build's tag: '<tag>-dirty-<first DIRTY_SUFFIX_LEN hex of the input digest>'.
_DIRTY_SUFFIX = re.compile(rf"-dirty-[0-9a-f]{{{DIRTY_SUFFIX_LEN}}}$")


def dirty_tag(tag: str, input_digest: str) -> str:
    """The tag of a build from a dirty tree: the one place that writes the format."""
    return f"{tag}-dirty-{input_digest[:DIRTY_SUFFIX_LEN]}"


def is_dirty_tag(tag: str) -> bool:
    """Whether tag was written by :func:`dirty_tag` (the one place that reads the format)."""
    return _DIRTY_SUFFIX.search(tag) is not None


def _fill_template(template: str, facts: TagFacts, model: str, short: str | None, date: str) -> str:
    values = {
        "commit": facts.commit,
        "short": short,
        "date": date,
        "version": facts.version,
        "model": model,
    }
    missing = sorted(
        name for name in re.findall(r"\{(\w+)\}", template) if values.get(name) is None
    )
    unknown = [name for name in missing if name not in values]
    if unknown:
        raise StepError(
            f"tag template '{template}' uses unknown placeholder(s) {', '.join(unknown)}; "
            "use {commit}, {short}, {date}, {version} or {model}"
        )
    if missing:
        raise StepError(
            f"tag template '{template}' needs {', '.join(missing)}, which this checkout "
            "does not have (no commit, or no version tag on HEAD); commit / `git tag vX.Y.Z`, "
            "or change the template"
        )
    return re.sub(r"\{(\w+)\}", lambda m: str(values[m.group(1)]), template)


def check_tag(tag: str) -> str:
    """Return tag if Docker accepts it and it is not 'latest'; else raise StepError."""
    if tag.lower() == "latest":
        raise StepError("the tag 'latest' is never produced: it is not reproducible")
    if not _TAG.match(tag):
        raise StepError(
            f"'{tag}' is not a valid image tag (letters, digits, '_', '.', '-'; at most 128 "
            "characters, not starting with '.' or '-'); change the tag template"
        )
    return tag
