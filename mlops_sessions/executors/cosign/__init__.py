"""cosign and syft: sign and attest a pushed image digest, verify its signature and
attestations, resolve a tag in the registry, make the image's CycloneDX SBOM.

Thin adapters over the two binaries found on PATH (``tools`` says how to install them when
they are absent). They act and return facts: what to sign, what a deploy requires and what
is recorded are decided by :mod:`mlops_sessions.drivers.signing` and
:mod:`mlops_sessions.drivers.verification`.
"""
