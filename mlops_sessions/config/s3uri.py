"""The rules of an ``s3://bucket/key`` data input and of its declared sha256. Pure.

``data.<name>.uri`` names one object in S3-compatible storage and ``data.<name>.sha256``
its digest. The schema checks the spelling with :data:`OBJECT_URI_PATTERN` and
:data:`SHA256_PATTERN` (a test keeps the schema's copies equal to these); the rules a
pattern cannot say well (two dots in a row, an IP address as bucket, reserved prefixes and
suffixes, control characters, the key's length) are :func:`object_uri_problem`, which the
cross-field checks run and which also explains a pattern failure in one line with the fix.

Bucket names follow S3's rules for general purpose buckets: 3 to 63 lower-case letters,
digits, '.' and '-', starting and ending with a letter or digit.
"""

from __future__ import annotations

import re

# Kept equal to the schema's $defs/dataInput uri and sha256 patterns.
OBJECT_URI_PATTERN = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[^\x00-\x1f\x7f]*[^/\x00-\x1f\x7f]$"
SHA256_PATTERN = r"^[0-9a-f]{64}$"

FORM = "write it as s3://bucket/path/to/file (one object)"
_BUCKET_CHARS = re.compile(r"^[a-z0-9.-]+$")
_IPV4 = re.compile(r"^[0-9]{1,3}(\.[0-9]{1,3}){3}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
MAX_KEY_BYTES = 1024


def split(uri: str) -> tuple[str, str]:
    """(bucket, key) of a URI :func:`object_uri_problem` accepts."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def object_uri_problem(uri: str) -> tuple[str, str] | None:
    """(what is wrong, the fix) when uri is not ``s3://bucket/key`` of one object, else None."""
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme != "s3":
        return _scheme_problem(uri, scheme if sep else "")
    bucket, slash, key = rest.partition("/")
    if not bucket:
        return f"{uri!r} names no bucket", FORM
    problem = bucket_problem(bucket)
    if problem is not None:
        return f"bucket {bucket[:80]!r} {problem[0]}", problem[1]
    if not slash or not key:
        return f"{uri!r} names a bucket but no object", FORM
    if _CONTROL.search(key):
        return "the object key holds control characters (a newline?)", "remove them"
    if key.endswith("/"):
        return (
            f"{uri!r} ends with '/': that is a folder, not one object",
            "name one file; pack a folder into one archive and unpack it in the training code",
        )
    if key.rsplit("/", 1)[-1] in (".", ".."):
        return f"{uri!r} ends in {key.rsplit('/', 1)[-1]!r}, not a file name", FORM
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        return f"the object key is longer than S3's {MAX_KEY_BYTES} bytes", "shorten it"
    return None


def _scheme_problem(uri: str, scheme: str) -> tuple[str, str]:
    if scheme.lower() in ("s3", "s3a", "s3n"):
        return (
            f"{uri!r} starts with '{scheme}://'",
            f"write s3:// (lower case), e.g. s3://{uri.partition('://')[2] or 'bucket/key'}",
        )
    if scheme in ("http", "https"):
        return (
            f"{uri!r} is an HTTP URL",
            "data inputs are fetched through the S3 API: write s3://bucket/key and put the "
            "server in store.endpoint (or MLOPS_STORE_ENDPOINT)",
        )
    if not scheme:
        return (
            f"{uri!r} is not a URI",
            f"{FORM}; a file in the project is data.<name>.path instead",
        )
    return f"{uri!r} is not an s3:// URI (scheme '{scheme}')", FORM


def bucket_problem(bucket: str) -> tuple[str, str] | None:
    """(what is wrong with the bucket name, the fix) by S3's naming rules, or None."""
    lower = bucket.lower()
    if bucket != lower and _BUCKET_CHARS.match(lower) and bucket_problem(lower) is None:
        return "has upper-case letters", f"S3 bucket names are lower case: '{lower}'"
    if not 3 <= len(bucket) <= 63:
        return (
            f"has {len(bucket)} characters",
            "an S3 bucket name has 3 to 63 characters",
        )
    if not _BUCKET_CHARS.match(bucket):
        bad = sorted({c for c in bucket if not re.match(r"[a-z0-9.-]", c)})
        fixed = re.sub(r"[^a-z0-9.-]", "-", lower)
        shown = ", ".join(repr(c) for c in bad)
        return (
            f"holds {shown}",
            f"S3 bucket names have only lower-case letters, digits, '.' and '-' (e.g. '{fixed}')",
        )
    if not (bucket[0].isalnum() and bucket[-1].isalnum()):
        return (
            "does not start and end with a letter or digit",
            "drop the leading/trailing '.' or '-'",
        )
    if ".." in bucket:
        return "has two dots in a row", "S3 bucket names have no '..'"
    if _IPV4.match(bucket):
        return "is an IP address", "name the bucket, and put the server in store.endpoint"
    for prefix in _RESERVED_PREFIXES:
        if bucket.startswith(prefix):
            return f"starts with {prefix!r}, which S3 reserves", "use the bucket's real name"
    for suffix in _RESERVED_SUFFIXES:
        if bucket.endswith(suffix):
            return f"ends with {suffix!r}, which S3 reserves", "use the bucket's real name"
    return None


def sha256_problem(value: str) -> tuple[str, str] | None:
    """(what is wrong, the fix) when value is not 64 lower-case hex digits, else None."""
    if re.fullmatch(r"[0-9a-f]{64}", value):
        return None
    if _HEX64.match(value):
        return "the sha256 has upper-case hex digits", f"write it in lower case: {value.lower()}"
    stripped = value.removeprefix("sha256:")
    if stripped != value and re.fullmatch(SHA256_PATTERN, stripped.lower()):
        return "the sha256 has a 'sha256:' prefix", f"write the digits alone: {stripped.lower()}"
    return (
        f"{value[:80]!r} is not a sha256 ({len(value)} characters)",
        "put the 64 hex digits `sha256sum <file>` prints for the object",
    )
