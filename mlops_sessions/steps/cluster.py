"""What deploy, rollback and status share: the Kubernetes API options, logging in to the
cluster a model deploys to, and the rollout deadline. Not a command itself."""

from __future__ import annotations

import argparse
from typing import Any

from mlops_sessions.config import ModelConfig
from mlops_sessions.planning.k8s_common import seconds
from mlops_sessions.steps import argtypes


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by deploy, rollback and status."""
    group = parser.add_argument_group("Kubernetes API")
    group.add_argument(
        "--kubeconfig",
        type=argtypes.path_text,
        default=None,
        help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)",
    )
    group.add_argument(
        "--api-timeout",
        type=argtypes.positive_float,
        default=15.0,
        metavar="SECONDS",
        help="timeout of one API request (default: 15)",
    )
    group.add_argument(
        "--api-retries",
        type=argtypes.positive_int,
        default=6,
        metavar="N",
        help="attempts for an API call failing with 409/429/5xx/timeout (default: 6)",
    )
    group.add_argument(
        "--api-backoff",
        type=argtypes.non_negative_float,
        default=0.5,
        metavar="SECONDS",
        help="first retry delay, doubling with jitter up to 8s (default: 0.5)",
    )


def connect_for(model: ModelConfig, args: argparse.Namespace) -> Any:
    """A reachable Cluster for the model's deploy.context / deploy.namespace."""
    from mlops_sessions.executors.kube import RetryPolicy, connect

    policy = RetryPolicy(
        attempts=max(1, args.api_retries),
        initial=args.api_backoff,
        maximum=max(args.api_backoff, 8.0),
        request_timeout=args.api_timeout,
    )
    cluster = connect(
        model.deploy.context, model.deploy.namespace, kubeconfig=args.kubeconfig, policy=policy
    )
    cluster.ping()
    return cluster


def rollout_seconds(model: ModelConfig) -> tuple[float, float]:
    """(deadline, poll interval) from deploy.rollout_timeout."""
    timeout = float(seconds(model.deploy.rollout_timeout, minimum=1))
    return timeout, min(1.0, timeout / 20)
