"""The Kubernetes engine: thin adapters that act on the API server and return facts.

``client`` logs in and wraps the API (retries, typed errors); ``lease`` holds a model's
deploy Lease; ``history`` reads and writes the revision-history ConfigMap; ``readiness``
waits for Deployments to become ready; ``apply`` checks Secrets, plans and applies objects;
``configmap`` is the one ConfigMap create-or-patch; ``job`` and ``tfjob`` run training.
Orchestration and records live in :mod:`mlops_sessions.drivers` (a contract in
pyproject.toml forbids this package to import records, reports or drivers).
"""
