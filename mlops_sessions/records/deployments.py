"""Deploy records in the store: ``deployments/<model>/<context>--<namespace>/``.

Each target directory holds ``revisions/rNNNNNN.json`` (one numbered revision: status,
images and digests, commit, model hash, weights, manifests) and an append-only
``events.jsonl`` (what happened to which revision, when). The revision is written *before*
the first write to the cluster, so an interrupted deploy is never unrecorded. The cluster's
own copy (a ConfigMap named by :func:`records.keys.history_configmap`) is kept by
``drivers.history`` through ``executors.kube.history``, in the format
:func:`encode_revision` / :func:`decode_revision` define here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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
)

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_REVISION_FILE = re.compile(r"^r\d{6}\.json$")


def deployments_dir(root: Path) -> Path:
    return root / "deployments"


def target_name(context: str, namespace: str) -> str:
    return _UNSAFE.sub("_", f"{context}--{namespace}")


def target_dir(root: Path, model: str, context: str, namespace: str) -> Path:
    return deployments_dir(root) / model / target_name(context, namespace)


def revision_file(target: Path, revision: int) -> Path:
    return target / "revisions" / f"r{revision:06d}.json"


def events_file(target: Path) -> Path:
    return target / "events.jsonl"


def save_revision(target: Path, record: Mapping[str, Any], event: str) -> None:
    """Write one revision's record and log the event, under the target's lock."""
    written = stamped(record)
    with locked(lock_path(events_file(target))):
        write_json_atomic(revision_file(target, int(written["revision"])), written)
        append_line(
            events_file(target),
            stamped(
                {
                    "at": now(),
                    "event": event,
                    "revision": written["revision"],
                    "status": written.get("status"),
                    "reason": written.get("reason"),
                }
            ),
        )


def _fix(path: Path) -> str:
    return (
        f"delete {path} (the cluster keeps its own copy of the revision: `mlops status` shows it)"
    )


def revisions(target: Path) -> list[Record]:
    """Every revision recorded for one target, oldest first."""
    folder = target / "revisions"
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.iterdir()):
        if _REVISION_FILE.match(path.name):
            record = read_record(path, fix=_fix(path))
            if record is not None:
                out.append(record)
    return out


def events(target: Path) -> list[Record]:
    path = events_file(target)
    return read_log(path, fix=f"remove the damaged line from {path}, or delete the file")


def revisions_of_model(root: Path, model: str) -> list[tuple[str, Record]]:
    """(target name, revision record) for every target the model was deployed to."""
    directory = deployments_dir(root) / model
    if not directory.is_dir():
        return []
    return [
        (target.name, record)
        for target in sorted(p for p in directory.iterdir() if p.is_dir())
        for record in revisions(target)
    ]


# --- the cluster's copy ------------------------------------------------------------------
def encode_revision(record: Mapping[str, Any]) -> str:
    """A revision as one ConfigMap value (compact JSON)."""
    return json.dumps(dict(record), sort_keys=True, separators=(",", ":"))


def decode_revision(text: str) -> Record | None:
    """A ConfigMap value back to a record; None when it is not one (edited by hand)."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None
