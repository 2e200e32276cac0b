"""Fixtures for image tests: a real Docker engine, a real registry, a real base image.

- ``docker_env`` (session): starts ``dockerd`` on a private unix socket (overlay2 when the
  kernel allows it, else vfs; ``MLOPS_TEST_DOCKER_DRIVER`` forces one), Debian's
  ``docker-registry`` on 127.0.0.1:<free port>, and imports a Debian bookworm base built by
  ``debootstrap`` (cached under /var/tmp/mlops-test-base across runs). Both processes are
  stopped at the end of the session. Missing tools -> ``require_real`` (skip locally,
  failure in CI).
- ``make_project`` (function): a throw-away git project with mlops.yaml, a lock, model code
  and a store holding a trained (optionally blessed) run. Pure planner tests use a small
  stand-in SavedModel directory; Docker tests pass ``real_model`` (a tiny Keras export).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import require_real

BASE_CACHE = Path(os.environ.get("MLOPS_TEST_BASE_CACHE", "/var/tmp/mlops-test-base"))
BASE_IMAGE = "mlops-test-base:bookworm"
DEBIAN_MIRROR = os.environ.get("MLOPS_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
START_TIMEOUT_S = 60.0
MODEL = "tiny"
SMALL_LOCK = "numpy==2.4.6\n"  # a lock without TensorFlow: builds in under a minute


@dataclass(frozen=True)
class DockerEnv:
    host: str  # unix:///.../docker.sock
    registry: str  # 127.0.0.1:<port>
    base: str
    driver: str

    def client(self) -> Any:
        import docker

        return docker.DockerClient(base_url=self.host, timeout=1800)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _start_dockerd(root: Path, driver: str) -> tuple[subprocess.Popen[bytes], str]:
    sock = root / "docker.sock"
    # The child keeps its own copy of the log descriptor; ours closes with the block.
    with open(root / f"dockerd-{driver}.log", "wb") as log:
        process = _popen_dockerd(root, driver, sock, log)
    host = f"unix://{sock}"
    deadline = time.monotonic() + START_TIMEOUT_S
    import docker

    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        if not sock.exists():  # the SDK leaks a socket when it cannot connect at all
            time.sleep(0.3)
            continue
        with contextlib.suppress(Exception):
            with contextlib.closing(docker.DockerClient(base_url=host, timeout=5)) as probe:
                probe.ping()
            return process, host
        time.sleep(0.3)
    _stop(process)
    tail = (root / f"dockerd-{driver}.log").read_text(errors="replace")[-1500:]
    raise RuntimeError(f"dockerd ({driver}) did not start:\n{tail}")


def _popen_dockerd(root: Path, driver: str, sock: Path, log: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            "dockerd",
            f"--storage-driver={driver}",
            "--iptables=false",
            "--ip-masq=false",
            "--bridge=none",
            f"--data-root={root / 'data'}",
            f"--exec-root={root / 'exec'}",
            f"--pidfile={root / 'dockerd.pid'}",
            f"--host=unix://{sock}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _base_tarball() -> Path:
    """The debootstrap rootfs as a tar, built once and kept across test sessions."""
    tarball = BASE_CACHE / "rootfs.tar"
    if tarball.is_file():
        return tarball
    BASE_CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=BASE_CACHE) as work:
        rootfs = Path(work) / "rootfs"
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=python3,python3-venv,python3-pip,ca-certificates",
                "bookworm",
                str(rootfs),
                DEBIAN_MIRROR,
            ],
            check=True,
            capture_output=True,
        )
        partial = Path(work) / "rootfs.tar"
        with tarfile.open(partial, "w") as tar:
            tar.add(rootfs, arcname=".")
        os.replace(partial, tarball)  # appears only when complete
    return tarball


@pytest.fixture(scope="session")
def docker_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerEnv]:
    missing = [t for t in ("dockerd", "docker-registry", "debootstrap") if not shutil.which(t)]
    if missing:
        require_real(
            f"{', '.join(missing)} not installed (apt-get install docker.io docker-registry "
            "debootstrap)"
        )
    if os.geteuid() != 0:
        require_real("dockerd needs root to run")
    # A short path: unix socket paths are limited to 108 bytes.
    root = Path(tempfile.mkdtemp(prefix="mlops-docker-", dir="/tmp"))
    wanted = os.environ.get("MLOPS_TEST_DOCKER_DRIVER")
    drivers = [wanted] if wanted else ["overlay2", "vfs"]
    process: subprocess.Popen[bytes] | None = None
    errors = []
    for driver in drivers:
        try:
            process, host = _start_dockerd(root, driver)
            break
        except RuntimeError as exc:
            errors.append(str(exc))
            shutil.rmtree(root / "data", ignore_errors=True)
    if process is None:
        require_real("dockerd could not start here:\n" + "\n".join(errors))
        raise AssertionError("unreachable")
    registry_dir = root / "registry"
    registry_dir.mkdir()
    port = free_port()
    (registry_dir / "config.yml").write_text(
        yaml.safe_dump(
            {
                "version": 0.1,
                "log": {"level": "error"},
                "storage": {"filesystem": {"rootdirectory": str(registry_dir / "data")}},
                "http": {"addr": f"127.0.0.1:{port}", "secret": "test-only-http-secret"},
            }
        )
    )
    with open(registry_dir / "log", "wb") as log:
        registry = subprocess.Popen(
            ["docker-registry", "serve", str(registry_dir / "config.yml")],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    previous = os.environ.get("DOCKER_HOST")
    try:
        _wait_registry(port, registry)
        env = DockerEnv(host, f"127.0.0.1:{port}", BASE_IMAGE, driver)
        with contextlib.closing(env.client()) as client:
            client.api.import_image_from_file(
                str(_base_tarball()), repository=BASE_IMAGE.split(":")[0], tag="bookworm"
            )
        os.environ["DOCKER_HOST"] = host
        yield env
    finally:
        if previous is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = previous
        _stop(registry)
        _stop(process)
        _unmount_under(root)
        shutil.rmtree(root, ignore_errors=True)


def _unmount_under(root: Path) -> None:
    """dockerd leaves mounts (its network namespace file, overlay layers) under its roots."""
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        points = [line.split()[1] for line in mounts]
    for point in sorted((p for p in points if p.startswith(f"{root}/")), reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _wait_registry(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("docker-registry exited at start")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2) as reply,
        ):
            if reply.status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError("docker-registry did not answer on /v2/")


# --- projects ---------------------------------------------------------------------------------
@pytest.fixture
def docker_client(docker_env: DockerEnv) -> Iterator[Any]:
    with contextlib.closing(docker_env.client()) as client:
        yield client


@pytest.fixture(scope="session")
def real_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny real Keras SavedModel: 4 float32 features -> 2-class softmax."""
    directory = tmp_path_factory.mktemp("keras") / "model"
    code = (
        "import sys, keras\n"
        "keras.utils.set_random_seed(1)\n"
        "m = keras.Sequential([keras.Input(shape=(4,), name='features'),"
        " keras.layers.Dense(2, activation='softmax')])\n"
        "m.export(sys.argv[1], verbose=False)\n"
    )
    # A subprocess: TensorFlow stays out of the test process (and its warnings filters).
    subprocess.run([sys.executable, "-c", code, str(directory)], check=True, capture_output=True)
    return directory


