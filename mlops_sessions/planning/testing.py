"""Cache key of a test run: everything that can change whether the team's tests pass.

Like a build system's test cache (Bazel's "cached PASSED"), a suite that passed is not run
again while its inputs are unchanged: the test files, every model's code, the data inputs
the suite can read, the requirements lock, the project-level pytest configuration, the
exact pytest command and this package's version. Only passes are cached; a failure always
re-runs. Pure apart from reading (memoised) file hashes.

``s3://`` data inputs are left out: the suite is given no data (``mlops test`` passes only
PYTHONPATH, no ``ctx``, and fetches nothing), so a new object under ``data.<name>.sha256``
cannot change whether it passes, and the key does not pretend it could.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from mlops_sessions.config import Config
from mlops_sessions.hashing import FileHashCache, sha256_json
from mlops_sessions.planning.datainputs import resolve_input
from mlops_sessions.planning.training import hash_data, requirements_hash
from mlops_sessions.version import __version__

KEY_FORMAT = 1
# Files at the project root that change how pytest collects and runs the suite.
PYTEST_CONFIG_FILES = ("conftest.py", "pytest.ini", "pyproject.toml", "setup.cfg", "tox.ini")


def test_cache_key(
    config: Config,
    pytest_args: Sequence[str],
    cache: FileHashCache,
    *,
    environment: str | None = None,
) -> str:
    """The key of running pytest with pytest_args (paths inside may be absolute) in config.

    environment is the train image's environment digest when the suite runs in a container.
    """
    suite = config.resolve(config.tests.path)
    root = str(config.root.resolve())
    parts = {
        "format": KEY_FORMAT,
        "mlops_sessions": __version__,
        "python": sys.version,
        # Absolute paths would make the key differ between two clones of the same tree.
        "pytest_args": [arg.replace(root, "<root>") for arg in pytest_args],
        "tests": hash_data(cache, suite),
        "sources": {
            name: cache.tree(config.resolve(model.train.source))
            for name, model in config.models.items()
            if model.train is not None
        },
        "data": {
            # What the suite can open: files of the tree (path) and of installed packages.
            # An s3:// input is not the suite's: `mlops test` neither fetches it nor hands
            # the tests any path (no ctx, only PYTHONPATH), so the key does not claim it.
            name: hash_data(cache, resolve_input(config, name, entry))
            for name, entry in config.data.items()
            if entry.uri is None
        },
        "requirements": requirements_hash(config, cache),
        "pytest_config": {
            name: cache.file(config.root / name)
            for name in PYTEST_CONFIG_FILES
            if (config.root / name).is_file()
        },
        **({"environment": environment} if environment else {}),
    }
    return sha256_json(parts)
