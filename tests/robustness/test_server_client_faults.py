"""Class 5 (issue 12): the model server blames the client only for the client's faults.

A real server process (the aiohttp app, codec, batcher, metrics and lifecycle, with a numpy
stand-in for the model so it starts in a second) is sent, over raw sockets:

- bodies that do not match their ``Content-Encoding`` (gzip header on a plain body,
  truncated gzip, deflate garbage, trailing bytes), unsupported encodings (415 with
  ``Accept-Encoding``) and a decompression bomb (413) — never a 500;
- bodies shorter than their ``Content-Length``, and bodies trickled byte by byte: a 408
  after the read timeout, and the connection is closed;
- a hypothesis fuzz of hostile header/body combinations (encodings, lengths, chunking,
  content types, Expect, garbage) — no answer is a 5xx;

and after each, ``mlops_serve_requests_total`` shows no 5xx at all: a 5xx feeds alerts and
the rollout's error rate. Correctly compressed bodies are decoded and answered 200.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.serve.conftest import free_port

PREDICT = "/v1/models/stub:predict"
READ_TIMEOUT = 0.6
LIMIT = 65536
STUB = textwrap.dedent(
    """
    import logging
    import sys
    from pathlib import Path
    import numpy as np
    from mlops_sessions.server.lifecycle import serve
    from mlops_sessions.server.runtime import Signature, TensorInfo
    from mlops_sessions.server.settings import ModelIdentity, ServerSettings

    F32 = np.dtype("float32")

    class Stub:
        signature = Signature(
            {"pixels": TensorInfo("pixels", F32, (None, 4))},
            {"output_0": TensorInfo("output_0", F32, (None, 2))},
        )

        def predict(self, inputs):
            return {"output_0": inputs["pixels"][:, :2] * 2}

    logging.basicConfig(level=logging.WARNING)  # as `mlops serve` configures it
    serve(
        ModelIdentity("stub", "1", Path(".")),
        ServerSettings(
            port=int(sys.argv[1]),
            grpc_port=int(sys.argv[4]) if len(sys.argv) > 4 else 0,
            drain_s=2.0,
            read_timeout_s=float(sys.argv[2]),
            max_body_bytes=int(sys.argv[3]),
        ),
        lambda url: print("ready", url, flush=True),
        loader=lambda path, rows: Stub(),
    )
    """
)
VALID = json.dumps({"instances": [[0.5, 1.0, 0.0, 0.0]]}).encode()
ANSWER = {"predictions": [[1.0, 2.0]]}


@dataclass
class Reply:
    status: int | None  # None: the server closed the connection without answering
    headers: dict[str, str]
    body: bytes
    closed: bool  # the server closed the connection after this answer


def exchange(
    port: int, raw: bytes, *, pause: float = 0.0, timeout: float = 10.0, wait_close: bool = False
) -> Reply:
    """Send raw bytes (in two parts with ``pause`` between them) and read one answer.

    With ``wait_close``, also wait (up to two read timeouts) for the server to close the
    connection; ``closed`` says whether it did.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        head, _, tail = raw.partition(b"\r\n\r\n")
        sock.sendall(head + b"\r\n\r\n")
        if pause:
            time.sleep(pause)
        with contextlib.suppress(OSError):  # it may have answered and closed: read that
            sock.sendall(tail)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return Reply(None, {}, data, True)
            data += chunk
        header_text, _, body = data.partition(b"\r\n\r\n")
        lines = header_text.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])
        }
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        closed = False
        if wait_close:
            sock.settimeout(2 * READ_TIMEOUT + 2)
            with contextlib.suppress(TimeoutError, OSError):
                closed = sock.recv(1) == b""
        return Reply(status, headers, body[:length], closed)


def request(
    body: bytes, headers: dict[str, str] | None = None, *, length: int | None = None
) -> bytes:
    fields = {"Host": "127.0.0.1", "Content-Type": "application/json", **(headers or {})}
    if "Transfer-Encoding" not in fields:
        fields["Content-Length"] = str(len(body) if length is None else length)
    head = "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    return f"POST {PREDICT} HTTP/1.1\r\n{head}\r\n".encode("latin-1") + body


