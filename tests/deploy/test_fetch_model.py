"""``mlops fetch-model`` against a real S3 API: moto's server process on loopback.

Fixtures:

- ``moto``: one ``moto_server`` process per module on 127.0.0.1:<free port>, stopped by PID
  (tests/fixtures/moto.py, shared with the store's tests); if it cannot start,
  ``require_real`` skips locally and fails in CI;
- ``s3``: credentials for that server in the environment (and nothing else boto3 could
  pick up from the machine), a fresh bucket per test and a boto3 client to upload with;
- ``faulty_s3(upstream, Faults(...))``: a small HTTP proxy in front of moto that answers
  the way a struggling object store does (503 SlowDown, a body cut off half-way, no answer
  at all, a server that is not listening yet) so retries, resume and the timeout run over
  real sockets.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops_sessions.errors import StepError
from mlops_sessions.executors.s3.fetch import (
    MARKER,
    FetchRequest,
    FetchResult,
    fetch,
    unsafe_member,
)
from tests.fixtures.moto import HOST, free_port, isolate_s3_env, moto, moto_server

__all__ = ["moto"]  # the module-scoped fixture, used by the tests below

boto3 = pytest.importorskip("boto3")

KEY_ID = "AKIDMOTOFETCHTEST"
SECRET = "moto-fetch-secret"
BUCKET = "models"


REPO = Path(__file__).resolve().parents[2]


@dataclass
class S3:
    endpoint: str
    bucket: str
    client: Any

    def put(self, key: str, data: bytes) -> str:
        """Upload data under key; its sha256 (what mlops.yaml would declare)."""
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data)
        return hashlib.sha256(data).hexdigest()

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only the credentials we set: no ~/.aws files, no instance metadata lookups."""
    isolate_s3_env(monkeypatch, tmp_path, KEY_ID, SECRET)


@pytest.fixture
def s3(moto: str, s3_env: None, request: pytest.FixtureRequest) -> S3:
    client = boto3.client("s3", endpoint_url=moto)
    # A bucket per test: moto keeps state for the module, tests must not see each other.
    bucket = f"{BUCKET}-{abs(hash(request.node.nodeid)) % 10**10}"
    client.create_bucket(Bucket=bucket)
    return S3(moto, bucket, client)


# --- a struggling object store in front of moto ---------------------------------------------


@dataclass
class Faults:
    """What the proxy does to the next requests; the log records what the client sent."""

    slowdown: int = 0  # answer this many requests with 503 SlowDown
    cut_after: int | None = None  # first GET: send only this many body bytes, then hang up
    stall: bool = False  # accept requests and never answer
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path, Range
    released: threading.Event = field(default_factory=threading.Event)


def _handler(upstream: str, faults: Faults) -> type[BaseHTTPRequestHandler]:
    host, port = upstream.removeprefix("http://").split(":")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _relay(self) -> None:
            faults.requests.append((self.command, self.path, self.headers.get("Range")))
            if faults.stall:
                faults.released.wait(30)
                return
            if faults.slowdown > 0:
                faults.slowdown -= 1
                body = (
                    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
                    b"<Message>Please reduce your request rate.</Message></Error>"
                )
                self.send_response(503)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            length = int(self.headers.get("Content-Length") or 0)
            payload = self.rfile.read(length) if length else None
            conn = http.client.HTTPConnection(host, int(port), timeout=30)
            try:
                conn.request(self.command, self.path, body=payload, headers=dict(self.headers))
                answer = conn.getresponse()
                data = answer.read()
            finally:
                conn.close()
            self.send_response(answer.status)
            for name, value in answer.getheaders():
                if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command == "HEAD":
                return
            if self.command == "GET" and faults.cut_after is not None and answer.status == 200:
                cut, faults.cut_after = faults.cut_after, None
                self.wfile.write(data[:cut])
                self.wfile.flush()
                self.close_connection = True
                # Hang up mid-body: the client sees fewer bytes than Content-Length promised.
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(data)

        do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _relay

    return Handler


@contextlib.contextmanager
def faulty_s3(upstream: str, faults: Faults, port: int = 0) -> Iterator[str]:
    """A proxy on 127.0.0.1 in front of upstream that injects faults; yields its URL."""
    server = ThreadingHTTPServer((HOST, port), _handler(upstream, faults))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{server.server_address[1]}"
    finally:
        faults.released.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


