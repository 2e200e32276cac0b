"""The built-in model server (``runtime: mlops``): TF Serving's REST (aiohttp) and gRPC APIs.

Modules, one concern each:

- ``settings``  serve config -> runtime settings and the served model's identity (pure)
- ``runtime``   SavedModel loading and batch calls (the TensorFlow calls)
- ``codec``     request validation against the signature, response encoding (pure)
- ``oip``       the same for the Open Inference Protocol (``/v2/.../infer``)
- ``batching``  bounded queue + adaptive batching onto model worker threads
- ``metrics``   Prometheus metrics (prometheus_client)
- ``app``       HTTP routes (aiohttp)
- ``grpc_api``  TF Serving's gRPC services and grpc.health.v1 (grpc.aio, same loop and batcher)
- ``lifecycle`` listen, load, warm up, ready, drain on SIGTERM

The step :mod:`mlops_sessions.steps.serve` resolves which model to serve and calls
:func:`lifecycle.serve`.
"""
