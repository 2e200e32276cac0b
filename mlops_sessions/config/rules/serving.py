"""Serving on Kubernetes: model downloads with a checksum, AppArmor profiles, durations
Kubernetes counts in int32 seconds, disruption budgets, hosts claimed twice, the Kubernetes
versions render can validate against.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from pathlib import Path

from mlops_sessions.config import units
from mlops_sessions.config.model import Config, ModelConfig
from mlops_sessions.config.rules.base import Finding, Path_


def model_source_findings(model: ModelConfig) -> list[Finding]:
    source = model.deploy.model_source
    if source.type != "s3":
        return []
    path = ("models", model.name, "deploy", "model_source")
    if source.uri is None:
        return [
            Finding(
                path,
                "model_source type 's3' needs a uri"
                + (" and a sha256" if source.sha256 is None else ""),
                "add uri: s3://bucket/path/model.tar.gz"
                + (" and sha256: <64 hex> of the archive" if source.sha256 is None else ""),
            )
        ]
    if source.sha256 is None:
        return [
            Finding(
                path,
                f"model_source downloads {source.uri} without a checksum",
                "add sha256: <64 hex> (sha256sum of the archive) so a corrupt or swapped "
                "model is refused before it is served",
            )
        ]
    return []


def apparmor_profile(profile: str) -> dict[str, str] | None:
    """The securityContext form of an AppArmor profile, or None when Kubernetes knows none."""
    if profile == "runtime/default":
        return {"type": "RuntimeDefault"}
    if profile == "unconfined":
        return {"type": "Unconfined"}
    name = profile[len("localhost/") :]
    if profile.startswith("localhost/") and name and not any(c.isspace() for c in name):
        return {"type": "Localhost", "localhostProfile": name}
    return None


def apparmor_findings(model: ModelConfig) -> list[Finding]:
    profile = model.deploy.security.apparmor_profile
    if profile is None or apparmor_profile(profile) is not None:
        return []
    return [
        Finding(
            ("models", model.name, "deploy", "security", "apparmor_profile"),
            f"AppArmor profile {profile!r} is not one Kubernetes knows",
            "use 'runtime/default', 'localhost/<profile loaded on the node>' or 'unconfined'",
        )
    ]


def duration_findings(model: ModelConfig) -> list[Finding]:
    """Durations render writes as Kubernetes seconds, which are int32 fields."""
    base = ("models", model.name)
    durations: list[tuple[Path_, str | None]] = [
        ((*base, "deploy", "rollout_timeout"), model.deploy.rollout_timeout),
        ((*base, "serve", "drain"), model.serve.drain),
        ((*base, "deploy", "model_source", "timeout"), model.deploy.model_source.timeout),
    ]
    for kind in ("liveness", "readiness", "startup"):
        probe = getattr(model.deploy.probes, kind)
        if probe is not None:
            for field in ("initial_delay", "period", "timeout"):
                durations.append(((*base, "deploy", "probes", kind, field), getattr(probe, field)))
    out: list[Finding] = []
    for path, text in durations:
        if text is None:
            continue
        try:
            whole = units.whole_seconds(text)
        except (units.UnitError, OverflowError):
            whole = units.INT32_MAX + 1
        if whole > units.INT32_MAX - 60:  # room for the drain's exit margin
            out.append(
                Finding(
                    path,
                    f"{text!r} is more seconds than Kubernetes can count here",
                    f"use a duration below {units.INT32_MAX - 60} seconds (about 68 years)",
                )
            )
    return out


def pdb_findings(model: ModelConfig) -> list[Finding]:
    deploy = model.deploy
    wanted = deploy.pdb.min_available if deploy.pdb is not None else None
    if wanted is None:
        return []
    auto = deploy.autoscaling
    replicas = auto.min_replicas if auto is not None else deploy.replicas
    if wanted <= replicas:
        return []
    source = "autoscaling.min_replicas" if auto is not None else "replicas"
    return [
        Finding(
            ("models", model.name, "deploy", "pdb", "min_available"),
            f"min_available {wanted} is above the {replicas} replica(s) of the stable track "
            f"(deploy.{source}): no pod could ever be evicted, so node drains would hang",
            f"lower pdb.min_available to at most {replicas}, or raise deploy.{source}",
        )
    ]


def host_findings(config: Config) -> list[Finding]:
    """Two models answering for one host: Istio would merge their routes in no set order."""
    owner: dict[str, str] = {}
    out: list[Finding] = []
    for model in config.models.values():
        if model.rollout is None:
            continue
        for index, host in enumerate(model.rollout.hosts):
            if host in owner and owner[host] != model.name:
                out.append(
                    Finding(
                        ("models", model.name, "rollout", "hosts", index),
                        f"host '{host}' is already claimed by model '{owner[host]}'",
                        "give each model a host of its own",
                    )
                )
            owner.setdefault(host, model.name)
    return out


@functools.cache
def supported_kubernetes_versions() -> tuple[str, ...]:
    """Kubernetes minors ('1.30') whose schemas the installed kubernetes-validate ships.

    Empty when kubernetes-validate is not installed (render then says how to install it).
    """
    # Read the package's schema directory without importing it: kubernetes-validate pulls
    # in jsonschema, which an unchanged, already-validated file must not pay for.
    spec = importlib.util.find_spec("kubernetes_validate")
    if spec is None or not spec.submodule_search_locations:
        return ()
    found: set[str] = set()
    for location in spec.submodule_search_locations:
        schemas = Path(location) / "kubernetes-json-schema"
        names = [p.name for p in schemas.iterdir()] if schemas.is_dir() else []
        found.update(m.group(1) for n in names if (m := _SCHEMA_DIR.match(n)))
    return tuple(sorted(found, key=lambda v: tuple(int(p) for p in v.split("."))))


_SCHEMA_DIR = re.compile(r"^v(\d+\.\d+)\.")


def kubernetes_version_minor(version: str) -> str:
    return ".".join(version.lstrip("v").split(".")[:2])


def kubernetes_version_findings(model: ModelConfig) -> list[Finding]:
    version = model.deploy.kubernetes_version
    supported = supported_kubernetes_versions()
    if not supported or kubernetes_version_minor(version) in supported:
        return []
    return [
        Finding(
            ("models", model.name, "deploy", "kubernetes_version"),
            f"deploy.kubernetes_version {version!r} is not supported: the installed "
            f"kubernetes-validate ships schemas for {supported[0]} to {supported[-1]} "
            f"({', '.join(supported)})",
            "set deploy.kubernetes_version to your cluster's version from that list, or "
            "upgrade kubernetes-validate (pip install -U kubernetes-validate) for a newer "
            "cluster",
        )
    ]
