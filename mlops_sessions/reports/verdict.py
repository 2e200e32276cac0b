"""Human reports of an evaluation: report.md for a pull-request comment, report.html with plots.

The Markdown is a table a CI job can post as-is. The HTML is one self-contained file: plots
are drawn by matplotlib on its Agg canvas (no display, no global pyplot state) and embedded
as base64 PNGs — training curves from run.json's history, each thresholded metric against its
bounds and baseline, the confusion matrix of a classifier, and per-feature drift.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlops_sessions.planning.gate import MetricCheck, Verdict, fmt


@dataclass(frozen=True)
class ReportInput:
    """What a report shows: the run, the verdict, the baseline and the raw measurements."""

    model: str
    run: Mapping[str, Any]
    eval_id: str
    verdict: Verdict
    baseline: Mapping[str, Any]
    measurements: Mapping[str, Any]
    created_at: str = ""
    extra_notes: Sequence[str] = field(default_factory=tuple)

    @property
    def status(self) -> str:
        return "PASS" if self.verdict.passed else "FAIL"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _delta(check: MetricCheck) -> str:
    if check.delta is None:
        return "—"
    text = f"{check.delta:+.4g}"
    if check.delta_pct is not None:
        text += f" ({check.delta_pct:+.2f}%)"
    return text


def _result(check: MetricCheck) -> str:
    if not check.passed:
        return "❌ fail"
    if check.notes:
        return "⚠️ pass (no baseline)"
    return "✅ pass" if check.has_threshold else "—"


def _commit(run: Mapping[str, Any]) -> str:
    git = (run.get("lineage") or {}).get("git") or {}
    commit = git.get("commit")
    if not commit:
        return "not a git checkout"
    return f"{str(commit)[:12]}{' (dirty)' if git.get('dirty') else ''}"


def markdown(report: ReportInput) -> str:
    """A Markdown report whose first lines say pass/fail and, on failure, what failed."""
    verdict = report.verdict
    icon = "✅" if verdict.passed else "❌"
    lines = [f"## {icon} {report.model}: evaluation gate {report.status}", ""]
    for failure in verdict.failure_lines():
        lines.append(f"- **{_cell(failure)}**")
    for note in [*verdict.notes, *report.extra_notes]:
        lines.append(f"- ⚠️ {_cell(note)}")
    if verdict.failure_lines() or verdict.notes or report.extra_notes:
        lines.append("")
    lines += [
        "| metric | value | threshold | baseline | delta | result |",
        "|---|---:|---|---:|---:|---|",
    ]
    for check in verdict.checks:
        lines.append(
            f"| `{check.metric}` | {fmt(check.value)} | {_cell(check.threshold_text()) or '—'} "
            f"| {fmt(check.baseline)} | {_delta(check)} | {_result(check)} |"
        )
    run = report.run
    lines += [
        "",
        f"- run: `{run.get('run_id')}` · model hash `{str(run.get('model_hash', ''))[:12]}` "
        f"· commit {_commit(run)}",
        f"- baseline: {_cell(str(report.baseline.get('label', 'none')))}",
        f"- evaluation `{report.eval_id}` on {report.measurements.get('n_examples')} examples "
        f"(dataset sha256 `{str(report.measurements.get('dataset_sha256', ''))[:12]}`)",
        "",
    ]
    return "\n".join(lines)


# --- plots -------------------------------------------------------------------------------


def _png(figure: Any) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def training_curves(history: Mapping[str, Sequence[float]]) -> str | None:
    """One panel per metric, training and validation curves together."""
    from matplotlib.figure import Figure

    bases = [k for k in history if not k.startswith("val_") and history[k]]
    bases += [
        k[4:] for k in history if k.startswith("val_") and k[4:] not in history and history[k]
    ]
    if not bases:
        return None
    figure = Figure(figsize=(4.2 * len(bases), 3.2))
    for index, base in enumerate(bases, start=1):
        axes = figure.add_subplot(1, len(bases), index)
        for key, label in ((base, "train"), (f"val_{base}", "validation")):
            series = history.get(key)
            if series:
                axes.plot(range(1, len(series) + 1), list(series), marker=".", label=label)
        axes.set_title(base)
        axes.set_xlabel("epoch")
        axes.grid(alpha=0.3)
        axes.legend()
    return _png(figure)


def thresholds_chart(checks: Sequence[MetricCheck]) -> str | None:
    """Each thresholded metric as a bar, with its min/max bounds and the baseline value."""
    from matplotlib.figure import Figure

    shown = [c for c in checks if c.has_threshold and c.value is not None]
    if not shown:
        return None
    figure = Figure(figsize=(7.5, 1.15 * len(shown) + 0.6), layout="constrained")
    for index, check in enumerate(shown, start=1):
        axes = figure.add_subplot(len(shown), 1, index)
        value = float(check.value or 0.0)
        axes.barh([0], [value], color="#2e7d32" if check.passed else "#c62828", height=0.5)
        points = [value, 0.0]
        for bound, name in ((check.min, "min"), (check.max, "max")):
            if bound is not None:
                axes.axvline(bound, color="black", linestyle="--", linewidth=1.2)
                axes.text(bound, 0.38, f" {name} {fmt(bound)}", fontsize=7, va="bottom")
                points.append(bound)
        if check.baseline is not None:
            axes.plot([check.baseline], [0], marker="D", color="#1565c0", linestyle="none")
            points.append(check.baseline)
        low = min(points)
        axes.set_xlim(low * 1.15 if low < 0 else 0.0, max(points) * 1.25 or 1.0)
        axes.set_ylim(-0.5, 0.75)
        axes.set_yticks([0], [check.metric])
        axes.text(value, 0, f" {fmt(check.value)}", va="center", fontsize=8)
        axes.tick_params(axis="x", labelsize=7)
    figure.suptitle("metrics against thresholds (dashed: bounds, ◆ baseline)", fontsize=10)
    return _png(figure)


def confusion_chart(matrix: Sequence[Sequence[int]] | None, classes: Sequence[int]) -> str | None:
    from matplotlib.figure import Figure

    if not matrix:
        return None
    size = len(matrix)
    figure = Figure(figsize=(0.45 * size + 2.5, 0.45 * size + 2.0))
    axes = figure.add_subplot(1, 1, 1)
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes, fraction=0.046)
    peak = max((max(row) for row in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            if count:
                colour = "white" if count > peak / 2 else "black"
                axes.text(j, i, str(count), ha="center", va="center", fontsize=7, color=colour)
    ticks = list(range(size))
    names = [str(c) for c in (classes if len(classes) == size else ticks)]
    axes.set_xticks(ticks, names)
    axes.set_yticks(ticks, names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title("confusion matrix")
    return _png(figure)


def drift_chart(psi: Mapping[str, float]) -> str | None:
    from matplotlib.figure import Figure

    if not psi:
        return None
    figure = Figure(figsize=(max(5.0, 0.12 * len(psi) + 2), 2.8))
    axes = figure.add_subplot(1, 1, 1)
    names = list(psi)
    axes.bar(range(len(names)), [psi[n] for n in names], color="#6a1b9a")
    axes.axhline(0.1, color="orange", linestyle=":", linewidth=1, label="0.1 moderate")
    axes.axhline(0.25, color="red", linestyle=":", linewidth=1, label="0.25 major")
    axes.set_xlabel("feature")
    axes.set_ylabel("PSI")
    axes.set_title("population stability index per feature")
    axes.legend(fontsize=7)
    return _png(figure)


# --- html ----------------------------------------------------------------------------------

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#2e7d32}.fail{color:#c62828}.note{color:#8d6e00}img{max-width:100%}
"""


