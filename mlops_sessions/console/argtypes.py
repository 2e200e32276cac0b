"""Argument validators shared by the steps' ``add_arguments`` (argparse ``type=``).

A value that ends up in a generated file, a URL, a Kubernetes or Make name, a port or a
path is checked while the command line is parsed — before the step loads anything or
writes a byte — so a bad value is an argparse error (exit 2, one line naming the option)
with a hint that says what is expected, never a file that breaks later.

Each validator takes the raw text and returns the parsed value or raises
:class:`argparse.ArgumentTypeError`; argparse prefixes the option name. Pure functions:
no imports beyond the standard library, so ``mlops --help`` stays fast.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import re
from pathlib import Path
from urllib.parse import urlsplit

__all__ = [
    "branch",
    "dns_label",
    "host",
    "http_url",
    "label",
    "make_prefix",
    "non_negative_float",
    "output_path",
    "path",
    "path_text",
    "pip_requirement",
    "port",
    "positive_float",
    "positive_int",
]

_HOST_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Branch names go into GitHub expressions ('...') and GitLab rules ("..."): quotes, `$`,
# spaces and backslashes would break or inject into the generated file, so the accepted
# set is git's (check-ref-format --branch) narrowed to characters that need no quoting.
_BRANCH_CHARS = re.compile(r"^[A-Za-z0-9._/+@-]+$")
# Make target names: no whitespace, ':', '#', '=', '%', '$', ';' or '\\' (all mean
# something to make); what is left is letters, digits and a few separators.
_MAKE_PREFIX = re.compile(r"^[A-Za-z0-9._-]*$")
# A run id or version label: one path segment, safe in URLs and file names.
_DIGITS = re.compile(r"^[0-9]+$")
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


def _refuse(message: str) -> argparse.ArgumentTypeError:
    # One line, whatever the input holds: argparse prints it after the option name.
    return argparse.ArgumentTypeError(" ".join(message.split()))


def _shown(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:77] + "...")


def port(text: str) -> int:
    """A TCP port, 0..65535 (0 = any free port)."""
    try:
        if not _DIGITS.match(text.strip()):  # int() also takes '8_501', '+80' and '٨٠'
            raise ValueError(text)
        value = int(text.strip(), 10)
    except ValueError:
        raise _refuse(
            f"{_shown(text)} is not a port; expected an integer from 0 to 65535 "
            "(0 = any free port), e.g. --port 8501"
        ) from None
    if not 0 <= value <= 65535:
        raise _refuse(
            f"{value} is out of range; a port is an integer from 0 to 65535 "
            "(0 = any free port), e.g. --port 8501"
        )
    return value


def _valid_hostname(text: str) -> bool:
    name = text[:-1] if text.endswith(".") else text
    if not name or len(name) > 253:
        return False
    labels = name.split(".")
    # An all-numeric last label reads as a (broken) IPv4 address, not a name (RFC 1123 2.1).
    if labels[-1].isdigit():
        return False
    return all(_HOST_LABEL.match(part) for part in labels)


def host(text: str) -> str:
    """A bind or connect address: an IPv4/IPv6 address or a DNS hostname."""
    candidate = text.strip()
    try:
        ipaddress.ip_address(candidate)
        return candidate
    except ValueError:
        pass
    if _valid_hostname(candidate):
        return candidate
    raise _refuse(
        f"{_shown(text)} is not an IP address or hostname; e.g. 127.0.0.1 (this machine "
        "only), 0.0.0.0 (all interfaces), :: or localhost"
    )


def http_url(text: str) -> str:
    """An http(s) URL with a valid host (and port): an S3-compatible endpoint and the like."""
    example = "e.g. https://minio.example.com:9000 or http://127.0.0.1:9000"
    if _CONTROL.search(text) or " " in text:
        raise _refuse(f"{_shown(text)} contains spaces or control characters; {example}")
    try:
        parts = urlsplit(text)
        hostname = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise _refuse(f"{_shown(text)} is not a valid URL ({exc}); {example}") from None
    if parts.scheme not in ("http", "https"):
        raise _refuse(f"{_shown(text)} is not an http(s) URL; {example}")
    try:
        ipaddress.ip_address(hostname)
    except ValueError:
        if not _valid_hostname(hostname):
            raise _refuse(f"{_shown(text)} has no valid host name; {example}") from None
    return text


def branch(text: str) -> str:
    """A git branch name (git check-ref-format --branch), free of characters to quote."""
    hint = "expected a git branch name such as main or release/1.2"
    problem = ""
    if not text:
        problem = "is empty"
    elif not _BRANCH_CHARS.match(text):
        problem = "has characters other than letters, digits and . _ / + @ -"
    elif text.startswith(("-", "/")) or text.endswith(("/", ".")) or text == "@":
        problem = "starts with '-' or '/', ends with '/' or '.', or is '@'"
    elif ".." in text or "//" in text or "@{" in text:
        problem = "contains '..', '//' or '@{'"
    elif any(p.startswith(".") or p.endswith(".lock") for p in text.split("/")):
        problem = "has a component starting with '.' or ending in '.lock'"
    if problem:
        raise _refuse(f"{_shown(text)} {problem}; {hint}")
    return text


def make_prefix(text: str) -> str:
    """A prefix for Make target names: letters, digits, '.', '_' and '-' (may be empty)."""
    if not _MAKE_PREFIX.match(text):
        raise _refuse(
            f"{_shown(text)} cannot start a Make target name (spaces, ':', '#', '=', '%', "
            "'$' and ';' mean something to make); use letters, digits, '.', '_' or '-', "
            "e.g. --prefix mlops-"
        )
    return text


def label(text: str) -> str:
    """A run id or version label: one safe path/URL segment (no '/', '..', spaces)."""
    if not _LABEL.match(text):
        raise _refuse(
            f"{_shown(text)} is not a valid id; use 1-128 letters, digits, '.', '_', '+' or "
            "'-', starting with a letter or digit (see `mlops lineage` for run ids)"
        )
    return text


def path(text: str) -> Path:
    """A file-system path: not empty, no NUL or line breaks."""
    if not text.strip():
        raise _refuse("the path is empty; name a file or directory")
    if _CONTROL.search(text):
        raise _refuse(f"{_shown(text)} contains control characters; name a plain path")
    return Path(text)


def output_path(text: str) -> Path:
    """A file to write: a valid path that is not an existing directory."""
    value = path(text)
    if value.is_dir():
        raise _refuse(f"{_shown(text)} is a directory; name the file to write inside it")
    return value


def _number(text: str, kind: type[int] | type[float], what: str) -> float:
    try:
        if kind is int and not _DIGITS.match(text.strip().lstrip("+-")):
            raise ValueError(text)
        value = kind(text.strip())
    except ValueError:
        raise _refuse(f"{_shown(text)} is not {what}") from None
    if not math.isfinite(value):
        raise _refuse(f"{_shown(text)} is not {what}")
    return value


def positive_int(text: str) -> int:
    return int(_at_least(text, int, 1, "a whole number of 1 or more, e.g. 3"))


def positive_float(text: str) -> float:
    value = _number(text, float, "a number of seconds above 0, e.g. 15")
    if value <= 0:
        raise _refuse(f"{_shown(text)} is not a number of seconds above 0, e.g. 15")
    return float(value)


def non_negative_float(text: str) -> float:
    return float(_at_least(text, float, 0, "a number of seconds of 0 or more, e.g. 0.5"))


def _at_least(text: str, kind: type[int] | type[float], minimum: float, what: str) -> float:
    value = _number(text, kind, what)
    if value < minimum:
        raise _refuse(f"{_shown(text)} is not {what}")
    return value


def pip_requirement(text: str) -> str:
    """A pip requirement as written into a generated CI file (inside a quoted shell word)."""
    if not text.strip() or _CONTROL.search(text) or any(c in text for c in '"$`\\'):
        raise _refuse(
            f"{_shown(text)} is not a pip requirement that can be written into the CI file "
            "(empty, or holds quotes, '$', '`', '\\' or control characters); e.g. "
            "--install 'mlops-sessions==1.2' or --install nox"
        )
    return text.strip()


_DNS_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def dns_label(text: str) -> str:
    """A profile or model name as mlops.yaml allows it (an RFC 1123 label)."""
    if not _DNS_LABEL.match(text):
        raise _refuse(
            f"{_shown(text)} is not a valid name; use 1-63 lower-case letters, digits and "
            "'-', starting and ending with a letter or digit (e.g. prod)"
        )
    return text


def path_text(text: str) -> str:
    """Like :func:`path`, for options the step reads as text (e.g. --kubeconfig)."""
    path(text)
    return text