def _stand_in_model(directory: Path) -> None:
    """Files shaped like a SavedModel; enough for planners, which only hash files."""
    (directory / "variables").mkdir(parents=True)
    (directory / "saved_model.pb").write_bytes(b"\x08\x01stand-in graph")
    (directory / "variables" / "variables.index").write_bytes(b"index")


@dataclass
class Project:
    root: Path
    config: Path
    run_id: str

    def write(self, relative: str, text: str) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def commit(self, message: str = "change") -> None:
        git(self.root, "add", "-A")
        git(self.root, "commit", "-q", "-m", message)

    def mlops(self, *argv: str) -> tuple[int, dict[str, Any] | None, str]:
        """Run `mlops <argv> -c <config> --json` in-process: (exit code, JSON, stderr text)."""
        from mlops_sessions.frontends.cli import main

        out, err = _Capture(), _Capture()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([*argv, "-c", str(self.config), "--json"])
        text = out.getvalue()
        return code, (json.loads(text) if text.strip() else None), err.getvalue()


class _Capture:
    """A text stream that keeps what was written (build progress is long; keep all)."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    def flush(self) -> None:
        return None

    def getvalue(self) -> str:
        return "".join(self.parts)


def git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.email=test@example.com", "-c", "user.name=test", *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


ProjectFactory = Callable[..., Project]


@pytest.fixture
def make_project(tmp_path: Path) -> ProjectFactory:
    def make(
        *,
        image: dict[str, Any] | None = None,
        lock: str = SMALL_LOCK,
        blessed: bool = True,
        model_dir: Path | None = None,
        commit: bool = True,
        name: str = "proj",
    ) -> Project:
        from mlops_sessions.records.store import Store

        root = tmp_path / name
        (root / "src").mkdir(parents=True)
        (root / "src" / "tiny_model.py").write_text('"""Model code."""\n\nVERSION = 1\n')
        (root / "requirements.lock").write_text(lock)
        spec: dict[str, Any] = {
            "kind": "serve",
            "repository": "tiny-serve",
            "base": {"image": BASE_IMAGE},
            "size_budget_mb": 2000,
        }
        spec.update(image or {})
        doc = {
            "apiVersion": "mlops/v1alpha1",
            "project": {"name": "tiny", "description": "image tests"},
            "python": {"requirements": "requirements.lock"},
            "images": {"serve": spec},
            "models": {
                MODEL: {
                    "image": "serve",
                    "train": {"source": "src", "entrypoint": "tiny_model:train"},
                }
            },
        }
        config = root / "mlops.yaml"
        config.write_text(yaml.safe_dump(doc, sort_keys=False))
        store = Store(root / ".mlops")
        run_id = "20260101T000000Z-0123abcd"
        with store.staging(store.run_dir(run_id)) as stage:
            if model_dir is not None:
                shutil.copytree(model_dir, stage / "model")
            else:
                _stand_in_model(stage / "model")
            record = {
                "run_id": run_id,
                "model": MODEL,
                "status": "complete",
                "model_dir": "model",
                "model_hash": "ab" * 32,
                "finished_at": "2026-01-01T00:00:00Z",
                "lineage": {"git": {"commit": None, "dirty": None, "branch": None}},
            }
            (stage / "run.json").write_text(json.dumps(record))
        if blessed:
            store.bless(MODEL, {"run_id": run_id, "model_hash": "ab" * 32})
        git(root, "init", "-q")
        if commit:
            git(root, "add", "-A")
            git(root, "commit", "-q", "-m", "initial")
        return Project(root, config, run_id)

    return make
