"""Make the ``s3://`` data inputs of a run present in the store's content-addressed cache.

The plan lists each object with the place of its checked copy and whether it is there
(:func:`mlops_sessions.planning.datainputs.object_inputs`). For each missing one this
driver takes the object's lock in the cache (``data/.<sha256>.lock``, the one
``mlops store gc`` respects), looks again — another ``mlops train`` may have fetched it
meanwhile — and only then asks the S3 executor to download it. Used by ``mlops train``
(local and container runs), ``mlops evaluate`` and a Kubernetes training pod (into its
scratch directory).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from pathlib import Path

from mlops_sessions.config import Config
from mlops_sessions.errors import StepError
from mlops_sessions.executors.s3 import data as s3_data
from mlops_sessions.executors.s3.fetch import FetchResult
from mlops_sessions.planning.datainputs import ObjectInput, ObjectPlace
from mlops_sessions.records import data as data_records
from mlops_sessions.records.io import lock_path, locked


def places(config: Config) -> ObjectPlace:
    """The data cache's layout in config's store, for the planners (``records.data``)."""
    root = config.store_path
    return lambda sha256, uri: data_records.object_file(root, sha256, uri)


def declared_objects(config: Config) -> set[tuple[str, str]]:
    """(sha256, file name) of every ``s3://`` entry of config: the cached copies it uses
    (what ``mlops store gc`` keeps in ``data/``)."""
    return {
        (entry.sha256, data_records.file_name(entry.uri))
        for entry in config.data.values()
        if entry.uri is not None and entry.sha256 is not None
    }


def ensure(
    objects: Iterable[ObjectInput],
    *,
    log: Callable[[str], None] = lambda _: None,
    in_pod: bool = False,
) -> list[FetchResult]:
    """Make every object's checked copy present (cached ones are not touched at all)."""
    pending = [obj for obj in objects if not obj.cached]
    if pending:
        s3_data.require_boto3()
    return [
        fetch_object(
            obj.name,
            obj.uri,
            obj.sha256,
            obj.path,
            configured_endpoint=obj.endpoint,
            region=obj.region,
            log=log,
            in_pod=in_pod,
        )
        for obj in pending
    ]


def fetch_object(
    name: str,
    uri: str,
    sha256: str,
    dest: Path,
    *,
    configured_endpoint: str | None = None,
    region: str | None = None,
    log: Callable[[str], None] = lambda _: None,
    in_pod: bool = False,
) -> FetchResult:
    """Make dest the checked copy of uri (sha256), downloading only when it is not already."""
    try:
        dest.parent.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StepError(f"cannot create {dest.parent.parent}: {exc.strerror or exc}") from None
    # One lock per object: two trainings that need it download it once, and neither
    # removes the other's temp file as a leftover.
    with locked(lock_path(dest.parent)):
        there = s3_data.present(name, uri, sha256, dest)
        if there is not None:
            log(f"data input '{name}': {uri} is already in {dest}")
            return there
        try:
            return s3_data.download(
                name,
                uri,
                sha256,
                dest,
                configured_endpoint=configured_endpoint,
                region=region,
                log=log,
                in_pod=in_pod,
            )
        finally:
            with contextlib.suppress(OSError):
                dest.parent.rmdir()  # only when empty: nothing was kept
