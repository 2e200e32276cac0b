"""Render: Config + recorded image digests -> Kubernetes and Istio manifests, as plain dicts.

Pure and offline (skaffold's Renderer): no Kubernetes client, no network, no clock, so the
same inputs give the same objects, byte for byte once serialised. ``deploy`` applies what
this returns; ``render`` writes it to ``k8s/rendered/<profile>/`` for review and diffing.

Objects come back in one documented order, which is also the apply order (a workload's
ServiceAccount and config exist before the pods that use them; routing comes last, once
the subsets it names exist)::

    ServiceAccount, ConfigMap (secret-free serving config), Service,
    Deployment stable, Deployment canary, HorizontalPodAutoscaler, PodDisruptionBudget,
    NetworkPolicy, DestinationRule, VirtualService

Pod details live in :mod:`k8s_pod`, Istio routing in :mod:`istio_routing`, the refusal of
literal secrets in :mod:`k8s_secrets`.
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import yaml

from mlops_sessions.config import Config, ModelConfig, rules
from mlops_sessions.errors import StepError
from mlops_sessions.planning import (
    istio_routing,
    k8s_model_signing,
    k8s_pod,
    k8s_secrets,
    rollout_objects,
)
from mlops_sessions.planning.k8s_common import (
    ANNOTATION_PREFIX,
    CONFIG_DIR,
    CONFIG_FILE,
    TRACKS,
    Track,
    metadata,
    selector_labels,
)

Manifest = dict[str, Any]

IMAGE_BY_DIGEST = re.compile(r"^(?P<name>[^\s@]+)@sha256:(?P<digest>[0-9a-f]{64})$")

# kind -> position in the stable order; the number is also the file-name prefix.
ORDER: dict[str, int] = {
    "ServiceAccount": 0,
    "ConfigMap": 5,
    "Service": 10,
    "Deployment": 20,
    "HorizontalPodAutoscaler": 30,
    "PodDisruptionBudget": 40,
    "NetworkPolicy": 50,
    "DestinationRule": 60,
    "VirtualService": 70,
    "Job": 80,  # a training Job (planning.train_job), rendered for review
    "TFJob": 85,  # or a Kubeflow TFJob (planning.train_tfjob, train.operator: tfjob)
}


@dataclass(frozen=True, kw_only=True)
class RenderInputs:
    """What render needs besides the config: the images (by digest) and their lineage.

    ``stable_image`` / ``canary_image`` are ``registry/repo@sha256:<64 hex>``. The lineage
    fields describe the stable track's build; ``canary_run_id`` / ``canary_model_hash`` /
    ``canary_git_commit`` describe the canary's (None: same as stable). ``canary_image``
    None with a canary declared in ``rollout`` means the canary runs the stable image.
    ``config_hash`` is :meth:`Config.model_hash` of the model (its effective config).
    """

    stable_image: str
    run_id: str | None
    model_hash: str | None
    git_commit: str | None
    config_hash: str
    canary_image: str | None = None
    canary_run_id: str | None = None
    canary_model_hash: str | None = None
    canary_git_commit: str | None = None
    # evaluate.sign with a model fetched from S3: the key and each track's model signature.
    model_signatures: k8s_model_signing.ModelSignatures | None = None

    def track_build(self, track: Track) -> k8s_pod.Build:
        """The image and lineage one track runs."""
        if track == "stable" or self.canary_image is None:
            return k8s_pod.Build(self.stable_image, self.run_id, self.model_hash, self.git_commit)
        return k8s_pod.Build(
            self.canary_image,
            self.canary_run_id,
            self.canary_model_hash,
            self.canary_git_commit,
        )


def render(config: Config, model: ModelConfig, artifacts: RenderInputs) -> list[Manifest]:
    """Every object for one model, in :data:`ORDER`; raises StepError on unrenderable input.

    The config's rules come first, through the functions `mlops validate` runs, so render
    refuses exactly the configs validate refuses (a Config built without the loader too).
    """
    rules.require(rules.model_findings(config, model))
    _check_images(model, artifacts)
    deploy = model.deploy
    tracks: tuple[Track, ...] = TRACKS if _has_canary(model) else ("stable",)
    namespace = deploy.namespace
    config_map = _config_map(config, model)
    serve_config_hash = hashlib.sha256(config_map["data"][CONFIG_FILE].encode()).hexdigest()
    objects: list[Manifest] = [_service_account(config, model), config_map]
    signing = k8s_model_signing.applies(model)
    if signing:  # the fetch-model init container verifies the model (evaluate.sign)
        signatures = k8s_model_signing.require(model, artifacts.model_signatures, tracks)
        objects.append(k8s_model_signing.config_map(config, model, signatures, tracks))
    objects.append(_service(config, model))
    for track in tracks:
        build = artifacts.track_build(track)
        deployment = k8s_pod.deployment(
            config, model, track, build, artifacts.config_hash, serve_config_hash
        )
        if signing:
            k8s_model_signing.wire(deployment, model, track, signatures)
        objects.append(deployment)
    if deploy.autoscaling is not None:
        objects.append(_autoscaler(config, model))
    if deploy.pdb is not None and deploy.pdb.min_available is not None:
        objects.append(_disruption_budget(config, model, deploy.pdb.min_available))
    if deploy.network_policy:
        objects.append(_network_policy(config, model))
    if model.rollout is not None:
        objects.append(istio_routing.destination_rule(config, model, tracks))
        objects.append(istio_routing.virtual_service(config, model))
    for obj in objects:
        if namespace is not None:
            obj["metadata"]["namespace"] = namespace
    if rollout_objects.progressive(model):
        # Between rollouts: 100 % stable, the canary at 0 replicas and no A/B route to it;
        # the rollout driver scales it up and steps the split (planning.rollout).
        objects = rollout_objects.steady_state(objects)
    k8s_secrets.refuse_literal_secrets(objects)
    # Label dicts are shared between a Deployment and its pod template while building;
    # callers get independent objects they may modify.
    return copy.deepcopy(objects)


def file_names(objects: list[Manifest]) -> list[str]:
    """Stable file names for render's objects, e.g. ``20-deployment-digits-stable.yaml``.

    The prefix is the kind's ORDER number plus the object's position among objects of the
    same kind (stable 20, canary 21), so sorting the names gives the apply order.
    """
    names: list[str] = []
    seen: dict[str, int] = {}
    for obj in objects:
        kind = str(obj["kind"])
        position = seen.get(kind, 0)
        seen[kind] = position + 1
        names.append(f"{ORDER[kind] + position:02d}-{kind.lower()}-{obj['metadata']['name']}.yaml")
    return names


def to_yaml(obj: Manifest) -> str:
    """Deterministic YAML for one object: sorted keys, block style, no aliases."""
    return yaml.dump(
        obj,
        Dumper=_NoAliasDumper,
        sort_keys=True,
        default_flow_style=False,
        allow_unicode=True,
        width=100,
    )


def to_yaml_stream(objects: list[Manifest]) -> str:
    """All objects as one multi-document YAML stream, in render order."""
    return "".join(f"---\n{to_yaml(obj)}" for obj in objects)


class _NoAliasDumper(yaml.SafeDumper):
    """SafeDumper without &anchors: a shared dict must print in full in every place."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    # Multi-line values (the ConfigMap's embedded mlops.yaml) print as readable '|' blocks.
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_NoAliasDumper.add_representer(str, _represent_str)


