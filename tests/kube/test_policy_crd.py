"""The rendered admission policy, applied to the real API server with policy-controller's CRD.

The control plane installs the ClusterImagePolicy CRD policy-controller publishes in its Go
module (``tests.cluster.components.crd_files``). ``mlops render`` writes the policy of a
model with ``deploy.verify``; the test server-side-applies it with strict field validation,
so the API server itself checks every field against the CRD's ``v1beta1`` schema, and reads
it back. A broken policy is refused by the same server, so the check can fail.

One change to the installed CRD, and why: it converts between its two served versions
through policy-controller's webhook (``webhook.cosign-system``), which runs only where
policy-controller is installed. Without it the API server validates a ``v1beta1`` object
and then fails (500) to convert it to ``v1alpha1``, the version it stores. Both versions
publish the same schema (tests/signing/test_policy_render.py checks that), so the fixture
sets the conversion to ``None`` (a relabelling, what policy-controller's converter amounts
to between identical schemas) and leaves the schema, the part under test, as published.
"""

from __future__ import annotations

import json
import time
import urllib.error
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.kube.conftest import Kube
from tests.signing import policy_support as support

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
CRD = "clusterimagepolicies.policy.sigstore.dev"
KMS_KEY = "hashivault://mlops-release"
NO_WEBHOOK = "conversion webhook for policy.sigstore.dev/v1beta1"


def _established(kube: Kube) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        crd = kube.get(CRD_PATH + CRD)
        conditions = ((crd or {}).get("status") or {}).get("conditions") or []
        if crd and any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
            return crd
        time.sleep(0.2)
    raise AssertionError(f"the CRD {CRD} was not Established within 60 s")


def apply(kube: Kube, policy: dict[str, Any]) -> dict[str, Any]:
    """Server-side apply as an admin applies render's policy/, refusing unknown fields."""
    path = (
        f"/apis/{policy['apiVersion']}/clusterimagepolicies/{policy['metadata']['name']}"
        "?fieldManager=mlops-admission-test&force=true&fieldValidation=Strict"
    )
    return kube.send("PATCH", path, policy, content_type="application/apply-patch+yaml")


def _refusal(call: Callable[[], object]) -> tuple[int, str]:
    with pytest.raises(urllib.error.HTTPError) as caught:
        call()
    body = caught.value.read().decode()
    message = json.loads(body).get("message", "") if body.startswith("{") else body
    return caught.value.code, str(message)


@pytest.fixture
def policy_crd(kube_cluster: Kube) -> Kube:
    """The published CRD, Established, with conversion None (see the module docstring)."""
    crd = _established(kube_cluster)
    assert crd["spec"]["group"] == "policy.sigstore.dev"
    served = {v["name"]: v for v in crd["spec"]["versions"]}
    assert served["v1beta1"]["served"] and served["v1alpha1"]["storage"]
    if crd["spec"]["conversion"]["strategy"] == "Webhook":
        assert crd["spec"]["conversion"]["webhook"]["clientConfig"]["service"] == {
            "name": "webhook",
            "namespace": "cosign-system",
            "port": 443,
        }
        kube_cluster.send(
            "PATCH",
            CRD_PATH + CRD,
            {"spec": {"conversion": {"strategy": "None", "webhook": None}}},
            content_type="application/merge-patch+json",
        )
        _established(kube_cluster)
    return kube_cluster


def _apply_when_served(kube: Kube, policy: dict[str, Any]) -> dict[str, Any]:
    # The API server takes up a changed CRD asynchronously: until it has, a write still
    # goes to the (absent) conversion webhook.
    deadline = time.monotonic() + 30
    while True:
        try:
            return apply(kube, policy)
        except urllib.error.HTTPError as error:
            body = error.read().decode()
            if error.code != 500 or NO_WEBHOOK not in body or time.monotonic() > deadline:
                raise AssertionError(f"{error.code}: {body}") from None
        time.sleep(0.2)


@pytest.mark.parametrize(
    ("verify", "with_pem"),
    [
        (
            {
                "key": "cosign.pub",
                "tlog": True,
                "require": ["signature", "sbom", "provenance", "verdict"],
            },
            True,
        ),
        ({"key": KMS_KEY, "require": ["signature"]}, False),
    ],
    ids=["key-file-all", "kms-signature"],
)
def test_the_api_server_accepts_the_rendered_policy(
    policy_crd: Kube, tmp_path: Path, verify: dict[str, Any], with_pem: bool
) -> None:
    pem = support.public_pem() if with_pem else None
    config = support.project(tmp_path, verify, pem)
    assert support.render(config, tmp_path / "out") == 0
    policy = support.rendered_policy(tmp_path / "out")
    stored = _apply_when_served(policy_crd, policy)
    assert (stored["apiVersion"], stored["kind"]) == (policy["apiVersion"], policy["kind"])
    assert stored["spec"] == policy["spec"]  # nothing pruned: every field is the CRD's
    read = policy_crd.get(f"/apis/{policy['apiVersion']}/clusterimagepolicies/shop-digits")
    assert read is not None and read["spec"] == policy["spec"]
    assert read["metadata"]["labels"] == policy["metadata"]["labels"]


def test_the_api_server_refuses_a_broken_policy(policy_crd: Kube, tmp_path: Path) -> None:
    config = support.project(tmp_path, {"key": KMS_KEY})
    assert support.render(config, tmp_path / "out") == 0
    policy = support.rendered_policy(tmp_path / "out")
    policy["metadata"]["name"] = "shop-digits-broken"
    _apply_when_served(policy_crd, policy)  # the unbroken policy is accepted
    misspelt = json.loads(json.dumps(policy))
    misspelt["spec"]["authorities"][0]["keys"] = misspelt["spec"]["authorities"][0].pop("key")
    # Server-side apply types the patch by the CRD's structural schema and refuses what it
    # does not declare (the API server answers 500 for a patch it cannot type).
    code, message = _refusal(lambda: apply(policy_crd, misspelt))
    assert ".spec.authorities[0].keys: field not declared in schema" in message, (code, message)
    mistyped = json.loads(json.dumps(policy))
    mistyped["spec"]["images"] = "registry.example.com/ml/digits-serve@*"
    code, message = _refusal(lambda: apply(policy_crd, mistyped))
    assert ".spec.images: expected list" in message, (code, message)
    stored = policy_crd.get(
        "/apis/policy.sigstore.dev/v1beta1/clusterimagepolicies/shop-digits-broken"
    )
    assert stored is not None and stored["spec"] == policy["spec"]  # neither was written
