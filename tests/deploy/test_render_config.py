"""Render reacts to mlops.yaml: traffic, GPUs, probes, security, secrets, model download.

Each test writes a small config (YAML text, loaded through the real loader), renders it
with :func:`manifests.render` and checks the objects, which are also validated against
the Kubernetes and Istio schemas so a test cannot pass on an object a cluster would refuse.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops_sessions.config import Config
from mlops_sessions.config.loader import loads
from mlops_sessions.errors import ConfigError, StepError
from mlops_sessions.planning import k8s_secrets, k8s_validate
from mlops_sessions.planning.manifests import RenderInputs, by_kind, render, serving_document

STABLE = "registry.example.com/shop/ranker@sha256:" + "ab" * 32
CANARY = "registry.example.com/shop/ranker@sha256:" + "cd" * 32
SHA = "9f" * 32

BASE: dict[str, Any] = {
    "apiVersion": "mlops/v1alpha1",
    "project": {"name": "shop"},
    "images": {
        # A GPU-capable base: the GPU tests below serve on it (validate refuses GPUs on a
        # CPU-only serve image).
        "serve": {"repository": "ranker", "base": {"variant": "gpu", "tensorflow": "2.21.0"}},
    },
    "models": {
        "ranker": {
            "image": "serve",
            "serve": {"port": 8080, "drain": "30s"},
            "deploy": {
                "namespace": "shop",
                "replicas": 2,
                "resources": {"cpu": "1", "memory": "2Gi", "limits": {"memory": "3Gi"}},
            },
            "rollout": {
                "hosts": ["ranker.shop.example.com"],
                "stable": {"weight": 80},
                "canary": {"weight": 20},
            },
        }
    },
}


def merge(base: dict[str, Any], edit: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in edit.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        elif value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def config_of(model_edit: dict[str, Any] | None = None) -> Config:
    doc = merge(BASE, {"models": {"ranker": model_edit or {}}})
    return loads(yaml.safe_dump(doc), root=Path("."), env={})


def refused_by_validate_then_built(
    model_edit: dict[str, Any], valid_edit: dict[str, Any], **deploy_or_rollout: Any
) -> Config:
    """A config validate refuses (checked here), built past the loader for render to judge.

    validate and render share the rule; render must still refuse a Config that did not
    come through the loader. valid_edit is a neighbour validate accepts; the keyword
    arguments replace the model's deploy/rollout fields with the refused values.
    """
    with pytest.raises(ConfigError):
        config_of(model_edit)
    config = config_of(valid_edit)
    model = config.models["ranker"]
    for section, changes in deploy_or_rollout.items():
        model = dataclasses.replace(
            model, **{section: dataclasses.replace(getattr(model, section), **changes)}
        )
    return dataclasses.replace(config, models={**config.models, "ranker": model})


def inputs(config: Config, canary: str | None = None) -> RenderInputs:
    return RenderInputs(
        stable_image=STABLE,
        run_id="20261124T000000Z-00000001",
        model_hash="11" * 32,
        git_commit="22" * 20,
        config_hash=config.model_hash("ranker"),
        canary_image=canary,
        canary_run_id="20261124T010000Z-00000002" if canary else None,
    )


def rendered(
    model_edit: dict[str, Any] | None = None, canary: str | None = CANARY
) -> dict[str, list[dict[str, Any]]]:
    config = config_of(model_edit)
    model = config.models["ranker"]
    has_canary = model.rollout is not None and model.rollout.canary is not None
    objects = render(config, model, inputs(config, canary if has_canary else None))
    k8s_validate.validate_objects(objects, model.deploy.kubernetes_version)
    return dict(by_kind(objects))


def deployment(objs: dict[str, list[dict[str, Any]]], track: str = "stable") -> dict[str, Any]:
    return next(d for d in objs["Deployment"] if d["metadata"]["name"] == f"ranker-{track}")


def pod(objs: dict[str, list[dict[str, Any]]], track: str = "stable") -> dict[str, Any]:
    spec: dict[str, Any] = deployment(objs, track)["spec"]["template"]["spec"]
    return spec


def http_routes(objs: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The REST routes (the gRPC port's, ``grpc-*``, are tested on their own)."""
    routes: list[dict[str, Any]] = objs["VirtualService"][0]["spec"]["http"]
    return [r for r in routes if not r["name"].startswith("grpc-")]


# --- traffic -----------------------------------------------------------------------------


