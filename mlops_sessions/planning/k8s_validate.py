"""Offline validation of rendered objects: Kubernetes kinds and Istio kinds.

Kubernetes kinds are checked with ``kubernetes-validate`` (the official OpenAPI schemas
converted to JSON Schema, one set per minor version) in strict mode, so a misspelt field
is an error rather than silently dropped by the API server. The cluster version is
``deploy.kubernetes_version``; a minor version the installed kubernetes-validate does not
ship is refused by name, never approximated by a neighbouring version.

Istio kinds are checked against the project's own schemas in ``schemas/istio/`` (shipped
in the package as ``_schemas/istio/``), which cover exactly the fields render emits. So is
the Kubeflow ``TFJob`` (``schemas/kubeflow/``, ``train.operator: tfjob``), whose replicas'
pod templates are then checked as the official ``PodTemplateSpec`` (wrapped in a v1
``PodTemplate``) with kubernetes-validate like any Kubernetes kind.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from mlops_sessions.config import rules
from mlops_sessions.errors import StepError

ISTIO_GROUP = "networking.istio.io/"
_ISTIO_FILES = {"VirtualService": "virtualservice.json", "DestinationRule": "destinationrule.json"}
KUBEFLOW_GROUP = "kubeflow.org/"
_KUBEFLOW_FILES = {"TFJob": "tfjob.json"}


def supported_versions() -> list[str]:
    """Kubernetes minor versions ('1.30') whose schemas kubernetes-validate ships.

    The same list ``mlops validate`` checks deploy.kubernetes_version against.
    """
    _kubernetes_validate()  # the install hint when the extra is missing
    return list(rules.supported_kubernetes_versions())


def check_version(version: str) -> str:
    """The major.minor of version when supported; StepError naming the choices otherwise."""
    minor = rules.kubernetes_version_minor(version)
    supported = supported_versions()
    if minor not in supported:
        import kubernetes_validate

        raise StepError(
            f"deploy.kubernetes_version {version!r} is not supported: the installed "
            f"kubernetes-validate {kubernetes_validate.__version__} ships schemas for "
            f"{supported[0]} to {supported[-1]} ({', '.join(supported)}); set "
            "deploy.kubernetes_version to your cluster's version from that list, or upgrade "
            "kubernetes-validate (pip install -U kubernetes-validate) for a newer cluster"
        )
    return minor


def validate_objects(objects: list[dict[str, Any]], kubernetes_version: str) -> None:
    """Validate every object; one StepError lists every problem found."""
    version = check_version(kubernetes_version)
    problems: list[str] = []
    for obj in objects:
        where = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        missing = [key for key in ("apiVersion", "kind") if not isinstance(obj.get(key), str)]
        if missing:
            problems.append(f"{where}: (object): {' and '.join(missing)} missing")
        elif str(obj.get("apiVersion", "")).startswith(ISTIO_GROUP):
            problems += [f"{where}: {p}" for p in istio_problems(obj)]
        elif str(obj.get("apiVersion", "")).startswith(KUBEFLOW_GROUP):
            problems += [f"{where}: {p}" for p in kubeflow_problems(obj, version)]
        else:
            problems += [f"{where}: {p}" for p in kubernetes_problems(obj, version)]
    if problems:
        raise StepError(
            "rendered manifests do not validate:\n  " + "\n  ".join(problems) + "\n"
            "this is a bug in the renderer or a config value the schemas refuse; "
            "fix the field named above in mlops.yaml"
        )


def kubernetes_problems(obj: dict[str, Any], version: str) -> list[str]:
    import kubernetes_validate

    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path) or "(object)"
        return [f"{path}: {exc.message} (Kubernetes {version} schema)"]
    except kubernetes_validate.SchemaNotFoundError as exc:
        return [f"{exc.message}"]
    return []


def istio_problems(obj: dict[str, Any]) -> list[str]:
    kind = str(obj.get("kind"))
    if kind not in _ISTIO_FILES:
        return [f"no schema for Istio kind {kind!r}"]
    return _schema_problems(_project_validator("istio", _ISTIO_FILES[kind]), obj, "Istio")


def kubeflow_problems(obj: dict[str, Any], version: str) -> list[str]:
    """The project's schema for the kind, then each replica's pod template as the official
    ``PodTemplateSpec`` of Kubernetes ``version``."""
    kind = str(obj.get("kind"))
    if kind not in _KUBEFLOW_FILES:
        return [f"no schema for Kubeflow kind {kind!r}"]
    problems = _schema_problems(
        _project_validator("kubeflow", _KUBEFLOW_FILES[kind]), obj, "Kubeflow"
    )
    name = str((obj.get("metadata") or {}).get("name") or "template")
    replicas = (obj.get("spec") or {}).get("tfReplicaSpecs") or {}
    for replica_type, replica in sorted(replicas.items()) if isinstance(replicas, dict) else []:
        template = replica.get("template") if isinstance(replica, dict) else None
        if not isinstance(template, dict):
            continue  # the project schema has said so
        wrapped = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": name}}
        problems += [
            f"spec.tfReplicaSpecs.{replica_type}.{p}"
            for p in kubernetes_problems({**wrapped, "template": template}, version)
        ]
    return problems


def _schema_problems(validator: Any, obj: dict[str, Any], what: str) -> list[str]:
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.path)))
    paths = [".".join(str(p) for p in err.absolute_path) or "(object)" for err in errors]
    return [
        f"{path}: {err.message} ({what} schema)" for path, err in zip(paths, errors, strict=True)
    ]


def istio_schema_dir() -> Path:
    """Where the Istio schemas are: inside the package, or the checkout's schemas/ dir."""
    return schema_dir("istio")


def schema_dir(name: str) -> Path:
    """Where the project's schemas for ``name`` (istio, kubeflow) are: inside the package,
    or the checkout's schemas/ dir."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "_schemas" / name, here.parent / "schemas" / name):
        if any(candidate.glob("*.json")):
            return candidate
    raise StepError(
        f"the {name} schemas (schemas/{name}/*.json) are missing from this installation; "
        "reinstall mlops-sessions"
    )


@functools.cache
def _project_validator(name: str, file: str) -> Any:
    import jsonschema
    from referencing import Registry, Resource

    directory = schema_dir(name)
    resources = []
    for path in sorted(directory.glob("*.json")):
        contents = json.loads(path.read_text(encoding="utf-8"))
        resources.append((contents["$id"], Resource.from_contents(contents)))
    registry: Registry[Any] = Registry().with_resources(resources)
    schema = json.loads((directory / file).read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema, registry=registry)


def _kubernetes_validate() -> Any:
    try:
        from kubernetes_validate import utils
    except ImportError:
        raise StepError(
            "validating manifests needs kubernetes-validate; install it with "
            "pip install 'mlops-sessions[deploy]'"
        ) from None
    return utils
