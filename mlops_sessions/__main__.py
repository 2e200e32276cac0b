"""``python -m mlops_sessions`` is the ``mlops`` command (used by sessions in their venv)."""

import sys

from mlops_sessions.frontends.cli import main

sys.exit(main())