def test_weights_come_from_the_yaml_and_editing_them_changes_only_routing() -> None:
    before = rendered()
    after = rendered({"rollout": {"stable": {"weight": 35}, "canary": {"weight": 65}}})
    weighted = http_routes(after)[-1]["route"]
    assert [(r["destination"]["subset"], r["weight"]) for r in weighted] == [
        ("stable", 35),
        ("canary", 65),
    ]
    assert [r["weight"] for r in http_routes(before)[-1]["route"]] == [80, 20]
    # A traffic edit must not restart pods: pod templates are unchanged.
    for track in ("stable", "canary"):
        assert (
            deployment(before, track)["spec"]["template"]
            == deployment(after, track)["spec"]["template"]
        )


def test_stable_weight_defaults_to_what_the_canary_leaves() -> None:
    objs = rendered({"rollout": {"stable": None, "canary": {"weight": 5}}})
    assert [r["weight"] for r in http_routes(objs)[-1]["route"]] == [95, 5]


def test_weights_must_add_up_to_100() -> None:
    with pytest.raises(ConfigError, match="not 100"):
        config_of({"rollout": {"stable": {"weight": 70}, "canary": {"weight": 20}}})
    # render checks too, for a Config built without the loader's cross-field checks.
    config = config_of()
    model = config.models["ranker"]
    assert model.rollout is not None and model.rollout.canary is not None
    bad = dataclasses.replace(
        model,
        rollout=dataclasses.replace(
            model.rollout, canary=dataclasses.replace(model.rollout.canary, weight=30)
        ),
    )
    with pytest.raises(StepError, match=r"add up to 110, not 100.*stable.weight \+ canary.weight"):
        render(config, bad, inputs(config))


def test_ab_header_route_sends_its_slice_to_the_canary() -> None:
    objs = rendered({"rollout": {"ab": {"header": "X-Ranker-Beta", "value": "yes"}}})
    ab, weighted = http_routes(objs)
    assert ab["match"] == [{"headers": {"x-ranker-beta": {"exact": "yes"}}}]
    assert ab["route"] == [
        {
            "destination": {
                "host": "ranker.shop.svc.cluster.local",
                "subset": "canary",
                "port": {"number": 8080},
            },
            "weight": 100,
        }
    ]
    assert weighted["name"] == "weighted" and "match" not in weighted


def test_ab_cookie_and_bare_header_routes() -> None:
    objs = rendered({"rollout": {"ab": {"cookie": "beta=1", "header": "x-beta"}}})
    matches = http_routes(objs)[0]["match"]
    assert matches[0] == {"headers": {"x-beta": {"regex": ".+"}}}
    cookie = matches[1]["headers"]["cookie"]["regex"]
    import re

    assert re.search(cookie, "session=abc; beta=1; theme=dark")
    assert re.search(cookie, "beta=1")
    assert not re.search(cookie, "session=abc; notbeta=12")


def test_a_bad_cookie_regex_is_refused() -> None:
    config = refused_by_validate_then_built(
        {"rollout": {"ab": {"cookie": "beta=(1"}}},
        {"rollout": {"ab": {"cookie": "beta=1"}}},
    )
    rollout = config.models["ranker"].rollout
    assert rollout is not None and rollout.ab is not None
    bad = dataclasses.replace(rollout, ab=dataclasses.replace(rollout.ab, cookie="beta=(1"))
    config = dataclasses.replace(
        config,
        models={"ranker": dataclasses.replace(config.models["ranker"], rollout=bad)},
    )
    with pytest.raises(StepError, match="not a valid regular expression"):
        render(config, config.models["ranker"], inputs(config, CANARY))


