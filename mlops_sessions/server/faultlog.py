"""Client faults in the server log: one line each, never a stack trace.

A malformed request (a bad ``Content-Length``, broken chunked framing, an invalid request
line) is rejected by aiohttp's HTTP parser before any route runs; aiohttp answers it 400 and
logs the parser's exception with its traceback at ERROR, as if the server had failed. It
did not: the client did. :class:`ClientFaultFilter`, installed on aiohttp's server logger,
rewrites exactly those records into one WARNING line that names the client and the parser's
reason; every other record (a real server error) passes untouched, traceback and all.

Faults seen by the routes themselves (a body cut short, too slow, too big, not matching its
encoding) are logged by :mod:`mlops_sessions.server.app` in the same one-line form
(:func:`client_fault_line`), and so is a gRPC request whose bytes are not a valid message
(:mod:`mlops_sessions.server.grpc_api`). Faults of gRPC's own framing (a message cut short,
garbage frames, an oversize message) never reach Python: gRPC's core answers or drops them
and nothing is logged at all.
"""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError

# aiohttp's logger for errors raised while handling a connection (web_protocol).
AIOHTTP_SERVER_LOGGER = "aiohttp.server"
# Exceptions that mean the client sent something the HTTP parser refuses, or went away.
CLIENT_FAULTS: tuple[type[BaseException], ...] = (HttpProcessingError, ConnectionResetError)


def client_fault_line(remote: object, what: str, status: object) -> str:
    """'client 10.0.0.7: <what> (answered 400)' — the one form of every client-fault line
    (status: the HTTP status or gRPC code sent; None when the client is gone)."""
    answered = f"answered {status}" if status is not None else "no answer: it is gone"
    return f"client {remote or '?'}: {what} ({answered})"


class ClientFaultFilter(logging.Filter):
    """Turns aiohttp's traceback for a client's malformed request into one warning line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, CLIENT_FAULTS):
            return True
        remote = record.args[0] if isinstance(record.args, tuple) and record.args else None
        if isinstance(exc, HttpProcessingError):
            # The parser's message spans lines (it quotes the offending bytes): its first.
            reason = next((ln.strip() for ln in exc.message.splitlines() if ln.strip()), "")
            what = f"malformed HTTP request ({reason or type(exc).__name__})"
            status: int | None = exc.code or 400
        else:
            what, status = "closed the connection mid-request", None
        record.msg = client_fault_line(remote, what[:300], status)
        record.args = ()
        record.exc_info = None
        record.exc_text = None
        record.levelno = logging.WARNING
        record.levelname = logging.getLevelName(logging.WARNING)
        return True


def install() -> None:
    """Put the filter on aiohttp's server logger (once per process)."""
    logger = logging.getLogger(AIOHTTP_SERVER_LOGGER)
    if not any(isinstance(f, ClientFaultFilter) for f in logger.filters):
        logger.addFilter(ClientFaultFilter())