@dataclass
class StubServer:
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    grpc_port: int = 0

    def new_log_lines(self, action: Callable[[], object], wait: float = 5.0) -> list[str]:
        """The server's log lines written while action ran (waiting up to wait seconds for
        the first to land)."""
        before = self.log.stat().st_size
        action()
        deadline = time.monotonic() + wait
        while self.log.stat().st_size == before and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # anything else it writes about the same fault (it must not)
        text = self.log.read_bytes()[before:].decode(errors="replace")
        return [line for line in text.splitlines() if line.strip()]

    def metrics(self) -> str:
        reply = exchange(
            self.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        assert reply.status == 200
        return reply.body.decode()

    def server_errors(self) -> float:
        """Sum of mlops_serve_requests_total over 5xx codes."""
        total = 0.0
        for line in self.metrics().splitlines():
            if re.match(r'mlops_serve_requests_total\{.*code="5', line):
                total += float(line.rsplit(" ", 1)[1])
        return total


@pytest.fixture(scope="module")
def stub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StubServer]:
    with _stub_server(tmp_path_factory, grpc=False) as server:
        yield server


@contextlib.contextmanager
def _stub_server(tmp_path_factory: pytest.TempPathFactory, *, grpc: bool) -> Iterator[StubServer]:
    port, grpc_port = free_port(), free_port() if grpc else 0
    log = tmp_path_factory.mktemp("fault-server") / "server.log"
    args = [str(port), str(READ_TIMEOUT), str(LIMIT), *([str(grpc_port)] if grpc else [])]
    with open(log, "wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-c", STUB, *args],
            env={**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3"},
            stdout=sink,
            stderr=sink,
        )
    server = StubServer(port, process, log, grpc_port)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text(errors="replace")[-2000:]
            assert time.monotonic() < deadline, "stub server not ready in 60 s"
            try:
                ready = exchange(
                    port, b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                )
                if ready.status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


MISMATCHED = {
    "gzip header, plain body": ("gzip", VALID, 400),
    "deflate header, plain body": ("deflate", b"{not deflate at all}", 400),
    "truncated gzip": ("gzip", gzip.compress(VALID)[:12], 400),
    "gzip, only the magic": ("gzip", b"\x1f\x8b", 400),
    "deflate garbage": ("deflate", b"\x78\x9c garbage garbage", 400),
    "gzip then trailing garbage": ("gzip", gzip.compress(VALID) + b"junk", 400),
    "deflate then trailing bytes": ("deflate", zlib.compress(VALID) + b"x", 400),
    "double gzip declared once": ("gzip", gzip.compress(gzip.compress(VALID)), 400),
    "unknown encoding": ("snappy", VALID, 415),
    "brotli (not supported)": ("br", b"\x8b\x02\x80", 415),
    "zstd (not supported)": ("zstd", b"(\xb5/\xfd", 415),
    "compress (LZW)": ("compress", VALID, 415),
    "one unknown in a list": ("gzip, foo", gzip.compress(VALID), 415),
    "bomb": ("gzip", gzip.compress(b" " * (LIMIT * 40)), 413),
}


@pytest.mark.parametrize("name", list(MISMATCHED))
def test_body_not_matching_its_encoding_is_the_clients_fault(stub: StubServer, name: str) -> None:
    encoding, body, expected = MISMATCHED[name]
    before = stub.server_errors()
    reply = exchange(stub.port, request(body, {"Content-Encoding": encoding}))
    assert reply.status == expected, reply.body[:300]
    assert "error" in json.loads(reply.body)
    if expected == 415:
        assert reply.headers.get("accept-encoding") == "gzip, deflate, identity"
    assert stub.server_errors() == before == 0


ENCODED = {
    "gzip": ("gzip", gzip.compress(VALID)),
    "x-gzip": ("x-gzip", gzip.compress(VALID)),
    "GZIP upper case": ("GZIP", gzip.compress(VALID)),
    "deflate (zlib)": ("deflate", zlib.compress(VALID)),
    "deflate (raw, as some clients send)": ("deflate", _raw_deflate(VALID)),
    "identity": ("identity", VALID),
    "gzip then deflate": ("gzip, deflate", zlib.compress(gzip.compress(VALID))),
    "two gzip members": ("gzip", gzip.compress(VALID[:10]) + gzip.compress(VALID[10:])),
}


