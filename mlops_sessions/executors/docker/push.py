"""Push a built image's tags with the Docker SDK and return the registry's manifest digest.

Progress is streamed per layer; the digest the registry reports (``aux.Digest``) is what
later steps pin (``repository@sha256:...``), never the mutable tag.
"""

from __future__ import annotations

import re
from typing import Any, TextIO

from mlops_sessions.errors import StepError

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def push(client: Any, ref: str, *, image: str, out: TextIO) -> str:
    """Push ref (repository:tag); the manifest digest 'sha256:...'."""
    repository, tag = ref.rsplit(":", 1)
    host = repository.split("/", 1)[0]
    if "/" not in repository or not ("." in host or ":" in host or host == "localhost"):
        raise StepError(
            f"'{repository}' names no registry, so a push would go to Docker Hub; set "
            f"images.{image}.registry (e.g. registry.example.com/ml or 127.0.0.1:5000)"
        )
    from docker.errors import APIError

    digest: str | None = None
    error: str | None = None
    last: dict[str, str] = {}
    try:
        for chunk in client.api.push(repository, tag=tag, stream=True, decode=True):
            if "error" in chunk:
                # Read to the end: a half-read stream leaves its socket open.
                error = error or str(chunk["error"])
                continue
            aux = chunk.get("aux")
            if isinstance(aux, dict) and "Digest" in aux:
                digest = str(aux["Digest"])
            status, layer = chunk.get("status"), chunk.get("id")
            # One line per layer state change (Preparing, Pushing, Pushed, Layer already exists).
            if status and layer and last.get(layer) != status:
                last[layer] = status
                out.write(f"[push] {layer}: {status}\n")
            elif status and not layer:
                out.write(f"[push] {status}\n")
    except APIError as exc:
        raise _push_failed(ref, image, str(getattr(exc, "explanation", None) or exc)) from None
    if error is not None:
        raise _push_failed(ref, image, error)
    if digest is None or not _DIGEST.match(digest):
        raise StepError(f"the registry accepted {ref} but reported no manifest digest")
    return digest


def _push_failed(ref: str, image: str, error: str) -> StepError:
    registry = ref.split("/", 1)[0]
    return StepError(
        f"cannot push {ref}: {error.strip()[:400]}; check images.{image}.registry ('{registry}'),"
        " that the registry is running and reachable, and `docker login` if it needs credentials"
    )
