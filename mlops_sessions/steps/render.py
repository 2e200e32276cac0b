"""``mlops render``: write the Kubernetes and Istio manifests a deploy would apply.

Front end only: finds each model's image digests (:mod:`drivers.render_inputs`), renders
(:mod:`planning.manifests`), validates every object offline (:mod:`planning.k8s_validate`)
and writes one YAML file per object plus ``all.yaml`` to ``k8s/rendered/<profile>/`` (or
``--out``). Output is byte-for-byte deterministic, so the directory can be committed and
diffed in review. Files from an earlier render that this one no longer produces (say, a
NetworkPolicy switched off) are removed; files render did not name are never touched.
With ``rollout.steps``, ``steps/`` shows what each step of a progressive rollout applies
(the VirtualService per step, the canary scaled up), and the promotion and the abort.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from mlops_sessions.config import Config, ModelConfig
from mlops_sessions.console import argtypes, output
from mlops_sessions.console.common import add_models, emit, load_config
from mlops_sessions.drivers import policy_keys, render_inputs
from mlops_sessions.errors import StepError
from mlops_sessions.planning import (
    admission,
    dashboard,
    k8s_inputs,
    k8s_validate,
    manifests,
    rbac,
    rollout_objects,
    train_job,
    train_tfjob,
)

ALL_FILE = "all.yaml"
STEPS_DIR = "steps"
# What render writes: 'NN-kind-name.yaml' and all.yaml; only these are ever removed.
_OURS = re.compile(r"^[0-9]{2}-[a-z]+-[a-z0-9.-]+\.yaml$")
# In steps/: '<model>-step-N-canary-W.yaml', '<model>-promote.yaml', '<model>-abort.yaml'.
_OURS_STEPS = re.compile(r"^[a-z0-9.-]+-(step-[0-9]+-canary-[0-9]+|promote|abort)\.yaml$")
# In monitoring/: '<model>-prometheusrule.yaml' and '<project>-dashboard.yaml'.
_OURS_MONITORING = re.compile(r"^[a-z0-9.-]+-(prometheusrule|dashboard)\.yaml$")
# In rbac/: '<namespace>-mlops-deployer.yaml' (ServiceAccount, Role, RoleBinding).
RBAC_DIR = "rbac"
_OURS_RBAC = re.compile(rf"^[a-z0-9.-]+-{rbac.DEPLOYER}\.yaml$")
# In policy/: '<model>-imagepolicy.yaml' (planning/admission.py).
_OURS_POLICY = re.compile(r"^[a-z0-9.-]+-imagepolicy\.yaml$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_models(parser)
    parser.add_argument(
        "--out",
        type=argtypes.path_text,
        metavar="DIR",
        default=None,
        help="directory to write (default: k8s/rendered/<profile>/ next to mlops.yaml)",
    )
    parser.add_argument(
        "--image", metavar="NAME=REF@sha256:DIGEST", action="append", default=[],
        help="use this image for NAME (a key under 'images:') instead of the recorded build; "
        "repeatable",
    )  # fmt: skip


def default_out(config: Config) -> Path:
    return config.root / "k8s" / "rendered" / (config.profile or "default")


def header(config: Config) -> str:
    profile = f" --profile {config.profile}" if config.profile else ""
    return (
        f"# Rendered by `mlops render{profile}` from {config.source_file.name}.\n"
        "# Do not edit: change the config and render again.\n"
    )


def render_all(
    config: Config, model_names: list[str], overrides: dict[str, str]
) -> list[manifests.Manifest]:
    """Objects of every selected model, each model's validated, in model then render order."""
    objects: list[manifests.Manifest] = []
    for model in config.select_models(model_names):
        inputs = render_inputs.inputs_for(config, model, overrides)
        rendered = manifests.render(config, model, inputs)
        rendered += training_objects(config, model, overrides)
        k8s_validate.validate_objects(rendered, model.deploy.kubernetes_version)
        objects += rendered
    return objects


