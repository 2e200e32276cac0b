"""Runtime settings of the model server, derived from ``serve:`` in mlops.yaml.

The config layer keeps durations as strings ('2ms', '20s'); the server needs seconds and
plain numbers, and also the identity of the model it serves (name, version, hash, commit)
for status, metadata and the ``model_info`` metric. This module is pure: no TensorFlow,
no aiohttp, so the CLI can build settings before paying for either import.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlops_sessions.config import ServeConfig, units


def parse_duration(text: str) -> float:
    """'2ms' -> 0.002, '20s' -> 20.0 (the one parser: :mod:`mlops_sessions.config.units`)."""
    return units.duration_seconds(text)


@dataclass(frozen=True)
class ModelIdentity:
    """What is being served: shown by status/metadata endpoints and the info metric."""

    name: str
    version: str
    path: Path
    model_hash: str = ""
    git_commit: str = ""
    # The rollout track this server is ("stable"/"canary"; "" outside a rollout): a label
    # on the request and live series, so a rollout compares the two tracks.
    track: str = ""
    # When the training run that made the model ended (Unix time), from its run.json.
    trained_at: float | None = None


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8501
    # TF Serving's gRPC API on the same event loop and batcher; 0: no gRPC listener.
    grpc_port: int = 0
    grpc_max_message_bytes: int = 4 * 1024 * 1024
    batching: bool = True
    max_batch_size: int = 32
    max_wait_s: float = 0.002
    max_queue: int = 256
    max_body_bytes: int = 4 * 1024 * 1024
    workers: int = 1
    drain_s: float = 20.0
    # How long without a new request, after SIGTERM, before the listener closes: once the
    # load balancer has dropped the pod (readiness false) traffic stops and we can go.
    quiet_s: float = 1.0
    # Longest a request body may take to arrive once its headers are in: a client that
    # sends less than its Content-Length (or trickles it) gets a 408 instead of holding
    # a connection and a batcher slot forever.
    read_timeout_s: float = 30.0
    # The training reference's bins (drift_reference.json, written by `mlops evaluate`):
    # with it, the server counts live inputs per bin for the rollout's input-drift check.
    drift_reference: Path | None = None

    @classmethod
    def from_config(
        cls,
        serve: ServeConfig,
        *,
        host: str | None = None,
        port: int | None = None,
        grpc_port: int | None = None,
    ) -> ServerSettings:
        batching = serve.batching
        return cls(
            host=host if host is not None else serve.host,
            port=port if port is not None else serve.port,
            grpc_port=grpc_port if grpc_port is not None else serve.grpc_port,
            grpc_max_message_bytes=serve.grpc_max_message_bytes,
            batching=batching.enabled,
            max_batch_size=batching.max_batch_size if batching.enabled else 1,
            max_wait_s=parse_duration(batching.max_wait) if batching.enabled else 0.0,
            max_queue=serve.max_queue,
            max_body_bytes=serve.max_body_bytes,
            workers=serve.workers,
            drain_s=parse_duration(serve.drain),
            read_timeout_s=parse_duration(serve.read_timeout),
        )
