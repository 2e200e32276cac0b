"""``python -m mlops_sessions.executors.train_pod``: the command a training pod runs.

Rendered Jobs and TFJobs name this module (``planning.train_job.COMMAND``), and so do the
train images and manifests already pushed, so the command stays. The pod's work — resolve
the inputs, train, publish the chief's run — is a driver's (it writes run.json), in
:mod:`mlops_sessions.drivers.train_pod`; this module only starts it, by module name, so
the executors layer imports nothing above it.
"""

from __future__ import annotations

import runpy

if __name__ == "__main__":  # pragma: no cover - a pod's command line
    runpy.run_module("mlops_sessions.drivers.train_pod", run_name="__main__", alter_sys=True)
