"""``mlops status``: what runs on the cluster — image, digest, commit, model, weights, replicas,
and a progressive rollout's phase, step, weights and last measurement per metric and track.

Front end only: reads the live Deployments and VirtualService of each model and the deploy
history (ConfigMap ``<app>-mlops-history`` plus the store) through
:func:`mlops_sessions.drivers.deploy.live_status`.
"""

from __future__ import annotations

import argparse
from typing import Any

from mlops_sessions.console.cluster_options import add_cluster_arguments
from mlops_sessions.console.common import add_models, emit, load_config, store_for
from mlops_sessions.drivers.cluster import connect_for


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_models(parser)
    add_cluster_arguments(parser)


def _fallback(model: str) -> list[dict[str, Any]]:
    """Objects to look for when no deploy is recorded: the names render gives them."""
    return [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": f"{model}-{t}"}}
        for t in ("stable", "canary")
    ] + [
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": model},
        },
    ]


def run(args: argparse.Namespace) -> int:
    from mlops_sessions.drivers.deploy import live_status
    from mlops_sessions.drivers.rollout_records import rollout_status

    config = load_config(args)
    reports = []
    for model in config.select_models(list(args.models)):
        cluster = connect_for(model, args)
        store = store_for(config)
        report = live_status(cluster, store, model.name, _fallback(model.name))
        report["rollout"] = rollout_status(cluster, store, model.name)
        reports.append(report)
    emit(args, {"models": reports}, "\n\n".join(_describe(r) for r in reports))
    return 0


def _describe(report: dict[str, Any]) -> str:
    record = report.get("record") or {}
    head = (
        f"{report['app']} on {report['context']}/{report['namespace']}: "
        f"revision {report['current_revision'] or '-'}"
        f" ({record.get('status', 'no deploy recorded')})"
    )
    lines = [head]
    for track in report["tracks"]:
        if not track["present"]:
            continue
        lineage = track.get("lineage") or {}
        lines.append(
            f"  {track['deployment']}: {track['ready']}/{track['replicas']} ready  "
            f"image {track['image']}"
        )
        lines.append(
            f"    commit {lineage.get('git-commit', '?')}  model {lineage.get('model-hash', '?')}"
            f"  run {lineage.get('run-id', '?')}"
        )
    if report["weights"]:
        lines.append("  weights: " + ", ".join(f"{k} {v}%" for k, v in report["weights"].items()))
    lines += _rollout_lines(report.get("rollout"))
    if report["revisions"]:
        lines.append("  history:")
        for rev in report["revisions"][-5:]:
            mark = "*" if rev["revision"] == report["current_revision"] else " "
            reason = f" — {rev['reason']}" if rev.get("reason") else ""
            lines.append(
                f"   {mark}{rev['revision']:>3} {rev['status']:<10} {rev['source']}"
                f" {rev.get('finished_at') or ''}{reason}"
            )
    return "\n".join(lines)


def _rollout_lines(rollout: dict[str, Any] | None) -> list[str]:
    """Phase, step, weights and the last measurement of each metric per track."""
    if not rollout:
        return []
    steps = rollout["steps"]
    weights = rollout["weights"]
    lines = [
        f"  rollout of revision {rollout['revision']}: {rollout['phase']} at step "
        f"{rollout['step']}/{len(steps)} (steps {steps}), weights stable "
        f"{weights.get('stable')}% / canary {weights.get('canary')}%",
        f"    failed windows {rollout['failures']}, inconclusive in a row "
        f"{rollout['inconclusive_in_row']}, Prometheus errors in a row "
        f"{rollout['errors_in_row']}, {rollout['windows']} windows judged",
    ]
    if rollout.get("reason"):
        lines.append(f"    {rollout['reason']}")
    for track, values in sorted(rollout["last"].items()):
        shown = ", ".join(
            f"{metric} {'—' if value is None else f'{value:.4g}'}"
            for metric, value in sorted(values.items())
        )
        lines.append(f"    last {track}: {shown}")
    if rollout.get("report"):
        lines.append(f"    report: {rollout['report']}")
    return lines
