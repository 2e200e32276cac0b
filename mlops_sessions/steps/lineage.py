"""``mlops lineage <run-id | model-hash | commit>``: the chain from commit to blessed model.

For every stored run that matches — by run id, by model hash (a prefix is enough), by git
commit (a prefix, or any ref git can resolve such as ``HEAD`` or a tag) or by training cache
key (the run id ends with its first 8 hex) — it shows: commit
(and whether the tree was dirty), config hash, params, data hashes, requirements hash,
environment (and, for container training, the train image), model hash, the newest
evaluation's metrics and verdict, the blessings, the images built with the model and pushed
(``repo@sha256``, with the digests of their signature and attestations when signed), and the
deploy revisions that rolled it out.
Read-only: it only looks at ``.mlops/``, through the records package (a damaged record is a
one-line error naming the file and the fix). With ``store.remote`` it first pulls the
shared store's records (no models), so any machine can trace any pipeline's runs.
"""

from __future__ import annotations

import argparse
from typing import Any

from mlops_sessions import gitinfo
from mlops_sessions.console.common import add_offline, emit, load_config, store_for
from mlops_sessions.drivers.signing import describe_signed
from mlops_sessions.errors import StepError
from mlops_sessions.planning import baseline as baselines
from mlops_sessions.planning.gate import fmt
from mlops_sessions.records import builds, deployments, evaluations
from mlops_sessions.records.store import Store

# Shorter prefixes match too much to mean anything.
MIN_PREFIX = 4


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "ref",
        metavar="REF",
        help="a run id, model hash, git commit or cache key (prefixes of 4+ characters work)",
    )
    add_offline(parser)


def run(args: argparse.Namespace) -> int:
    config = load_config(args)
    store = store_for(config, offline=args.offline)
    store.pull()  # the shared store's records, when there is one
    chains = lineage(store, args.ref, root=config.root)
    emit(args, {"ref": args.ref, "runs": chains}, "\n\n".join(render(c) for c in chains))
    return 0


def _commit(record: dict[str, Any]) -> str:
    return str(((record.get("lineage") or {}).get("git") or {}).get("commit") or "")


def find_runs(store: Store, ref: str, root: Any = None) -> list[tuple[dict[str, Any], str]]:
    """Runs matching ref, each with what matched ('run id', 'model hash', 'git commit')."""
    ref = ref.strip()
    if not ref:
        raise StepError("give a run id, a model hash or a git commit to trace")
    runs = store.list_runs()
    exact = [(r, "run id") for r in runs if r.get("run_id") == ref]
    if exact:
        return exact
    found: list[tuple[dict[str, Any], str]] = []
    if len(ref) >= MIN_PREFIX:
        lowered = ref.lower()
        for record in runs:
            if str(record.get("run_id", "")).startswith(ref):
                found.append((record, "run id"))
            elif str(record.get("model_hash", "")).startswith(lowered):
                found.append((record, "model hash"))
            elif _commit(record).startswith(lowered):
                found.append((record, "git commit"))
            elif str(record.get("key", "")).startswith(lowered):
                found.append((record, "cache key"))
    if not found and root is not None:
        commit = gitinfo.resolve(root, ref)
        if commit is not None:
            found = [(r, f"git commit ({ref})") for r in runs if _commit(r) == commit]
    if not found:
        hint = f" (use at least {MIN_PREFIX} characters of a hash)" if len(ref) < MIN_PREFIX else ""
        raise StepError(
            f"no run in {store.runs} matches '{ref}'{hint}; give a run id, a model hash, a "
            "git commit or a cache key (prefixes work), or train with `mlops train` first"
        )
    return found


def chain(store: Store, record: dict[str, Any], matched: str) -> dict[str, Any]:
    """The lineage of one run as a JSON-ready dict."""
    run_id = str(record.get("run_id"))
    model = str(record.get("model"))
    lineage = record.get("lineage") or {}
    done = evaluations.evaluations(store.root, run_id)
    latest = done[-1] if done else None
    blessed_now = store.blessed(model)
    blessings = baselines.blessings_of_run(store.blessings(model), run_id)
    return {
        "matched": matched,
        "run_id": run_id,
        "model": model,
        "status": record.get("status"),
        "finished_at": record.get("finished_at"),
        "git": lineage.get("git") or {},
        "config_hash": lineage.get("config_hash"),
        "code_hash": lineage.get("code_hash"),
        "params": record.get("params") or {},
        "seed": record.get("seed"),
        "data_hashes": lineage.get("data_hashes") or {},
        "requirements_hash": lineage.get("requirements_hash"),
        "environment": lineage.get("environment") or {},
        "model_hash": record.get("model_hash"),
        "evaluation": None
        if latest is None
        else {
            "eval_id": latest.eval_id,
            "passed": latest.passed,
            "first_run": bool(latest.verdict.get("first_run")),
            "failures": latest.verdict.get("failures", []),
            "verdict": str(evaluations.EvaluationFiles(latest.path).verdict),
            "report": str(evaluations.EvaluationFiles(latest.path).report_html),
            "metrics": latest.values,
        },
        "evaluations": len(done),
        "blessings": blessings,
        "blessed_now": bool(blessed_now and blessed_now.get("run_id") == run_id),
        "images": images_of_run(store, run_id),
        "deployments": deployments_of_run(store, model, run_id, record.get("model_hash")),
    }


