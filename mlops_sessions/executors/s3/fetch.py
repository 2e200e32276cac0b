"""Download a model from S3-compatible object storage into a directory, checked and atomic.

The executor behind ``mlops fetch-model`` (the init container that render emits for
``deploy.model_source.type: s3``). In order:

1. if ``dest`` holds a marker file with the same sha256, do nothing (a restarted init
   container, or a re-run on a laptop, downloads nothing);
2. stream the object with boto3 into a temp file beside ``dest`` (same filesystem, so the
   final rename is atomic), hashing as it goes; a transfer that breaks half-way resumes
   with a ranged GET instead of starting over;
3. compare the sha256 before anything is unpacked: on a mismatch the temp file is removed
   and ``dest`` is untouched;
4. unpack a tar archive (any compression tarfile reads) into a staging directory, after
   refusing members with absolute paths, ``..``, links that leave the archive or device
   files, and with tarfile's ``data`` filter as a second line of defence; any other object
   is kept as one file named like the key;
5. write the marker into the staging directory and rename it onto ``dest``.

Retries: tenacity (already a dependency of the deploy extra) drives one retry loop around
each GET with botocore's own retries switched off, because botocore only retries the
request: a body that breaks mid-stream would otherwise be out of its reach. Connection
errors, timeouts, 5xx and throttling answers are retried with exponential backoff and
jitter; ``stop_before_delay`` keeps the last sleep inside ``--timeout``. Everything else
(missing credentials, no such bucket or key, access denied) fails at once.

:func:`fetch_file` is the same download for one file without unpacking (the ``s3://``
data inputs of training, :mod:`mlops_sessions.executors.s3.data`): temp file beside
``dest``, sha256 compared, then renamed onto ``dest``. :class:`Settings` names the keys an
error message asks the user to change, so each caller's errors point at its own config.

boto3/botocore are imported lazily: they are the ``fetch`` extra.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from mlops_sessions.errors import StepError

MARKER = ".mlops-fetch.json"
CHUNK = 1024 * 1024
# Per-attempt socket timeouts; each is further capped by the time left before --timeout.
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 30.0
BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 10.0
BACKOFF_JITTER_S = 0.5
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
# S3 error codes that mean "try again later" even when the status is not 5xx.
_THROTTLING = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestLimitExceeded",
    "TooManyRequests",
    "RequestThrottled",
    "InternalError",
    "ServiceUnavailable",
}
_BAD_CREDENTIALS = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "InvalidToken",
    "ExpiredToken",
    "AllAccessDisabled",
}


@dataclass(frozen=True)
class Settings:
    """Where the user changes what an error asks to change (defaults: ``fetch-model``)."""

    uri: str = "deploy.model_source.uri"
    sha256: str = "deploy.model_source.sha256"
    endpoint: str = "--endpoint (deploy.model_source.endpoint)"
    # After "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" / "check AWS_ACCESS_KEY_ID ...".
    credentials: str = (
        " (in Kubernetes: keys of the Secret named by deploy.model_source.credentials_secret)"
    )
    refused_credentials: str = " (the Secret named by deploy.model_source.credentials_secret)"
    timeout: str = "Raise deploy.model_source.timeout for a large model or a slow link"
    retries: str = "deploy.model_source.retries"
    missing_object: str = "upload the model there"


@dataclass(frozen=True)
class FetchRequest:
    uri: str
    sha256: str
    dest: Path
    timeout: float
    retries: int
    endpoint: str | None = None
    region: str | None = None  # None: boto3's (AWS_DEFAULT_REGION ...)
    settings: Settings = Settings()


@dataclass(frozen=True)
class FetchResult:
    uri: str
    dest: Path
    sha256: str
    fetched: bool  # False: dest already held this checksum, nothing was downloaded
    kind: str  # "tar" or "file"
    size: int
    attempts: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "dest": str(self.dest),
            "sha256": self.sha256,
            "fetched": self.fetched,
            "kind": self.kind,
            "bytes": self.size,
            "attempts": self.attempts,
            "seconds": round(self.seconds, 3),
        }


class _DeadlineExceeded(Exception):
    """--timeout ran out while bytes were still arriving."""


class FetchUnavailable(StepError):
    """The object store did not answer in time (unreachable, timed out, kept failing):
    unlike a wrong checksum, a missing object or refused credentials, later may work."""


# S3's characters, plus the upper case and '_' that buckets made before 2018 may carry.
_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def parse_uri(uri: str) -> tuple[str, str]:
    """(bucket, key) of an s3://bucket/key URI."""
    if not uri.startswith("s3://"):
        raise StepError(
            f"--uri {uri!r} is not an S3 URI; write it as s3://bucket/path/model.tar.gz"
        )
    bucket, _, key = uri[len("s3://") :].partition("/")
    if bucket and not _BUCKET.match(bucket):
        raise StepError(
            f"--uri {uri!r}: {bucket[:80]!r} is not a bucket name (up to 63 letters, "
            "digits, '.', '-' or '_'); write it as s3://bucket/path/model.tar.gz"
        )
    if _CONTROL.search(key):
        raise StepError(f"--uri {uri[:120]!r}: the object key holds control characters")
    if not bucket or not key or key.endswith("/"):
        raise StepError(
            f"--uri {uri!r} names no object; write it as s3://bucket/path/model.tar.gz "
            "(one object: a tar archive of the model directory, or a single file)"
        )
    return bucket, key


