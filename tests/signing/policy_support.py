"""What the admission-policy tests share: projects with ``deploy.verify``, keys made at run
time, ``mlops render`` run for real, and policy-controller's published CRD.

The CRD comes from policy-controller's Go module at the version the test control plane
installs (``tests.cluster.components.POLICY_CONTROLLER_VERSION``), fetched by the Go
toolchain (:mod:`tests.components.gomod`). Keys are generated per test (an ECDSA P-256
pair, what ``cosign generate-key-pair`` makes) and never committed.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mlops_sessions.frontends.cli import main
from tests.cluster import components
from tests.components.gomod import module_dir

POLICY_CONTROLLER = "github.com/sigstore/policy-controller"
CRD_FILE = "config/300-clusterimagepolicy.yaml"
DIGEST = "0123456789abcdef" * 4
SERVE_REF = f"registry.example.com/ml/digits-serve@sha256:{DIGEST}"
NEXT_REF = f"registry.example.com/ml/digits-next@sha256:{DIGEST}"

CONFIG: dict[str, Any] = {
    "apiVersion": "mlops/v1alpha1",
    "project": {"name": "shop"},
    "images": {
        "serve": {
            "registry": "registry.example.com/ml",
            "repository": "digits-serve",
            "base": {"variant": "cpu", "tensorflow": "2.21.0"},
        },
        "serve-next": {
            "registry": "registry.example.com/ml",
            "repository": "digits-next",
            "base": {"variant": "cpu", "tensorflow": "2.21.0"},
        },
    },
    "models": {
        "digits": {
            "image": "serve",
            "deploy": {"namespace": "ml", "verify": {"key": "cosign.pub"}},
            "rollout": {
                "hosts": ["digits.example.com"],
                "stable": {"weight": 90},
                "canary": {"weight": 10, "image": "serve-next"},
            },
        }
    },
}


def public_pem() -> str:
    """A fresh public key in the PEM cosign writes to cosign.pub."""
    key = ec.generate_private_key(ec.SECP256R1())
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def private_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def project(root: Path, verify: dict[str, Any] | None, pem: str | None = None) -> Path:
    """CONFIG with ``deploy.verify`` set to verify (None: removed) in root, and pem as the
    cosign.pub beside it; returns the mlops.yaml."""
    doc = copy.deepcopy(CONFIG)
    deploy = doc["models"]["digits"]["deploy"]
    if verify is None:
        del deploy["verify"]
    else:
        deploy["verify"] = verify
    if pem is not None:
        (root / "cosign.pub").write_text(pem)
    path = root / "mlops.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def render(config: Path, out: Path) -> int:
    """`mlops render` through the real CLI entry point, with the images given by digest."""
    return main(
        [
            "render", "-c", str(config), "--out", str(out),
            "--image", f"serve={SERVE_REF}", "--image", f"serve-next={NEXT_REF}",
        ]
    )  # fmt: skip


def rendered_policy(out: Path) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all((out / "policy" / "digits-imagepolicy.yaml").read_text())]
    assert len(docs) == 1, docs
    policy: dict[str, Any] = docs[0]
    return policy


@functools.cache
def crd() -> dict[str, Any]:
    version = components.POLICY_CONTROLLER_VERSION
    document: dict[str, Any] = yaml.safe_load(
        (module_dir(POLICY_CONTROLLER, version) / CRD_FILE).read_text()
    )
    assert document["kind"] == "CustomResourceDefinition"
    assert document["spec"]["names"]["kind"] == "ClusterImagePolicy"
    return document


def served_schema(version: str) -> dict[str, Any]:
    """The openAPIV3Schema the CRD serves for version (e.g. 'v1beta1')."""
    (served,) = [v for v in crd()["spec"]["versions"] if v["name"] == version]
    assert served["served"] is True
    schema: dict[str, Any] = served["schema"]["openAPIV3Schema"]
    return schema
