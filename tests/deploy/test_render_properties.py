"""Property tests: any config the loader accepts renders to objects a cluster would accept.

Hypothesis draws deploy/rollout settings (weights, replicas, GPUs, probes, A/B routes,
security, model source, scaling, Kubernetes version); every draw must render, validate
against the Kubernetes and Istio schemas, keep its weights at 100, and serialise to YAML
that reads back to the same objects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlops_sessions.config.loader import loads
from mlops_sessions.planning import k8s_secrets, k8s_validate
from mlops_sessions.planning.manifests import RenderInputs, by_kind, render, to_yaml

IMAGE = "registry.example.com/shop/ranker@sha256:" + "e3" * 32
DURATIONS = ["500ms", "1s", "15s", "2m"]


@st.composite
def model_docs(draw: st.DrawFn) -> dict[str, Any]:
    gpus = draw(st.integers(0, 4))
    deploy: dict[str, Any] = {
        "namespace": draw(st.sampled_from(["ml", "shop-prod"])),
        "kubernetes_version": draw(st.sampled_from(k8s_validate.supported_versions())),
        "replicas": draw(st.integers(0, 10)),
        "resources": {
            "cpu": draw(st.sampled_from(["250m", "1", "2"])),
            "memory": draw(st.sampled_from(["512Mi", "2Gi"])),
            "gpu": gpus,
            "gpu_resource": draw(st.sampled_from(["nvidia.com/gpu", "nvidia.com/mig-2g.10gb"])),
        },
        "probes": {
            kind: {"period": draw(st.sampled_from(DURATIONS)), "timeout": "500ms"}
            for kind in ("liveness", "readiness", "startup")
        },
        "network_policy": draw(st.booleans()),
        "security": {
            "run_as_user": draw(st.integers(1, 65535)),
            "read_only_root_filesystem": draw(st.booleans()),
        },
    }
    apparmor = draw(st.sampled_from([None, "runtime/default", "localhost/ranker", "unconfined"]))
    if apparmor is not None:
        deploy["security"]["apparmor_profile"] = apparmor
    if draw(st.booleans()):
        low = draw(st.integers(1, 5))
        deploy["autoscaling"] = {"min_replicas": low, "max_replicas": low + draw(st.integers(0, 5))}
    if draw(st.booleans()):
        # At most the stable track's replicas: validate refuses a budget no drain can meet.
        floor = deploy["autoscaling"]["min_replicas"] if "autoscaling" in deploy else None
        most = deploy["replicas"] if floor is None else floor
        deploy["pdb"] = {"min_available": draw(st.integers(0, min(3, most)))}
    if draw(st.booleans()):
        deploy["model_source"] = {
            "type": "s3",
            "uri": "s3://models/ranker.tgz",
            "sha256": "0f" * 32,
            "credentials_secret": "ranker-s3",
            "timeout": draw(st.sampled_from(DURATIONS)),
        }
    rollout: dict[str, Any] = {"hosts": ["ranker.example.com"]}
    if draw(st.booleans()):
        weight = draw(st.integers(0, 100))
        rollout["canary"] = {"weight": weight, "replicas": draw(st.integers(0, 3))}
        if draw(st.booleans()):
            rollout["stable"] = {"weight": 100 - weight}
        ab = draw(
            st.sampled_from(
                [None, {"header": "x-beta", "value": "1"}, {"header": "X-Beta"}, {"cookie": "b=1"}]
            )
        )
        if ab is not None:
            rollout["ab"] = ab
    return {
        "image": "serve",
        "serve": {
            "port": draw(st.integers(1024, 65535)),
            "drain": draw(st.sampled_from(DURATIONS)),
        },
        "deploy": deploy,
        "rollout": rollout,
    }


@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(model_docs())
@pytest.mark.slow
def test_any_accepted_config_renders_valid_manifests(model: dict[str, Any]) -> None:
    doc = {
        "apiVersion": "mlops/v1alpha1",
        "project": {"name": "shop"},
        "images": {
            "serve": {"repository": "r", "base": {"variant": "gpu", "tensorflow": "2.21.0"}}
        },
        "models": {"ranker": model},
    }
    config = loads(yaml.safe_dump(doc), root=Path("."), env={})
    spec = config.models["ranker"]
    inputs = RenderInputs(
        stable_image=IMAGE,
        run_id=None,
        model_hash=None,
        git_commit=None,
        config_hash=config.model_hash("ranker"),
    )
    objects = render(config, spec, inputs)
    assert objects == render(config, spec, inputs)
    k8s_validate.validate_objects(objects, spec.deploy.kubernetes_version)
    k8s_secrets.refuse_literal_secrets(objects)
    for obj in objects:
        assert yaml.safe_load(to_yaml(obj)) == obj
    kinds = by_kind(objects)
    weighted = kinds["VirtualService"][0]["spec"]["http"][-1]["route"]
    assert sum(route["weight"] for route in weighted) == 100
    tracks = [d["metadata"]["labels"]["track"] for d in kinds["Deployment"]]
    assert tracks == (["stable", "canary"] if "canary" in model["rollout"] else ["stable"])
