"""One module per ``mlops`` sub-command; each is thin: parse, load config, call planners
and executors, print. See :mod:`mlops_sessions.frontends.cli` for the module protocol."""