def training_objects(
    config: Config, model: ModelConfig, overrides: dict[str, str]
) -> list[manifests.Manifest]:
    """With ``train.backend: kubernetes``, the training Job (and Service), or the TFJob
    with ``train.operator: tfjob``, for review."""
    if model.train is None or model.train.effective_backend != "kubernetes":
        return []
    name = model.train.image or model.image
    if name is None:  # validate refuses this; render says the same
        raise StepError(f"model {model.name!r}: train.backend kubernetes needs train.image")
    image = render_inputs.find_build(config, name, overrides).image
    target = train_job.JobTarget(train_job.job_name(model.name), image)
    if model.train.operator == "tfjob":
        return train_tfjob.render(config, model, target)
    return train_job.render(config, model, target)


def files_for(out: Path, objects: list[manifests.Manifest], top: str) -> dict[Path, str]:
    """The file per object and all.yaml (last), by path."""
    names = manifests.file_names(objects)
    files = {
        out / name: top + "---\n" + manifests.to_yaml(obj)
        for name, obj in zip(names, objects, strict=True)
    }
    files[out / ALL_FILE] = top + manifests.to_yaml_stream(objects)
    return files


def remove_stale(out: Path, objects: list[manifests.Manifest]) -> list[str]:
    """Remove files of an earlier render this one no longer produces; returns the names
    written (all.yaml last)."""
    names = manifests.file_names(objects)
    keep = {*names, ALL_FILE}
    for stale in sorted(out.iterdir()):
        if stale.is_file() and _OURS.match(stale.name) and stale.name not in keep:
            stale.unlink()
    return [*names, ALL_FILE]


def render_steps(
    config: Config, model_names: list[str], overrides: dict[str, str]
) -> list[tuple[str, list[manifests.Manifest]]]:
    """Per progressive model, what each rollout step (then promote, abort) applies, validated
    like the rest: (file name, objects)."""
    out: list[tuple[str, list[manifests.Manifest]]] = []
    for model in config.select_models(model_names):
        inputs = render_inputs.inputs_for(config, model, overrides)
        rendered = manifests.render(config, model, inputs)
        for name, objects in rollout_objects.render_plan(model, rendered):
            k8s_validate.validate_objects(objects, model.deploy.kubernetes_version)
            out.append((f"{model.name}-{name}.yaml", objects))
    return out


def step_files(
    out: Path, stages: list[tuple[str, list[manifests.Manifest]]], top: str
) -> dict[Path, str]:
    """steps/<model>-<stage>.yaml (a YAML stream each), by path."""
    files = {}
    for name, objects in stages:
        note = (
            f"# What the rollout applies at {name[:-5]} (objects it leaves out stay as they "
            "are); `mlops deploy` applies it, never this file.\n"
        )
        files[out / STEPS_DIR / name] = top + note + manifests.to_yaml_stream(objects)
    return files


def remove_stale_steps(out: Path, stages: list[tuple[str, list[manifests.Manifest]]]) -> list[str]:
    """Remove steps/ files this render no longer produces; returns the names written."""
    folder = out / STEPS_DIR
    names = [name for name, _ in stages]
    if folder.is_dir():
        for stale in sorted(folder.iterdir()):
            if stale.is_file() and _OURS_STEPS.match(stale.name) and stale.name not in names:
                stale.unlink()
    return [f"{STEPS_DIR}/{name}" for name in names]


def monitoring_files(
    out: Path, config: Config, model_names: list[str], top: str
) -> dict[Path, str]:
    """monitoring/: each model's PrometheusRule and the project's Grafana dashboard
    (docs/alerts.md, docs/dashboard.md); the dashboard ConfigMap is validated like the rest."""
    files = {}
    for name, obj in dashboard.monitoring_objects(config, config.select_models(model_names)):
        if obj["kind"] == "ConfigMap":
            first = next(iter(config.models.values()))
            k8s_validate.validate_objects([obj], first.deploy.kubernetes_version)
        files[out / dashboard.MONITORING_DIR / name] = top + "---\n" + manifests.to_yaml(obj)
    return files


