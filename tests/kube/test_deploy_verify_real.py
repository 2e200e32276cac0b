"""`mlops deploy` with deploy.verify, against the real registry, cosign and the real control
plane: the signed image of `mlops push` is applied by a real API server and rolled out by
its Deployment controller on KWOK's pods; every refusal is one line naming the digest and
what is wrong, and is made before the product sends the API server a single request,
reads and discovery included (the server's audit log, under the product's own identity).

The refusal cases need their own digests: small images pushed through the registry's API
(no Docker), signed and attested through the product's own signer with the facts each case
needs (one case with cosign's own bundle layout instead), and recorded as the pushed build
of image 'serve'. Each test deploys into a namespace of its own.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

import tests.signing.conftest as signing
from mlops_sessions.executors.cosign import sign as cosign_sign
from mlops_sessions.planning import provenance
from tests.cluster.controlplane import CPU_NODE
from tests.signing.conftest import (
    EVAL_ID,
    MODEL,
    MODEL_HASH,
    RUN_ID,
    KeyPair,
    SignedProject,
    push_small_image,
)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

# The signing tests' fixtures, used here by name: the module's one image built, pushed and
# signed by `mlops push` (module scope), and cosign and syft on PATH (module scope too, so
# that this import is not a second session fixture). The Docker engine and registry are the
# suite's one `docker_env` (tests/conftest.py).
signed = signing.signed
signing_tools = signing.signing_tools


@pytest.fixture
def project(
    signed: SignedProject, namespace: str, kube_cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[SignedProject]:
    """The module's signed project deploying into this test's namespace as the product's
    own identity; its push record and config are put back after each test."""
    monkeypatch.setenv("KUBECONFIG", str(kube_cluster.plane.product_kubeconfig))
    record = signed.root / ".mlops/builds/serve/latest.json"
    saved = record.read_text()
    signed.namespace = namespace
    signed.write_config(sign={"key": "keys/cosign.key"}, verify={"key": "keys/cosign.pub"})
    yield signed
    record.write_text(saved)


def deploy(project: SignedProject, *args: str) -> tuple[int, dict[str, Any] | None, str]:
    return project.mlops("deploy", *args)


def facts_for(ref: str, **changes: Any) -> provenance.ProvenanceFacts:
    repository, digest = ref.rsplit("@", 1)
    facts = provenance.ProvenanceFacts(
        image="serve",
        repository=repository,
        digest=digest,
        config_hash="00" * 32,
        started_on="2026-01-01T00:00:00.000Z",
        finished_on="2026-01-01T00:01:00.000Z",
        base="mlops-test-base:bookworm",
        model=MODEL,
        run_id=RUN_ID,
        model_hash=MODEL_HASH,
        evaluation=provenance.EvaluationFacts(EVAL_ID, True, {"accuracy": 0.93}),
    )
    return replace(facts, **changes)


def new_image(project: SignedProject, tag: str, content: str = "") -> tuple[str, str]:
    """A fresh digest in the project's repository under tag: (repo@digest, repo:tag)."""
    registry, repository = project.env.registry, f"{project.registry_path}/tiny-serve"
    digest = push_small_image(registry, repository, tag, content or f"content of {tag}")
    return f"{registry}/{repository}@{digest}", f"{registry}/{repository}:{tag}"


