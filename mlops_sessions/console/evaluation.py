"""What ``mlops evaluate`` tells its user: one model's evaluation as an :class:`Outcome`
(``--json`` emits :meth:`Outcome.as_dict`) and the text the command prints
(:func:`render_text`: failures first, then a table per model and where the reports are)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops_sessions.planning import baseline as baselines
from mlops_sessions.planning.gate import Verdict, fmt
from mlops_sessions.records import evaluations as evaluation_records


@dataclass
class Outcome:
    """One model's evaluation, as the CLI prints it and --json emits it."""

    model: str
    run_id: str
    eval_id: str
    path: Path
    verdict: Verdict
    baseline: baselines.Baseline
    blessed: bool
    notes: list[str] = field(default_factory=list)
    reused: bool = False

    @property
    def passed(self) -> bool:
        return self.verdict.passed

    @property
    def files(self) -> evaluation_records.EvaluationFiles:
        return evaluation_records.EvaluationFiles(self.path)

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "run_id": self.run_id,
            "eval_id": self.eval_id,
            "passed": self.passed,
            "blessed": self.blessed,
            "reused": self.reused,
            "verdict": str(self.files.verdict),
            "report_md": str(self.files.report_md),
            "report_html": str(self.files.report_html),
            "baseline": self.baseline.as_dict(),
            "first_run": self.verdict.first_run,
            "failures": self.verdict.failure_lines(),
            "notes": [*self.verdict.notes, *self.notes],
            "metrics": {c.metric: c.as_dict() for c in self.verdict.checks},
        }


def render_text(outcomes: list[Outcome]) -> str:
    """Failures first (one line each), then per model a table and where the reports are."""
    lines = [f"{o.model}: {line}" for o in outcomes for line in o.verdict.failure_lines()]
    for outcome in outcomes:
        verdict = outcome.verdict
        status = "PASS" if verdict.passed else "FAIL"
        if lines:
            lines.append("")
        lines.append(
            f"{outcome.model}: gate {status} — run {outcome.run_id}, "
            f"baseline: {outcome.baseline.label}"
        )
        if outcome.reused:
            lines.append(
                f"  reused: the verdict of evaluation {outcome.eval_id} (model, data, evaluate "
                "section and baseline unchanged; --force measures again)"
            )
        lines += [f"  note: {note}" for note in [*verdict.notes, *outcome.notes]]
        rows = [("metric", "value", "threshold", "baseline", "delta", "")]
        for check in verdict.checks:
            delta = "—" if check.delta is None else f"{check.delta:+.4g}"
            mark = "FAIL" if not check.passed else ("ok" if check.has_threshold else "")
            rows.append(
                (
                    check.metric,
                    fmt(check.value),
                    check.threshold_text() or "—",
                    fmt(check.baseline),
                    delta,
                    mark,
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            lines.append(
                "  "
                + "  ".join(
                    cell.ljust(width) for cell, width in zip(row, widths, strict=True)
                ).rstrip()
            )
        lines.append(f"  report: {outcome.files.report_md}")
        lines.append(f"          {outcome.files.report_html}")
        if outcome.blessed:
            lines.append(f"  blessed: {outcome.model} run {outcome.run_id}")
    return "\n".join(lines)