@pytest.mark.parametrize("name", list(ENCODED))
def test_correctly_encoded_bodies_are_served(stub: StubServer, name: str) -> None:
    encoding, body = ENCODED[name]
    reply = exchange(stub.port, request(body, {"Content-Encoding": encoding}))
    assert reply.status == 200, reply.body[:300]
    assert json.loads(reply.body) == ANSWER


def test_body_shorter_than_its_content_length_gets_a_408(stub: StubServer) -> None:
    before = stub.server_errors()
    started = time.monotonic()
    reply = exchange(stub.port, request(VALID[:10], length=len(VALID)), wait_close=True)
    took = time.monotonic() - started
    assert reply.status == 408, reply.body[:300]
    assert "serve.read_timeout" in json.loads(reply.body)["error"]
    assert reply.closed
    assert READ_TIMEOUT * 0.9 <= took < READ_TIMEOUT + 5
    assert stub.server_errors() == before == 0


def test_trickled_body_cannot_hold_the_connection(stub: StubServer) -> None:
    """A client sending a byte at a time, each well within any idle timeout."""
    with socket.create_connection(("127.0.0.1", stub.port), timeout=10) as sock:
        sock.sendall(request(b"", length=len(VALID)))
        started = time.monotonic()
        answer = b""
        for byte in VALID:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            sock.settimeout(0.1)
            with contextlib.suppress(TimeoutError):
                answer += sock.recv(65536)
            if answer:
                break
        sock.settimeout(10)
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert time.monotonic() - started < READ_TIMEOUT + 5


# --- generated hostile header/body combinations ---------------------------------------------

encodings = st.one_of(
    st.sampled_from(["gzip", "deflate", "identity", "br", "x-gzip", "", " , ", "gzip,gzip"]),
    st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=12),
)
bodies = st.one_of(
    st.just(VALID),
    st.binary(max_size=200),
    st.just(gzip.compress(VALID)),
    st.builds(lambda n: gzip.compress(VALID)[:n], st.integers(0, 40)),
    st.builds(lambda n: zlib.compress(VALID)[:n], st.integers(0, 40)),
    st.just(gzip.compress(b"[" * 5000)),
)
content_types = st.sampled_from(
    ["application/json", "text/plain", "application/json; charset=latin-1", "", "x/\x7f"]
)


@st.composite
def hostile(draw: st.DrawFn) -> tuple[bytes, bool]:
    """(raw request, whether the body may be shorter than announced)."""
    body = draw(bodies)
    headers: dict[str, str] = {"Content-Type": draw(content_types)}
    if draw(st.booleans()):
        headers["Content-Encoding"] = draw(encodings)
    if draw(st.integers(0, 9)) == 0:
        headers["Expect"] = draw(st.sampled_from(["100-continue", "nonsense"]))
    framing = draw(st.sampled_from(["length", "length", "longer", "shorter", "chunked", "bad"]))
    if framing == "chunked":
        headers["Transfer-Encoding"] = "chunked"
        chunk = draw(st.sampled_from(["ok", "bad-size", "no-end"]))
        if chunk == "ok":
            body = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
        elif chunk == "bad-size":
            body = b"zz\r\n" + body + b"\r\n0\r\n\r\n"
        else:
            body = f"{len(body) + 7:x}\r\n".encode() + body
        return request(body, headers), chunk == "no-end"
    if framing == "bad":
        headers["Content-Length"] = draw(st.sampled_from(["-1", "abc", "1e3", "99999999999999"]))
        return request(body, headers), False
    if framing == "longer":  # announced more than sent: must time out with a 408
        return request(body, headers, length=len(body) + draw(st.integers(1, 50))), True
    if framing == "shorter":  # announced less: the rest is parsed as the next request
        return request(body, headers, length=max(0, len(body) - draw(st.integers(1, 5)))), False
    return request(body, headers), False


