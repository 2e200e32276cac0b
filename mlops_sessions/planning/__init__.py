"""Pure, offline planners: turn a Config into plans (cache keys, manifests, Dockerfiles).

Nothing in this package imports TensorFlow, Docker or Kubernetes, or touches the network;
executors (:mod:`mlops_sessions.executors`) act on the plans made here.
"""