# --- checks -------------------------------------------------------------------------------


def _has_canary(model: ModelConfig) -> bool:
    return model.rollout is not None and model.rollout.canary is not None


def _check_images(model: ModelConfig, artifacts: RenderInputs) -> None:
    images = [("stable", artifacts.stable_image)]
    if artifacts.canary_image is not None:
        if not _has_canary(model):
            raise StepError(
                f"a canary image was given for model {model.name!r} but its rollout declares "
                f"no canary; add models.{model.name}.rollout.canary, or drop the canary image"
            )
        images.append(("canary", artifacts.canary_image))
    for track, image in images:
        if IMAGE_BY_DIGEST.match(image) is None:
            raise StepError(
                f"the {track} image of model {model.name!r} is {image!r}, not pinned by digest; "
                "manifests name images as registry/repo@sha256:<64 hex> so a tag cannot move "
                "under a running Deployment (build and push the image, or pass "
                "--image NAME=REPO@sha256:...)"
            )


# --- small objects ------------------------------------------------------------------------


def _service_account(config: Config, model: ModelConfig) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(config, model, model.name),
        # The server never talks to the Kubernetes API: no token in the pod.
        "automountServiceAccountToken": False,
    }


def serving_document(config: Config, model: ModelConfig) -> dict[str, Any]:
    """A minimal mlops.yaml the in-pod server loads: this model's ``serve:`` section only.

    Secret-free by construction (serve settings are ports, sizes and durations); the bind
    address is 0.0.0.0 because a pod is reached through its IP, not loopback.
    """
    serve = asdict(model.serve)
    serve["host"] = "0.0.0.0"
    return {
        "apiVersion": config.api_version,
        "project": {"name": config.project.name},
        "models": {model.name: {"serve": serve}},
    }