def remove_stale_in(folder: Path, ours: re.Pattern[str], files: dict[Path, str]) -> list[str]:
    """Remove files of ours in folder that this render no longer produces; returns the
    names written, relative to the output directory."""
    names = [path.name for path in files]
    if folder.is_dir():
        for stale in sorted(folder.iterdir()):
            if stale.is_file() and ours.match(stale.name) and stale.name not in names:
                stale.unlink()
    return [f"{folder.name}/{name}" for name in names]


def policy_files(out: Path, config: Config, model_names: list[str], top: str) -> dict[Path, str]:
    """policy/: the ClusterImagePolicy of each model with deploy.verify (docs/deploy.md,
    "Admission policy"); policy-controller enforces it, an admin applies it once."""
    models = config.select_models(model_names)
    keys = policy_keys.verify_keys(config, models)
    return {
        out / admission.POLICY_DIR / name: top + "---\n" + manifests.to_yaml(obj)
        for name, obj in admission.policy_objects(config, models, keys)
    }


def rbac_files(
    out: Path, config: Config, objects: list[manifests.Manifest], top: str
) -> dict[Path, str]:
    """rbac/: per namespace, the least-privilege identity that deploys and trains there
    (planning/rbac.py); apply it once with an admin's rights, then deploy as it."""
    by_namespace: dict[str, list[manifests.Manifest]] = {}
    for obj in objects:
        by_namespace.setdefault(str(obj["metadata"]["namespace"]), []).append(obj)
    labels = {
        "app.kubernetes.io/managed-by": "mlops-sessions",
        "app.kubernetes.io/part-of": config.project.name,
    }
    identity = rbac.deployer_objects(by_namespace, labels)
    if identity:
        first = next(iter(config.models.values()))
        k8s_validate.validate_objects(identity, first.deploy.kubernetes_version)
    files = {}
    for start in range(0, len(identity), 3):
        trio = identity[start : start + 3]
        name = f"{trio[0]['metadata']['namespace']}-{rbac.DEPLOYER}.yaml"
        files[out / RBAC_DIR / name] = top + manifests.to_yaml_stream(trio)
    return files


def run(args: argparse.Namespace) -> int:
    config = load_config(args)
    overrides = k8s_inputs.parse_overrides(args.image, config)
    objects = render_all(config, list(args.models), overrides)
    out = Path(args.out).resolve() if args.out else default_out(config)
    output.check_directory(out)
    stages = render_steps(config, list(args.models), overrides)
    # Every file or none: a full disk or a refused write leaves the last render in place.
    monitoring = monitoring_files(out, config, list(args.models), header(config))
    identity = rbac_files(out, config, objects, header(config))
    policies = policy_files(out, config, list(args.models), header(config))
    output.write_files(
        {
            **files_for(out, objects, header(config)),
            **step_files(out, stages, header(config)),
            **monitoring,
            **identity,
            **policies,
        }
    )
    files = (
        remove_stale(out, objects)
        + remove_stale_steps(out, stages)
        + remove_stale_in(out / dashboard.MONITORING_DIR, _OURS_MONITORING, monitoring)
        + remove_stale_in(out / RBAC_DIR, _OURS_RBAC, identity)
        + remove_stale_in(out / admission.POLICY_DIR, _OURS_POLICY, policies)
    )
    result: dict[str, Any] = {
        "out": str(out),
        "profile": config.profile,
        "files": files,
        "objects": [
            {
                "kind": obj["kind"],
                "name": obj["metadata"]["name"],
                "namespace": obj["metadata"].get("namespace"),
            }
            for obj in objects
        ],
    }
    lines = [f"rendered {len(objects)} objects to {out}"]
    lines += [f"  {name}" for name in files]
    emit(args, result, "\n".join(lines))
    return 0
