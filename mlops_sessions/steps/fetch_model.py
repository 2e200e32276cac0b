"""``mlops fetch-model``: download a checked model from S3-compatible storage into a directory.

The command the ``fetch-model`` init container runs (render emits its arguments from
``deploy.model_source``; see docs/deploy.md). It needs no mlops.yaml: everything comes from
the arguments, and credentials from ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (or
any other source of boto3's default credential chain). The work is done by
:mod:`mlops_sessions.executors.s3.fetch`.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from mlops_sessions.console import argtypes
from mlops_sessions.console.common import emit
from mlops_sessions.errors import StepError
from mlops_sessions.planning.training import parse_duration

_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # --uri, --sha256, --timeout and --retries are checked at the top of run() (exit 1,
    # before any download or write); the options below are checked while parsing.
    parser.add_argument("--uri", required=True, help="s3://bucket/path/model.tar.gz (or a file)")
    parser.add_argument(
        "--sha256", required=True, help="expected sha256 of the object (64 hex digits)"
    )
    parser.add_argument(
        "--dest",
        required=True,
        type=argtypes.path,
        help="directory the model ends up in (e.g. /models/m)",
    )
    parser.add_argument(
        "--timeout", default="10m", help="give up the download after this long (default: 10m)"
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=3,
        help="retries after a network error, 5xx or throttling answer (default: 3)",
    )
    parser.add_argument(
        "--endpoint",
        type=argtypes.http_url,
        default=None,
        help="S3-compatible endpoint URL (MinIO, Ceph ...); default: AWS S3",
    )


def _log(line: str) -> None:
    print(f"fetch-model: {line}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    if _SHA256.match(args.sha256) is None:
        raise StepError(
            f"--sha256 {args.sha256!r} is not a sha256; pass the 64 hex digits that "
            "`sha256sum model.tar.gz` prints"
        )
    timeout = parse_duration(args.timeout)
    if timeout <= 0:
        raise StepError(f"--timeout {args.timeout!r} must be longer than zero, e.g. 10m")
    if args.retries < 0:
        raise StepError(f"--retries {args.retries} must be 0 or more")
    # Lazily imported: boto3 is the 'fetch' extra.
    from mlops_sessions.executors.s3.fetch import FetchRequest, fetch, parse_uri, require_boto3

    parse_uri(args.uri)  # a malformed URI is refused before boto3 is even imported
    require_boto3()
    request = FetchRequest(
        uri=args.uri,
        sha256=args.sha256.lower(),
        dest=Path(args.dest).absolute(),
        timeout=timeout,
        retries=args.retries,
        endpoint=args.endpoint,
    )
    result = fetch(request, log=_log)
    if result.fetched:
        text = (
            f"{result.uri} -> {result.dest} ({result.kind}, {result.size} bytes, sha256 ok, "
            f"{result.attempts} attempt{'s' if result.attempts != 1 else ''})"
        )
    else:
        text = f"{result.dest} already holds {result.uri} (sha256 {result.sha256}); nothing to do"
    emit(args, result.as_dict(), text)
    return 0