def images_of_run(store: Store, run_id: str) -> list[dict[str, Any]]:
    """Images built with this run's model, and where each was pushed (repo@sha256)."""
    found: dict[str, dict[str, Any]] = {}
    for image in builds.images(store.root):
        for built in builds.load_history(store.root, image, "build"):
            if built.get("run_id") == run_id and built.get("image_id"):
                entry = found.setdefault(
                    str(built["image_id"]),
                    {"image": image, "image_id": built["image_id"], "pushed": []},
                )
                entry.update(refs=built.get("refs", []), built_at=built.get("built_at"))
        for pushed in builds.load_history(store.root, image, "latest"):
            if pushed.get("run_id") == run_id and pushed.get("image_id") in found:
                entry = found[str(pushed["image_id"])]
                if pushed.get("image") not in entry["pushed"]:
                    entry["pushed"].append(pushed.get("image"))
                if pushed.get("signing"):  # images.<name>.sign: the newest signing counts
                    entry.setdefault("signing", {})[str(pushed.get("image"))] = pushed["signing"]
    return list(found.values())


def deployments_of_run(
    store: Store, model: str, run_id: str, model_hash: str | None
) -> list[dict[str, Any]]:
    """Deploy revisions (any cluster target) whose stable or canary model is this run's."""
    out = []
    for target, record in deployments.revisions_of_model(store.root, model):
        lineage = record.get("lineage") or {}
        roles = [
            role
            for role, ours in (
                ("stable", lineage.get("run_id") == run_id),
                ("canary", bool(model_hash) and lineage.get("canary_model_hash") == model_hash),
            )
            if ours
        ]
        if roles:
            out.append(
                {
                    "target": target,
                    "revision": record.get("revision"),
                    "status": record.get("status"),
                    "as": roles,
                    "weights": record.get("weights"),
                    "finished_at": record.get("finished_at"),
                }
            )
    return out


def lineage(store: Store, ref: str, root: Any = None) -> list[dict[str, Any]]:
    return [chain(store, record, matched) for record, matched in find_runs(store, ref, root)]


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "/".join(map(str, value)) or "none"
    return str(value) if value not in (None, "") else "none"


def _signing(ref: str, signing: dict[str, Any]) -> str:
    """The digests of an image's signature and attestations: the layers of its registry's
    sha256-<hex>.sig and .att tags that hold them (docs/signing.md), and the key."""
    return describe_signed(ref, signing)


def render(item: dict[str, Any]) -> str:
    git = item["git"]
    commit = git.get("commit") or "not recorded (not a git checkout)"
    if git.get("dirty"):
        commit += " (dirty: uncommitted changes)"
    if git.get("branch"):
        commit += f" on {git['branch']}"
    env = dict(item["environment"])
    container = env.pop("container", None)
    environment = ", ".join(f"{k} {_show(v)}" for k, v in env.items()) or "not recorded"
    params = " ".join(f"{k}={v}" for k, v in sorted(item["params"].items())) or "none"
    data = "; ".join(f"{k} {v}" for k, v in item["data_hashes"].items()) or "none"
    rows = [
        ("commit", commit),
        ("config hash", str(item["config_hash"])),
        ("code hash", str(item["code_hash"])),
        ("params", f"{params} (seed {item['seed']})"),
        ("data", data),
        ("requirements", str(item["requirements_hash"] or "none")),
        ("environment", environment),
    ]
    if container:
        refs = ", ".join(container.get("refs") or []) or container.get("image", "?")
        rows.append(("trained in", f"image {refs} ({str(container.get('image_id'))[:19]})"))
    rows.append(("model hash", str(item["model_hash"])))
    evaluation = item["evaluation"]
    if evaluation is None:
        rows.append(("metrics", "not evaluated yet (`mlops evaluate`)"))
        rows.append(("verdict", "none"))
    else:
        values = " ".join(f"{k}={fmt(v)}" for k, v in evaluation["metrics"].items())
        rows.append(("metrics", values))
        status = "PASS" if evaluation["passed"] else "FAIL"
        if evaluation["first_run"]:
            status += " (first run: relative thresholds not checked)"
        rows.append(("verdict", f"{status} — {evaluation['verdict']}"))
        rows += [("", failure) for failure in evaluation["failures"]]
    if item["blessings"]:
        last = item["blessings"][-1]
        current = "current blessed model" if item["blessed_now"] else "since superseded"
        rows.append(("blessing", f"blessed {last.get('blessed_at')} ({current})"))
        signature = last.get("model_signature")  # evaluate.sign: the gate signed the model
        if isinstance(signature, dict):
            rows.append(("model signed", f"{signature.get('digest')} (key {signature.get('key')})"))
    else:
        rows.append(("blessing", "not blessed"))
    for image in item.get("images", []):
        pushed = ", ".join(image["pushed"]) or "not pushed"
        rows.append(("image", f"{', '.join(image.get('refs', []))} -> {pushed}"))
        for ref, signing in (image.get("signing") or {}).items():
            rows.append(("signed", f"{ref}: {_signing(ref, signing)}"))
    for deployed in item.get("deployments", []):
        rows.append(
            (
                "deployed",
                f"{deployed['target']} revision {deployed['revision']} as "
                f"{'/'.join(deployed['as'])}: {deployed['status']}",
            )
        )
    width = max(len(label) for label, _ in rows)
    head = f"run {item['run_id']} (model {item['model']}; matched by {item['matched']})"
    return "\n".join([head] + [f"  {label.ljust(width)}  {value}" for label, value in rows])