def html_report(report: ReportInput) -> str:
    """One self-contained HTML page: verdict, table, plots as embedded PNGs."""
    verdict = report.verdict
    esc = html.escape
    css = "pass" if verdict.passed else "fail"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(report.model)} evaluation {report.status}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f'<h1 class="{css}">{esc(report.model)}: evaluation gate {report.status}</h1>',
    ]
    if verdict.failure_lines():
        parts.append('<ul class="fail">')
        parts += [f"<li>{esc(line)}</li>" for line in verdict.failure_lines()]
        parts.append("</ul>")
    notes = [*verdict.notes, *report.extra_notes]
    if notes:
        parts.append('<ul class="note">')
        parts += [f"<li>{esc(note)}</li>" for note in notes]
        parts.append("</ul>")
    parts.append(
        "<table><tr><th>metric</th><th>value</th><th>threshold</th><th>baseline</th>"
        "<th>delta</th><th>result</th></tr>"
    )
    for check in verdict.checks:
        parts.append(
            f"<tr><td><code>{esc(check.metric)}</code></td><td class=num>{fmt(check.value)}</td>"
            f"<td>{esc(check.threshold_text()) or '—'}</td><td class=num>{fmt(check.baseline)}</td>"
            f"<td class=num>{esc(_delta(check))}</td>"
            f'<td class="{"pass" if check.passed else "fail"}">{esc(_result(check))}</td></tr>'
        )
    parts.append("</table>")
    run = report.run
    parts.append(
        f"<p>run <code>{esc(str(run.get('run_id')))}</code> · model hash "
        f"<code>{esc(str(run.get('model_hash', ''))[:12])}</code> · commit {esc(_commit(run))} · "
        f"baseline: {esc(str(report.baseline.get('label', 'none')))} · evaluation "
        f"<code>{esc(report.eval_id)}</code> on {esc(str(report.measurements.get('n_examples')))} "
        f"examples</p>"
    )
    plots = [
        ("Training curves", training_curves(run.get("history") or {})),
        ("Metrics against thresholds", thresholds_chart(verdict.checks)),
        (
            "Confusion matrix",
            confusion_chart(
                report.measurements.get("confusion_matrix"),
                report.measurements.get("classes") or [],
            ),
        ),
        ("Drift", drift_chart(report.measurements.get("drift_psi") or {})),
    ]
    for title, png in plots:
        if png is not None:
            parts.append(f"<h2>{title}</h2>")
            parts.append(f'<img alt="{esc(title)}" src="data:image/png;base64,{png}">')
    parts.append("</body></html>\n")
    return "\n".join(parts)
