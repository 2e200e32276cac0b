"""Records: every layout under ``.mlops/`` and every record format written on the cluster.

The bottom layer next to config (imports only the standard library and
``mlops_sessions.errors``). One module per kind of record; nobody else builds a store path
by hand:

- ``keys``         the one table of relative record keys (local paths and remote keys
                   alike) and the cluster's record names (ConfigMaps, Lease)
- ``io``           atomic writes, the one reader (``RecordError``), the one log reader and
                   its torn-line policy, append-and-point, locks, ``now()``, ``SCHEMA``
- ``runs``         runs/<run-id>/run.json, run ids, cache/<step>/<key>.json
- ``evaluations``  runs/<run>/eval/<eval-id>/ and the evaluation cache
- ``blessings``    models/<model>/blessed.json + blessings.jsonl
- ``builds``       builds/<image>/{build,scan,latest}.json + histories, wheels/
- ``data``         data/<sha256>/<file>: checked copies of ``s3://`` data inputs
- ``deployments``  deployments/<model>/<target>/revisions + events.jsonl, ConfigMap values
- ``remote``       the shared store (``store.remote``): the ``Remote`` protocol an executor
                   implements over S3, and what the Store reads through and writes to it
                   (content-addressed runs, lazy models, the conditional blessed pointer)
- ``store``        the Store facade steps and executors hold (staging, marker)

See docs/store.md.
"""