def _config_map(config: Config, model: ModelConfig) -> Manifest:
    text = yaml.safe_dump(serving_document(config, model), sort_keys=True)
    where = {f"{ANNOTATION_PREFIX}/mount-path": f"{CONFIG_DIR}/{CONFIG_FILE}"}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(config, model, f"{model.name}-serve", where),
        "data": {CONFIG_FILE: text},
    }


def _service(config: Config, model: ModelConfig) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(config, model, model.name),
        "spec": {
            "type": "ClusterIP",
            # Both tracks: Istio splits between them by subset; without a mesh the split is
            # by replica count.
            "selector": selector_labels(model),
            "ports": [
                {
                    # Istio infers the protocol from the 'http' name prefix / appProtocol.
                    "name": "http",
                    "port": model.serve.port,
                    "targetPort": "http",
                    "protocol": "TCP",
                    "appProtocol": "http",
                },
                # gRPC: appProtocol grpc makes Istio route it as HTTP/2 (per request, by the
                # VirtualService's weights), not as opaque TCP.
                *(
                    [
                        {
                            "name": "grpc",
                            "port": model.serve.grpc_port,
                            "targetPort": "grpc",
                            "protocol": "TCP",
                            "appProtocol": "grpc",
                        }
                    ]
                    if model.serve.grpc_port
                    else []
                ),
            ],
        },
    }


def _autoscaler(config: Config, model: ModelConfig) -> Manifest:
    auto = model.deploy.autoscaling
    assert auto is not None
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(config, model, f"{model.name}-stable"),
        "spec": {
            # Only the stable track scales; the canary's size is set by the rollout.
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": f"{model.name}-stable",
            },
            "minReplicas": auto.min_replicas,
            "maxReplicas": auto.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": auto.target_cpu_percent,
                        },
                    },
                }
            ],
        },
    }


def _disruption_budget(config: Config, model: ModelConfig, min_available: int) -> Manifest:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(config, model, f"{model.name}-stable"),
        "spec": {
            "minAvailable": min_available,
            # The stable track only: a one-replica canary must not block node drains.
            "selector": {"matchLabels": selector_labels(model, "stable")},
        },
    }


def _network_policy(config: Config, model: ModelConfig) -> Manifest:
    port = [{"port": "http", "protocol": "TCP"}]
    # The mesh may also call the gRPC port; Prometheus scrapes http only.
    mesh_ports = [*port, *([{"port": "grpc", "protocol": "TCP"}] if model.serve.grpc_port else [])]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(config, model, model.name),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(model)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    # The mesh: pods in sidecar-injected namespaces, and Istio's own
                    # namespace (ingress gateways).
                    "from": [
                        {"namespaceSelector": {"matchLabels": {"istio-injection": "enabled"}}},
                        {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": "istio-system"}
                            }
                        },
                    ],
                    "ports": mesh_ports,
                },
                {
                    # Prometheus, wherever it runs, scrapes /metrics on the same port.
                    "from": [
                        {
                            "namespaceSelector": {},
                            "podSelector": {
                                "matchLabels": {"app.kubernetes.io/name": "prometheus"}
                            },
                        }
                    ],
                    "ports": port,
                },
            ],
        },
    }


def by_kind(objects: list[Manifest]) -> Mapping[str, list[Manifest]]:
    """Objects grouped by kind, in render order (a convenience for callers and tests)."""
    grouped: dict[str, list[Manifest]] = {}
    for obj in objects:
        grouped.setdefault(str(obj["kind"]), []).append(obj)
    return grouped
