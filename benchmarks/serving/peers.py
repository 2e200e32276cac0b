"""The peers of the serving benchmark: the model servers a user would pick instead.

Each serves the same SavedModel with its own idiomatic API, one worker process, in its
own virtualenv (``--venvs DIR`` holds ``kserve/``, ``mlserver/`` and ``bentoml/``, each
made with ``--system-site-packages`` so it reuses the installed TensorFlow):

- **KServe**'s model server (``kserve.Model`` subclass, V1 protocol: the same TF Serving
  body as ours, ``POST /v1/models/digits:predict``). The model server itself has no
  request batching (KServe batches in a separate agent sidecar), so none here;
- **MLServer** with a custom runtime (``MLModel``) and adaptive batching on
  (``max_batch_size`` and ``max_batch_time`` as our ``serve.batching``), Open Inference
  Protocol ``POST /v2/models/digits/infer``, ``parallel_workers: 0`` (one process);
- **BentoML** 1.4 ``@bentoml.service(workers=1)`` with a batchable API
  (``@bentoml.api(batchable=True, max_batch_size, max_latency_ms)``), ``POST /predict``.

:func:`peers` returns, for each peer, the command, readiness path, request path, body and
environment; ``run.py`` starts and loads them like the other phases.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

MODEL = "digits"

KSERVE_APP = textwrap.dedent(
    """
    import sys

    import kserve
    import numpy as np
    import tensorflow as tf


    class Digits(kserve.Model):
        def __init__(self, name, model_dir):
            super().__init__(name)
            self.model_dir = model_dir
            self.ready = False

        def load(self):
            loaded = tf.saved_model.load(self.model_dir)
            self._keep = loaded
            self.fn = loaded.signatures["serving_default"]
            self.ready = True
            return self.ready

        def predict(self, payload, headers=None):
            rows = np.asarray(payload["instances"], dtype=np.float32)
            out = self.fn(pixels=tf.constant(rows))["output_0"].numpy()
            return {"predictions": out.tolist()}


    if __name__ == "__main__":
        model = Digits("digits", sys.argv[1])
        model.load()
        kserve.ModelServer(
            http_port=int(sys.argv[2]), workers=1, enable_grpc=False,
            enable_latency_logging=False,
        ).start([model])
    """
)

MLSERVER_RUNTIME = textwrap.dedent(
    """
    import numpy as np
    import tensorflow as tf
    from mlserver import MLModel
    from mlserver.codecs import NumpyCodec
    from mlserver.types import InferenceRequest, InferenceResponse


    class Digits(MLModel):
        async def load(self):
            loaded = tf.saved_model.load(self.settings.parameters.uri)
            self._keep = loaded
            self.fn = loaded.signatures["serving_default"]
            return True

        async def predict(self, payload: InferenceRequest) -> InferenceResponse:
            rows = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32)
            out = self.fn(pixels=tf.constant(rows))["output_0"].numpy()
            return InferenceResponse(
                model_name=self.name, outputs=[NumpyCodec.encode_output("output_0", out)]
            )
    """
)

BENTOML_SERVICE = textwrap.dedent(
    """
    import os

    import bentoml
    import numpy as np


    @bentoml.service(workers=1)
    class Digits:
        def __init__(self):
            import tensorflow as tf

            self.tf = tf
            loaded = tf.saved_model.load(os.environ["PEER_MODEL_DIR"])
            self._keep = loaded
            self.fn = loaded.signatures["serving_default"]

        @bentoml.api(batchable=True, max_batch_size=MAX_BATCH, max_latency_ms=1000)
        def predict(self, pixels: np.ndarray) -> np.ndarray:
            rows = pixels.astype(np.float32)
            return self.fn(pixels=self.tf.constant(rows))["output_0"].numpy()
    """
)


@dataclass
class Peer:
    key: str
    label: str
    command: list[str]
    ready_path: str
    predict_path: str
    body: str
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None


def peers(
    venvs: Path, work: Path, model_dir: Path, row: list[float], max_batch: int, max_wait_ms: float
) -> list[Peer]:
    """Launch specs of the peers whose venv exists under ``venvs`` (the others are skipped)."""
    found: list[Peer] = []
    v1_body = json.dumps({"instances": [row]})
    kserve = venvs / "kserve" / "bin" / "python"
    if kserve.is_file():
        app = work / "kserve_app.py"
        app.write_text(KSERVE_APP)
        found.append(
            Peer(
                "kserve",
                "KServe model server",
                [str(kserve), str(app), str(model_dir), "{port}"],
                f"/v1/models/{MODEL}",
                f"/v1/models/{MODEL}:predict",
                v1_body,
            )
        )
    mlserver = venvs / "mlserver" / "bin" / "mlserver"
    if mlserver.is_file():
        root = work / "mlserver"
        model = root / MODEL
        model.mkdir(parents=True, exist_ok=True)
        (root / "digits_runtime.py").write_text(MLSERVER_RUNTIME)
        (model / "model-settings.json").write_text(
            json.dumps(
                {
                    "name": MODEL,
                    "implementation": "digits_runtime.Digits",
                    "parameters": {"uri": str(model_dir)},
                    "max_batch_size": max_batch,
                    "max_batch_time": max_wait_ms / 1000,
                }
            )
        )
        found.append(
            Peer(
                "mlserver",
                "MLServer (adaptive batching)",
                [str(mlserver), "start", str(root)],
                "/v2/health/ready",
                f"/v2/models/{MODEL}/infer",
                json.dumps(
                    {
                        "inputs": [
                            {"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": row}
                        ]
                    }
                ),
                env={
                    "MLSERVER_HTTP_PORT": "{port}",
                    "MLSERVER_GRPC_PORT": "{port2}",
                    "MLSERVER_METRICS_PORT": "{port3}",
                    "MLSERVER_HOST": "127.0.0.1",
                    "MLSERVER_PARALLEL_WORKERS": "0",
                    "MLSERVER_LOAD_MODELS_AT_STARTUP": "true",
                    "MLSERVER_DEBUG": "false",
                },
                cwd=root,
            )
        )
    bentoml = venvs / "bentoml" / "bin" / "bentoml"
    if bentoml.is_file():
        root = work / "bento"
        root.mkdir(exist_ok=True)
        (root / "service.py").write_text(BENTOML_SERVICE.replace("MAX_BATCH", str(max_batch)))
        found.append(
            Peer(
                "bentoml",
                "BentoML (batchable API)",
                [
                    str(bentoml),
                    "serve",
                    "service:Digits",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "{port}",
                ],
                "/readyz",
                "/predict",
                json.dumps({"pixels": [row]}),
                env={"PEER_MODEL_DIR": str(model_dir), "BENTOML_DO_NOT_TRACK": "true"},
                cwd=root,
            )
        )
    return found