# --- fixtures for model payloads ------------------------------------------------------------


SAVED_MODEL_FILES = {
    "saved_model.pb": b"\x08\x01" + b"graph" * 300,
    "fingerprint.pb": b"fp" * 20,
    "variables/variables.index": b"index" * 10,
    "variables/variables.data-00000-of-00001": bytes(range(256)) * 64,
    "assets/vocab.txt": b"zero\none\ntwo\n",
}


def saved_model_tar(top: str | None = "digits", files: dict[str, bytes] | None = None) -> bytes:
    """A .tar.gz of a SavedModel-like directory (with or without one top-level directory)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in (files or SAVED_MODEL_FILES).items():
            info = tarfile.TarInfo(f"{top}/{name}" if top else f"./{name}")
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def request_for(
    s3: S3, key: str, sha: str, dest: Path, *, endpoint: str | None = None, **kw: Any
) -> FetchRequest:
    options: dict[str, Any] = {"timeout": 30.0, "retries": 2} | kw
    return FetchRequest(
        uri=s3.uri(key), sha256=sha, dest=dest, endpoint=endpoint or s3.endpoint, **options
    )


def leftovers(parent: Path, dest: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p != dest)


# --- happy paths ----------------------------------------------------------------------------


@pytest.mark.parametrize("top", ["digits", None], ids=["top-level-dir", "dot-relative"])
def test_tar_gz_of_a_saved_model_lands_in_dest(s3: S3, tmp_path: Path, top: str | None) -> None:
    data = saved_model_tar(top)
    sha = s3.put("digits/v1.tar.gz", data)
    dest = tmp_path / "models" / "digits"
    result = fetch(request_for(s3, "digits/v1.tar.gz", sha, dest))

    assert result == FetchResult(
        s3.uri("digits/v1.tar.gz"),
        dest,
        sha,
        fetched=True,
        kind="tar",
        size=len(data),
        attempts=1,
        seconds=result.seconds,
    )
    files = tree(dest)
    marker = json.loads(files.pop(MARKER))
    assert files == SAVED_MODEL_FILES
    assert marker == {
        "uri": s3.uri("digits/v1.tar.gz"),
        "sha256": sha,
        "kind": "tar",
        "bytes": len(data),
    }
    assert leftovers(dest.parent, dest) == []  # no temp file or staging dir left behind


def test_a_single_file_object_is_kept_as_one_file(s3: S3, tmp_path: Path) -> None:
    data = b"PK\x03\x04 keras archive " * 500
    sha = s3.put("ranker/v7/model.keras", data)
    dest = tmp_path / "models" / "ranker"
    result = fetch(request_for(s3, "ranker/v7/model.keras", sha, dest))
    assert (result.kind, result.size) == ("file", len(data))
    assert sorted(p.name for p in dest.iterdir()) == [MARKER, "model.keras"]
    assert (dest / "model.keras").read_bytes() == data


def test_a_rerun_with_the_same_checksum_downloads_nothing(s3: S3, tmp_path: Path) -> None:
    sha = s3.put("digits/v1.tar.gz", saved_model_tar())
    dest = tmp_path / "digits"
    assert fetch(request_for(s3, "digits/v1.tar.gz", sha, dest)).fetched
    before = {p: p.stat().st_mtime_ns for p in dest.rglob("*")}
    # The object is gone: only a run that does not download can still succeed.
    s3.client.delete_object(Bucket=s3.bucket, Key="digits/v1.tar.gz")
    again = fetch(request_for(s3, "digits/v1.tar.gz", sha, dest))
    assert (again.fetched, again.attempts) == (False, 0)
    assert {p: p.stat().st_mtime_ns for p in dest.rglob("*")} == before


def test_a_new_checksum_replaces_an_earlier_fetch(s3: S3, tmp_path: Path) -> None:
    dest = tmp_path / "digits"
    old_sha = s3.put("digits/v1.tar.gz", saved_model_tar())
    fetch(request_for(s3, "digits/v1.tar.gz", old_sha, dest))
    new_files = {"saved_model.pb": b"new graph", "variables/variables.index": b"v2"}
    new_sha = s3.put("digits/v2.tar.gz", saved_model_tar(files=new_files))
    result = fetch(request_for(s3, "digits/v2.tar.gz", new_sha, dest))
    assert result.fetched
    files = tree(dest)
    assert json.loads(files.pop(MARKER))["sha256"] == new_sha
    assert files == new_files
    assert leftovers(dest.parent, dest) == []


# --- refusals that leave dest alone ---------------------------------------------------------


def test_a_checksum_mismatch_leaves_dest_untouched(s3: S3, tmp_path: Path) -> None:
    dest = tmp_path / "digits"
    good = s3.put("digits/v1.tar.gz", saved_model_tar())
    fetch(request_for(s3, "digits/v1.tar.gz", good, dest))
    before = tree(dest)
    swapped = saved_model_tar(files={"saved_model.pb": b"not the model you reviewed"})
    actual = s3.put("digits/v2.tar.gz", swapped)
    claimed = "0" * 64
    with pytest.raises(StepError) as info:
        fetch(request_for(s3, "digits/v2.tar.gz", claimed, dest))
    message = str(info.value)
    assert f"expected {claimed}, got {actual}" in message
    assert "sha256 mismatch for " + s3.uri("digits/v2.tar.gz") in message
    assert tree(dest) == before
    assert leftovers(dest.parent, dest) == []
    fresh = tmp_path / "fresh"
    with pytest.raises(StepError, match="sha256 mismatch"):
        fetch(request_for(s3, "digits/v2.tar.gz", claimed, fresh))
    assert not fresh.exists()


# name, tar type, link target, the reason the error gives
EVIL_MEMBERS = {
    "dotdot": ("model/../../escaped.txt", tarfile.REGTYPE, "", "has '..' in its path"),
    "absolute": ("/tmp/escaped.txt", tarfile.REGTYPE, "", "has an absolute path"),
    "symlink": ("model/link", tarfile.SYMTYPE, "../../escaped.txt", "links outside the archive"),
    "abs-symlink": ("model/link", tarfile.SYMTYPE, "/etc/passwd", "links to the absolute path"),
    "hardlink": ("model/link", tarfile.LNKTYPE, "../escaped.txt", "links outside the archive"),
}


def _evil_tar(name: str, kind: bytes, linkname: str) -> bytes:
    """A model archive with one good member, then one that would land outside the target."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        good = tarfile.TarInfo("model/saved_model.pb")
        good.size = 3
        archive.addfile(good, io.BytesIO(b"abc"))
        evil = tarfile.TarInfo(name)
        evil.type, evil.linkname = kind, linkname
        evil.size = 4 if evil.isfile() else 0
        archive.addfile(evil, io.BytesIO(b"evil") if evil.isfile() else None)
    return buffer.getvalue()


