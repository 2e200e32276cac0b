"""The public key the admission policy inlines, read from where ``deploy.verify.key`` says.

``mlops render`` hands :mod:`mlops_sessions.planning.admission` a
:class:`~mlops_sessions.planning.admission.VerifyKey`: a KMS URI passes through (the
cluster's policy-controller resolves it), a file (relative to the project) or ``env://VAR``
is read now and its PEM inlined, so the rendered policy is complete and reviewable. A
public key is not a secret; a private key is refused, so one can never end up in a
cluster object. ``k8s://`` is refused too: policy-controller reads keys only from a
one-entry Secret in its own namespace, which is not the Secret cosign writes.
"""

from __future__ import annotations

import base64
import binascii
import os
import re

from mlops_sessions.config import Config, ModelConfig
from mlops_sessions.errors import StepError
from mlops_sessions.planning import admission

_PEM = re.compile(
    r"^-----BEGIN PUBLIC KEY-----\n(?P<body>[A-Za-z0-9+/=\n]+)\n-----END PUBLIC KEY-----$"
)


def verify_keys(config: Config, models: list[ModelConfig]) -> dict[str, admission.VerifyKey]:
    """The key of every model with ``deploy.verify``, by model name."""
    return {m.name: verify_key(config, m) for m in models if m.deploy.verify is not None}


def verify_key(config: Config, model: ModelConfig) -> admission.VerifyKey:
    verify = model.deploy.verify
    if verify is None:
        raise ValueError(f"model {model.name!r} has no deploy.verify")
    reference = verify.key
    where = f"models.{model.name}.deploy.verify.key ({reference})"
    kind = admission.key_kind(reference)
    if kind == "kms":
        return admission.VerifyKey(kms=reference)
    if kind == "k8s":
        raise StepError(
            f"{where}: the admission policy cannot name a cosign k8s:// Secret "
            "(policy-controller reads a one-entry Secret in its own namespace); give the "
            "public key file (cosign.pub), env://VAR or a KMS URI"
        )
    if kind == "env":
        variable = reference.removeprefix(admission.ENV_SCHEME)
        text = os.environ.get(variable)
        if not text:
            raise StepError(
                f"{where}: {variable} is not set; render inlines the public key in the "
                f'admission policy: export {variable}="$(cat cosign.pub)"'
            )
    else:
        path = config.resolve(reference)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            reason = getattr(error, "strerror", None) or "not a text file"
            raise StepError(
                f"{where}: cannot read {path}: {reason}; point it at the public key "
                "`cosign generate-key-pair` wrote (cosign.pub)"
            ) from None
    return admission.VerifyKey(pem=public_pem(text, where))


def public_pem(text: str, where: str) -> str:
    """text as one PEM public key with a final newline, or a one-line refusal."""
    pem = text.strip().replace("\r\n", "\n")
    if "PRIVATE KEY" in pem:
        raise StepError(
            f"{where} is a private key; the policy needs the public key (cosign.pub, or "
            "`cosign public-key --key <private key>`)"
        )
    found = _PEM.match(pem)
    valid = found is not None
    if found is not None:
        try:
            base64.b64decode(found.group("body").replace("\n", ""), validate=True)
        except binascii.Error:
            valid = False
    if not valid:
        raise StepError(
            f"{where} is not a PEM public key (-----BEGIN PUBLIC KEY-----); give the "
            "cosign.pub that `cosign generate-key-pair` wrote"
        )
    return pem + "\n"
