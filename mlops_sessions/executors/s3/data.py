"""Download ``s3://`` data inputs, sha256-checked, atomically.

The planner (:func:`mlops_sessions.planning.datainputs.object_inputs`) says where each
object's copy goes — ``.mlops/data/<sha256>/<file name>`` (:mod:`mlops_sessions.records.data`)
— and whether a copy with the declared sha256 is already there; the driver
(:mod:`mlops_sessions.drivers.datainputs`) takes the object's lock and asks this executor
for the missing ones, for ``mlops train`` (local and container runs), ``mlops evaluate``
and, into its scratch directory, a Kubernetes training pod:

* :func:`present`: a copy whose sha256 is the declared one is reused without contacting
  S3 (checked again under the lock, since another ``mlops train`` may have fetched it);
* otherwise :func:`download` fetches it with :func:`mlops_sessions.executors.s3.fetch.fetch_file`
  — the retries, resume and one-line errors of ``fetch-model`` — into a temp file beside
  the copy, compares the sha256 and only then renames it into place. A mismatch or an error
  keeps nothing: no copy, no temp file, no empty directory;
* endpoint, region and credentials the way ``store.remote`` gets them
  (:mod:`mlops_sessions.executors.s3.store`): ``MLOPS_STORE_ENDPOINT``, else
  ``store.endpoint``, else AWS S3 (boto3 also honours ``AWS_ENDPOINT_URL_S3``);
  ``store.region``; boto3's credential chain (``AWS_ACCESS_KEY_ID`` ...). Retries:
  ``MLOPS_STORE_RETRIES`` (default 4), each download bounded by :data:`TIMEOUT_S`.

boto3/botocore/tenacity are imported lazily: the ``fetch`` extra.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from mlops_sessions.errors import StepError
from mlops_sessions.executors.s3.fetch import FetchRequest, FetchResult, Settings, fetch_file
from mlops_sessions.executors.s3.store import DEFAULT_RETRIES, ENDPOINT_ENV, RETRIES_ENV
from mlops_sessions.hashing import sha256_file

TIMEOUT_ENV = "MLOPS_DATA_TIMEOUT"  # seconds one object's download may take
TIMEOUT_S = 3600.0


def endpoint(configured: str | None) -> str | None:
    """The S3 endpoint URL: ``MLOPS_STORE_ENDPOINT``, else the configured one, else AWS."""
    return os.environ.get(ENDPOINT_ENV) or configured or None


def settings(name: str, *, in_pod: bool = False) -> Settings:
    """What the errors of data input name tell the user to change."""
    return Settings(
        uri=f"data.{name}.uri",
        sha256=f"data.{name}.sha256",
        endpoint=f"{ENDPOINT_ENV} / store.endpoint",
        credentials=(
            " (keys of the Secret named by train.credentials_secret)"
            if in_pod
            else " in the environment (as for store.remote), or configure a boto3 profile"
        ),
        refused_credentials=(" (the Secret named by train.credentials_secret)" if in_pod else ""),
        timeout=f"Raise {TIMEOUT_ENV} (seconds) for a large object or a slow link",
        retries=RETRIES_ENV,
        missing_object="upload the object there",
    )


def require_boto3() -> None:
    """Refuse early, with the fix, where the 'fetch' extra is not installed."""
    try:
        import boto3  # noqa: F401
        import tenacity  # noqa: F401
    except ImportError as exc:
        raise StepError(
            f"s3:// data inputs need boto3 ({exc.name} is missing): "
            "pip install 'mlops-sessions[fetch]'"
        ) from None


def download(
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
    """Download uri to dest through a temp file beside it, checked against sha256.

    The caller holds the object's lock and has seen no checked copy at dest
    (:mod:`mlops_sessions.drivers.datainputs`). A mismatch or an error keeps nothing.
    """
    request = FetchRequest(
        uri=uri,
        sha256=sha256,
        dest=dest,
        timeout=_timeout(),
        retries=_retries(),
        endpoint=endpoint(configured_endpoint),
        region=region,
        settings=settings(name, in_pod=in_pod),
    )
    log(f"data input '{name}': fetching {uri} (sha256 {sha256[:12]}…)")
    try:
        return fetch_file(request, log=log)
    except StepError as exc:
        raise type(exc)(f"data input '{name}': {exc}") from None


def present(name: str, uri: str, sha256: str, dest: Path) -> FetchResult | None:
    """The checked copy already at dest (its sha256 is the declared one), else None."""
    if dest.is_file() and sha256_file(dest) == sha256:
        return FetchResult(uri, dest, sha256, False, "file", dest.stat().st_size, 0, 0.0)
    return None


def _retries() -> int:
    raw = os.environ.get(RETRIES_ENV)
    try:
        return max(0, int(raw)) if raw else DEFAULT_RETRIES
    except ValueError:
        raise StepError(f"{RETRIES_ENV}={raw!r} is not a number of retries") from None


def _timeout() -> float:
    raw = os.environ.get(TIMEOUT_ENV)
    try:
        value = float(raw) if raw else TIMEOUT_S
    except ValueError:
        value = -1.0
    if value <= 0:
        raise StepError(f"{TIMEOUT_ENV}={raw!r} must be a number of seconds above zero")
    return value