def test_grpc_port_is_exposed_and_routed_with_the_same_split() -> None:
    objs = rendered({"rollout": {"ab": {"header": "x-beta", "value": "yes"}}})
    ports = objs["Service"][0]["spec"]["ports"]
    assert ports[1] == {
        "name": "grpc",
        "port": 8500,
        "targetPort": "grpc",
        "protocol": "TCP",
        "appProtocol": "grpc",
    }
    container = pod(objs)["containers"][0]
    assert container["ports"][1] == {"name": "grpc", "containerPort": 8500, "protocol": "TCP"}
    # Probes stay on the REST port.
    assert container["readinessProbe"]["httpGet"]["port"] == "http"
    routes = objs["VirtualService"][0]["spec"]["http"]
    assert [r["name"] for r in routes] == [
        "grpc-ab-canary",
        "grpc-weighted",
        "ab-canary",
        "weighted",
    ]
    assert routes[0]["match"] == [{"headers": {"x-beta": {"exact": "yes"}}, "port": 8500}]
    assert routes[1]["match"] == [{"port": 8500}]
    for grpc, rest in ((routes[0], routes[2]), (routes[1], routes[3])):
        assert [d["weight"] for d in grpc["route"]] == [d["weight"] for d in rest["route"]]
        assert {d["destination"]["port"]["number"] for d in grpc["route"]} == {8500}
    # A rollout step moves both splits.
    from mlops_sessions.planning import rollout_objects

    vs = rollout_objects.with_weights(
        objs["VirtualService"], {"stable": 70, "canary": 30}, routes[2]["match"]
    )[0]["spec"]["http"]
    assert [r["name"] for r in vs] == ["grpc-ab-canary", "grpc-weighted", "ab-canary", "weighted"]
    assert (
        [d["weight"] for d in vs[1]["route"]]
        == [d["weight"] for d in vs[3]["route"]]
        == [
            70,
            30,
        ]
    )
    assert vs[0]["match"] == routes[0]["match"]
    assert vs[0]["route"][0]["destination"]["port"] == {"number": 8500}
    # grpc_port: 0 -> REST only.
    off = rendered({"serve": {"grpc_port": 0}})
    assert [p["name"] for p in off["Service"][0]["spec"]["ports"]] == ["http"]
    assert [p["name"] for p in pod(off)["containers"][0]["ports"]] == ["http"]
    assert [r["name"] for r in off["VirtualService"][0]["spec"]["http"]] == ["weighted"]


def test_no_ab_means_only_the_weighted_route() -> None:
    objs = rendered()
    assert [r["name"] for r in http_routes(objs)] == ["weighted"]


def test_destination_rule_subsets_select_the_track_labels() -> None:
    objs = rendered()
    dr = objs["DestinationRule"][0]["spec"]
    assert dr["host"] == "ranker.shop.svc.cluster.local"
    assert dr["subsets"] == [
        {"name": "stable", "labels": {"track": "stable"}},
        {"name": "canary", "labels": {"track": "canary"}},
    ]
    for track in ("stable", "canary"):
        labels = deployment(objs, track)["spec"]["template"]["metadata"]["labels"]
        assert labels["track"] == track and labels["app"] == "ranker"
        assert deployment(objs, track)["spec"]["selector"]["matchLabels"] == {
            "app": "ranker",
            "track": track,
        }


def test_canary_runs_its_own_image_and_lineage() -> None:
    objs = rendered({"rollout": {"canary": {"replicas": 2}}})
    canary = deployment(objs, "canary")
    assert canary["spec"]["replicas"] == 2
    assert canary["spec"]["template"]["spec"]["containers"][0]["image"] == CANARY
    notes = canary["spec"]["template"]["metadata"]["annotations"]
    assert notes["mlops-sessions.dev/run-id"] == "20261124T010000Z-00000002"
    assert deployment(objs)["spec"]["template"]["spec"]["containers"][0]["image"] == STABLE


def test_without_a_canary_there_is_one_track_and_a_canary_image_is_refused() -> None:
    objs = rendered({"rollout": {"canary": None, "stable": {"weight": 100}}})
    assert [d["metadata"]["name"] for d in objs["Deployment"]] == ["ranker-stable"]
    assert [s["name"] for s in objs["DestinationRule"][0]["spec"]["subsets"]] == ["stable"]
    config = config_of({"rollout": {"canary": None, "stable": {"weight": 100}}})
    with pytest.raises(StepError, match="declares no canary"):
        render(config, config.models["ranker"], inputs(config, CANARY))


def test_without_rollout_there_is_no_istio_routing() -> None:
    objs = rendered({"rollout": None})
    assert "VirtualService" not in objs and "DestinationRule" not in objs
    assert [d["metadata"]["name"] for d in objs["Deployment"]] == ["ranker-stable"]


# --- resources, GPUs, scaling ------------------------------------------------------------


def test_cpu_and_memory_requests_and_limits() -> None:
    container = pod(rendered())["containers"][0]
    assert container["resources"] == {
        "requests": {"cpu": "1", "memory": "2Gi"},
        "limits": {"memory": "3Gi"},
    }
    assert "tolerations" not in pod(rendered())


