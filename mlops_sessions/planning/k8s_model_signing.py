"""The model signature in the serving pods: what render adds when the project signs models.

With ``evaluate.sign`` and ``deploy.model_source.type: s3`` the model reaches the pod
outside its image, so the ``fetch-model`` init container verifies it before the server may
load it (docs/model-signing.md). Render then adds, and only then (every other rendered
object stays as it was):

- a ConfigMap ``<model>-model-signature`` holding the public key (``model.pub``) and the
  gate's signature of each track's model (``stable.sig``, ``canary.sig``): the trust root
  comes from the deployer's render, never from the bucket the model comes from;
- in each Deployment, a volume of that ConfigMap mounted read-only in the init container,
  ``--signature``/``--public-key``/``--model`` on its command line, and the signature's
  sha256 on the pod template, so a new signature or key rolls the pods (they verify again).

A model baked into the image (``model_source.type: image``) has no such plumbing: the image
digest is what cosign signs and ``deploy.verify`` checks, its provenance carrying the same
verdict. Pure: the key and signatures are facts the caller read
(:func:`mlops_sessions.drivers.model_signing.render_facts`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mlops_sessions.config import Config, ModelConfig
from mlops_sessions.errors import StepError
from mlops_sessions.planning.k8s_common import ANNOTATION_PREFIX, Track, metadata

VOLUME = "model-signature"
MOUNT_DIR = "/etc/mlops-model-signature"
PUBLIC_KEY_FILE = "model.pub"
FETCHER = "fetch-model"  # k8s_pod.FETCHER (imported there from here would be circular)


@dataclass(frozen=True)
class ModelSignatures:
    """The verification key (PEM text) and each track's model signature (bundle text)."""

    public_key: str
    by_track: Mapping[str, str] = field(default_factory=dict)


def applies(model: ModelConfig) -> bool:
    """The model is signed and travels outside its image: its pods verify it."""
    signs = model.evaluate is not None and model.evaluate.sign is not None
    return signs and model.deploy.model_source.type == "s3"


def signature_file(track: Track) -> str:
    return f"{track}.sig"


def config_map_name(model: ModelConfig) -> str:
    return f"{model.name}-model-signature"


def require(
    model: ModelConfig, facts: ModelSignatures | None, tracks: tuple[Track, ...]
) -> ModelSignatures:
    """The facts render needs, or one line saying how to get them."""
    missing = [t for t in tracks if facts is None or t not in facts.by_track]
    if facts is None or missing:
        raise StepError(
            f"models.{model.name}.evaluate.sign is set but no model signature was found for "
            f"the {', '.join(missing)} track; bless the model with `mlops evaluate "
            f"{model.name}` (it signs), then render again"
        )
    return facts


def config_map(
    config: Config, model: ModelConfig, facts: ModelSignatures, tracks: tuple[Track, ...]
) -> dict[str, Any]:
    data = {PUBLIC_KEY_FILE: facts.public_key}
    data.update({signature_file(t): facts.by_track[t] for t in tracks})
    where = {f"{ANNOTATION_PREFIX}/mount-path": MOUNT_DIR}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(config, model, config_map_name(model), where),
        "data": data,
    }


def wire(
    deployment: dict[str, Any], model: ModelConfig, track: Track, facts: ModelSignatures
) -> None:
    """Make one track's Deployment verify its model in the fetch-model init container."""
    template = deployment["spec"]["template"]
    digest = hashlib.sha256((facts.public_key + facts.by_track[track]).encode()).hexdigest()
    template["metadata"]["annotations"][f"{ANNOTATION_PREFIX}/model-signature-hash"] = digest
    spec = template["spec"]
    spec["volumes"].append({"name": VOLUME, "configMap": {"name": config_map_name(model)}})
    for container in spec.get("initContainers", []):
        if container["name"] != FETCHER:
            continue
        container["args"] += [
            "--signature",
            f"{MOUNT_DIR}/{signature_file(track)}",
            "--public-key",
            f"{MOUNT_DIR}/{PUBLIC_KEY_FILE}",
            "--model",
            model.name,
        ]
        container["volumeMounts"].append({"name": VOLUME, "mountPath": MOUNT_DIR, "readOnly": True})