@pytest.mark.parametrize("case", sorted(EVIL_MEMBERS))
def test_a_tar_that_writes_outside_dest_is_refused(s3: S3, tmp_path: Path, case: str) -> None:
    name, kind, linkname, reason = EVIL_MEMBERS[case]
    sha = s3.put("evil.tar.gz", _evil_tar(name, kind, linkname))
    dest = tmp_path / "models" / "digits"
    with pytest.raises(StepError) as info:
        fetch(request_for(s3, "evil.tar.gz", sha, dest))
    assert f"refusing {s3.uri('evil.tar.gz')}: archive member {name!r} {reason}" in str(info.value)
    assert "nothing was written" in str(info.value)
    assert not dest.exists()
    assert leftovers(dest.parent, dest) == []
    assert not (tmp_path / "escaped.txt").exists()


def test_member_checks_allow_links_that_stay_inside() -> None:
    inside = tarfile.TarInfo("model/variables/current")
    inside.type, inside.linkname = tarfile.SYMTYPE, "../assets/vocab.txt"
    assert unsafe_member(inside) is None
    hard = tarfile.TarInfo("model/copy")
    hard.type, hard.linkname = tarfile.LNKTYPE, "model/saved_model.pb"
    assert unsafe_member(hard) is None
    device = tarfile.TarInfo("model/dev")
    device.type = tarfile.CHRTYPE
    assert unsafe_member(device) == "is a device or FIFO"