def attach(
    ref: str,
    keys: KeyPair,
    *,
    signature: bool = True,
    facts: provenance.ProvenanceFacts | None = None,
    sbom: bool = False,
) -> None:
    with cosign_sign.signer(str(keys.private), tlog=False) as signer:
        if signature:
            signer.sign(ref)
        if facts is not None:
            signer.attest(ref, provenance.predicate(facts), cosign_sign.PROVENANCE)
        if sbom:
            document = {"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1}
            signer.attest(ref, document, cosign_sign.SBOM)


def record_pushed(project: SignedProject, ref: str, tag: str) -> None:
    """Make ref the pushed build of image 'serve', as push records it (lineage as pushed)."""
    record = {k: v for k, v in project.pushed.items() if k not in ("name", "signing")}
    record.update(image=ref, digest=ref.rsplit("@", 1)[1], tags=[tag])
    (project.root / ".mlops/builds/serve/latest.json").write_text(json.dumps(record))


def assert_rolled_out(kube_cluster: Any, namespace: str, image: str) -> None:
    """The stable Deployment runs image, and the real controller says it rolled out on
    pods the scheduler placed on KWOK's CPU node."""
    name = f"{MODEL}-stable"
    assert kube_cluster.image(namespace, name) == image
    deployment = kube_cluster.deployment(namespace, name)
    status = deployment["status"]
    assert status["observedGeneration"] == deployment["metadata"]["generation"]
    assert status.get("updatedReplicas") == deployment["spec"]["replicas"]
    assert status.get("availableReplicas") == deployment["spec"]["replicas"]
    pods = kube_cluster.pods(namespace, f"track=stable,app={MODEL}")
    assert pods and {p["spec"]["nodeName"] for p in pods} == {CPU_NODE}
    assert {p["spec"]["containers"][0]["image"] for p in pods} == {image}


def test_the_signed_push_deploys(project: SignedProject, kube_cluster: Any, namespace: str) -> None:
    mark = kube_cluster.mark()
    code, result, err = deploy(project)
    assert code == 0, err
    assert result is not None
    (deployed,) = result["deployments"]
    assert deployed["status"] == "rolled-out", deployed
    assert f"create deployments/{MODEL}-stable" in kube_cluster.writes(mark)
    # The refusals' empty request lists are worth something: a deploy's reads show up too.
    sent = kube_cluster.requests(mark)
    assert any(r.startswith("get ") for r in sent), sent
    # The digest push signed and deploy verified is the one the real server runs.
    assert project.pushed["image"].endswith("@" + project.pushed["digest"])
    assert_rolled_out(kube_cluster, namespace, project.pushed["image"])


Case = Callable[[SignedProject, str, str], str]


def unsigned(project: SignedProject, ref: str, tag: str) -> str:
    return "is not signed"


def wrong_key(project: SignedProject, ref: str, tag: str) -> str:
    attach(ref, project.other_keys, facts=facts_for(ref), sbom=True)
    return "signature does not verify with"


def no_provenance(project: SignedProject, ref: str, tag: str) -> str:
    attach(ref, project.keys)
    return "it has no provenance attestation"


def no_sbom(project: SignedProject, ref: str, tag: str) -> str:
    attach(ref, project.keys, facts=facts_for(ref))
    project.write_config(
        sign={"key": "keys/cosign.key"},
        verify={"key": "keys/cosign.pub", "require": ["signature", "sbom"]},
    )
    return "it has no SBOM attestation"


def another_model(project: SignedProject, ref: str, tag: str) -> str:
    attach(ref, project.keys, facts=facts_for(ref, model="fraud"))
    return "its provenance is of model 'fraud', not 'tiny'"


def failed_verdict(project: SignedProject, ref: str, tag: str) -> str:
    failed = provenance.EvaluationFacts("20260101T000200Z-feedee", False, {"accuracy": 0.41})
    attach(ref, project.keys, facts=facts_for(ref, evaluation=failed))
    return "records a 'fail' gate verdict (evaluation 20260101T000200Z-feedee)"


def bundles_only(project: SignedProject, ref: str, tag: str) -> str:
    """Signed and attested with cosign v3's defaults, Sigstore bundles as OCI referrers,
    offline: a layout policy-controller does not read for a key, so deploy refuses it too."""
    scratch = project.root.parent / f"bundles-{tag.rsplit(':', 1)[1]}"
    scratch.mkdir()
    config, trusted = scratch / "signing-config.json", scratch / "trusted-root.json"
    cosign("signing-config", "create", "--out", str(config))
    cosign("trusted-root", "create", "--out", str(trusted))
    offline = ["--signing-config", str(config), "--trusted-root", str(trusted)]
    predicate = scratch / "provenance.json"
    predicate.write_text(json.dumps(provenance.predicate(facts_for(ref))))
    key = ["--key", str(project.keys.private), "--yes", "--allow-http-registry", *offline]
    cosign("sign", *key, ref)
    cosign("attest", *key, "--type", cosign_sign.PROVENANCE, "--predicate", str(predicate), ref)
    return f"it is not signed (no signature under {ref.rsplit('@', 1)[1].replace(':', '-')}.sig"


def cosign(*args: str) -> None:
    done = subprocess.run(["cosign", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def tag_moved(project: SignedProject, ref: str, tag: str) -> str:
    attach(ref, project.keys, facts=facts_for(ref), sbom=True)
    moved_to, _ = new_image(project, tag.rsplit(":", 1)[1], "other content")  # same tag
    return f"tag {tag} was moved to {moved_to.rsplit('@', 1)[1]}"


@pytest.mark.parametrize(
    "case",
    [
        unsigned,
        wrong_key,
        no_provenance,
        no_sbom,
        another_model,
        failed_verdict,
        tag_moved,
        bundles_only,
    ],
)
def test_refusal_is_one_line_naming_the_digest_before_any_request(
    project: SignedProject, kube_cluster: Any, case: Case
) -> None:
    ref, tag = new_image(project, f"case-{case.__name__.replace('_', '-')}")
    expected = case(project, ref, tag)
    record_pushed(project, ref, tag)
    mark = kube_cluster.mark()
    code, _, err = deploy(project)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert ref in lines[0] and "deploy.verify" in lines[0]
    assert expected in lines[0]
    assert kube_cluster.requests(mark) == []  # refused before the product's first request


def test_force_does_not_skip_verification(project: SignedProject, kube_cluster: Any) -> None:
    ref, tag = new_image(project, "case-forced")
    record_pushed(project, ref, tag)
    mark = kube_cluster.mark()
    code, _, err = deploy(project, "--force")
    assert code != 0 and "is not signed" in err and ref in err
    assert kube_cluster.requests(mark) == []


def test_a_signed_passing_image_from_another_push_verifies(
    project: SignedProject, kube_cluster: Any, namespace: str
) -> None:
    """Every requirement met by attestations made outside `mlops push`: what is checked is
    the registry's signed facts, not the local record's signing object."""
    ref, tag = new_image(project, "case-good")
    attach(ref, project.keys, facts=facts_for(ref), sbom=True)
    record_pushed(project, ref, tag)
    project.write_config(
        sign={"key": "keys/cosign.key"},
        verify={
            "key": "keys/cosign.pub",
            "require": ["signature", "sbom", "provenance", "verdict"],
        },
    )
    code, _, err = deploy(project)
    assert code == 0, err
    assert_rolled_out(kube_cluster, namespace, ref)


def test_a_new_build_for_the_canary_is_verified_too(
    project: SignedProject, kube_cluster: Any, namespace: str
) -> None:
    """With rollout.steps a new build goes to the canary: it is verified like any other,
    and refused before the rollout reads or writes anything on the cluster."""
    project.write_config(
        sign={"key": "keys/cosign.key"},
        verify={"key": "keys/cosign.pub"},
        rollout=True,
    )
    code, _, err = deploy(project)  # nothing runs yet: the signed build goes straight to stable
    assert code == 0, err
    assert_rolled_out(kube_cluster, namespace, project.pushed["image"])
    ref, tag = new_image(project, "case-canary")
    record_pushed(project, ref, tag)
    mark = kube_cluster.mark()
    code, _, err = deploy(project)
    assert code != 0
    (line,) = err.strip().splitlines()
    assert ref in line and "is not signed" in line
    assert kube_cluster.requests(mark) == []
    # The stable track still runs the signed build; no canary was started.
    assert_rolled_out(kube_cluster, namespace, project.pushed["image"])
    assert kube_cluster.pods(namespace, f"track=canary,app={MODEL}") == []
