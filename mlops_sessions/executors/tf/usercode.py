"""Import and call the team's code named in mlops.yaml as ``module:function``.

The module is imported from the declared source directory (put first on ``sys.path``), so
the same import path works in the session's venv and inside a container where the source
is mounted elsewhere. Failures become :class:`StepError` messages that say which part of the
import path is wrong and where the user's code failed, instead of a traceback.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

from mlops_sessions.errors import StepError

# module name -> (file, mtime_ns) when we imported it, to notice edited or moved code.
_IMPORTED: dict[str, tuple[str, int]] = {}


def split_import_path(import_path: str) -> tuple[str, str]:
    module, sep, attribute = import_path.partition(":")
    if not sep or not module or not attribute:
        raise StepError(
            f"'{import_path}' is not an import path; write it as 'package.module:function'"
        )
    return module, attribute


def load_callable(import_path: str, source: Path) -> Callable[..., Any]:
    """The callable at 'module:function', imported with source first on sys.path."""
    module_name, attribute = split_import_path(import_path)
    module = _import(module_name, Path(source).resolve(), import_path)
    try:
        target = getattr(module, attribute)
    except AttributeError:
        names = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise StepError(
            f"{import_path}: module '{module_name}' ({_where(module)}) has no attribute "
            f"'{attribute}'; callables it defines: {', '.join(names) or 'none'}"
        ) from None
    if not callable(target):
        raise StepError(
            f"{import_path}: '{attribute}' in module '{module_name}' is a "
            f"{type(target).__name__}, not a function"
        )
    return target  # type: ignore[no-any-return]


def call_user(import_path: str, func: Callable[..., Any], *args: Any) -> Any:
    """Call team code; an exception becomes a StepError naming where it was raised."""
    try:
        return func(*args)
    except StepError:
        raise
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # the team's code may raise anything; report it, do not crash
        raise StepError(
            f"{import_path} raised {type(exc).__name__}: {exc} ({user_frame(exc.__traceback__)}); "
            "fix the code or its params and run again"
        ) from exc


def user_frame(tb: TracebackType | None) -> str:
    """'file:line in function' of the innermost frame outside this package and libraries."""
    frames = traceback.extract_tb(tb)
    package = str(Path(__file__).resolve().parent.parent)
    chosen = None
    for frame in frames:
        name = frame.filename
        if name.startswith(package) or "site-packages" in name or name.startswith("<frozen"):
            continue
        chosen = frame
    if chosen is None and frames:
        chosen = frames[-1]
    if chosen is None:
        return "no traceback"
    return f"at {chosen.filename}:{chosen.lineno} in {chosen.name}"


def _import(module_name: str, source: Path, import_path: str) -> ModuleType:
    if not source.is_dir():
        raise StepError(f"{import_path}: source directory {source} does not exist")
    entry = str(source)
    if entry in sys.path:
        sys.path.remove(entry)
    sys.path.insert(0, entry)
    _forget_stale(module_name, source)
    importlib.invalidate_caches()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise StepError(
                f"{import_path}: cannot import module '{module_name}' from {source}; check the "
                "module name and train.source (the directory that contains the module)"
            ) from None
        raise StepError(
            f"{import_path}: module '{module_name}' imports '{missing}', which is not installed "
            "in this environment; add it to the project's requirements and re-create the session"
        ) from None
    except Exception as exc:  # any error while running the module's top level
        raise StepError(
            f"{import_path}: importing '{module_name}' raised {type(exc).__name__}: {exc} "
            f"({user_frame(exc.__traceback__)})"
        ) from exc
    file = getattr(module, "__file__", None)
    if file:
        _IMPORTED[module_name] = (file, _mtime(file))
    return module


def _forget_stale(module_name: str, source: Path) -> None:
    """Drop a cached module that came from elsewhere or whose file changed since import.

    A long-lived process (tests, notebooks) may train several projects whose modules share
    a name; Python's module cache would otherwise hand back the first one.
    """
    cached = sys.modules.get(module_name)
    if cached is None:
        return
    file = getattr(cached, "__file__", None)
    if file is None:
        return
    seen = _IMPORTED.get(module_name)
    inside = Path(file).resolve().is_relative_to(source)
    unchanged = seen is not None and seen == (file, _mtime(file))
    if inside and unchanged:
        return
    if not inside and seen is None:
        # Imported by someone else from elsewhere (an installed package): only replace it
        # when the source directory really provides a module of that name.
        top = module_name.split(".")[0]
        if not ((source / f"{top}.py").exists() or (source / top).is_dir()):
            return
    for name in [n for n in sys.modules if n == module_name or n.startswith(module_name + ".")]:
        del sys.modules[name]


def _mtime(file: str) -> int:
    try:
        return Path(file).stat().st_mtime_ns
    except OSError:
        return -1


def _where(module: ModuleType) -> str:
    return str(getattr(module, "__file__", None) or module.__name__)
