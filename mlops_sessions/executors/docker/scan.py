"""Checks on a built image before it may be pushed (``mlops scan``).

- non-root: the image config's USER is set and is neither 0 nor root;
- secrets: no layer the build added holds a secret-looking file (private keys, cloud
  credentials, ``.env``, docker/npm/pip credentials) or string (PEM private keys, AWS key
  ids, tokens). Layers come from ``docker save``, so a file deleted by a later layer is
  still found — it is still in the image. Base-image layers are the base's business and
  skipped; third-party packages in the venv get the file-name check only (libraries ship
  test keys);
- size within ``images.<name>.size_budget_mb``;
- Trivy, when ``scan.trivy`` asks for it: run when installed, a failed check when not.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath
from typing import IO, Any

from mlops_sessions.config import ImageConfig
from mlops_sessions.planning.images import VENV

MAX_SCAN_BYTES = 1 << 20  # content check reads at most 1 MiB of each file
MAX_FINDINGS = 20
# Files that are credentials by name alone.
_SECRET_NAMES = re.compile(
    r"(^|/)(id_(rsa|dsa|ecdsa|ed25519)|\.env(\.[a-z]+)?|\.netrc|\.pgpass|\.pypirc|"
    r"\.git-credentials|credentials\.json|service[-_]account[^/]*\.json|[^/]*\.(p12|pfx)|"
    r"\.aws/credentials|\.docker/config\.json|\.kube/config)$"
)
# Key-ish files: secret only when they hold a private key (CA bundles are public).
_KEY_FILES = re.compile(r"\.(pem|key|crt)$")
_SECRET_STRINGS: tuple[tuple[str, re.Pattern[bytes]], ...] = (
    (
        "private key",
        re.compile(rb"-----BEGIN (RSA |EC |DSA |OPENSSH |ENCRYPTED )?PRIVATE KEY-----"),
    ),
    ("AWS access key id", re.compile(rb"\b(AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("AWS secret key", re.compile(rb"aws_secret_access_key\s*[=:]\s*\S{20,}", re.I)),
    ("GitHub token", re.compile(rb"\bgh[pousr]_[A-Za-z0-9]{36,}\b")),
    ("Slack token", re.compile(rb"\bxox[baprs]-[A-Za-z0-9-]{10,}")),
    ("GCP service account key", re.compile(rb'"private_key"\s*:\s*"-----BEGIN')),
    ("docker registry auth", re.compile(rb'"auths"\s*:\s*\{[^}]*"auth"\s*:\s*"[A-Za-z0-9+/=]{8,}')),
)


@dataclass
class Check:
    name: str
    passed: bool
    detail: str
    findings: list[str] = field(default_factory=list)


@dataclass
class ScanReport:
    image_id: str
    ref: str
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "image_id": self.image_id,
            "ref": self.ref,
            "checks": [asdict(c) for c in self.checks],
        }

    def render(self) -> str:
        lines = [f"scan of {self.ref} ({self.image_id[:19]}):"]
        for check in self.checks:
            lines.append(f"  [{'ok' if check.passed else 'FAIL'}] {check.name}: {check.detail}")
            lines += [f"         {finding}" for finding in check.findings]
        lines.append("passed" if self.passed else "FAILED: the image must not be pushed")
        return "\n".join(lines)


class ImageGone(Exception):
    """The image to scan is no longer on the engine."""


def scan(client: Any, image_id: str, ref: str, config: ImageConfig, base: str) -> ScanReport:
    from docker.errors import ImageNotFound

    try:
        image = client.images.get(image_id)
    except ImageNotFound:
        raise ImageGone(image_id) from None
    checks = [
        check_user(image.attrs),
        check_secrets(client, image, base),
        check_size(image.attrs, config.size_budget_mb),
    ]
    if config.scan.trivy:
        checks.append(check_trivy(ref, config.scan.fail_on))
    return ScanReport(image.id, ref, checks)


def check_user(attrs: dict[str, Any]) -> Check:
    user = str((attrs.get("Config") or {}).get("User") or "")
    name = user.split(":", 1)[0]
    if name in ("", "0", "root"):
        return Check(
            "non-root",
            False,
            f"the image runs as {user or 'root (no USER)'}; "
            "keep the templates' USER instruction (images.<name>.user.uid)",
        )
    return Check("non-root", True, f"runs as user {user}")


def check_size(attrs: dict[str, Any], budget_mb: float | None) -> Check:
    size_mb = int(attrs.get("Size", 0)) / 1e6
    if budget_mb is None:
        return Check("size", True, f"{size_mb:.0f} MB (no size_budget_mb set)")
    if size_mb > budget_mb:
        return Check(
            "size",
            False,
            f"{size_mb:.0f} MB is over the budget of {budget_mb:g} MB; shrink the image "
            "(fewer packages, model outside the image) or raise images.<name>.size_budget_mb",
        )
    return Check("size", True, f"{size_mb:.0f} MB within the budget of {budget_mb:g} MB")


def check_trivy(ref: str, fail_on: tuple[str, ...]) -> Check:
    trivy = shutil.which("trivy")
    if trivy is None:
        return Check(
            "trivy",
            False,
            "trivy not installed, but images.<name>.scan.trivy is true; install Trivy "
            "(https://trivy.dev) or set scan.trivy: false",
        )
    done = subprocess.run(
        [trivy, "image", "--quiet", "--format", "json", "--severity", ",".join(fail_on), ref],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return Check("trivy", False, f"trivy failed: {done.stderr.strip()[-300:]}")
    report = json.loads(done.stdout or "{}")
    found = [
        f"{v.get('Severity')} {v.get('VulnerabilityID')} in {v.get('PkgName')}"
        for result in report.get("Results") or []
        for v in result.get("Vulnerabilities") or []
    ]
    if found:
        return Check(
            "trivy",
            False,
            f"{len(found)} vulnerabilities at {'/'.join(fail_on)}; upgrade the packages or base",
            found[:MAX_FINDINGS],
        )
    return Check("trivy", True, f"no vulnerabilities at {'/'.join(fail_on)}")


def check_secrets(client: Any, image: Any, base: str) -> Check:
    base_layers = _base_layers(client, base)
    findings: list[str] = []
    scanned = 0
    with tempfile.TemporaryFile() as saved:
        for chunk in client.api.get_image(image.id):
            saved.write(chunk)
        saved.seek(0)
        with tarfile.open(fileobj=saved, mode="r:") as archive:
            for layer_name, layer in _added_layers(archive, base_layers):
                scanned += 1
                findings += scan_layer(layer, layer_name)
    if findings:
        return Check(
            "secrets",
            False,
            f"{len(findings)} secret-looking file(s) or string(s) in the image; remove them "
            "from the build context (they stay in a layer even if deleted later) and inject "
            "secrets at run time (deploy.secrets)",
            findings[:MAX_FINDINGS],
        )
    return Check("secrets", True, f"none found in the {scanned} layer(s) this build added")


def _base_layers(client: Any, base: str) -> set[str]:
    from docker.errors import ImageNotFound

    try:
        return set(client.images.get(base).attrs["RootFS"]["Layers"])
    except (ImageNotFound, KeyError):
        return set()


def _added_layers(
    archive: tarfile.TarFile, base_layers: set[str]
) -> Iterator[tuple[str, IO[bytes]]]:
    manifest_file = archive.extractfile("manifest.json")
    assert manifest_file is not None
    manifest = json.load(manifest_file)[0]
    config_file = archive.extractfile(manifest["Config"])
    assert config_file is not None
    diff_ids = json.load(config_file)["rootfs"]["diff_ids"]
    for index, layer_path in enumerate(manifest["Layers"]):
        if index < len(diff_ids) and diff_ids[index] in base_layers:
            continue
        handle = archive.extractfile(layer_path)
        if handle is not None:
            yield f"layer {index + 1}", handle


def scan_layer(layer: IO[bytes], label: str) -> list[str]:
    """Secret-looking names and strings in one layer tar."""
    findings: list[str] = []
    venv = VENV.lstrip("/") + "/"
    with tarfile.open(fileobj=layer, mode="r|*") as tar:
        for member in tar:
            if not member.isfile():
                continue
            path = str(PurePosixPath(member.name))
            if path.startswith("./"):
                path = path[2:]
            base_name = PurePosixPath(path).name
            if base_name.startswith(".wh."):
                continue  # whiteout marker: a deletion, not a file
            if _SECRET_NAMES.search(path):
                findings.append(f"{label}: /{path} (file name)")
                continue
            if path.startswith(venv) and not _KEY_FILES.search(path):
                continue
            handle = tar.extractfile(member)
            if handle is None:
                continue
            data = handle.read(MAX_SCAN_BYTES)
            for what, pattern in _SECRET_STRINGS:
                if pattern.search(data):
                    findings.append(f"{label}: /{path} ({what})")
                    break
    return findings
