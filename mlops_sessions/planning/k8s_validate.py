"""Offline validation of rendered objects: Kubernetes kinds and Istio kinds.

Kubernetes kinds are checked with ``kubernetes-validate`` (the official OpenAPI schemas
converted to JSON Schema, one set per minor version) in strict mode, so a misspelt field
is an error rather than silently dropped by the API server. The cluster version is
``deploy.kubernetes_version``; a minor version the installed kubernetes-validate does not
ship is refused by name, never approximated by a neighbouring version.

Istio kinds are checked against the project's own schemas in ``schemas/istio/`` (shipped
in the package as ``_schemas/istio/``), which cover exactly the fields render emits.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from mlops_sessions.config import checks
from mlops_sessions.errors import StepError

ISTIO_GROUP = "networking.istio.io/"
_ISTIO_FILES = {"VirtualService": "virtualservice.json", "DestinationRule": "destinationrule.json"}


def supported_versions() -> list[str]:
    """Kubernetes minor versions ('1.30') whose schemas kubernetes-validate ships.

    The same list ``mlops validate`` checks deploy.kubernetes_version against.
    """
    _kubernetes_validate()  # the install hint when the extra is missing
    return list(checks.supported_kubernetes_versions())


def check_version(version: str) -> str:
    """The major.minor of version when supported; StepError naming the choices otherwise."""
    minor = checks.kubernetes_version_minor(version)
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
        if str(obj.get("apiVersion", "")).startswith(ISTIO_GROUP):
            problems += [f"{where}: {p}" for p in istio_problems(obj)]
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
    validator = _istio_validator(kind)
    return [
        f"{'.'.join(str(p) for p in err.absolute_path) or '(object)'}: {err.message} (Istio schema)"
        for err in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.path)))
    ]


def istio_schema_dir() -> Path:
    """Where the Istio schemas are: inside the package, or the checkout's schemas/ dir."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "_schemas" / "istio", here.parent / "schemas" / "istio"):
        if (candidate / "virtualservice.json").is_file():
            return candidate
    raise StepError(
        "the Istio schemas (schemas/istio/*.json) are missing from this installation; "
        "reinstall mlops-sessions"
    )


@functools.cache
def _istio_validator(kind: str) -> Any:
    import jsonschema
    from referencing import Registry, Resource

    directory = istio_schema_dir()
    resources = []
    for path in sorted(directory.glob("*.json")):
        contents = json.loads(path.read_text(encoding="utf-8"))
        resources.append((contents["$id"], Resource.from_contents(contents)))
    registry: Registry[Any] = Registry().with_resources(resources)
    schema = json.loads((directory / _ISTIO_FILES[kind]).read_text(encoding="utf-8"))
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
