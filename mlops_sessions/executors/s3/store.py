"""Object storage for the shared store over the S3 API (boto3): keys and bytes in, facts out.

The records package decides WHAT is written where and in which order (records/remote.py,
the keys of records/keys.py); this adapter only moves bytes, the way ``fetch-model``
(executors/s3/fetch.py) does, and imports no records: it returns its own
:class:`StoredObject` / :class:`ListedObject` and raises its own errors, which
:mod:`mlops_sessions.console.shared_store` hands to the records as a ``Remote``:

* endpoint: ``MLOPS_STORE_ENDPOINT``, else ``store.endpoint`` from mlops.yaml, else AWS S3
  (boto3 also honours ``AWS_ENDPOINT_URL_S3``); credentials only from boto3's default chain
  (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, profiles, instance roles) — never from
  the file;
* retries: one tenacity loop per request with botocore's own retries off; connection
  errors, timeouts, 5xx and throttling (503 SlowDown) are retried with exponential backoff
  and jitter (``MLOPS_STORE_RETRIES``, default 4 retries); then the remote is
  :class:`StoreUnavailable`, a one-line error that names
  the endpoint and ``--offline``;
* integrity: every object is written with its sha256 in the metadata (``x-amz-meta-sha256``)
  and a read whose bytes do not match is refused; a PUT that dies leaves no object (S3
  objects are whole or absent), and multipart uploads that are not completed are invisible;
* conditional writes: ``If-Match`` / ``If-None-Match: *`` on PutObject; a 412 (or a 409
  ConditionalRequestConflict) is :class:`ConditionFailed`,
  never retried here (the caller re-reads and decides).

boto3/botocore/tenacity are imported lazily: the ``fetch`` extra.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from mlops_sessions.errors import StepError
from mlops_sessions.executors.s3.fetch import _client_error, _describe, _transient

ENDPOINT_ENV = "MLOPS_STORE_ENDPOINT"
RETRIES_ENV = "MLOPS_STORE_RETRIES"
DEFAULT_RETRIES = 4
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 60.0
CHUNK = 1024 * 1024
_URL = re.compile(r"^s3://([A-Za-z0-9][A-Za-z0-9._-]{0,62})(?:/(.*))?$")
T = TypeVar("T")


class StoreError(StepError):
    """The object store refused something or returned damaged bytes; names object and fix."""


class StoreUnavailable(StoreError):
    """The object store cannot be reached (or kept failing through the retries)."""


class ConditionFailed(Exception):
    """A conditional write lost: the object changed (If-Match) or exists (If-None-Match)."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    data: bytes
    etag: str


@dataclass(frozen=True)
class ListedObject:
    key: str
    size: int
    modified: str  # ISO-8601


def parse_remote(url: str) -> tuple[str, str]:
    """(bucket, prefix ending in '/' or empty) of s3://bucket/prefix."""
    match = _URL.match(url)
    if match is None:
        raise StoreError(f"store.remote {url!r} is not s3://bucket/prefix")
    prefix = (match.group(2) or "").strip("/")
    return match.group(1), f"{prefix}/" if prefix else ""


