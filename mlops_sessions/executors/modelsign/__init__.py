"""Model-signing engine: sign an exported SavedModel directory, verify one against a key.

An adapter over the OpenSSF ``model-signing`` library (imported lazily: it is the ``sign``
extra). It acts and returns facts: what the signature says (the model's digest, the
gate's claim) and whether it verifies; which verdicts are acceptable is decided by the
driver (:mod:`mlops_sessions.drivers.model_signing`).
"""
