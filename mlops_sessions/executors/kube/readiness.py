"""Wait for Deployments to be ready, against a deadline (deploy.rollout_timeout).

Polls each Deployment through :class:`~mlops_sessions.executors.kube.client.Cluster` (reads are
retried there) and judges it with :func:`~mlops_sessions.planning.deploy_plan.readiness`:
observed generation caught up, every replica updated, no old replica left, all available.
A ``ProgressDeadlineExceeded`` condition fails at once; the deadline fails with the last
state seen, so the user reads *why* (e.g. "1 of 2 replicas available").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mlops_sessions.executors.kube.client import Cluster
from mlops_sessions.planning.deploy_plan import ObjectRef, readiness


@dataclass(frozen=True)
class ReadinessResult:
    ok: bool
    reason: str | None
    states: dict[str, str]
    seconds: float


def wait(
    cluster: Cluster,
    refs: Sequence[ObjectRef],
    timeout: float,
    *,
    poll: float = 1.0,
    progress: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> ReadinessResult:
    """Block until every Deployment in refs has rolled out, one failed, or timeout passes."""
    start = clock()
    deadline = start + timeout
    states: dict[str, str] = {}
    pending = list(refs)
    last_told: dict[str, str] = {}
    while True:
        still = []
        for key in pending:
            live = cluster.get(key)
            if live is None:
                return ReadinessResult(
                    False, f"{key} disappeared during the rollout", states, clock() - start
                )
            state = readiness(live)
            states[str(key)] = state.message
            if state.failed is not None:
                return ReadinessResult(
                    False, f"rollout failed: {state.failed}", states, clock() - start
                )
            if not state.done:
                still.append(key)
            if progress is not None and last_told.get(str(key)) != state.message:
                last_told[str(key)] = state.message
                progress(state.message)
        pending = still
        if not pending:
            return ReadinessResult(True, None, states, clock() - start)
        if clock() >= deadline:
            waiting = "; ".join(states[str(k)] for k in pending)
            return ReadinessResult(
                False,
                f"rollout did not finish within {timeout:g}s (deploy.rollout_timeout): {waiting}",
                states,
                clock() - start,
            )
        time.sleep(min(poll, max(0.0, deadline - clock())) or poll)