# The fast tier sends a few dozen generated requests (a minute of read timeouts is not an
# edit-test loop); the slow tier the full fuzz.
EXAMPLES = {"fast": 40, "full": 300}


@pytest.mark.parametrize("tier", ["fast", pytest.param("full", marks=pytest.mark.slow)])
@pytest.mark.slow
def test_generated_hostile_requests_never_get_a_5xx(stub: StubServer, tier: str) -> None:
    examples = EXAMPLES[tier]
    seen: dict[int | None, int] = {}

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(case=hostile())
    def fuzz(case: tuple[bytes, bool]) -> None:
        raw, may_stall = case
        reply = exchange(stub.port, raw, timeout=READ_TIMEOUT + 5, wait_close=may_stall)
        seen[reply.status] = seen.get(reply.status, 0) + 1
        assert reply.status is not None, f"no answer to {raw[:300]!r}"
        assert reply.status < 500, f"{reply.status} for {raw[:300]!r}: {reply.body[:300]!r}"
        if may_stall and reply.status == 408:
            assert reply.closed

    fuzz()
    assert sum(seen.values()) >= examples
    assert any(s is not None and 400 <= s < 500 for s in seen) and 200 in seen, seen
    assert stub.server_errors() == 0
    # Still alive and still right.
    reply = exchange(stub.port, request(VALID))
    assert reply.status == 200 and json.loads(reply.body) == ANSWER
    assert stub.process.poll() is None


def test_metrics_never_counted_a_5xx(stub: StubServer) -> None:
    # Module-scoped server: after every case above, not one 5xx was counted.
    metrics = stub.metrics()
    assert 'code="400"' in metrics and 'code="5' not in metrics


