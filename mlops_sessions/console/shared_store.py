"""The shared store's ``Remote`` (records.remote) over the S3 object store adapter.

The adapter (:mod:`mlops_sessions.executors.s3.store`) moves keys and bytes and imports no
records; the records layer (:mod:`mlops_sessions.records.remote`) decides what goes where
and knows only its :class:`~mlops_sessions.records.remote.Remote` protocol. This module
joins the two where a command builds its store (:func:`mlops_sessions.console.common.store_for`,
and the training pod): the adapter's objects become the records' objects, its errors the
records' errors, so ``store.remote`` failures read the same everywhere.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path

from mlops_sessions.executors.s3.store import (
    ConditionFailed,
    S3ObjectStore,
    StoreError,
    StoreUnavailable,
    objects_for,
)
from mlops_sessions.records.remote import (
    Listed,
    PreconditionFailed,
    RemoteError,
    RemoteObject,
    RemoteUnavailable,
)


@contextlib.contextmanager
def _as_records_errors() -> Iterator[None]:
    try:
        yield
    except ConditionFailed as exc:
        raise PreconditionFailed(str(exc)) from None
    except StoreUnavailable as exc:
        raise RemoteUnavailable(str(exc)) from None
    except StoreError as exc:
        raise RemoteError(str(exc)) from None


class SharedRemote:
    """records.remote.Remote over an S3 object store."""

    def __init__(self, objects: S3ObjectStore) -> None:
        self.objects = objects
        self.url = objects.url

    def get(self, key: str) -> RemoteObject | None:
        with _as_records_errors():
            found = self.objects.get(key)
        return None if found is None else RemoteObject(found.key, found.data, found.etag)

    def put(
        self, key: str, data: bytes, *, if_match: str | None = None, if_none_match: bool = False
    ) -> str:
        with _as_records_errors():
            return self.objects.put(key, data, if_match=if_match, if_none_match=if_none_match)

    def upload_file(self, key: str, path: Path, sha256: str) -> None:
        with _as_records_errors():
            self.objects.upload_file(key, path, sha256)

    def download_file(self, key: str, dest: Path) -> int:
        with _as_records_errors():
            return self.objects.download_file(key, dest)

    def list(self, prefix: str) -> list[Listed]:
        with _as_records_errors():
            found = self.objects.list(prefix)
        return [Listed(item.key, item.size, item.modified) for item in found]

    def delete(self, keys: Iterable[str]) -> None:
        with _as_records_errors():
            self.objects.delete(keys)


def remote_for(url: str, endpoint: str | None = None, region: str | None = None) -> SharedRemote:
    """The shared store at url (``store.remote``), as the records read and write it."""
    return SharedRemote(objects_for(url, endpoint, region))
