"""Running cosign and syft: the binary found on PATH, a deadline, and a failure reduced to
the one line that says what went wrong.

Both tools print progress and warnings on stderr around the error itself, and cosign
repeats its error (``Error: X`` then ``error during command execution: X``); the line kept
is the first ``Error:`` line, else the last line, without those prefixes.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mlops_sessions.errors import StepError

# Both are pinned for the tests and CI (tests/cluster/components.py); any release of the
# same major version is expected to work.
INSTALL = {
    "cosign": "go install github.com/sigstore/cosign/v3/cmd/cosign@v3.1.3, or a release "
    "binary from https://github.com/sigstore/cosign/releases",
    "syft": "go install github.com/anchore/syft/cmd/syft@v1.57.2, or a release binary from "
    "https://github.com/anchore/syft/releases",
}
TIMEOUT_S = 600.0
# Sign, attest and verify in cosign's tag layout (``sha256-<hex>.sig`` / ``.att`` tags), the
# one Sigstore policy-controller reads for key-signed images; see executors/cosign/sign.py.
TAG_LAYOUT = "--new-bundle-format=false"
_PREFIXES = ("Error: ", "error during command execution: ")


@dataclass(frozen=True)
class Finished:
    """What one run of a tool returned (a non-zero code is a fact, not an exception)."""

    code: int
    stdout: str
    stderr: str

    @property
    def error(self) -> str:
        return error_line(self.stderr) or f"exit status {self.code}"


def binary(tool: str) -> str:
    """The tool's path on PATH; StepError naming how to install it when it is absent."""
    found = shutil.which(tool)
    if found is None:
        raise StepError(f"{tool} is not installed (not on PATH); install it: {INSTALL[tool]}")
    return found


def run(
    tool: str,
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = TIMEOUT_S,
) -> Finished:
    """Run tool with args; its exit code and output. Never prompts: stdin is empty, so a
    key that needs a password and has none in COSIGN_PASSWORD fails instead of waiting."""
    command = [binary(tool), *args]
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise StepError(f"{tool} {args[0]} did not finish within {timeout:.0f} s") from None
    except OSError as exc:
        raise StepError(f"cannot run {command[0]}: {exc.strerror or exc}") from None
    return Finished(done.returncode, done.stdout, done.stderr)


def check(
    tool: str,
    args: Sequence[str],
    doing: str,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = TIMEOUT_S,
) -> Finished:
    """run(), and a StepError 'cannot <doing>: <the tool's error>' when it fails."""
    done = run(tool, args, env=env, timeout=timeout)
    if done.code != 0:
        raise StepError(f"cannot {doing}: {tool} says: {done.error}{_hint(done.error)}")
    return done


def _hint(error: str) -> str:
    """The fix for cosign's two password failures, whose own words do not say it."""
    if "inappropriate ioctl for device" in error:  # it tried to prompt, with no terminal
        return (
            " (cosign asked for the key's password: set COSIGN_PASSWORD, empty for a key "
            "without one)"
        )
    if "decryption failed" in error:
        return " (COSIGN_PASSWORD is not the key's password)"
    return ""


def error_line(stderr: str) -> str:
    """The line of a tool's stderr that says what failed (see the module docstring)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    chosen = next((line for line in lines if line.startswith("Error:")), None)
    if chosen is None:
        chosen = lines[-1] if lines else ""
    for prefix in _PREFIXES:
        chosen = chosen.removeprefix(prefix)
    return chosen[:400]


def tag(digest: str, suffix: str) -> str:
    """The tag cosign's tag layout keeps a digest's signatures ('sig') or attestations
    ('att') under: 'sha256-<hex>.sig' for 'sha256:<hex>'."""
    return f"{digest.replace(':', '-', 1)}.{suffix}"


def registry_host(ref: str) -> str:
    """The registry part of an image reference ('127.0.0.1:5000' of '127.0.0.1:5000/a@...')."""
    return ref.split("/", 1)[0] if "/" in ref else "docker.io"


def plain_http(ref: str) -> bool:
    """Whether the registry may be spoken to over plain HTTP: only on loopback, the rule
    the Docker engine itself applies to registries without TLS."""
    host = registry_host(ref)
    if host.startswith("["):  # [::1]:5000
        host = host[1 : host.find("]")]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cosign_registry_flags(ref: str) -> list[str]:
    return ["--allow-http-registry"] if plain_http(ref) else []


def syft_registry_env(ref: str) -> dict[str, str]:
    # syft asks GitHub whether it is outdated unless told not to; nothing here may phone out.
    env = {"SYFT_CHECK_FOR_APP_UPDATE": "false"}
    if plain_http(ref):
        env["SYFT_REGISTRY_INSECURE_USE_HTTP"] = "true"
    return env