class S3ObjectStore:
    """Objects under one bucket and prefix: get, conditional put, upload/download, list,
    delete (keys relative to the prefix)."""

    def __init__(
        self,
        url: str,
        *,
        endpoint: str | None = None,
        region: str | None = None,
        retries: int | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.bucket, self.prefix = parse_remote(url)
        self.endpoint = os.environ.get(ENDPOINT_ENV) or endpoint or None
        self.region = region
        env_retries = os.environ.get(RETRIES_ENV)
        self.retries = retries if retries is not None else int(env_retries or DEFAULT_RETRIES)
        self._client: Any = None

    # --- plumbing ---------------------------------------------------------------------
    @property
    def client(self) -> Any:
        if self._client is None:
            try:
                import boto3.session
                from botocore.config import Config
            except ImportError as exc:
                raise StoreError(
                    "store.remote needs boto3: pip install 'mlops-sessions[fetch]'"
                ) from exc
            config = Config(
                connect_timeout=CONNECT_TIMEOUT_S,
                read_timeout=READ_TIMEOUT_S,
                retries={"total_max_attempts": 1, "mode": "standard"},  # tenacity retries
                response_checksum_validation="when_required",  # our sha256 is the check
                request_checksum_calculation="when_required",
                s3={"addressing_style": "path"} if self.endpoint else None,
            )
            session = boto3.session.Session(region_name=self.region)
            self._client = session.client("s3", endpoint_url=self.endpoint, config=config)
        return self._client

    def _key(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        from tenacity import (
            Retrying,
            retry_if_exception,
            stop_after_attempt,
            wait_exponential,
            wait_random,
        )

        retrying = Retrying(
            stop=stop_after_attempt(self.retries + 1),
            # 0.2 s, 0.4 s, 0.8 s ... up to 5 s, with jitter so CI jobs do not retry in step.
            wait=wait_exponential(multiplier=0.2, max=5.0) + wait_random(0, 0.2),
            retry=retry_if_exception(_transient),
            reraise=True,
        )
        try:
            return retrying(fn)
        except Exception as exc:
            raise self._error(what, exc) from exc

    def _error(self, what: str, error: Exception) -> Exception:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            NoCredentialsError,
            PartialCredentialsError,
        )

        where = f"{self.url} ({self.endpoint or 'AWS S3'})"
        if isinstance(error, (ConditionFailed, StoreError)):
            return error
        if isinstance(error, (NoCredentialsError, PartialCredentialsError)):
            return StoreError(
                f"no credentials for the remote store {where}: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (in CI: from the secret store), or pass --offline"
            )
        if isinstance(error, ClientError):
            code, status = _client_error(error)
            if status == 412 or code in ("ConditionFailed", "ConditionalRequestConflict"):
                return ConditionFailed(what)
            if code == "NoSuchBucket":
                return StoreError(
                    f"no bucket {self.bucket!r} at {self.endpoint or 'AWS S3'} for "
                    f"store.remote {self.url}; create it or fix store.remote"
                )
            if status == 403 or code in ("AccessDenied", "InvalidAccessKeyId"):
                return StoreError(
                    f"the remote store {where} refused the credentials ({what}: HTTP "
                    f"{status} {code}); check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
                )
            if not _transient(error):
                return StoreError(f"the remote store {where} refused {what}: HTTP {status} {code}")
        if _transient(error) or isinstance(error, BotoCoreError):
            return StoreUnavailable(
                f"cannot reach the remote store {where} ({what}: {_describe(error)}, "
                f"{self.retries + 1} attempts); check {ENDPOINT_ENV} / store.endpoint and that "
                "the server is up, or pass --offline to work from the local cache"
            )
        return error

    # --- the Remote protocol ------------------------------------------------------------
    def get(self, key: str) -> StoredObject | None:
        def once() -> StoredObject | None:
            from botocore.exceptions import ClientError

            try:
                response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            except ClientError as exc:
                code, status = _client_error(exc)
                if code in ("NoSuchKey", "404") or status == 404:
                    return None
                raise
            body = response["Body"]
            try:
                data = body.read()
            finally:
                body.close()
            self._check(key, data, response)
            return StoredObject(key, data, str(response.get("ETag", "")))

        return self._call(f"GET {key}", once)

    def put(
        self, key: str, data: bytes, *, if_match: str | None = None, if_none_match: bool = False
    ) -> str:
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": self._key(key),
            "Body": data,
            "Metadata": {"sha256": hashlib.sha256(data).hexdigest()},
        }
        if if_match is not None:
            params["IfMatch"] = if_match
        if if_none_match:
            params["IfNoneMatch"] = "*"

        def once() -> str:
            return str(self.client.put_object(**params).get("ETag", ""))

        return self._call(f"PUT {key}", once)

    def upload_file(self, key: str, path: Path, sha256: str) -> None:
        def once() -> None:
            # upload_file switches to multipart for large models; an upload that does not
            # complete leaves no object a reader can see.
            self.client.upload_file(
                str(path),
                self.bucket,
                self._key(key),
                ExtraArgs={"Metadata": {"sha256": sha256}},
            )

        self._call(f"PUT {key}", once)

    def download_file(self, key: str, dest: Path) -> int:
        def once() -> int:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            digest = hashlib.sha256()
            size = 0
            body = response["Body"]
            try:
                with open(dest, "wb") as handle:
                    for chunk in body.iter_chunks(CHUNK):
                        handle.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
            finally:
                body.close()
            self._check_digest(key, digest.hexdigest(), response)
            return size

        return self._call(f"GET {key}", once)

    def list(self, prefix: str) -> list[ListedObject]:
        def once() -> list[ListedObject]:
            out = []
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
                for item in page.get("Contents", []):
                    modified = item.get("LastModified")
                    out.append(
                        ListedObject(
                            str(item["Key"])[len(self.prefix) :],
                            int(item.get("Size", 0)),
                            modified.isoformat() if modified is not None else "",
                        )
                    )
            return out

        return self._call(f"LIST {prefix or '/'}", once)

    def delete(self, keys: Iterable[str]) -> None:
        batch = [{"Key": self._key(k)} for k in keys]
        for start in range(0, len(batch), 1000):
            chunk = batch[start : start + 1000]

            def once(chunk: list[dict[str, str]] = chunk) -> None:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": chunk})

            self._call("DELETE", once)

    # --- integrity ------------------------------------------------------------------------
    def _check(self, key: str, data: bytes, response: dict[str, Any]) -> None:
        self._check_digest(key, hashlib.sha256(data).hexdigest(), response)

    def _check_digest(self, key: str, digest: str, response: dict[str, Any]) -> None:
        expected = (response.get("Metadata") or {}).get("sha256")
        if expected and expected != digest:
            raise StoreError(
                f"{self.url}/{key} does not match the sha256 it was written with (expected "
                f"{expected[:12]}, got {digest[:12]}): a damaged or interrupted upload; "
                "nothing was trusted. Re-run the step that writes it"
            )


def objects_for(url: str, endpoint: str | None = None, region: str | None = None) -> S3ObjectStore:
    return S3ObjectStore(url, endpoint=endpoint, region=region)
