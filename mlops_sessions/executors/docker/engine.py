"""Connection to the Docker engine through the Docker SDK (docker-py).

The one place that opens a client: ``$DOCKER_HOST`` (or the default socket), pinged once,
so "engine not running" is one clear message instead of a traceback from deep inside a
build. Its store helpers pass the build records through to ``records.builds``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from mlops_sessions.errors import StepError
from mlops_sessions.records import builds
from mlops_sessions.records.io import now
from mlops_sessions.records.store import Store

DEFAULT_HOST = "unix:///var/run/docker.sock"
# Builds of large images (TensorFlow) take minutes per step on slow storage drivers.
API_TIMEOUT_S = 1800


def docker_host() -> str:
    return os.environ.get("DOCKER_HOST") or DEFAULT_HOST


def connect() -> Any:
    """A docker.DockerClient for $DOCKER_HOST; StepError naming the fix when unreachable."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError as exc:
        raise StepError(
            "the Docker SDK is not installed; install the build extra: "
            "pip install 'mlops-sessions[build]'"
        ) from exc
    host = docker_host()
    if host.startswith("unix://") and not os.path.exists(host[len("unix://") :]):
        # Checked first: the SDK leaks a socket when its constructor fails to connect.
        raise StepError(
            f"cannot reach the Docker engine at {host} (no such socket); start dockerd, or "
            "set DOCKER_HOST to the engine's socket (e.g. unix:///run/user/1000/docker.sock)"
        )
    client = None
    try:
        client = docker.DockerClient(base_url=host, timeout=API_TIMEOUT_S)
        client.ping()
    except (DockerException, OSError) as exc:
        if client is not None:
            client.close()
        raise StepError(
            f"cannot reach the Docker engine at {host} ({_short(exc)}); start dockerd, or set "
            "DOCKER_HOST to the engine's socket (e.g. unix:///run/user/1000/docker.sock)"
        ) from None
    return client


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1][:300] if text else type(exc).__name__


def now_iso() -> str:
    """The records' one timestamp format (kept under this name for the image steps)."""
    return now()


# --- store records (the layout is records.builds'; these take the Store steps hold) -------
def build_dir(store: Store, image: str) -> Path:
    return builds.build_dir(store.root, image)


def record(store: Store, image: str, kind: str, data: dict[str, Any]) -> None:
    """Append data to the kind's history and make it builds/<image>/<kind>.json.

    kind is "build" (local build), "scan" (checks) or "latest" (the pushed image that
    render/deploy use; its history is history.jsonl).
    """
    builds.record(store.root, image, kind, data)
    # Another machine's render/deploy reads the pushed image from the shared store.
    warning = store.publish(
        [builds.record_path(store.root, image, kind), builds.history_path(store.root, image, kind)]
    )
    if warning:
        print(warning, file=sys.stderr, flush=True)


def history_path(store: Store, image: str, kind: str) -> Path:
    return builds.history_path(store.root, image, kind)


def load_history(store: Store, image: str, kind: str) -> list[dict[str, Any]]:
    """Every record of one kind for one image, oldest first."""
    return builds.load_history(store.root, image, kind)


def load_record(store: Store, image: str, kind: str) -> dict[str, Any] | None:
    return builds.load_record(store.root, image, kind)
