"""What the cluster commands (deploy, rollback, status, promote, abort) drive with: logging
in to the cluster a model deploys to, the rollout deadline, the release facts the policy
judges (resolved from the store), the live analyser of a progressive rollout and its
interrupt handling. Their command-line options are :mod:`mlops_sessions.console.cluster_options`."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

from mlops_sessions.config import Config, ModelConfig
from mlops_sessions.planning import release_policy
from mlops_sessions.planning.k8s_common import seconds
from mlops_sessions.planning.live_analysis import AnalysisResult, Window
from mlops_sessions.records import builds
from mlops_sessions.records.store import Store


def connect_for(model: ModelConfig, args: argparse.Namespace) -> Any:
    """A reachable Cluster for the model's deploy.context / deploy.namespace."""
    from mlops_sessions.executors.kube.client import RetryPolicy, connect

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


# --- progressive rollouts (deploy, promote, abort, rollback, status) ----------------------

# (model, window) -> the window's analysis; the deploy step's tests pass a fake one.
ModelAnalyser = Callable[[ModelConfig, Window], AnalysisResult]


def release_facts(config: Config, model: ModelConfig, store: Store) -> release_policy.ReleaseFacts:
    """What the store says about model and its images, for the release policy."""
    blessed = store.blessed(model.name)
    names = release_policy.image_names(model)
    return release_policy.ReleaseFacts(
        blessed_hash=blessed.get("model_hash") if blessed else None,
        ever_blessed={str(b.get("model_hash")) for b in store.blessings(model.name)},
        builds={name: builds.load_record(config.store_path, name, "latest") for name in names},
        scans={name: builds.load_record(config.store_path, name, "scan") for name in names},
        scan_paths={
            name: str(builds.record_path(config.store_path, name, "scan")) for name in names
        },
    )


def analyser_for(
    config: Config, model: ModelConfig, injected: ModelAnalyser | None = None
) -> Callable[[Window], AnalysisResult]:
    """The live analysis of model's windows: Prometheus (executors.observe.prometheus), or the
    analyser a caller injected (the tests' fakes)."""
    if injected is not None:
        return lambda window: injected(model, window)
    import math

    from mlops_sessions.executors.observe.prometheus import analyse_window
    from mlops_sessions.planning.live_analysis import TrackData

    assert model.rollout is not None and model.rollout.analysis is not None
    enough = model.rollout.analysis.min_requests
    # Stable's last window with enough traffic stands in as the baseline where stable has
    # none (the 100 % step). Kept in memory only: a resumed rollout starts without it.
    last_stable: list[TrackData] = []

    def analyse(window: Window) -> AnalysisResult:
        result = analyse_window(
            config, model, window, fallback_stable=last_stable[-1] if last_stable else None
        )
        stable = result.tracks.get("stable")
        requests = stable.requests if stable is not None else None
        usable = requests is not None and not math.isnan(requests) and requests >= enough
        if stable is not None and usable:
            last_stable[:] = [stable]
        return result

    return analyse


def rollout_timing(model: ModelConfig, lease_margin: float | None = None) -> Any:
    from mlops_sessions.drivers.rollout import LEASE_MARGIN_S, Timing

    timeout, poll = rollout_seconds(model)
    margin = LEASE_MARGIN_S if lease_margin is None else max(1, int(lease_margin))
    return Timing(rollout_timeout=timeout, poll=poll, lease_margin_s=margin)


@contextlib.contextmanager
def interrupts(action: str) -> Iterator[Any]:
    """SIGINT/SIGTERM trip the rollout's Interrupt instead of killing the process, so a
    cancelled CI job leaves 100 % stable behind (the driver acts at its next tick)."""
    import signal
    import threading

    from mlops_sessions.drivers.rollout import Interrupt

    interrupt = Interrupt(action=action)
    if threading.current_thread() is not threading.main_thread():
        yield interrupt  # signal handlers can only be installed from the main thread
        return

    def handler(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        print(f"mlops: {name} received: the rollout will {action} at its next tick",
              file=sys.stderr, flush=True)  # fmt: skip
        interrupt.trip(name)

    saved = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield interrupt
    finally:
        for sig, old in saved.items():
            signal.signal(sig, old)
