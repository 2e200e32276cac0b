"""The CycloneDX SBOM of a pushed image, made by syft from the registry (no Docker engine
needed): the image's OS packages and Python distributions, as syft catalogs them."""

from __future__ import annotations

from pathlib import Path

from mlops_sessions.executors.cosign import tools


def sbom(ref: str, out: Path) -> Path:
    """Write the CycloneDX JSON SBOM of ref (repository@sha256:...) to out; returns out."""
    args = [f"registry:{ref}", "--output", f"cyclonedx-json={out}", "--quiet"]
    tools.check("syft", args, f"make the SBOM of {ref}", env=tools.syft_registry_env(ref))
    return out
