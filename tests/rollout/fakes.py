"""A fake live analysis for driving rollouts in tests, and a deploy entry point for a
driving process the tests kill (SIGKILL, SIGTERM).

The fake judges with the gate's own code (planning.gate.decide) against the model's
``rollout.analysis.thresholds``, on measurements the test chose per step: so a failure
line is the real one, and what is fake is only where the numbers come from (here, not
Prometheus). Every window it is asked about is recorded, with what the emulated cluster's
VirtualService said at that moment when a probe is given.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mlops_sessions.config import LIVE_METRICS, ModelConfig
from mlops_sessions.planning import gate
from mlops_sessions.planning.live_analysis import AnalysisResult, Outcome, Window


@dataclass
class FakeAnalysis:
    """canary[step] -> metric values of the canary at that step (default: healthy)."""

    canary: Mapping[int, Mapping[str, float]] = field(default_factory=dict)
    requests: int = 500
    outcome: Outcome | None = None  # force an outcome (ERROR / INCONCLUSIVE)
    probe: Callable[[], Any] | None = None  # called at each window (reads the cluster)
    windows: list[Window] = field(default_factory=list)
    seen: list[Any] = field(default_factory=list)
    delay: float = 0.0

    def __call__(self, model: ModelConfig, window: Window) -> AnalysisResult:
        self.windows.append(window)
        if self.probe is not None:
            self.seen.append(self.probe())
        if self.delay:
            time.sleep(self.delay)
        if self.outcome is not None:
            return AnalysisResult(self.outcome, window, reason=f"forced {self.outcome.value}")
        assert model.rollout is not None and model.rollout.analysis is not None
        thresholds = model.rollout.analysis.thresholds
        stable = {"error_rate": 0.001, "latency_p95_ms": 20.0}
        values = {**stable, **self.canary.get(window.step, {})}
        verdict = gate.decide(
            values, thresholds, LIVE_METRICS, stable, baseline_label="stable, same window"
        )
        return AnalysisResult(
            Outcome.PASSED if verdict.passed else Outcome.FAILED,
            window,
            measurements={"canary": values, "stable": stable},
            samples={"canary": self.requests, "stable": 10 * self.requests},
            verdict=verdict,
            reason="; ".join(verdict.failure_lines()),
        )


def main(argv: list[str]) -> int:
    """``python -m tests.rollout.fakes CONFIG FAKE_JSON [deploy args...]``: `mlops deploy`
    with a FakeAnalysis built from FAKE_JSON, in a process of its own (to be killed)."""
    from mlops_sessions.errors import MlopsError
    from mlops_sessions.frontends.cli import build_parser
    from mlops_sessions.steps import deploy

    config, spec, *rest = argv
    options = json.loads(spec)
    fake = FakeAnalysis(
        canary={int(k): v for k, v in options.get("canary", {}).items()},
        delay=float(options.get("delay", 0.0)),
    )
    args = build_parser("deploy").parse_args(["deploy", "-c", config, *rest])
    try:
        return deploy.run(args, analyse=fake)
    except MlopsError as exc:
        print(f"mlops deploy: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
