"""The serving subset of a requirements lock: what a serve image installs, and nothing else.

A serve image runs ``mlops serve`` and nothing that trains: it needs the server's imports
(:data:`SERVE_ROOTS`), TensorFlow and whatever those depend on, not scikit-learn or the
plotting stack a training lock also pins. The subset is resolved, not listed by hand: the
dependency closure of the roots over the distributions' own metadata (``Requires-Dist``
with markers evaluated for the image's Python on Linux), keeping the lock's pin of every
distribution reached. The metadata comes from the wheels a hermetic build downloaded for
the image (or the installed distributions for a non-hermetic one): see
:func:`mlops_sessions.executors.docker.build.serving_split`.

TensorFlow is never installed twice: :func:`split` also returns the subset *minus*
TensorFlow's own closure, which the image installs (into a venv that sees the base's
site-packages) when the base already carries the locked TensorFlow version; the check runs
at build time, in the Dockerfile (docs/images.md).

Pure: text and mappings in, text out; no pip, no network.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

# Distributions that install the `tensorflow` module (one is enough, two is a waste of GBs).
TF_DISTRIBUTIONS = frozenset(
    {
        "tensorflow",
        "tensorflow-cpu",
        "tensorflow-gpu",
        "tensorflow-intel",
        "tensorflow-aarch64",
        "tensorflow-macos",
        "tf-nightly",
        "tf-nightly-cpu",
    }
)
# What `python -m mlops_sessions serve` imports (besides TensorFlow, added from the lock).
SERVE_ROOTS = (
    "pyyaml",
    "jsonschema",
    "aiohttp",
    "prometheus-client",
    "numpy",
    "orjson",
    "grpcio",
    "grpcio-health-checking",
    "protobuf",
)
# Installed with --no-deps: TF Serving's protos and stubs. The package declares a
# dependency on the `tensorflow` distribution, which would be a second TensorFlow beside
# tensorflow-cpu or the base's; it needs only grpcio, protobuf and TensorFlow's protos.
NO_DEPS_ROOTS = ("tensorflow-serving-api",)


def canonical(name: str) -> str:
    """PEP 503 normalised name ('Scikit_Learn' -> 'scikit-learn')."""
    from packaging.utils import canonicalize_name

    return str(canonicalize_name(name))


def marker_env(python_version: str) -> dict[str, str]:
    """Marker variables of the image: its Python, Linux, no extra requested."""
    from packaging.markers import default_environment

    env = {k: str(v) for k, v in default_environment().items()}
    env.update(
        python_version=python_version,
        python_full_version=f"{python_version}.0",
        sys_platform="linux",
        platform_system="Linux",
        os_name="posix",
        extra="",
    )
    return env


def lock_lines(lock_text: str) -> dict[str, str]:
    """Canonical name -> its requirement line (continuations joined; comments dropped)."""
    lines: dict[str, str] = {}
    logical = ""
    for raw in lock_text.splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical = (logical + line).strip()
        if logical and not logical.startswith("-"):
            name = logical
            for sep in ("==", ">=", "<=", "~=", "!=", "<", ">", "[", ";", " ", "@"):
                name = name.split(sep, 1)[0]
            lines[canonical(name)] = " ".join(logical.split())
        logical = ""
    return lines


def closure(
    roots: Iterable[str], requires: Mapping[str, Sequence[str]], env: Mapping[str, str]
) -> set[str]:
    """Every distribution reached from roots through Requires-Dist (markers evaluated)."""
    from packaging.requirements import InvalidRequirement, Requirement

    seen: set[str] = set()
    queue = [canonical(r) for r in roots]
    while queue:
        name = queue.pop()
        if name in seen:
            continue
        seen.add(name)
        for spec in requires.get(name, ()):
            try:
                req = Requirement(spec)
            except InvalidRequirement:
                continue
            if req.marker is None or req.marker.evaluate(dict(env)):
                queue.append(canonical(req.name))
    return seen


@dataclass(frozen=True)
class ServingSplit:
    """The lock cut for a serve image."""

    serve: str  # lock lines the image installs on a base without TensorFlow
    over_base: str  # the same minus TensorFlow's closure, for a base that has it
    tensorflow: tuple[str, str] | None  # the lock's TF distribution and version
    left_out: tuple[str, ...]  # locked distributions serving does not need (training only)
    unresolved: tuple[str, ...]  # reached, but no metadata to follow (kept, not expanded)


def split(
    lock_text: str,
    requires: Mapping[str, Sequence[str]],
    python_version: str,
    extra_roots: Iterable[str] = (),
) -> ServingSplit:
    """Cut the lock to what serving needs; ``requires`` maps names to Requires-Dist lines."""
    lines = lock_lines(lock_text)
    env = marker_env(python_version)
    tf_names = sorted(n for n in lines if n in TF_DISTRIBUTIONS)
    roots = [*SERVE_ROOTS, *extra_roots, *tf_names]
    needed = closure(roots, requires, env)
    keep = [n for n in lines if n in needed]
    tf_closure = closure(tf_names, requires, env) if tf_names else set()
    tensorflow = None
    if tf_names:
        pin = lines[tf_names[0]].split("==", 1)
        tensorflow = (tf_names[0], pin[1].split(";")[0].split()[0] if len(pin) == 2 else "")
    return ServingSplit(
        serve="".join(f"{lines[n]}\n" for n in keep),
        over_base="".join(f"{lines[n]}\n" for n in keep if n not in tf_closure),
        tensorflow=tensorflow,
        left_out=tuple(n for n in lines if n not in needed),
        unresolved=tuple(sorted(n for n in needed if n in lines and n not in requires)),
    )