def test_a_dest_fetch_model_did_not_write_is_not_replaced(s3: S3, tmp_path: Path) -> None:
    sha = s3.put("digits/v1.tar.gz", saved_model_tar())
    dest = tmp_path / "digits"
    dest.mkdir()
    (dest / "notes.txt").write_text("mine")
    with pytest.raises(StepError, match="was not written by fetch-model"):
        fetch(request_for(s3, "digits/v1.tar.gz", sha, dest))
    assert tree(dest) == {"notes.txt": b"mine"}


def test_a_damaged_archive_is_refused_whole(s3: S3, tmp_path: Path) -> None:
    whole = saved_model_tar()
    # Uploaded cut short, with the checksum of what was uploaded: the download is "right".
    sha = s3.put("digits/v1.tar.gz", whole[: len(whole) * 2 // 3])
    dest = tmp_path / "digits"
    with pytest.raises(StepError, match=r"is a damaged archive .*Nothing was written to"):
        fetch(request_for(s3, "digits/v1.tar.gz", sha, dest))
    assert not dest.exists()
    assert leftovers(dest.parent, dest) == []


def test_a_tar_suffix_on_something_else_is_refused(s3: S3, tmp_path: Path) -> None:
    sha = s3.put("digits/v1.tar.gz", b"this is not an archive")
    with pytest.raises(StepError, match="named like a tar archive but is not one"):
        fetch(request_for(s3, "digits/v1.tar.gz", sha, tmp_path / "digits"))
    assert not (tmp_path / "digits").exists()


# --- clear errors ---------------------------------------------------------------------------


def test_a_missing_key_or_bucket_is_named(s3: S3, tmp_path: Path) -> None:
    with pytest.raises(StepError) as info:
        fetch(request_for(s3, "digits/none.tar.gz", "a" * 64, tmp_path / "d"))
    assert f"no object 'digits/none.tar.gz' in bucket '{s3.bucket}'" in str(info.value)
    assert s3.uri("digits/none.tar.gz") in str(info.value)
    missing = FetchRequest(
        "s3://no-such-bucket/m.tar.gz", "a" * 64, tmp_path / "d", 30, 2, s3.endpoint
    )
    with pytest.raises(
        StepError, match=r"no bucket 'no-such-bucket' .*s3://no-such-bucket/m\.tar\.gz"
    ):
        fetch(missing)
    assert not (tmp_path / "d").exists()


def test_missing_credentials_are_named(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sha = s3.put("digits/v1.tar.gz", saved_model_tar())
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    started = time.monotonic()
    with pytest.raises(StepError, match=r"no S3 credentials .* AWS_ACCESS_KEY_ID and AWS_SECRET"):
        fetch(request_for(s3, "digits/v1.tar.gz", sha, tmp_path / "d"))
    assert time.monotonic() - started < 10  # refused at once, not retried
    assert not (tmp_path / "d").exists()


def test_credentials_the_server_rejects_are_named(
    s3_env: None, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # moto checks access keys against its IAM once this many requests have gone unchecked:
    # the two uploads below; the fetch then presents a key the server does not know.
    with moto_server(request, tmp_path, {"INITIAL_NO_AUTH_ACTION_COUNT": "2"}) as endpoint:
        client = boto3.client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket=BUCKET)
        data = saved_model_tar()
        client.put_object(Bucket=BUCKET, Key="digits/v1.tar.gz", Body=data)
        sha = hashlib.sha256(data).hexdigest()
        uri = f"s3://{BUCKET}/digits/v1.tar.gz"
        started = time.monotonic()
        with pytest.raises(StepError) as info:
            fetch(FetchRequest(uri, sha, tmp_path / "d", 30, 3, endpoint))
    assert f"{endpoint} refused the credentials for {uri} (HTTP 403 InvalidAccessKeyId)" in str(
        info.value
    )
    assert "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY" in str(info.value)
    assert time.monotonic() - started < 10  # refused at once: retrying cannot fix a bad key
    assert not (tmp_path / "d").exists()


def test_malformed_uri_is_refused(tmp_path: Path) -> None:
    for uri in ("https://bucket/key", "s3://bucket", "s3://bucket/dir/"):
        with pytest.raises(StepError, match=r"write it as s3://bucket/path/model\.tar\.gz"):
            fetch(FetchRequest(uri, "a" * 64, tmp_path / "d", 10, 0))


# --- retries, resume and the timeout over real sockets ---------------------------------------


@pytest.mark.slow
def test_an_unreachable_endpoint_is_retried_then_named(s3: S3, tmp_path: Path) -> None:
    closed = f"http://{HOST}:{free_port()}"
    lines: list[str] = []
    started = time.monotonic()
    with pytest.raises(StepError) as info:
        fetch(
            request_for(s3, "m.tar.gz", "a" * 64, tmp_path / "d", endpoint=closed, retries=2),
            log=lines.append,
        )
    elapsed = time.monotonic() - started
    assert f"cannot reach {closed} for s3://" in str(info.value)
    assert "after 3 attempts" in str(info.value)
    assert [line.split(" for ")[0] for line in lines] == ["attempt 1/3", "attempt 2/3"]
    assert elapsed < 20  # backoff 0.5 s then 1 s, plus jitter
    assert not (tmp_path / "d").exists()


@pytest.mark.slow
def test_a_server_that_comes_up_late_is_waited_for(s3: S3, tmp_path: Path) -> None:
    sha = s3.put("digits/v1.tar.gz", saved_model_tar())
    port = free_port()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = fetch(
                request_for(
                    s3,
                    "digits/v1.tar.gz",
                    sha,
                    tmp_path / "d",
                    endpoint=f"http://{HOST}:{port}",
                    retries=6,
                )
            )
        except Exception as exc:  # reported by the assertion below
            outcome["error"] = exc

    worker = threading.Thread(target=run)
    worker.start()
    time.sleep(1.5)  # the first attempts find nothing listening
    with faulty_s3(s3.endpoint, Faults(), port=port):
        worker.join(60)
    assert not worker.is_alive()
    assert "error" not in outcome, outcome.get("error")
    result: FetchResult = outcome["result"]
    assert result.fetched and result.attempts >= 2
    assert tree(tmp_path / "d").keys() - {MARKER} == {f for f in SAVED_MODEL_FILES}


@pytest.mark.slow
def test_throttling_answers_are_retried(s3: S3, tmp_path: Path) -> None:
    sha = s3.put("digits/v1.tar.gz", saved_model_tar())
    faults = Faults(slowdown=2)
    with faulty_s3(s3.endpoint, faults) as proxy:
        result = fetch(
            request_for(s3, "digits/v1.tar.gz", sha, tmp_path / "d", endpoint=proxy, retries=3)
        )
    assert (result.fetched, result.attempts) == (True, 3)
    assert [method for method, _, _ in faults.requests] == ["GET", "GET", "GET"]


def test_throttling_beyond_the_retries_is_a_clear_error(s3: S3, tmp_path: Path) -> None:
    sha = s3.put("digits/v1.tar.gz", saved_model_tar())
    with faulty_s3(s3.endpoint, Faults(slowdown=10)) as proxy, pytest.raises(StepError) as info:
        fetch(request_for(s3, "digits/v1.tar.gz", sha, tmp_path / "d", endpoint=proxy, retries=1))
    assert f"{proxy} kept failing for s3://" in str(info.value)
    assert "HTTP 503 SlowDown on all 2 attempts" in str(info.value)
    assert not (tmp_path / "d").exists()


def test_a_body_cut_off_half_way_resumes_with_a_range_request(s3: S3, tmp_path: Path) -> None:
    data = saved_model_tar()
    sha = s3.put("digits/v1.tar.gz", data)
    cut = len(data) // 2
    faults = Faults(cut_after=cut)
    with faulty_s3(s3.endpoint, faults) as proxy:
        result = fetch(request_for(s3, "digits/v1.tar.gz", sha, tmp_path / "d", endpoint=proxy))
    assert (result.attempts, result.size, result.sha256) == (2, len(data), sha)
    ranges = [rng for method, _, rng in faults.requests if method == "GET"]
    assert ranges == [None, f"bytes={cut}-"]
    assert {k: v for k, v in tree(tmp_path / "d").items() if k != MARKER} == SAVED_MODEL_FILES


@pytest.mark.slow
def test_a_server_that_never_answers_hits_the_timeout(s3: S3, tmp_path: Path) -> None:
    sha = s3.put("digits/v1.tar.gz", saved_model_tar())
    started = time.monotonic()
    with faulty_s3(s3.endpoint, Faults(stall=True)) as proxy, pytest.raises(StepError) as info:
        fetch(
            request_for(
                s3, "digits/v1.tar.gz", sha, tmp_path / "d", endpoint=proxy, timeout=3.0, retries=5
            )
        )
    elapsed = time.monotonic() - started
    assert "timed out fetching s3://" in str(info.value)
    assert "after --timeout 3s" in str(info.value)
    assert 2.5 < elapsed < 10
    assert not (tmp_path / "d").exists()


# --- the command, as the init container runs it ---------------------------------------------


def _render_fetch_container(endpoint: str, uri: str, sha: str) -> dict[str, Any]:
    """The fetch-model init container render emits for a model_source pointing at moto."""
    from mlops_sessions.config.loader import loads
    from mlops_sessions.planning.manifests import RenderInputs, render

    doc = {
        "apiVersion": "mlops/v1alpha1",
        "project": {"name": "shop"},
        "images": {
            "serve": {"repository": "ranker", "base": {"variant": "cpu", "tensorflow": "2.21.0"}}
        },
        "models": {
            "ranker": {
                "image": "serve",
                "deploy": {
                    "namespace": "shop",
                    "model_source": {
                        "type": "s3",
                        "uri": uri,
                        "endpoint": endpoint,
                        "sha256": sha,
                        "credentials_secret": "ranker-s3",
                        "timeout": "1m",
                        "retries": 2,
                    },
                },
            }
        },
    }
    config = loads(yaml.safe_dump(doc), root=Path("."), env={})
    inputs = RenderInputs(
        stable_image="registry.example.com/shop/ranker@sha256:" + "ab" * 32,
        run_id="20261124T000000Z-00000001",
        model_hash="11" * 32,
        git_commit="22" * 20,
        config_hash=config.model_hash("ranker"),
    )
    (deployment,) = [
        o for o in render(config, config.models["ranker"], inputs) if o["kind"] == "Deployment"
    ]
    (container,) = deployment["spec"]["template"]["spec"]["initContainers"]
    return dict(container)


@pytest.mark.slow
def test_the_rendered_init_container_command_fetches_for_real(s3: S3, tmp_path: Path) -> None:
    data = saved_model_tar()
    sha = s3.put("ranker/v3.tar.gz", data)
    container = _render_fetch_container(s3.endpoint, s3.uri("ranker/v3.tar.gz"), sha)
    args = list(container["args"])
    # The pod mounts the shared volume at /models; here the volume is a temp directory.
    args[args.index("--dest") + 1] = str(tmp_path / "models" / "ranker")
    # The Secret's keys become env vars of the same names, as the kubelet would set them.
    secret = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET}
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {
        item["name"]: secret[item["valueFrom"]["secretKeyRef"]["key"]] for item in container["env"]
    }
    env |= {
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "NO_PROXY": "127.0.0.1,localhost",
        "PYTHONPATH": str(REPO),
    }
    command = [sys.executable, "-m", "mlops_sessions.frontends.cli", *args, "--json"]
    done = subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["fetched"] is True and report["sha256"] == sha and report["bytes"] == len(data)
    files = tree(tmp_path / "models" / "ranker")
    files.pop(MARKER)
    assert files == SAVED_MODEL_FILES

    again = subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 0 and json.loads(again.stdout)["fetched"] is False

    bad = [*args, "--sha256", "f" * 64]  # argparse keeps the last value: a wrong checksum
    bad[bad.index("--dest") + 1] = str(tmp_path / "models" / "other")
    failed = subprocess.run(
        [sys.executable, "-m", "mlops_sessions.frontends.cli", *bad],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert failed.returncode == 1
    assert failed.stderr.startswith("mlops fetch-model: sha256 mismatch")
    assert "Traceback" not in failed.stderr
    assert not (tmp_path / "models" / "other").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--sha256", "abc"], "is not a sha256"),
        (["--timeout", "soon"], "cannot read duration"),
        (["--retries", "-1"], "must be 0 or more"),
        (["--uri", "gs://bucket/model.tar.gz"], "is not an S3 URI"),
    ],
)
def test_bad_arguments_are_refused_before_any_download(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlops_sessions.frontends.cli import main

    base = [
        "fetch-model",
        "--uri",
        "s3://b/m.tar.gz",
        "--sha256",
        "a" * 64,
        "--dest",
        str(tmp_path / "d"),
    ]
    assert main([*base, *argv]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