def read_marker(dest: Path) -> dict[str, Any] | None:
    """The marker a previous fetch left in dest, if any (and readable)."""
    try:
        data = json.loads((dest / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def fetch(
    request: FetchRequest,
    *,
    log: Callable[[str], None] = lambda _: None,
    check: Callable[[Path], None] | None = None,
) -> FetchResult:
    """Make request.dest hold the checked contents of request.uri; see the module docstring.

    check: called on the unpacked model before it is moved onto dest (and on a dest that
    already holds it); an exception from it leaves nothing at dest (the model signature,
    ``fetch-model --signature``).
    """
    started = time.monotonic()
    bucket, key = parse_uri(request.uri)
    dest = request.dest
    marker = read_marker(dest) if dest.is_dir() else None
    if marker is not None and marker.get("sha256") == request.sha256:
        if check is not None:
            try:
                check(dest)
            except BaseException:
                shutil.rmtree(dest, ignore_errors=True)  # ours (the marker says so)
                raise
        log(f"{dest} already holds sha256 {request.sha256}; nothing to download")
        return FetchResult(
            request.uri,
            dest,
            request.sha256,
            fetched=False,
            kind=str(marker.get("kind", "tar")),
            size=int(marker.get("bytes", 0)),
            attempts=0,
            seconds=time.monotonic() - started,
        )
    if marker is None and dest.exists() and not _is_empty_dir(dest):
        raise StepError(
            f"--dest {dest} exists and was not written by fetch-model (no {MARKER} in it); "
            "remove it or pass another --dest, so nothing of yours is replaced"
        )
    parent = dest.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(dest)
        fd, part_name = tempfile.mkstemp(prefix=f".{dest.name}.fetch-", suffix=".part", dir=parent)
    except OSError as exc:
        raise StepError(f"cannot write next to --dest {dest}: {exc.strerror or exc}") from exc
    part = Path(part_name)
    stage: Path | None = None
    try:
        with os.fdopen(fd, "r+b") as handle:
            size, digest, attempts = _download(request, bucket, key, handle, started, log)
        if digest != request.sha256:
            raise StepError(
                f"sha256 mismatch for {request.uri}: expected {request.sha256}, got {digest} "
                f"({size} bytes); nothing was written to {dest}. If the object was replaced "
                "on purpose, put the new sha256 in deploy.model_source.sha256; otherwise the "
                "download or the upload is corrupt"
            )
        stage = Path(tempfile.mkdtemp(prefix=f".{dest.name}.fetch-", dir=parent))
        kind, content = _unpack(part, stage, request.uri, key, dest)
        if check is not None:
            check(content)
        _write_marker(content, request, kind, size)
        _install(content, dest)
    except OSError as exc:
        raise StepError(f"cannot write the model under {parent}: {exc.strerror or exc}") from exc
    finally:
        part.unlink(missing_ok=True)
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
    elapsed = time.monotonic() - started
    log(f"fetched {request.uri} ({size} bytes, sha256 ok) into {dest} in {elapsed:.1f}s")
    return FetchResult(request.uri, dest, digest, True, kind, size, attempts, elapsed)


def fetch_file(
    request: FetchRequest, *, log: Callable[[str], None] = lambda _: None
) -> FetchResult:
    """Make request.dest a file holding request.uri's object, sha256-checked, by rename.

    The object streams into a temp file beside dest (same filesystem: the rename is
    atomic) with :func:`fetch`'s retries, resume and errors; only when its sha256 is
    request.sha256 is it renamed onto dest. On a mismatch or any error dest is left as it
    was and the temp file is removed. No unpacking and no marker: the caller keeps the
    file where its sha256 names it (records.data). Callers that may run at once hold a
    lock around it: leftovers of a killed fetch of the same dest are removed first.
    """
    started = time.monotonic()
    bucket, key = parse_uri(request.uri)
    dest = request.dest
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(dest)
        fd, part_name = tempfile.mkstemp(
            prefix=f".{dest.name}.fetch-", suffix=".part", dir=dest.parent
        )
    except OSError as exc:
        raise StepError(f"cannot write {dest}: {exc.strerror or exc}") from exc
    part = Path(part_name)
    try:
        with os.fdopen(fd, "r+b") as handle:
            size, digest, attempts = _download(request, bucket, key, handle, started, log)
        if digest != request.sha256:
            raise StepError(
                f"sha256 mismatch for {request.uri}: expected {request.sha256}, got {digest} "
                f"({size} bytes); nothing was kept. If the object was replaced on purpose, "
                f"put its sha256 in {request.settings.sha256}; otherwise upload the right "
                "object (or the download is corrupt)"
            )
        os.chmod(part, 0o644)  # mkstemp's 0600 would hide the copy from a shared store
        os.replace(part, dest)
    except OSError as exc:
        raise StepError(f"cannot write {dest}: {exc.strerror or exc}") from exc
    finally:
        part.unlink(missing_ok=True)
    elapsed = time.monotonic() - started
    log(f"fetched {request.uri} ({size} bytes, sha256 ok) into {dest} in {elapsed:.1f}s")
    return FetchResult(request.uri, dest, digest, True, "file", size, attempts, elapsed)


# --- download ------------------------------------------------------------------------------


class _Progress:
    """Bytes written so far and their running hash; a resumed attempt continues from here."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.size = 0
        self.hash = hashlib.sha256()

    def restart(self) -> None:
        self.handle.seek(0)
        self.handle.truncate()
        self.size = 0
        self.hash = hashlib.sha256()


def _download(
    request: FetchRequest,
    bucket: str,
    key: str,
    handle: Any,
    started: float,
    log: Callable[[str], None],
) -> tuple[int, str, int]:
    """(size, sha256 hex, attempts) after streaming the object into handle."""
    import boto3.session
    from tenacity import (
        RetryCallState,
        Retrying,
        retry_if_exception,
        stop_after_attempt,
        stop_before_delay,
        wait_exponential,
        wait_random,
    )

    deadline = started + request.timeout
    session = boto3.session.Session(region_name=request.region)
    progress = _Progress(handle)
    max_attempts = request.retries + 1

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        log(
            f"attempt {state.attempt_number}/{max_attempts} for {request.uri} failed: "
            f"{_describe(error)}; retrying in {wait:.1f}s"
        )

    retrying = Retrying(
        # The budget left once boto3 is imported: --timeout counts from the start of fetch().
        stop=stop_after_attempt(max_attempts) | stop_before_delay(deadline - time.monotonic()),
        # 0.5 s, 1 s, 2 s ... up to 10 s, plus up to 0.5 s of jitter so that the replicas of
        # a Deployment do not retry in lockstep.
        wait=wait_exponential(multiplier=BACKOFF_INITIAL_S, max=BACKOFF_MAX_S)
        + wait_random(0, BACKOFF_JITTER_S),
        retry=retry_if_exception(_transient),
        before_sleep=before_sleep,
        reraise=True,
    )
    attempts = 0
    try:
        for attempt in retrying:
            with attempt:
                attempts = attempt.retry_state.attempt_number
                _get_once(session, request, bucket, key, progress, deadline)
    except _DeadlineExceeded as exc:
        raise _timeout_error(request, attempts, None) from exc
    except Exception as exc:
        mapped = _final_error(request, bucket, key, exc, attempts, max_attempts)
        if mapped is exc:
            raise
        raise mapped from exc
    handle.flush()
    os.fsync(handle.fileno())
    return progress.size, progress.hash.hexdigest(), attempts


def _get_once(
    session: Any,
    request: FetchRequest,
    bucket: str,
    key: str,
    progress: _Progress,
    deadline: float,
) -> None:
    """One GET (ranged when resuming), streamed into progress until the body ends."""
    from botocore.config import Config

    left = deadline - time.monotonic()
    if left <= 0:
        raise _DeadlineExceeded()
    config = Config(
        connect_timeout=min(CONNECT_TIMEOUT_S, left),
        read_timeout=min(READ_TIMEOUT_S, left),
        # One try per call: the tenacity loop around it owns retries (see module docstring).
        retries={"total_max_attempts": 1, "mode": "standard"},
        # The sha256 from mlops.yaml is the integrity check; S3-compatible servers differ in
        # which per-request checksums they send, so botocore does not validate them too.
        response_checksum_validation="when_required",
        s3={"addressing_style": "path"} if request.endpoint else None,
    )
    client = session.client("s3", endpoint_url=request.endpoint, config=config)
    params: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if progress.size:
        params["Range"] = f"bytes={progress.size}-"
    response = client.get_object(**params)
    if progress.size and not str(response.get("ContentRange", "")).startswith(
        f"bytes {progress.size}-"
    ):
        # The server ignored the range and sent the whole object: start the file over.
        progress.restart()
    body = response["Body"]
    try:
        for chunk in body.iter_chunks(CHUNK):
            progress.handle.write(chunk)
            progress.hash.update(chunk)
            progress.size += len(chunk)
            if time.monotonic() > deadline:
                raise _DeadlineExceeded()
    finally:
        body.close()


def _transient(error: BaseException) -> bool:
    """True for failures a later attempt can cure: network, timeouts, 5xx, throttling."""
    from botocore.exceptions import (
        ClientError,
        HTTPClientError,
        IncompleteReadError,
        SSLError,
    )
    from botocore.exceptions import ConnectionError as BotoConnectionError

    if isinstance(error, SSLError):
        return False  # a certificate problem does not go away by waiting
    if isinstance(error, (BotoConnectionError, HTTPClientError, IncompleteReadError)):
        return True
    if isinstance(error, ClientError):
        code, status = _client_error(error)
        return status >= 500 or status == 429 or code in _THROTTLING
    return False


def _client_error(error: Any) -> tuple[str, int]:
    info = error.response.get("Error", {})
    meta = error.response.get("ResponseMetadata", {})
    return str(info.get("Code", "")), int(meta.get("HTTPStatusCode", 0) or 0)


def _describe(error: BaseException | None) -> str:
    if error is None:
        return "unknown error"
    from botocore.exceptions import ClientError

    if isinstance(error, ClientError):
        code, status = _client_error(error)
        return f"HTTP {status} {code}".strip()
    return str(error) or type(error).__name__


def _timeout_error(request: FetchRequest, attempts: int, last: BaseException | None) -> StepError:
    tail = f"; last error: {_describe(last)}" if last is not None else ""
    return FetchUnavailable(
        f"timed out fetching {request.uri} after --timeout {request.timeout:g}s "
        f"({attempts} attempt{'s' if attempts != 1 else ''}){tail}; nothing was written to "
        f"{request.dest}. {request.settings.timeout}"
    )


def _final_error(
    request: FetchRequest,
    bucket: str,
    key: str,
    error: Exception,
    attempts: int,
    max_attempts: int,
) -> Exception:
    """The StepError that explains why the download stopped (other errors pass through)."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        HTTPClientError,
        IncompleteReadError,
        NoCredentialsError,
        PartialCredentialsError,
        SSLError,
    )
    from botocore.exceptions import ConnectionError as BotoConnectionError

    where = request.endpoint or "AWS S3"
    names = request.settings
    if isinstance(error, (NoCredentialsError, PartialCredentialsError)):
        return StepError(
            f"no S3 credentials to fetch {request.uri}: set AWS_ACCESS_KEY_ID and "
            f"AWS_SECRET_ACCESS_KEY{names.credentials}"
        )
    if isinstance(error, SSLError):
        return StepError(f"TLS failure talking to {where} for {request.uri}: {error}")
    if _transient(error) and attempts < max_attempts:
        return _timeout_error(request, attempts, error)
    if isinstance(error, (BotoConnectionError, HTTPClientError, IncompleteReadError)):
        return FetchUnavailable(
            f"cannot reach {where} for {request.uri} after {attempts} attempt"
            f"{'s' if attempts != 1 else ''}: {error}; check {names.endpoint} and that the "
            "server is up"
        )
    if isinstance(error, ClientError):
        code, status = _client_error(error)
        if code == "NoSuchBucket":
            return StepError(
                f"no bucket {bucket!r} at {where} (fetching {request.uri}); check the bucket "
                f"name in {names.uri} and the endpoint"
            )
        if code in ("NoSuchKey", "404") or status == 404:
            return StepError(
                f"no object {key!r} in bucket {bucket!r} at {where} (fetching {request.uri}); "
                f"{names.missing_object} or fix {names.uri}"
            )
        if code in _BAD_CREDENTIALS or status == 403:
            return StepError(
                f"{where} refused the credentials for {request.uri} (HTTP {status} {code}); "
                f"check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY{names.refused_credentials} "
                "and their read access to the bucket"
            )
        if _transient(error):
            return FetchUnavailable(
                f"{where} kept failing for {request.uri}: HTTP {status} {code} on all "
                f"{attempts} attempts; try later or raise {names.retries}"
            )
        return StepError(f"{where} refused {request.uri}: HTTP {status} {code}")
    if isinstance(error, BotoCoreError):
        return StepError(f"fetching {request.uri} from {where} failed: {error}")
    return error


# --- unpack and install --------------------------------------------------------------------


def _unpack(part: Path, stage: Path, uri: str, key: str, dest: Path) -> tuple[str, Path]:
    """(kind, directory to install) after unpacking or placing the checked download."""
    if tarfile.is_tarfile(part):
        try:
            _extract(part, stage, uri, dest)
        except (tarfile.TarError, EOFError, zlib.error) as exc:
            raise StepError(
                f"{uri} is a damaged archive ({exc}); its sha256 matched, so it was uploaded "
                "like this: re-create and upload it, then update deploy.model_source.sha256. "
                f"Nothing was written to {dest}"
            ) from exc
        entries = list(stage.iterdir())
        # An archive of one top-level directory (tar -czf m.tgz digits/) installs its contents.
        if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
            return "tar", entries[0]
        return "tar", stage
    if key.lower().endswith(_TAR_SUFFIXES):
        raise StepError(
            f"{uri} is named like a tar archive but is not one (its sha256 matched, so it "
            "was uploaded like this); upload the archive itself, or a name without a tar "
            "suffix for a single-file model"
        )
    os.replace(part, stage / PurePosixPath(key).name)
    return "file", stage


def _extract(part: Path, stage: Path, uri: str, dest: Path) -> None:
    """Extract the archive into stage, refusing it whole if any member could escape."""
    with tarfile.open(part, "r:*") as archive:
        for member in archive.getmembers():
            problem = unsafe_member(member)
            if problem is not None:
                raise StepError(
                    f"refusing {uri}: archive member {member.name!r} {problem}; nothing "
                    f"was written to {dest}. Re-create the archive from the model "
                    "directory with relative paths (tar -czf model.tar.gz -C export .)"
                )
        if hasattr(tarfile, "data_filter"):
            try:
                archive.extractall(stage, filter="data")
            except tarfile.FilterError as exc:
                raise StepError(f"refusing {uri}: {exc}; nothing was written to {dest}") from exc
        else:  # Python < 3.10.12 has no extraction filters; unsafe_member() guarded it
            archive.extractall(stage)


def unsafe_member(member: tarfile.TarInfo) -> str | None:
    """Why extracting member could write outside the target directory, or None if safe."""
    path = PurePosixPath(member.name)
    if path.is_absolute() or member.name.startswith("\\") or ":" in path.parts[0]:
        return "has an absolute path"
    if ".." in path.parts:
        return "has '..' in its path"
    if member.isdev() or member.isfifo():
        return "is a device or FIFO"
    if member.issym() or member.islnk():
        link = PurePosixPath(member.linkname)
        if link.is_absolute():
            return f"links to the absolute path {member.linkname!r}"
        # Symlinks resolve beside the member; hard links name a path from the archive root.
        base = path.parent if member.issym() else PurePosixPath()
        depth = 0
        for part in (*base.parts, *link.parts):
            depth += -1 if part == ".." else 0 if part == "." else 1
            if depth < 0:
                return f"links outside the archive ({member.linkname!r})"
    return None


def _write_marker(content: Path, request: FetchRequest, kind: str, size: int) -> None:
    record = {"uri": request.uri, "sha256": request.sha256, "kind": kind, "bytes": size}
    (content / MARKER).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def _install(content: Path, dest: Path) -> None:
    """Rename content onto dest; an older fetch there is moved aside first, then removed."""
    if not dest.exists() and not dest.is_symlink():
        os.replace(content, dest)
        return
    old = dest.parent / f".{dest.name}.fetch-old-{uuid.uuid4().hex[:8]}"
    os.replace(dest, old)
    try:
        os.replace(content, dest)
    except OSError:
        os.replace(old, dest)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _remove_leftovers(dest: Path) -> None:
    """Temp files of a fetch that was killed (an init container restarted mid-download)."""
    for stale in dest.parent.glob(f".{dest.name}.fetch-*"):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def require_boto3() -> None:
    """Refuse early, with the fix, where the 'fetch' extra is not installed."""
    try:
        import boto3  # noqa: F401
    except ImportError as exc:
        raise StepError(
            "fetch-model needs boto3: pip install 'mlops-sessions[fetch]' "
            "(the serve image must include the fetch extra)"
        ) from exc
