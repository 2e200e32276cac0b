"""The rollout's report.md: every analysed window's verdict, then the whole rollout.

The same format as the evaluation gate's report (:mod:`mlops_sessions.reports.verdict`):
a first line that says promoted or aborted, the failure as a bold bullet, and per window
the gate's table — metric, value, threshold, baseline (the stable track over the same
window), delta, result — built from the same :class:`~mlops_sessions.planning.gate.MetricCheck`
rows, so a CI job attaches it (and comments it) exactly like the gate's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from mlops_sessions.planning.gate import MetricCheck, fmt
from mlops_sessions.reports.verdict import _cell, _delta, _result

_ICONS = {
    "promoted": "✅",
    "aborted": "❌",
    "failed": "❌",
    "progressing": "⏳",
    "promoting": "⏳",
}
_OUTCOME_ICONS = {"passed": "✅", "failed": "❌", "inconclusive": "⚠️", "error": "⚠️"}


def _time(moment: Any) -> str:
    try:
        return datetime.fromtimestamp(float(moment), timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    except (TypeError, ValueError, OverflowError):
        return "?"


def _window_section(index: int, steps: Sequence[int], item: Mapping[str, Any]) -> list[str]:
    window = item.get("window") or {}
    judged = str(item.get("judged") or item.get("outcome"))
    samples = item.get("samples") or {}
    step = int(window.get("step", 0))
    seconds = float(window.get("end", 0)) - float(window.get("start", 0))
    lines = [
        f"### {_OUTCOME_ICONS.get(judged, '')} window {index}: step {step + 1}/{len(steps)} "
        f"(canary {window.get('weight')}%) — {judged.upper()}",
        "",
        f"- window {_time(window.get('start'))} → {_time(window.get('end'))} ({seconds:.0f}s); "
        f"requests: canary {samples.get('canary', 0)}, stable {samples.get('stable', 0)}",
    ]
    reason = item.get("judged_reason") or item.get("reason")
    if reason:
        lines.append(f"- {_cell(str(reason))}")
    verdict = item.get("verdict") or {}
    for failure in verdict.get("failures") or []:
        lines.append(f"- **{_cell(str(failure))}**")
    metrics = verdict.get("metrics") or {}
    if metrics:
        lines += [
            "",
            "| metric | value | threshold | baseline | delta | result |",
            "|---|---:|---|---:|---:|---|",
        ]
        for data in metrics.values():
            check = MetricCheck.from_dict(data)
            lines.append(
                f"| `{check.metric}` | {fmt(check.value)} | "
                f"{_cell(check.threshold_text()) or '—'} | {fmt(check.baseline)} | "
                f"{_delta(check)} | {_result(check)} |"
            )
    else:
        measured = item.get("measurements") or {}
        if measured:
            lines += ["", "| track | metric | value |", "|---|---|---:|"]
            for track, values in measured.items():
                for metric, value in values.items():
                    lines.append(f"| {track} | `{metric}` | {fmt(value)} |")
    lines.append("")
    return lines


def markdown(state: Mapping[str, Any]) -> str:
    """The report of one rollout from its recorded state (RolloutState.as_dict())."""
    phase = str(state.get("phase"))
    model = state.get("model")
    steps = [int(s) for s in state.get("steps") or []]
    title = {
        "promoted": "rollout PROMOTED",
        "aborted": "rollout ABORTED",
        "failed": "rollout FAILED",
    }.get(phase, f"rollout {phase.upper()}")
    lines = [f"## {_ICONS.get(phase, '')} {model}: {title}", ""]
    reason = state.get("reason")
    if reason:
        bullet = (
            f"**{_cell(str(reason))}**" if phase in ("aborted", "failed") else _cell(str(reason))
        )
        lines += [f"- {bullet}", ""]
    weights = state.get("weights") or {}
    lines += [
        "| | |",
        "|---|---|",
        f"| revision | {state.get('revision')} |",
        f"| steps | {', '.join(f'{s}%' for s in steps)} |",
        f"| reached | step {int(state.get('step', 0)) + 1}/{len(steps)} |",
        f"| weights now | stable {weights.get('stable', '?')}%, "
        f"canary {weights.get('canary', '?')}% |",
        f"| stable | `{str(state.get('stable_digest', ''))[:19]}` |",
        f"| canary | `{str(state.get('canary_digest', ''))[:19]}` |",
        f"| failed windows | {state.get('failures', 0)} "
        f"(limit {(state.get('limits') or {}).get('failure_limit')}) |",
        f"| ended by | {state.get('ended_by') or '—'} |",
        "",
    ]
    for index, item in enumerate(state.get("measurements") or [], start=1):
        lines += _window_section(index, steps, item)
    return "\n".join(lines)
