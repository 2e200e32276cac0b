"""The command-line options of the cluster commands (deploy, rollback, status, promote,
abort): how the Kubernetes API is reached and retried, and what a progressive rollout does
on an interrupt. The values are read by :mod:`mlops_sessions.drivers.cluster`."""

from __future__ import annotations

import argparse

from mlops_sessions.console import argtypes


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


def add_interrupt_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--lease-margin",
        type=argtypes.positive_float,
        default=None,
        metavar="SECONDS",
        help="how long the deploy lock outlives a driver that died mid-rollout, on top of "
        "deploy.rollout_timeout (default: 30); the driver renews it while alive",
    )
    parser.add_argument(
        "--on-interrupt",
        choices=("abort", "leave"),
        default="abort",
        help="what SIGINT/SIGTERM does to a running rollout: abort it (100%% stable, "
        "recorded; default) or leave it as it is for `mlops deploy --resume`",
    )
