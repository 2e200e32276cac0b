"""Import TensorFlow without its C++ start-up notices on every step's output.

TensorFlow's native libraries print lines such as ``oneDNN custom operations are on`` and
absl's ``All log messages before absl::InitializeLog() ...`` straight to file descriptor 2
while they load, before ``TF_CPP_MIN_LOG_LEVEL`` is consulted, so the variable alone does
not silence them. While ``import tensorflow`` runs, fd 2 is pointed at a temporary file;
afterwards it is restored and every captured line that is not such a notice is written
back, so a real error during the import is never lost. Later C++ messages below ERROR are
dropped through ``TF_CPP_MIN_LOG_LEVEL=2``.

``mlops --verbose`` (``MLOPS_VERBOSE=1``) or the user's own ``TF_CPP_MIN_LOG_LEVEL``
leaves TensorFlow's output exactly as TensorFlow makes it.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from typing import Any

VERBOSE_ENV = "MLOPS_VERBOSE"
LEVEL_ENV = "TF_CPP_MIN_LOG_LEVEL"

# absl/glog's line format: severity letter, MMDD, time, thread id, file:line].
_NATIVE_LOG = re.compile(r"^[IW]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w./-]+:\d+\] ")
_NOISE = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "To enable the following instructions:",
)


def is_noise(line: str) -> bool:
    """An INFO/WARNING notice of TensorFlow's native libraries (never an ERROR line)."""
    return bool(_NATIVE_LOG.match(line)) or line.startswith(_NOISE)


def wants_native_logs() -> bool:
    return os.environ.get(VERBOSE_ENV) == "1" or LEVEL_ENV in os.environ


def import_tensorflow() -> Any:
    """``import tensorflow``, once per process, quietly unless asked otherwise."""
    if "tensorflow" in sys.modules or wants_native_logs():
        import tensorflow

        return tensorflow
    os.environ[LEVEL_ENV] = "2"
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [
                line
                for line in captured.read().decode("utf-8", "replace").splitlines(keepends=True)
                if not is_noise(line)
            ]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
    return tensorflow