def test_gpus_are_limits_with_a_toleration_and_node_selector() -> None:
    objs = rendered(
        {
            "deploy": {
                "resources": {"gpu": 2},
                "node_selector": {"cloud.google.com/gke-accelerator": "nvidia-l4"},
            }
        }
    )
    spec = pod(objs)
    assert spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert spec["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert spec["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]


def test_mig_resource_name_and_own_tolerations() -> None:
    toleration = {
        "key": "nvidia.com/gpu",
        "operator": "Equal",
        "value": "mig",
        "effect": "NoSchedule",
    }
    objs = rendered(
        {
            "deploy": {
                "resources": {"gpu": 1, "gpu_resource": "nvidia.com/mig-1g.5gb"},
                "tolerations": [toleration],
                "model_source": {"type": "s3", "uri": "s3://models/ranker.tgz", "sha256": SHA},
            }
        }
    )
    spec = pod(objs)
    limits = spec["containers"][0]["resources"]["limits"]
    assert limits == {"memory": "3Gi", "nvidia.com/mig-1g.5gb": "1"}
    assert "nvidia.com/gpu" not in limits
    assert spec["tolerations"] == [toleration]  # the user's own, not a duplicate
    # Downloading needs no GPU.
    assert "nvidia.com/mig-1g.5gb" not in str(spec["initContainers"][0]["resources"])


def test_gpu_request_and_limit_must_match() -> None:
    valid = {"deploy": {"resources": {"gpu": 1, "limits": {"gpu": 1}}}}
    refused = {"deploy": {"resources": {"gpu": 1, "limits": {"gpu": 2}}}}
    limits = dataclasses.replace(config_of(valid).models["ranker"].deploy.resources.limits, gpu=2)
    resources = dataclasses.replace(
        config_of(valid).models["ranker"].deploy.resources, limits=limits
    )
    config = refused_by_validate_then_built(refused, valid, deploy={"resources": resources})
    with pytest.raises(StepError, match="must be equal"):
        render(config, config.models["ranker"], inputs(config, CANARY))


def test_autoscaler_and_disruption_budget_when_configured() -> None:
    plain = rendered()
    assert "HorizontalPodAutoscaler" not in plain and "PodDisruptionBudget" not in plain
    objs = rendered(
        {
            "deploy": {
                "autoscaling": {"min_replicas": 2, "max_replicas": 6, "target_cpu_percent": 60},
                "pdb": {"min_available": 1},
            }
        }
    )
    hpa = objs["HorizontalPodAutoscaler"][0]["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "ranker-stable",
    }
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 6)
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 60
    # The HPA owns the stable replica count; the canary keeps its configured count.
    assert "replicas" not in deployment(objs)["spec"]
    assert deployment(objs, "canary")["spec"]["replicas"] == 1
    pdb = objs["PodDisruptionBudget"][0]["spec"]
    assert pdb == {
        "minAvailable": 1,
        "selector": {"matchLabels": {"app": "ranker", "track": "stable"}},
    }


def test_network_policy_is_optional() -> None:
    assert "NetworkPolicy" not in rendered()
    policy = rendered({"deploy": {"network_policy": True}})["NetworkPolicy"][0]["spec"]
    assert policy["podSelector"] == {"matchLabels": {"app": "ranker"}}
    assert policy["policyTypes"] == ["Ingress"]
    mesh, prometheus = policy["ingress"]
    assert mesh["ports"] == [
        {"port": "http", "protocol": "TCP"},
        {"port": "grpc", "protocol": "TCP"},
    ]
    assert prometheus["ports"] == [{"port": "http", "protocol": "TCP"}]


# --- probes, drain, serving config -------------------------------------------------------


