"""The admission policy: the cluster refuses a model's image unless it verifies.

``mlops deploy`` verifies a digest before it applies anything (``deploy.verify``); this
planner writes the same rule for the cluster itself, so a pod created by anyone else (a
``kubectl apply``, a scaled-up ReplicaSet on a node that pulled another digest, a hand-made
Deployment) is held to it too. The rule is a Sigstore policy-controller
``ClusterImagePolicy`` (``policy.sigstore.dev/v1beta1``), one per model with
``deploy.verify``:

- ``images``: the repositories of the model's images (stable and a distinct canary), as
  globs on the fully qualified reference policy-controller matches (``docker.io`` names
  become ``index.docker.io/...``), by digest or by tag, and never a prefix of another
  repository;
- one authority: the public key (PEM inlined, or the KMS URI policy-controller resolves
  itself), ``ctlog`` only with ``deploy.verify.tlog``; without it no transparency log is
  consulted, as for ``cosign verify --insecure-ignore-tlog``;
- per ``deploy.verify.require``: the SLSA v1 provenance attestation, with a Rego policy
  that it is the product's image build of this model and, for ``verdict``, that the
  gate's verdict in it is ``pass``; the CycloneDX SBOM attestation.

Why policy-controller rather than Kyverno's ``verifyImages``: it is Sigstore's own
admission controller, verifies with the same libraries as the cosign that signs, and
evaluates the attestation's in-toto statement with a Rego (or CUE) policy of ours, which
is exactly the check ``deploy`` makes. Pure: the key's PEM is read by the caller and
handed in as :class:`VerifyKey`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mlops_sessions.config import Config, ModelConfig
from mlops_sessions.errors import StepError
from mlops_sessions.planning import k8s_common, provenance, release_policy

API_VERSION = "policy.sigstore.dev/v1beta1"
KIND = "ClusterImagePolicy"
POLICY_DIR = "policy"
# The attestation types of the shared contract: the provenance push attests
# (planning/provenance.py) and the CycloneDX SBOM (`cosign attest --type cyclonedx`).
PROVENANCE_TYPE = provenance.PREDICATE_TYPE
BUILD_TYPE = provenance.BUILD_TYPE
SBOM_TYPE = "https://cyclonedx.org/bom"
# cosign's default transparency log: where `sign.tlog: true` uploads.
PUBLIC_REKOR = "https://rekor.sigstore.dev"
# Key references cosign resolves through a KMS; policy-controller accepts the same URIs
# (its own list: it has no k8s:// secret form, see key_reference).
KMS_SCHEMES = ("awskms://", "gcpkms://", "azurekms://", "hashivault://")
ENV_SCHEME = "env://"
K8S_SCHEME = "k8s://"
DOCKER_HUB = "index.docker.io"


@dataclass(frozen=True)
class VerifyKey:
    """The public key as the cluster will read it: exactly one of a PEM or a KMS URI."""

    pem: str | None = None
    kms: str | None = None

    def __post_init__(self) -> None:
        if (self.pem is None) == (self.kms is None):
            raise ValueError("VerifyKey takes exactly one of pem and kms")


def key_kind(reference: str) -> str:
    """How a key reference is resolved: 'kms', 'env', 'k8s' or 'file'."""
    if reference.startswith(KMS_SCHEMES):
        return "kms"
    if reference.startswith(ENV_SCHEME):
        return "env"
    if reference.startswith(K8S_SCHEME):
        return "k8s"
    return "file"


def file_name(model: ModelConfig) -> str:
    return f"{model.name}-imagepolicy.yaml"


def policy_name(config: Config, model: ModelConfig) -> str:
    # Cluster-scoped: the project's name keeps two projects' "digits" apart.
    return f"{config.project.name}-{model.name}"


def qualified_repository(repository: str) -> str:
    """The repository as policy-controller names it (go-containerregistry's rules): a first
    component without '.' or ':' (and not 'localhost') is a Docker Hub path."""
    first, slash, rest = repository.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        host, path = first, rest
    else:
        host, path = DOCKER_HUB, repository
    if host == "docker.io":
        host = DOCKER_HUB
    if host == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    return f"{host}/{path}"


def image_globs(config: Config, model: ModelConfig) -> list[str]:
    """Globs for every image the model's Deployments run: by digest and by tag."""
    globs: list[str] = []
    for name in release_policy.image_names(model):
        image = config.images[name]
        full = f"{image.registry}/{image.repository}" if image.registry else image.repository
        repository = qualified_repository(full)
        # '@*' and ':*' rather than '*': 'ml/digits*' would also match 'ml/digits-train'.
        globs += [f"{repository}@*", f"{repository}:*"]
    return globs


def provenance_policy(model: ModelConfig, verdict: bool) -> str:
    """Rego for the provenance attestation: our build type, of this model and, with
    ``verdict``, with a passing gate verdict: what ``deploy.verify`` judges
    (planning/provenance.py). policy-controller evaluates it (package ``sigstore``, rule
    ``isCompliant``) against the verified in-toto statement; the ``error`` of a refusal
    names what is wrong."""
    checks = [
        'problems contains "it is not an mlops-sessions image build" if {\n'
        f'    object.get(build, "buildType", null) != {json.dumps(BUILD_TYPE)}\n'
        "}\n",
        f'problems contains sprintf("it is of model %v, not {model.name}", [model]) if {{\n'
        '    model := object.get(build, ["externalParameters", "model"], null)\n'
        f"    model != {json.dumps(model.name)}\n"
        "}\n",
    ]
    if verdict:
        checks.append(
            'problems contains sprintf("the gate\'s verdict in it is %v, not pass", [verdict]) '
            "if {\n"
            '    verdict := object.get(build, ["internalParameters", "evaluation", "verdict"], '
            "null)\n"
            '    verdict != "pass"\n'
            "}\n"
        )
    return _rego_module(
        "# The provenance of an image mlops-sessions built (SLSA v1 predicate).\n"
        'build := object.get(input, ["predicate", "buildDefinition"], {})\n',
        checks,
    )


def sbom_policy() -> str:
    """Rego for the SBOM attestation: its predicate is a CycloneDX document."""
    return _rego_module(
        "",
        [
            'problems contains "its predicate is not a CycloneDX BOM" if {\n'
            '    object.get(input, ["predicate", "bomFormat"], null) != "CycloneDX"\n'
            "}\n"
        ],
    )


def _rego_module(prelude: str, checks: Sequence[str]) -> str:
    # `import rego.v1`: the same text parses in policy-controller's OPA (Rego v0 mode)
    # and in any Rego v1 engine. A set of {result, error} objects lets the refusal say why.
    head = "package sigstore\n\nimport rego.v1\n\n" + (prelude + "\n" if prelude else "")
    tail = (
        'isCompliant contains {"result": true} if count(problems) == 0\n\n'
        'isCompliant contains {"result": false, "error": concat("; ", sort(problems))} if '
        "count(problems) > 0\n"
    )
    return head + "\n".join(checks) + "\n" + tail


def _attestations(model: ModelConfig, require: Sequence[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if "provenance" in require or "verdict" in require:
        out.append(
            {
                "name": "verdict" if "verdict" in require else "provenance",
                "predicateType": PROVENANCE_TYPE,
                "policy": {"type": "rego", "data": provenance_policy(model, "verdict" in require)},
            }
        )
    if "sbom" in require:
        out.append(
            {
                "name": "sbom",
                "predicateType": SBOM_TYPE,
                "policy": {"type": "rego", "data": sbom_policy()},
            }
        )
    return out


def image_policy(config: Config, model: ModelConfig, key: VerifyKey) -> dict[str, Any]:
    """The model's ClusterImagePolicy. The model must have ``deploy.verify``."""
    verify = model.deploy.verify
    if verify is None:
        raise ValueError(f"model {model.name!r} has no deploy.verify")
    authority: dict[str, Any] = {
        "name": "mlops-signing-key",
        "key": {"data": key.pem} if key.pem is not None else {"kms": key.kms},
    }
    if verify.tlog:
        authority["ctlog"] = {"url": PUBLIC_REKOR}
    attestations = _attestations(model, verify.require)
    if attestations:
        authority["attestations"] = attestations
    labels = {
        key: value
        for key, value in k8s_common.common_labels(config, model).items()
        if key != "app"  # a cluster-wide object: no pod selector label
    }
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": policy_name(config, model), "labels": labels},
        "spec": {
            "mode": "enforce",
            "images": [{"glob": glob} for glob in image_globs(config, model)],
            "authorities": [authority],
        },
    }


def policy_objects(
    config: Config, models: Sequence[ModelConfig], keys: dict[str, VerifyKey]
) -> list[tuple[str, dict[str, Any]]]:
    """What render writes to ``policy/``: (file name, ClusterImagePolicy) for each selected
    model with ``deploy.verify``; ``keys`` by model name. Kept out of ``all.yaml``: a
    cluster-wide object that needs policy-controller installed and an admin to apply it."""
    out: list[tuple[str, dict[str, Any]]] = []
    for model in models:
        if model.deploy.verify is None:
            continue
        if model.image is None:
            raise StepError(
                f"model {model.name!r}: deploy.verify needs the image it verifies; set "
                f"models.{model.name}.image"
            )
        out.append((file_name(model), image_policy(config, model, keys[model.name])))
    return out
