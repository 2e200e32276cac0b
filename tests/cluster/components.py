"""Which versions of the control plane's parts the tests use, and how each is obtained.

Every version is pinned here or in ``k8s/go.mod`` (whose ``go.sum`` pins the hashes). Go
builds land in ``<cache>/k8s/<version>/bin`` and ``<cache>/kwok/<version>/bin``; a build that
finds its binaries already there does nothing. Builds take a file lock, so two test runs
never build the same thing at once, and write into a temporary directory that is renamed
into place, so an interrupted build leaves nothing half-built behind.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
K8S_BUILD_MODULE = HERE / "k8s"
ETCD_BUILD_MODULE = HERE / "etcd"
KWOK_VERSION = "v0.8.0"
ISTIO_API_VERSION = "v1.32.0"
TRAINING_OPERATOR_VERSION = "v1.8.1"
# Sigstore policy-controller: the ClusterImagePolicy CRD the admission policy render writes
# (planning/admission.py) is validated against.
POLICY_CONTROLLER_VERSION = "v0.13.1"
# The signing tools the image tests run for real (the product calls them when installed):
# cosign signs and verifies digests and attestations, syft makes the image's SBOM. Neither
# module has replace lines, so each is a plain `go install` at its pinned tag.
COSIGN_VERSION = "v3.1.3"
SYFT_VERSION = "v1.57.2"
# kubectl is not part of the control plane: benchmarks/cluster.py compares the product's
# API requests per deploy with `kubectl apply --server-side` of the same manifests.
DOWNLOAD_TIMEOUT_S = 600
KUBE_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")


class ComponentError(RuntimeError):
    """A part of the control plane cannot be had here; the message says which and why."""


def cache_root() -> Path:
    return Path(os.environ.get("MLOPS_TEST_CACHE") or Path.home() / ".cache" / "mlops-sessions")


def kubernetes_version() -> str:
    """The release that ``k8s/go.mod`` requires, e.g. ``v1.36.3``."""
    text = (K8S_BUILD_MODULE / "go.mod").read_text()
    found = re.search(r"^require k8s\.io/kubernetes (v\S+)$", text, re.MULTILINE)
    if found is None:
        raise ComponentError(f"{K8S_BUILD_MODULE / 'go.mod'} does not require k8s.io/kubernetes")
    return found.group(1)


def go_binary() -> str:
    found = shutil.which("go")
    if found is None:
        raise ComponentError(
            "the Go toolchain is not installed (needed to build the control plane)"
        )
    return found


def _go_env() -> dict[str, str]:
    # The toolchain on the machine builds; GOFLAGS from outside must not switch modes.
    return {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}


def module_dir(module: str, version: str) -> Path:
    """The extracted source of a published Go module (Go's own module cache keeps it)."""
    try:
        done = subprocess.run(
            [go_binary(), "mod", "download", "-json", f"{module}@{version}"],
            capture_output=True, text=True, env=_go_env(), cwd=K8S_BUILD_MODULE, check=False,
            timeout=DOWNLOAD_TIMEOUT_S,
        )  # fmt: skip
    except subprocess.TimeoutExpired as error:
        raise ComponentError(
            f"go mod download {module}@{version} took over {DOWNLOAD_TIMEOUT_S} s"
        ) from error
    try:
        info = json.loads(done.stdout)
    except json.JSONDecodeError:
        info = {}
    if done.returncode != 0 or not isinstance(info, dict) or "Dir" not in info:
        detail = (info.get("Error") if isinstance(info, dict) else None) or (
            done.stderr.strip() or done.stdout.strip()
        )
        raise ComponentError(f"go mod download {module}@{version} failed: {detail}")
    return Path(info["Dir"])


@contextmanager
def _build_lock(name: str) -> Iterator[None]:
    lock_dir = cache_root() / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _go_minor(version: str) -> str:
    return ".".join(version.removeprefix("go").split(".")[:2])


def _check_go_matches_release(release_dir: Path) -> None:
    """A release built with another Go minor serves a broken /openapi/v2; refuse that."""
    wanted = (release_dir / ".go-version").read_text().strip()
    have = subprocess.run(
        [go_binary(), "env", "GOVERSION"],
        capture_output=True,
        text=True,
        env=_go_env(),
        check=True,
    ).stdout.strip()
    if _go_minor(wanted) != _go_minor(have):
        raise ComponentError(
            f"Kubernetes {kubernetes_version()} names Go {wanted} in its .go-version but this "
            f"machine has {have}; build with a Go {_go_minor(wanted)}.x toolchain"
        )


def _build_into(
    target: Path,
    command: list[str],
    cwd: Path | None,
    env: dict[str, str],
    output: str | None = None,
) -> None:
    """Run a ``go build`` (output in a staging directory) or ``go install`` (GOBIN there),
    then move the staging directory to target in one rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    try:
        if command[1] == "build":
            command = [
                *command[:2],
                "-o",
                str(staging / output) if output else f"{staging}/",
                *command[2:],
            ]
        done = subprocess.run(
            command,
            cwd=cwd,
            env={**env, "GOBIN": str(staging)},
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise ComponentError(f"{' '.join(command)} failed:\n{done.stderr[-4000:]}")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


@dataclass(frozen=True)
class Binaries:
    """Paths of every executable the control plane runs."""

    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    etcd: Path
    kwok: Path


def kubernetes_bin_dir() -> Path:
    return cache_root() / "k8s" / kubernetes_version() / "bin"


def kwok_bin_dir() -> Path:
    return cache_root() / "kwok" / KWOK_VERSION / "bin"


def build_kubernetes() -> Path:
    """kube-apiserver, kube-controller-manager, kube-scheduler (and kubectl) at the pinned
    release, stamped with that version as the release's own build would be."""
    bin_dir = kubernetes_bin_dir()
    if all((bin_dir / name).is_file() for name in KUBE_COMMANDS):
        return bin_dir
    version = kubernetes_version()
    _check_go_matches_release(module_dir("k8s.io/kubernetes", version))
    major, minor = version.removeprefix("v").split(".")[:2]
    stamp = "k8s.io/component-base/version"
    ldflags = " ".join([
        "-s", "-w",
        f"-X {stamp}.gitVersion={version}", f"-X {stamp}.gitMajor={major}",
        f"-X {stamp}.gitMinor={minor}", f"-X {stamp}.gitTreeState=clean",
        f"-X k8s.io/client-go/pkg/version.gitVersion={version}",
    ])  # fmt: skip
    command = [go_binary(), "build", "-trimpath", "-ldflags", ldflags,
               *(f"k8s.io/kubernetes/cmd/{name}" for name in KUBE_COMMANDS)]  # fmt: skip
    return _once(bin_dir, KUBE_COMMANDS, command, cwd=K8S_BUILD_MODULE)


def build_kwok() -> Path:
    """The KWOK controller at the pinned version (its module has no replace lines)."""
    command = [go_binary(), "install", "-trimpath", "-ldflags", "-s -w",
               f"sigs.k8s.io/kwok/cmd/kwok@{KWOK_VERSION}"]  # fmt: skip
    return _once(kwok_bin_dir(), ("kwok",), command, cwd=None)


def cosign_bin_dir() -> Path:
    return cache_root() / "cosign" / COSIGN_VERSION / "bin"


def syft_bin_dir() -> Path:
    return cache_root() / "syft" / SYFT_VERSION / "bin"


def build_cosign() -> Path:
    """cosign at the pinned release, its version stamped as its own release build does."""
    stamp = "sigs.k8s.io/release-utils/version"
    ldflags = f"-s -w -X {stamp}.gitVersion={COSIGN_VERSION} -X {stamp}.gitTreeState=clean"
    command = [go_binary(), "install", "-trimpath", "-ldflags", ldflags,
               f"github.com/sigstore/cosign/v3/cmd/cosign@{COSIGN_VERSION}"]  # fmt: skip
    return _once(cosign_bin_dir(), ("cosign",), command, cwd=None) / "cosign"


def build_syft() -> Path:
    """syft at the pinned release (its version read from the module's build info)."""
    command = [go_binary(), "install", "-trimpath", "-ldflags", "-s -w",
               f"github.com/anchore/syft/cmd/syft@{SYFT_VERSION}"]  # fmt: skip
    return _once(syft_bin_dir(), ("syft",), command, cwd=None) / "syft"


def etcd_version() -> str:
    """The etcd release that ``etcd/go.mod`` requires, e.g. ``v3.6.16``."""
    text = (ETCD_BUILD_MODULE / "go.mod").read_text()
    found = re.search(r"^require go\.etcd\.io/etcd/server/v3 (v\S+)$", text, re.MULTILINE)
    if found is None:
        raise ComponentError(f"{ETCD_BUILD_MODULE / 'go.mod'} does not require etcd's server")
    return found.group(1)


def etcd_bin_dir() -> Path:
    return cache_root() / "etcd" / etcd_version() / "bin"


def build_etcd() -> Path:
    """etcd at the pinned release (Debian's 3.4 is too old for client-go's watch lists)."""
    command = [go_binary(), "build", "-trimpath", "-ldflags", "-s -w", "go.etcd.io/etcd/server/v3"]
    return _once(etcd_bin_dir(), ("etcd",), command, cwd=ETCD_BUILD_MODULE, output="etcd")


def _once(
    bin_dir: Path,
    names: tuple[str, ...],
    command: list[str],
    cwd: Path | None,
    output: str | None = None,
) -> Path:
    """bin_dir once every named binary is in it, building them under a lock if not."""
    if all((bin_dir / name).is_file() for name in names):
        return bin_dir
    with _build_lock(bin_dir.parent.parent.name):
        if not all((bin_dir / name).is_file() for name in names):
            _build_into(bin_dir, command, cwd=cwd, env=_go_env(), output=output)
    return bin_dir


def ensure_built() -> Binaries:
    """Every binary, building what the cache lacks (minutes when cold, instant when warm)."""
    k8s = build_kubernetes()
    kwok = build_kwok()
    return Binaries(
        kube_apiserver=k8s / "kube-apiserver",
        kube_controller_manager=k8s / "kube-controller-manager",
        kube_scheduler=k8s / "kube-scheduler",
        etcd=build_etcd() / "etcd",
        kwok=kwok / "kwok",
    )


def built() -> Binaries | None:
    """The binaries when every one is already in the cache, else None (no build)."""
    k8s, kwok = kubernetes_bin_dir(), kwok_bin_dir()
    paths = Binaries(
        kube_apiserver=k8s / "kube-apiserver",
        kube_controller_manager=k8s / "kube-controller-manager",
        kube_scheduler=k8s / "kube-scheduler",
        etcd=etcd_bin_dir() / "etcd",
        kwok=kwok / "kwok",
    )
    return paths if all(Path(p).is_file() for p in vars(paths).values()) else None


def kwok_stage_files() -> list[Path]:
    """KWOK's published 'fast' stages: nodes Ready with Lease heartbeats, pods Ready,
    Job pods completed, deleted pods finished."""
    root = module_dir("sigs.k8s.io/kwok", KWOK_VERSION) / "kustomize" / "stage"
    files = [
        root / "node" / "fast" / "node-initialize.yaml",
        root / "node" / "heartbeat-with-lease" / "node-heartbeat-with-lease.yaml",
        root / "pod" / "fast" / "pod-ready.yaml",
        root / "pod" / "fast" / "pod-complete.yaml",
        root / "pod" / "fast" / "pod-delete.yaml",
    ]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise ComponentError(f"KWOK {KWOK_VERSION} has no stage file {missing[0]}")
    return files


def crd_files() -> dict[str, Path]:
    """The published CRDs the product's objects need: Istio networking, Kubeflow TFJob and
    policy-controller's ClusterImagePolicy."""
    istio = module_dir("istio.io/api", ISTIO_API_VERSION)
    operator = module_dir("github.com/kubeflow/training-operator", TRAINING_OPERATOR_VERSION)
    policy = module_dir("github.com/sigstore/policy-controller", POLICY_CONTROLLER_VERSION)
    return {
        "istio": istio / "kubernetes" / "customresourcedefinitions.gen.yaml",
        "tfjob": operator / "manifests" / "base" / "crds" / "kubeflow.org_tfjobs.yaml",
        "policy-controller": policy / "config" / "300-clusterimagepolicy.yaml",
    }