def test_probes_default_to_healthz_and_ready_with_a_startup_probe() -> None:
    container = pod(rendered())["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300  # slow model loads
    assert all(
        container[p]["httpGet"]["port"] == "http"
        for p in ("livenessProbe", "readinessProbe", "startupProbe")
    )


def test_probe_settings_come_from_the_config() -> None:
    probes = {
        "liveness": {"path": "/live", "period": "15s", "timeout": "500ms", "failure_threshold": 4},
        "readiness": {"initial_delay": "3s"},
        "startup": {"period": "10s", "failure_threshold": 90},
    }
    container = pod(rendered({"deploy": {"probes": probes}}))["containers"][0]
    live = container["livenessProbe"]
    assert live["httpGet"]["path"] == "/live"
    assert (live["periodSeconds"], live["timeoutSeconds"], live["failureThreshold"]) == (15, 1, 4)
    assert container["readinessProbe"]["initialDelaySeconds"] == 3
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert (
        container["startupProbe"]["periodSeconds"],
        container["startupProbe"]["failureThreshold"],
    ) == (10, 90)


def test_termination_grace_covers_the_drain() -> None:
    assert pod(rendered())["terminationGracePeriodSeconds"] == 35  # drain 30s + 5s to exit
    assert pod(rendered({"serve": {"drain": "2m"}}))["terminationGracePeriodSeconds"] == 125


def test_the_serving_config_map_is_a_valid_mlops_yaml_for_the_pod() -> None:
    config = config_of({"serve": {"batching": {"max_batch_size": 16}}})
    objs = rendered({"serve": {"batching": {"max_batch_size": 16}}})
    text = objs["ConfigMap"][0]["data"]["mlops.yaml"]
    assert yaml.safe_load(text) == serving_document(config, config.models["ranker"])
    in_pod = loads(text, env={}).models["ranker"].serve
    assert in_pod == dataclasses.replace(config.models["ranker"].serve, host="0.0.0.0")
    args = pod(objs)["containers"][0]["args"]
    assert args[:4] == ["serve", "ranker", "--config", "/etc/mlops/mlops.yaml"]
    # A serving change rolls the pods (its hash is on the pod template).
    other = rendered({"serve": {"batching": {"max_batch_size": 8}}})
    key = "mlops-sessions.dev/serve-config-hash"
    annotations = deployment(objs)["spec"]["template"]["metadata"]["annotations"]
    assert annotations[key] != deployment(other)["spec"]["template"]["metadata"]["annotations"][key]


# --- security ----------------------------------------------------------------------------


def test_security_context_defaults() -> None:
    spec = pod(rendered())
    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert spec["containers"][0]["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert spec["automountServiceAccountToken"] is False
    assert {"name": "tmp", "emptyDir": {}} in spec["volumes"]  # writable /tmp on a RO root


def test_apparmor_is_a_field_from_1_30_and_an_annotation_before() -> None:
    security = {"apparmor_profile": "localhost/ranker", "selinux": {"level": "s0:c123,c456"}}
    new = rendered({"deploy": {"security": security, "kubernetes_version": "1.30"}})
    assert pod(new)["securityContext"]["appArmorProfile"] == {
        "type": "Localhost",
        "localhostProfile": "ranker",
    }
    assert pod(new)["securityContext"]["seLinuxOptions"] == {"level": "s0:c123,c456"}
    old = rendered({"deploy": {"security": security, "kubernetes_version": "1.29"}})
    assert "appArmorProfile" not in pod(old)["securityContext"]
    notes = deployment(old)["spec"]["template"]["metadata"]["annotations"]
    assert notes["container.apparmor.security.beta.kubernetes.io/server"] == "localhost/ranker"
    security = config_of().models["ranker"].deploy.security
    config = refused_by_validate_then_built(
        {"deploy": {"security": {"apparmor_profile": "strict"}}},
        {},
        deploy={"security": dataclasses.replace(security, apparmor_profile="strict")},
    )
    with pytest.raises(StepError, match="runtime/default"):
        render(config, config.models["ranker"], inputs(config, CANARY))


def test_secrets_are_only_referenced() -> None:
    secrets = [
        {"env": "DB_PASSWORD", "secret": "ranker-db", "key": "password"},
        {"env": "API_TOKEN", "secret": "ranker-api", "key": "token"},
    ]
    objs = rendered({"deploy": {"secrets": secrets}})
    env = pod(objs)["containers"][0]["env"]
    # The track comes from the pod's own label (the rollout's metrics), never a literal.
    assert env[0] == {
        "name": "MLOPS_TRACK",
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['track']"}},
    }
    assert env[1:] == [
        {
            "name": "DB_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": "ranker-db", "key": "password"}},
        },
        {
            "name": "API_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "ranker-api", "key": "token"}},
        },
    ]
    assert all("value" not in entry for entry in env)
    assert not any(o["kind"] == "Secret" for kind in objs.values() for o in kind)


def test_a_literal_secret_looking_value_is_refused_without_being_printed() -> None:
    config = config_of(
        {
            "deploy": {
                "model_source": {
                    "type": "s3",
                    "uri": "s3://models/ranker.tgz",
                    "sha256": SHA,
                    "endpoint": "https://ranker:hunter2hunter2@minio.shop:9000",
                }
            }
        }
    )
    with pytest.raises(StepError) as caught:
        render(config, config.models["ranker"], inputs(config, CANARY))
    message = str(caught.value)
    assert "a URL with a password" in message and "initContainers" in message
    assert "hunter2" not in message
    assert "deploy.secrets" in message


