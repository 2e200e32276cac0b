"""Baseline (a) of the serving benchmark: the seed article's recipe.

Flask behind gunicorn (the article's ``CMD ["gunicorn", "--bind", "0.0.0.0:8501",
"serve:app"]``), calling Keras ``model.predict`` once per request. The model is the same
SavedModel the other phases serve, wrapped for Keras with ``TFSMLayer`` (its ``serve``
endpoint, which Keras' ``model.export`` writes next to ``serving_default``).

Run (as benchmarks/serving/run.py does)::

    SEED_MODEL_DIR=<SavedModel> gunicorn --bind 127.0.0.1:PORT --chdir <this dir> seed_app:app
"""

from __future__ import annotations

import os

import keras
import numpy as np
from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue

model = keras.Sequential(
    [
        keras.Input(shape=(64,)),
        keras.layers.TFSMLayer(os.environ["SEED_MODEL_DIR"], call_endpoint="serve"),
    ]
)
app = Flask(__name__)


@app.post("/v1/models/<name>:predict")
def predict(name: str) -> ResponseReturnValue:
    data = request.get_json()
    features = np.asarray(data["instances"], dtype=np.float32)
    predictions = model.predict(features, verbose=0)
    return jsonify({"predictions": predictions.tolist()})


@app.get("/ready")
def ready() -> ResponseReturnValue:
    return jsonify({"ready": True})
