"""Render's model-signature plumbing: only with evaluate.sign and a model fetched from S3.

Pure render (no store, no cluster): the signature ConfigMap, each track's init container
arguments and mount, the pod annotation that rolls pods on a new signature; every object
validated against the Kubernetes schemas. Without the plumbing's condition the rendered
objects are exactly what they were (the goldens stay byte-identical), and a signed model
with no signature found is refused in one line.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops_sessions.config import Config
from mlops_sessions.config.loader import loads
from mlops_sessions.errors import StepError
from mlops_sessions.planning import k8s_validate
from mlops_sessions.planning.k8s_model_signing import ModelSignatures
from mlops_sessions.planning.manifests import RenderInputs, by_kind, render, to_yaml_stream

STABLE = "registry.example.com/shop/ranker@sha256:" + "ab" * 32
CANARY = "registry.example.com/shop/ranker@sha256:" + "cd" * 32
SHA = "9f" * 32
PUBLIC = "-----BEGIN PUBLIC KEY-----\nMFkw...\n-----END PUBLIC KEY-----\n"
SIGNATURES = ModelSignatures(PUBLIC, {"stable": '{"sig": "stable"}', "canary": '{"sig": "canary"}'})


def document(*, sign: bool, source: str) -> dict[str, Any]:
    deploy: dict[str, Any] = {"namespace": "shop", "replicas": 2}
    if source == "s3":
        deploy["model_source"] = {"type": "s3", "uri": "s3://models/ranker.tgz", "sha256": SHA}
    model: dict[str, Any] = {
        "image": "serve",
        "deploy": deploy,
        "rollout": {
            "hosts": ["ranker.shop.example.com"],
            "stable": {"weight": 80},
            "canary": {"weight": 20},
        },
    }
    if sign:
        model["evaluate"] = {
            "dataset": "ranker:heldout",
            "sign": {"key": "env://MODEL_KEY", "public_key": "keys/model.pub"},
        }
    return {
        "apiVersion": "mlops/v1alpha1",
        "project": {"name": "shop"},
        "images": {
            "serve": {"repository": "ranker", "base": {"variant": "cpu", "tensorflow": "2.21.0"}}
        },
        "models": {"ranker": model},
    }


def config(**kwargs: Any) -> Config:
    return loads(yaml.safe_dump(document(**kwargs)), root=Path("."), env={})


def inputs(cfg: Config, signatures: ModelSignatures | None = SIGNATURES) -> RenderInputs:
    return RenderInputs(
        stable_image=STABLE,
        run_id="20261124T000000Z-00000001",
        model_hash="11" * 32,
        git_commit="22" * 20,
        config_hash=cfg.model_hash("ranker"),
        canary_image=CANARY,
        canary_run_id="20261125T000000Z-00000002",
        model_signatures=signatures,
    )


def rendered(cfg: Config, artifacts: RenderInputs) -> list[dict[str, Any]]:
    objects = render(cfg, cfg.models["ranker"], artifacts)
    k8s_validate.validate_objects(objects, cfg.models["ranker"].deploy.kubernetes_version)
    return objects


def test_signed_s3_model_pods_verify_it_in_the_init_container() -> None:
    cfg = config(sign=True, source="s3")
    objects = by_kind(rendered(cfg, inputs(cfg)))
    maps = {m["metadata"]["name"]: m for m in objects["ConfigMap"]}
    assert maps["ranker-model-signature"]["data"] == {
        "model.pub": PUBLIC,
        "stable.sig": '{"sig": "stable"}',
        "canary.sig": '{"sig": "canary"}',
    }
    hashes = set()
    for deployment in objects["Deployment"]:
        track = deployment["metadata"]["name"].rsplit("-", 1)[1]
        template = deployment["spec"]["template"]
        hashes.add(template["metadata"]["annotations"]["mlops-sessions.dev/model-signature-hash"])
        spec = template["spec"]
        assert {"name": "model-signature", "configMap": {"name": "ranker-model-signature"}} in spec[
            "volumes"
        ]
        (fetcher,) = spec["initContainers"]
        args = fetcher["args"]
        assert args[args.index("--signature") + 1] == f"/etc/mlops-model-signature/{track}.sig"
        assert args[args.index("--public-key") + 1] == "/etc/mlops-model-signature/model.pub"
        assert args[args.index("--model") + 1] == "ranker"
        assert {
            "name": "model-signature",
            "mountPath": "/etc/mlops-model-signature",
            "readOnly": True,
        } in fetcher["volumeMounts"]
        # The server loads only what the init container verified; it does not mount the key.
        (server,) = spec["containers"]
        assert all(m["name"] != "model-signature" for m in server["volumeMounts"])
    assert len(hashes) == 2  # each track's own signature


def test_a_new_signature_rolls_the_pods() -> None:
    cfg = config(sign=True, source="s3")
    before = by_kind(rendered(cfg, inputs(cfg)))["Deployment"][0]
    resigned = ModelSignatures(PUBLIC, {**SIGNATURES.by_track, "stable": '{"sig": "again"}'})
    after = by_kind(rendered(cfg, inputs(cfg, resigned)))["Deployment"][0]
    key = "mlops-sessions.dev/model-signature-hash"
    assert (
        before["spec"]["template"]["metadata"]["annotations"][key]
        != after["spec"]["template"]["metadata"]["annotations"][key]
    )


@pytest.mark.parametrize(("sign", "source"), [(True, "image"), (False, "s3"), (False, "image")])
def test_without_a_signed_fetched_model_nothing_changes(sign: bool, source: str) -> None:
    """An image-baked model is covered by the image's own signature (cosign, deploy.verify):
    no plumbing, and facts handed in are ignored. Byte-identical to an unsigned render."""
    cfg = config(sign=sign, source=source)
    plain = config(sign=False, source=source)
    with_facts = to_yaml_stream(rendered(cfg, inputs(cfg)))
    without = to_yaml_stream(rendered(plain, inputs(plain, None)))
    # The config hash annotation differs with the evaluate section; nothing else may.
    digest_of = {cfg.model_hash("ranker"): "X", plain.model_hash("ranker"): "X"}
    for real, label in digest_of.items():
        with_facts, without = with_facts.replace(real, label), without.replace(real, label)
    assert with_facts == without
    assert "model-signature" not in with_facts


def test_a_signed_model_without_its_signature_is_refused() -> None:
    cfg = config(sign=True, source="s3")
    for facts in (None, ModelSignatures(PUBLIC, {"stable": "{}"})):
        with pytest.raises(StepError) as refused:
            render(cfg, cfg.models["ranker"], inputs(cfg, facts))
        message = str(refused.value)
        assert "\n" not in message and "mlops evaluate ranker" in message
    missing = ModelSignatures(PUBLIC, {"stable": "{}"})
    with pytest.raises(StepError, match="for the canary track"):
        render(cfg, cfg.models["ranker"], inputs(cfg, missing))


def test_render_finds_each_tracks_signature_through_its_blessing(tmp_path: Path) -> None:
    """drivers.model_signing.render_facts: each track's run -> its blessing's evaluation ->
    the signature the gate wrote there; a run never blessed with signing has none."""
    from mlops_sessions.drivers.model_signing import render_facts
    from mlops_sessions.records import keys
    from mlops_sessions.records.store import Store

    cfg = loads(yaml.safe_dump(document(sign=True, source="s3")), root=tmp_path, env={})
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "model.pub").write_text(PUBLIC)
    store = Store(cfg.store_path)
    artifacts = inputs(cfg, None)
    stable_run = str(artifacts.run_id)
    signature = keys.local(store.root, keys.model_signature(stable_run, "e-stable"))
    signature.parent.mkdir(parents=True)
    signature.write_text('{"bundle": "stable"}')
    store.bless("ranker", {"model": "ranker", "run_id": stable_run, "eval_id": "e-stable"})

    facts = render_facts(cfg, cfg.models["ranker"], artifacts)
    assert facts is not None and facts.public_key == PUBLIC
    assert facts.by_track == {"stable": '{"bundle": "stable"}'}  # the canary's run: none
    with pytest.raises(StepError, match="for the canary track"):
        render(cfg, cfg.models["ranker"], dataclasses.replace(artifacts, model_signatures=facts))
    # The canary running the stable image runs the stable model: its signature.
    same = dataclasses.replace(artifacts, canary_image=None, canary_run_id=None)
    facts = render_facts(cfg, cfg.models["ranker"], same)
    assert facts is not None and facts.by_track["canary"] == facts.by_track["stable"]
    rendered(cfg, dataclasses.replace(same, model_signatures=facts))


def test_the_sessions_that_sign_or_verify_install_the_sign_extra() -> None:
    from mlops_sessions import pipeline
    from mlops_sessions.frontends import noxplugin

    by_step = {spec.name: spec for spec in pipeline.sessions()}
    signed, unsigned = config(sign=True, source="s3"), config(sign=False, source="s3")
    for name in ("evaluate", "serve"):
        assert "sign" in noxplugin.session_extras(by_step[name], signed)
        assert "sign" not in noxplugin.session_extras(by_step[name], unsigned)
    assert "sign" not in noxplugin.session_extras(by_step["train"], signed)


def test_validate_refuses_a_kms_key_for_the_model() -> None:
    from mlops_sessions.errors import ConfigError

    doc = document(sign=True, source="s3")
    doc["models"]["ranker"]["evaluate"]["sign"]["key"] = "awskms:///alias/model"
    with pytest.raises(ConfigError) as refused:
        loads(yaml.safe_dump(doc), root=Path("."), env={})
    text = str(refused.value)
    assert "models.ranker.evaluate.sign.key" in text and "KMS URI" in text
    doc["models"]["ranker"]["evaluate"]["sign"]["key"] = "env://MODEL_KEY"
    loads(yaml.safe_dump(doc), root=Path("."), env={})  # env:// and files are fine


def test_a_serve_image_whose_pods_verify_the_model_carries_the_library() -> None:
    from mlops_sessions.planning.images import FETCH_ROOTS, SIGN_ROOTS, image_tools

    for sign, source, roots in (
        (True, "s3", FETCH_ROOTS + SIGN_ROOTS),
        (False, "s3", FETCH_ROOTS),
        (True, "image", ()),
    ):
        cfg = config(sign=sign, source=source)
        assert image_tools(cfg, "serve", cfg.images["serve"]) == roots
