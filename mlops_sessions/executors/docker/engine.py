"""Connection to the Docker engine through the Docker SDK (docker-py).

The one place that opens a client: ``$DOCKER_HOST`` (or the default socket), pinged once,
so "engine not running" is one clear message instead of a traceback from deep inside a
build. What a build, scan or push did is recorded by :mod:`mlops_sessions.drivers.imaging`.
"""

from __future__ import annotations

import os
from typing import Any

from mlops_sessions.errors import StepError

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
