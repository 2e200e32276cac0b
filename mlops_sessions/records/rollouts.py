"""Progressive rollout records: in the store and, as a ConfigMap value, on the cluster.

Store layout, next to the deploy records of the same target
(``records.deployments.target_name``)::

    rollouts/<model>/<context>--<namespace>/rNNNNNN/state.json    the latest state
                                                     events.jsonl  one line per transition
                                                     report.md     every step's verdict

The revision number is the deploy revision the rollout brings in. The state (phase, step,
weights, digests, counters, every measurement with its window and sample count) is the
``RolloutState.as_dict()`` of :mod:`mlops_sessions.planning.rollout`; this module only
owns where and how it is kept. On the cluster the same state lives in the ConfigMap
``<model>-mlops-rollout``: key ``state`` (this module's encoding) and key ``request``
(``mlops promote`` / ``mlops abort`` asking the driving process to act), kept apart so
the driver's writes never overwrite an operator's request.

Imports only the standard library and the records layer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlops_sessions.records.deployments import target_name
from mlops_sessions.records.io import (
    Record,
    append_line,
    lock_path,
    locked,
    now,
    read_log,
    read_record,
    stamped,
    write_json_atomic,
    write_text_atomic,
)

STATE_KEY = "state"
REQUEST_KEY = "request"
REQUESTS = ("promote", "abort")
_DIR = re.compile(r"^r\d{6}$")


def rollouts_dir(root: Path) -> Path:
    return root / "rollouts"


def target_dir(root: Path, model: str, context: str, namespace: str) -> Path:
    return rollouts_dir(root) / model / target_name(context, namespace)


def rollout_dir(target: Path, revision: int) -> Path:
    return target / f"r{revision:06d}"


def state_file(target: Path, revision: int) -> Path:
    return rollout_dir(target, revision) / "state.json"


def report_file(target: Path, revision: int) -> Path:
    return rollout_dir(target, revision) / "report.md"


def events_file(target: Path, revision: int) -> Path:
    return rollout_dir(target, revision) / "events.jsonl"


def save_state(target: Path, state: Mapping[str, Any], event: str) -> Path:
    """Write the rollout's latest state and log the transition; returns the state file."""
    revision = int(state["revision"])
    path = state_file(target, revision)
    log = events_file(target, revision)
    with locked(lock_path(log)):
        write_json_atomic(path, stamped(state))
        append_line(
            log,
            stamped(
                {
                    "at": now(),
                    "event": event,
                    "phase": state.get("phase"),
                    "step": state.get("step"),
                    "weights": state.get("weights"),
                    "reason": state.get("reason"),
                }
            ),
        )
    return path


def save_report(target: Path, revision: int, markdown: str) -> Path:
    path = report_file(target, revision)
    write_text_atomic(path, markdown)
    return path


def load_state(target: Path, revision: int) -> Record | None:
    path = state_file(target, revision)
    return read_record(
        path, fix=f"delete {path} (the cluster keeps its own copy: `mlops status` shows it)"
    )


def events(target: Path, revision: int) -> list[Record]:
    path = events_file(target, revision)
    return read_log(path, fix=f"remove the damaged line from {path}, or delete the file")


def revisions(target: Path) -> list[int]:
    """Revisions with a recorded rollout at this target, oldest first."""
    if not target.is_dir():
        return []
    return sorted(int(p.name[1:]) for p in target.iterdir() if p.is_dir() and _DIR.match(p.name))


# --- the cluster's copy ------------------------------------------------------------------
def encode(data: Mapping[str, Any]) -> str:
    """A state or a request as one ConfigMap value (compact JSON)."""
    return json.dumps(stamped(data), sort_keys=True, separators=(",", ":"), default=str)


def decode(text: str | None) -> Record | None:
    """A ConfigMap value back to a record; None when absent or not one (edited by hand)."""
    if not text:
        return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def request(action: str, by: str, revision: int) -> Record:
    """What ``mlops promote`` / ``mlops abort`` write for the driving process to act on."""
    if action not in REQUESTS:
        raise ValueError(f"unknown rollout request {action!r}")
    return {"action": action, "by": by, "revision": revision, "at": now()}