def test_the_guard_refuses_literal_env_secrets_and_known_token_shapes() -> None:
    config = config_of()
    objects = render(config, config.models["ranker"], inputs(config, CANARY))
    k8s_secrets.refuse_literal_secrets(objects)  # the real output is clean
    container = objects[3]["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [{"name": "DB_PASSWORD", "value": "correct horse"}]
    with pytest.raises(StepError, match="sets DB_PASSWORD to a literal value"):
        k8s_secrets.refuse_literal_secrets(objects)
    container["env"] = [{"name": "MODEL_NOTE", "value": "key AKIAIOSFODNN7EXAMPLE here"}]
    with pytest.raises(StepError, match="AWS access key id"):
        k8s_secrets.refuse_literal_secrets(objects)
    container["env"] = [{"name": "LOG_LEVEL", "value": "info"}]
    k8s_secrets.refuse_literal_secrets(objects)  # an ordinary literal is fine


# --- model download ----------------------------------------------------------------------


def test_s3_model_source_adds_a_checked_download_init_container() -> None:
    source = {
        "type": "s3",
        "uri": "s3://models/ranker/v3.tar.gz",
        "endpoint": "https://minio.shop:9000",
        "sha256": SHA,
        "credentials_secret": "ranker-s3",
        "timeout": "3m",
        "retries": 5,
    }
    spec = pod(rendered({"deploy": {"model_source": source}}))
    (fetch,) = spec["initContainers"]
    args = fetch["args"]

    def arg(flag: str) -> str:
        return str(args[args.index(flag) + 1])

    assert fetch["image"] == STABLE
    assert args[0] == "fetch-model"
    assert arg("--uri") == "s3://models/ranker/v3.tar.gz"
    assert arg("--sha256") == SHA
    assert arg("--timeout") == "180s"
    assert arg("--retries") == "5"
    assert arg("--endpoint") == "https://minio.shop:9000"
    assert arg("--dest") == "/models/ranker"
    assert fetch["env"] == [
        {"name": key, "valueFrom": {"secretKeyRef": {"name": "ranker-s3", "key": key}}}
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    ]
    assert fetch["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "model", "emptyDir": {}} in spec["volumes"]
    assert {"name": "model", "mountPath": "/models"} in fetch["volumeMounts"]
    server_mount = {"name": "model", "mountPath": "/models", "readOnly": True}
    assert server_mount in spec["containers"][0]["volumeMounts"]
    assert "initContainers" not in pod(rendered())  # type: image -> model is in the image


def test_s3_model_source_needs_a_checksum() -> None:
    valid = {"deploy": {"model_source": {"type": "s3", "uri": "s3://models/r.tgz", "sha256": SHA}}}
    source = config_of(valid).models["ranker"].deploy.model_source
    config = refused_by_validate_then_built(
        {"deploy": {"model_source": {"type": "s3", "uri": "s3://models/r.tgz"}}},
        valid,
        deploy={"model_source": dataclasses.replace(source, sha256=None)},
    )
    with pytest.raises(StepError, match=r"without a checksum.*sha256"):
        render(config, config.models["ranker"], inputs(config, CANARY))


# --- kubernetes version and images -------------------------------------------------------


@pytest.mark.parametrize("version", ["1.9", "1.24", "1.99"])
def test_unsupported_kubernetes_version_is_refused_by_name(version: str) -> None:
    # validate refuses the version too (same list); render's validation names it.
    with pytest.raises(ConfigError, match=f"'{version}' is not supported"):
        config_of({"deploy": {"kubernetes_version": version}})
    config = config_of()
    objects = render(config, config.models["ranker"], inputs(config, CANARY))
    with pytest.raises(StepError) as caught:
        k8s_validate.validate_objects(objects, version)
    message = str(caught.value)
    assert f"'{version}' is not supported" in message
    assert "1.30" in message and "deploy.kubernetes_version" in message


def test_a_patch_version_validates_against_its_minor() -> None:
    assert k8s_validate.check_version("1.30.4") == "1.30"


def test_images_must_be_pinned_by_digest() -> None:
    config = config_of()
    tagged = dataclasses.replace(inputs(config), stable_image="registry.example.com/ranker:v3")
    with pytest.raises(StepError, match="not pinned by digest"):
        render(config, config.models["ranker"], tagged)
