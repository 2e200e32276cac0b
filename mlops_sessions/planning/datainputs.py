"""Resolve the ``data:`` entries of mlops.yaml to files on this machine.

An entry is a ``path`` relative to mlops.yaml, a ``resource`` shipped inside an installed
``package`` (scikit-learn's bundled datasets, a team's data wheel), or an object in
S3-compatible storage (``uri: s3://bucket/key`` with its ``sha256``). Packages are located
with :func:`importlib.util.find_spec`, which finds a top-level package without running its
``__init__`` — planning stays cheap and imports nothing heavy.

An object input resolves to its place in the store's content-addressed cache, whether or
not it is there yet: planning never downloads. The cache's layout is the records' (``records
.data``), so the caller passes it in as an :data:`ObjectPlace`
(:func:`mlops_sessions.drivers.datainputs.places`). :func:`object_inputs` says which
objects a step must fetch first (:mod:`mlops_sessions.drivers.datainputs`); the declared
sha256 is the input's hash, so the run's key is known without the object.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from mlops_sessions.config import Config, DataInput
from mlops_sessions.errors import StepError
from mlops_sessions.hashing import FileHashCache

# Where the store's data cache keeps the checked copy of an object: (sha256, uri) -> path.
ObjectPlace = Callable[[str, str], Path]


@dataclass(frozen=True)
class ObjectInput:
    """An ``s3://`` data input: where it comes from, what it must hash to, where it goes."""

    name: str
    uri: str
    sha256: str
    path: Path  # its copy in the store's cache (the path training reads)
    cached: bool  # the cache holds a copy with this sha256: nothing to download
    # Where the object store is: store.remote's endpoint and region (MLOPS_STORE_ENDPOINT
    # overrides the endpoint when the executor runs, as it does for the store).
    endpoint: str | None = None
    region: str | None = None

    def describe(self) -> dict[str, object]:
        return {
            "uri": self.uri,
            "sha256": self.sha256,
            "path": str(self.path),
            "cached": self.cached,
        }


def object_inputs(
    config: Config,
    names: Iterable[str],
    place: ObjectPlace | None,
    cache: FileHashCache | None = None,
) -> dict[str, ObjectInput]:
    """The ``s3://`` entries among names, each saying whether its cached copy is usable.

    A copy is usable when its sha256 (through the size/mtime memo of cache) is the declared
    one; anything else there (a damaged or replaced file) is fetched again.
    """
    memo = cache if cache is not None else FileHashCache(None)
    remote = config.store_remote
    found: dict[str, ObjectInput] = {}
    for name in names:
        entry = config.data.get(name)
        if entry is None or entry.uri is None or entry.sha256 is None:
            continue
        path = object_path(name, entry, place)
        found[name] = ObjectInput(
            name=name,
            uri=entry.uri,
            sha256=entry.sha256,
            path=path,
            cached=path.is_file() and memo.file(path) == entry.sha256,
            endpoint=remote.endpoint if remote is not None else None,
            region=remote.region if remote is not None else None,
        )
    return found


def object_path(name: str, entry: DataInput, place: ObjectPlace | None) -> Path:
    """The place of an ``s3://`` entry's checked copy in the project's store."""
    assert entry.uri is not None and entry.sha256 is not None
    if place is None:
        # A caller's mistake, not the user's: steps plan through drivers, which pass it.
        raise ValueError(f"data input '{name}' is in object storage: pass the cache's places")
    return place(entry.sha256, entry.uri)


def offline_refusal(obj: ObjectInput, command: str) -> StepError:
    """The one-line error of an ``s3://`` input that is not cached when --offline forbids
    downloading it."""
    return StepError(
        f"data input '{obj.name}': {obj.uri} (sha256 {obj.sha256[:12]}…) is not in the local "
        f"cache ({obj.path}) and --offline does not download; run `mlops {command}` once "
        f"without --offline to fetch it, or place the object's file at that path"
    )


def declared_hashes(config: Config, names: Iterable[str]) -> Mapping[str, str]:
    """The declared sha256 of each ``s3://`` entry among names (what the key covers)."""
    return {
        name: entry.sha256
        for name in names
        if (entry := config.data.get(name)) is not None and entry.sha256 is not None
    }


def resolve_inputs(
    config: Config, names: Iterable[str], place: ObjectPlace | None = None
) -> dict[str, Path]:
    """Absolute path of every named data entry; a missing one raises StepError.

    place: the data cache's layout, needed when an entry is an ``s3://`` object."""
    resolved: dict[str, Path] = {}
    for name in names:
        entry = config.data.get(name)
        if entry is None:
            declared = ", ".join(config.data) or "none"
            raise StepError(
                f"data input '{name}' is not declared under 'data' in {config.source_file} "
                f"(declared: {declared}); add it there or remove it from train.inputs"
            )
        resolved[name] = resolve_input(config, name, entry, place)
    return resolved


def resolve_input(
    config: Config, name: str, entry: DataInput, place: ObjectPlace | None = None
) -> Path:
    """The file of entry here; an ``s3://`` entry's is its place in the cache (maybe not
    fetched yet: see :func:`object_inputs`)."""
    if entry.uri is not None and entry.sha256 is not None:
        return object_path(name, entry, place)
    if entry.path is not None:
        path = config.resolve(entry.path)
        if not path.exists():
            raise StepError(
                f"data input '{name}': {path} does not exist; create it, fetch it, or fix "
                f"data.{name}.path in {config.source_file} (paths are relative to that file)"
            )
        return path
    if entry.package is None or entry.resource is None:
        raise StepError(
            f"data input '{name}' needs 'path', 'package' + 'resource' or 'uri' + 'sha256'"
        )
    return _package_resource(name, entry.package, entry.resource)


def package_resource(name: str, package: str, resource: str) -> Path:
    """The file of a ``package`` + ``resource`` data entry in this environment (a training
    pod resolves its inputs with it, inside the train image)."""
    return _package_resource(name, package, resource)


def _package_resource(name: str, package: str, resource: str) -> Path:
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError) as exc:
        spec = None
        reason = f" ({exc})"
    else:
        reason = ""
    if spec is None:
        raise StepError(
            f"data input '{name}': package '{package}' is not installed in this environment"
            f"{reason}; add it to the project's requirements (python.requirements) and "
            "re-create the session"
        )
    roots = [Path(p) for p in (spec.submodule_search_locations or [])]
    if not roots and spec.origin:
        roots = [Path(spec.origin).parent]
    for root in roots:
        candidate = (root / resource).resolve()
        if candidate.exists():
            return candidate
    where = ", ".join(str(r) for r in roots) or "an unknown location"
    raise StepError(
        f"data input '{name}': package '{package}' (at {where}) has no resource '{resource}'; "
        f"check data.{name}.resource or the installed version of '{package}'"
    )
