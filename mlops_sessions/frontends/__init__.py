"""Front ends: the ``mlops`` CLI and the nox plugin.

Each reads the one pipeline table (:mod:`mlops_sessions.pipeline`) and calls the step
modules; nothing below this package imports it.
"""
