"""mlops-sessions: turn one ``mlops.yaml`` into reproducible Nox sessions.

In a ``noxfile.py``::

    import mlops_sessions
    mlops_sessions.register("mlops.yaml")

Importing this package is cheap: TensorFlow, Docker and Kubernetes are imported only by
the executors that need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlops_sessions.errors import ConfigError, MlopsError, StepError

if TYPE_CHECKING:
    from mlops_sessions.contract import DataContext, TrainContext, TrainResult

from mlops_sessions.version import __version__

__all__ = [
    "ConfigError",
    "DataContext",
    "MlopsError",
    "StepError",
    "TrainContext",
    "TrainResult",
    "__version__",
    "load",
    "register",
]


_CONTRACT = ("DataContext", "TrainContext", "TrainResult")


def __getattr__(name: str) -> Any:
    # The training contract is for the team's model code; `mlops validate` and `nox -l`
    # should not pay for importing it.
    if name in _CONTRACT:
        from mlops_sessions import contract

        return getattr(contract, name)
    raise AttributeError(f"module 'mlops_sessions' has no attribute {name!r}")


def load(path: str = "mlops.yaml", profile: str | None = None) -> object:
    """Load and validate a config file (see :func:`mlops_sessions.config.loader.load`)."""
    from mlops_sessions.config.loader import load as _load

    return _load(path, profile=profile)


def register(path: str = "mlops.yaml", **kwargs: object) -> object:
    """Register the pipeline sessions declared in path with nox (see noxplugin.register)."""
    from mlops_sessions.frontends.noxplugin import register as _register

    return _register(path, **kwargs)  # type: ignore[arg-type]
