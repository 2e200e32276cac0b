"""``mlops fetch-model``: download a checked model from S3-compatible storage into a directory.

The command the ``fetch-model`` init container runs (render emits its arguments from
``deploy.model_source``; see docs/deploy.md). It needs no mlops.yaml: everything comes from
the arguments, and credentials from ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (or
any other source of boto3's default credential chain). The work is done by
:mod:`mlops_sessions.executors.s3.fetch`.

With ``--signature`` and ``--public-key`` (render adds them when the project sets
``evaluate.sign``; docs/model-signing.md) the unpacked model is verified against the
gate's signature before it is moved into ``--dest``: a model that does not verify, or whose
signed verdict is not a pass, is refused in one line, exit 1, and nothing is left in
``--dest`` for the server.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
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
    parser.add_argument(
        "--signature",
        type=argtypes.path,
        default=None,
        help="the gate's model signature (a model-signing bundle) to verify the model against",
    )
    parser.add_argument(
        "--public-key",
        type=argtypes.path,
        default=None,
        help="PEM public key the signature must verify with (with --signature)",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="with --signature: the model name the signed verdict must be for",
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
    if (args.signature is None) != (args.public_key is None):
        raise StepError("--signature and --public-key go together: pass both, or neither")
    if args.model is not None and args.signature is None:
        raise StepError("--model names the model a signed verdict is for; pass --signature too")
    check = _signature_check(args) if args.signature is not None else None
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
    result = fetch(request, log=_log, check=check)
    if result.fetched:
        text = (
            f"{result.uri} -> {result.dest} ({result.kind}, {result.size} bytes, sha256 ok, "
            f"{result.attempts} attempt{'s' if result.attempts != 1 else ''})"
        )
    else:
        text = f"{result.dest} already holds {result.uri} (sha256 {result.sha256}); nothing to do"
    emit(args, result.as_dict(), text)
    return 0


def _signature_check(args: argparse.Namespace) -> Callable[[Path], None]:
    """The verification fetch runs on the unpacked model before installing it."""
    from mlops_sessions.drivers import model_signing
    from mlops_sessions.executors.modelsign.bundle import require_library

    require_library()
    try:
        public_pem = Path(args.public_key).read_bytes()
    except OSError as exc:
        raise StepError(f"--public-key {args.public_key}: {exc.strerror or exc}") from None
    signature = Path(args.signature)
    if not signature.is_file():
        raise StepError(
            f"--signature {signature} does not exist; the model is not signed (run "
            "`mlops evaluate` with evaluate.sign, then `mlops render`)"
        )

    def check(model_dir: Path) -> None:
        verified = model_signing.check(model_dir, signature, public_pem, model=args.model)
        _log(
            f"signature ok: model digest sha256:{verified.digest[:16]}…, verdict pass, "
            f"{verified.files} files, key sha256:{verified.key_fingerprint[:16]}… "
            f"({verified.seconds:.2f}s)"
        )

    return check