@settings(max_examples=400, deadline=None, database=None, derandomize=True)
@given(
    data=st.binary(max_size=300),
    coding=st.sampled_from(["gzip", "deflate", "x-gzip", "gzip, deflate", "identity"]),
    garbage=st.binary(max_size=60),
)
def test_decoder_round_trips_and_refuses_only_with_a_4xx(
    data: bytes, coding: str, garbage: bytes
) -> None:
    """decode_content, the server's decoder: encoded bodies round-trip; anything else sent
    under an encoding header is a RequestError with a 4xx, never another exception."""
    from mlops_sessions.server.codec import RequestError, decode_content

    encoded = data
    for part in [c.strip() for c in coding.split(",")]:
        encoded = {"deflate": zlib.compress, "identity": bytes}.get(part, gzip.compress)(encoded)
    assert decode_content(encoded, coding, LIMIT) == data
    for hostile_body in (garbage, encoded[: len(encoded) // 2], encoded + garbage):
        try:
            decode_content(hostile_body, coding, LIMIT)
        except RequestError as exc:
            assert 400 <= exc.status < 500 and "\n" not in exc.message


# --- a client's fault while the body is read: one log line, never a stack trace -----------

HEAD = f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n".encode()
# name: (raw request, seconds to wait before hanging up (None: read the answer), the status
# the client gets (None: it hung up), words of the one log line)
BODY_FAULTS: dict[str, tuple[bytes, float | None, int | None, str]] = {
    "disconnect mid-body": (
        HEAD + b"Content-Length: 100\r\n\r\n" + VALID[:10],
        0.2,
        None,
        "closed the connection",
    ),
    "disconnect mid-chunk": (
        HEAD + b"Transfer-Encoding: chunked\r\n\r\n40\r\n" + VALID[:10],
        0.2,
        None,
        "closed the connection",
    ),
    "Content-Length not a number": (
        HEAD + b"Content-Length: abc\r\n\r\n{}",
        None,
        400,
        "malformed HTTP request",
    ),
    "negative Content-Length": (
        HEAD + b"Content-Length: -5\r\n\r\n{}",
        None,
        400,
        "malformed HTTP request",
    ),
    "two Content-Lengths": (
        HEAD + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        None,
        400,
        "malformed HTTP request",
    ),
    "broken chunk size": (
        HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n",
        None,
        400,
        "malformed HTTP request",
    ),
    "slow body": (HEAD + b"Content-Length: 100\r\n\r\n{", None, 408, "serve.read_timeout"),
    "oversize by its Content-Length": (
        HEAD + f"Content-Length: {LIMIT * 10}\r\n\r\n".encode() + b"x" * 100,
        None,
        413,
        "serve.max_body_bytes",
    ),
    "oversize chunked": (
        HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + (b"8000\r\n" + b" " * 0x8000 + b"\r\n") * 3,
        None,
        413,
        "serve.max_body_bytes",
    ),
    "body not its encoding": (
        HEAD + b"Content-Encoding: gzip\r\nContent-Length: 4\r\n\r\n{}{}",
        None,
        400,
        "gzip",
    ),
}


def _send(port: int, raw: bytes, hang_up_after: float | None) -> int | None:
    """Send raw; hang up after a pause, or read the status line of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT + 10) as sock:
        sock.sendall(raw)
        if hang_up_after is not None:
            time.sleep(hang_up_after)
            return None
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return int(answer.split()[1]) if answer.startswith(b"HTTP/") else None


@pytest.mark.parametrize("name", list(BODY_FAULTS))
def test_a_body_fault_is_one_log_line_and_a_4xx(stub: StubServer, name: str) -> None:
    raw, hang_up_after, expected, words = BODY_FAULTS[name]
    statuses: list[int | None] = []
    lines = stub.new_log_lines(lambda: statuses.append(_send(stub.port, raw, hang_up_after)))
    assert statuses == [expected]
    assert len(lines) == 1, "\n".join(lines)  # one line: no traceback, no second message
    assert "client 127.0.0.1" in lines[0] and words in lines[0], lines
    assert lines[0].startswith("WARNING:"), lines
    answered = "no answer" if expected is None else f"answered {expected}"
    assert answered in lines[0], lines
    assert stub.server_errors() == 0


@pytest.mark.slow  # the gRPC listener imports TF Serving's protos, which import TensorFlow
def test_grpc_faults_log_one_line_or_nothing(tmp_path_factory: pytest.TempPathFactory) -> None:
    """gRPC alike: bytes that are not a valid message are one log line (INVALID_ARGUMENT);
    faults of gRPC's own framing are answered or dropped by its core, and log nothing."""
    grpc = pytest.importorskip("grpc")
    pytest.importorskip("tensorflow_serving")

    def frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
        return (
            len(payload).to_bytes(3, "big")
            + bytes([kind, flags])
            + stream.to_bytes(4, "big")
            + payload
        )

    def literal(name: str, value: str) -> bytes:  # HPACK: literal, new name, no Huffman
        return b"\x00" + bytes([len(name)]) + name.encode() + bytes([len(value)]) + value.encode()

    headers = b"".join(
        literal(k, v)
        for k, v in [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/tensorflow.serving.PredictionService/Predict"),
            (":authority", "x"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ]
    )
    start = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b"") + frame(1, 4, 1, headers)
    framing_faults = {
        "message cut short, then hang up": frame(
            0, 0, 1, b"\x00" + (1000).to_bytes(4, "big") + b"x" * 10
        ),
        "message over the limit": frame(
            0, 0, 1, b"\x00" + (50_000_000).to_bytes(4, "big") + b"x" * 100
        ),
        "garbage frames": b"\xff" * 64,
    }
    with _stub_server(tmp_path_factory, grpc=True) as server:

        def raw(data: bytes) -> None:
            with socket.create_connection(("127.0.0.1", server.grpc_port), timeout=5) as sock:
                sock.sendall(start + data)
                time.sleep(0.3)

        for name, data in framing_faults.items():
            lines = server.new_log_lines(lambda data=data: raw(data), wait=1.0)
            assert lines == [], (name, lines)

        channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
        call = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
        codes: list[object] = []

        def invalid() -> None:
            try:
                call(b"\xff\xff\xff\xff\xff", timeout=10)
            except grpc.RpcError as exc:
                codes.append(exc.code())

        lines = server.new_log_lines(invalid)
        channel.close()
        assert codes == [grpc.StatusCode.INVALID_ARGUMENT]
        assert len(lines) == 1 and "not a valid message" in lines[0], lines
        assert lines[0].startswith("WARNING:") and "answered INVALID_ARGUMENT" in lines[0]
