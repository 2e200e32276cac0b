"""A published Go module's source tree at a pinned version, fetched with the Go toolchain.

``module_dir(module, version)`` runs ``go mod download -json MODULE@VERSION`` (through
:func:`tests.cluster.components.module_dir`, which the test control plane uses for its CRDs
and KWOK's stages too) and returns the extracted directory Go reports (``Dir``). Go checks
every download against the checksum database, so the files are the ones the module's
authors published at that version. A second call is answered from Go's module cache without
the network. Tests read the CRDs projects publish in their modules (the
prometheus-operator's PrometheusRule, Istio's, Kubeflow's) from here.

Without ``go`` on PATH, or when the download fails, the test is skipped locally and fails
in CI (:func:`tests.conftest.require_real`).
"""

from __future__ import annotations

import functools
from pathlib import Path

from tests.cluster import components
from tests.conftest import require_real


@functools.cache
def module_dir(module: str, version: str) -> Path:
    """The extracted source of ``module`` at ``version`` (read-only files, as Go leaves them)."""
    try:
        return components.module_dir(module, version)
    except components.ComponentError as error:
        require_real(str(error))
        raise
