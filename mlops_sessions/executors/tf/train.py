"""Run one training entrypoint with TensorFlow and turn its result into a checked SavedModel.

In order: pin the seeds and op determinism, check the GPU request against the devices
TensorFlow sees, import and call ``train(ctx)``, export what it returned (or take the
SavedModel it wrote to ``ctx.model_dir``), load the export back and check its
``serving_default`` signature, and hash the files and the variables.

Only paths and plain values come in (a :class:`TrainPlan` and an output directory), so the
same function runs in the session's venv and inside the train container:
``python -m mlops_sessions.executors.tf.train SPEC.json OUTPUT_DIR`` runs it from a JSON
spec and writes ``OUTPUT_DIR/result.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from mlops_sessions.contract import TrainContext, TrainResult
from mlops_sessions.errors import StepError
from mlops_sessions.executors.tf import usercode
from mlops_sessions.executors.tf.progress import Reporter, keras_callback, reporter_for
from mlops_sessions.executors.tf.quiet import import_tensorflow
from mlops_sessions.hashing import sha256_dir
from mlops_sessions.planning.training import TrainPlan

SIGNATURE = "serving_default"
SMOKE_BATCH = 2
EXPORT_HINT = (
    "return the Keras model from train(ctx) (it is exported with model.export), or write a "
    f"SavedModel with a '{SIGNATURE}' signature to ctx.model_dir"
)


@dataclass
class TrainOutcome:
    """What one training produced (``records.runs.write_completed_run`` makes run.json of it)."""

    history: dict[str, list[float | None]]
    signature: dict[str, Any]
    model_hash: str
    weights_hash: str
    environment: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def quiet_tensorflow() -> None:
    """Import TensorFlow now, without its C++ start-up chatter (see tf_quiet), so the user's
    model module, which may import it first, does not print it either. A missing TensorFlow
    is reported later by prepare(), with the fix."""
    with contextlib.suppress(ImportError):
        import_tensorflow()


def prepare(plan: TrainPlan, warn: Callable[[str], None]) -> tuple[dict[str, Any], list[str]]:
    """Seed everything, enable op determinism, check GPUs; returns (environment, warnings).

    Under a ``TF_CONFIG`` naming several workers the multi-worker strategy is created here,
    before anything initialises TensorFlow's runtime (it must come first); see
    :func:`distribution_strategy`.

    Warnings are also passed to warn at once, so a user sees them before training starts.
    """
    quiet_tensorflow()
    try:
        import keras
        import tensorflow as tf
    except ImportError as exc:
        raise StepError(
            f"cannot train '{plan.model}': TensorFlow is not importable here ({exc}); install "
            "the training extra (pip install 'mlops-sessions[train]') or the locked requirements"
        ) from None

    warnings: list[str] = []
    gpus = tf.config.list_physical_devices("GPU")
    if plan.gpu > 0 and len(gpus) < plan.gpu:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
        seen = f"{len(gpus)} GPU{'s' if len(gpus) != 1 else ''}" if gpus else "no GPU"
        message = (
            f"model '{plan.model}': train.resources.gpu asks for {plan.gpu} GPU(s) but "
            f"TensorFlow sees {seen} (CUDA_VISIBLE_DEVICES={visible}, "
            f"tensorflow {tf.__version__}, built with CUDA: {tf.test.is_built_with_cuda()})"
        )
        if not plan.allow_cpu_fallback:
            raise StepError(
                message + "; run on a machine with GPUs and a GPU build of TensorFlow, lower "
                "train.resources.gpu, or set train.allow_cpu_fallback: true to train on CPU"
            )
        if gpus:
            # Fewer GPUs than asked for: keep the promise of a CPU run rather than quietly
            # training on a partial set (only possible before TensorFlow initialises them).
            with contextlib.suppress(RuntimeError):
                tf.config.set_visible_devices([], "GPU")
        warnings.append(message + "; training on CPU because train.allow_cpu_fallback is true")
        warn(warnings[-1])
    distribution_strategy()  # first: a multi-worker strategy must precede runtime start-up
    # A fresh graph state per run: layer-name counters and cached functions of an earlier
    # training in this process must not leak into this one.
    keras.backend.clear_session()
    keras.utils.set_random_seed(plan.seed)  # Python, NumPy and TensorFlow generators
    if plan.deterministic:
        tf.config.experimental.enable_op_determinism()
    # TensorFlow has no public switch back: once a model in this process enabled op
    # determinism, later models with deterministic: false also run deterministically.
    return environment(), warnings


def environment() -> dict[str, Any]:
    import keras
    import tensorflow as tf

    devices = [d.name for d in tf.config.list_logical_devices()]
    details = []
    for gpu in tf.config.list_physical_devices("GPU"):
        info = tf.config.experimental.get_device_details(gpu)
        details.append(f"{gpu.name}: {info.get('device_name', 'GPU')}")
    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "devices": devices,
        "gpus": details,
    }


def run_training(
    plan: TrainPlan,
    output_dir: Path,
    reporter: Reporter | None = None,
    warn: Callable[[str], None] | None = None,
) -> TrainOutcome:
    """Train plan's entrypoint into output_dir/model and check the result."""
    env, warnings = prepare(plan, warn or _warn_stderr)
    entry = usercode.load_callable(plan.entrypoint, plan.source)
    reporter = reporter or reporter_for(plan.model)
    recorder = _HistoryRecorder()
    callbacks = [keras_callback(reporter), recorder.callback()]
    if plan.timeout_s is not None:
        callbacks.append(_timeout_callback(plan.model, plan.timeout_s))
    strategy = distribution_strategy()
    is_chief = task_index() == 0
    ctx = TrainContext(
        model=plan.model,
        # A read-only copy: the params recorded in run.json are the ones the run started with.
        params=MappingProxyType(copy.deepcopy(dict(plan.params))),
        seed=plan.seed,
        inputs=MappingProxyType(dict(plan.inputs)),
        output_dir=output_dir,
        callbacks=tuple(callbacks),
        strategy=strategy,
        is_chief=is_chief,
    )
    try:
        returned = usercode.call_user(plan.entrypoint, entry, ctx)
    finally:
        reporter.close()
    model, history = _unpack(plan.entrypoint, returned)
    _export(plan.entrypoint, model, ctx.model_dir)
    signature = verify_signature(plan.entrypoint, ctx.model_dir)
    if not history:
        history = recorder.history or _keras_history(model)
    return TrainOutcome(
        history=_clean_history(history),
        signature=signature,
        model_hash=sha256_dir(ctx.model_dir),
        weights_hash=weights_hash(ctx.model_dir),
        environment=env,
        warnings=warnings,
    )


# --- distribution -------------------------------------------------------------------------

_STRATEGY: list[Any] = []  # the process's multi-worker strategy: TensorFlow allows one


def cluster_workers() -> list[str]:
    """The worker addresses ``TF_CONFIG`` names (empty without one)."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return []
    try:
        workers = json.loads(raw)["cluster"]["worker"]
    except (ValueError, KeyError, TypeError):
        raise StepError(
            f"TF_CONFIG is not a TensorFlow cluster spec ({raw[:200]!r}); expected "
            '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": N}}'
        ) from None
    return [str(w) for w in workers]


def task_index() -> int:
    """This process's index among the workers (0, the chief, without ``TF_CONFIG``)."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return 0
    try:
        return int(json.loads(raw).get("task", {}).get("index", 0))
    except (ValueError, TypeError, AttributeError):
        return 0


def is_chief() -> bool:
    """Whether this process publishes the run: task ``chief`` (or ``master``) when the
    cluster has one, else worker 0 — TensorFlow's rule, and the Kubeflow Training
    Operator's for a TFJob without a Chief replica. True without ``TF_CONFIG``."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return True
    try:
        spec = json.loads(raw)
        task = spec.get("task") or {}
        kind, cluster = str(task.get("type", "worker")), spec.get("cluster") or {}
    except (ValueError, TypeError, AttributeError):
        return task_index() == 0
    if kind in ("chief", "master"):
        return True
    if "chief" in cluster or "master" in cluster:
        return False
    return kind == "worker" and task_index() == 0


def distribution_strategy() -> Any:
    """``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` names more than one worker (made
    once per process, as TensorFlow requires), else the default strategy."""
    import tensorflow as tf

    if len(cluster_workers()) <= 1:
        return tf.distribute.get_strategy()
    if not _STRATEGY:
        _STRATEGY.append(_multi_worker_class()())
    return _STRATEGY[0]


def _multi_worker_class() -> Any:
    """MultiWorkerMirroredStrategy with ``reduce`` fixed for Keras 3's ``fit``.

    Keras 3 (up to 3.15 at least; keras-team/keras#20585) calls ``strategy.reduce`` on a
    (features, labels) tuple while building the model, and with ``axis=0`` on per-replica
    scalars (the metrics); in multi-worker mode both raise. Reducing element by element, and
    scalars without an axis, is what those calls mean and what the single-worker path does.
    """
    import tensorflow as tf

    class _Strategy(tf.distribute.MultiWorkerMirroredStrategy):  # type: ignore[misc]
        def reduce(self, reduce_op: Any, value: Any, axis: Any) -> Any:
            def one(item: Any) -> Any:
                local = (
                    self.experimental_local_results(item)[0]
                    if isinstance(item, tf.distribute.DistributedValues)
                    else item
                )
                rank = getattr(getattr(local, "shape", None), "rank", None)
                return super(_Strategy, self).reduce(reduce_op, item, None if rank == 0 else axis)

            return tf.nest.map_structure(one, value)

    return _Strategy


def _warn_stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _unpack(import_path: str, returned: Any) -> tuple[Any, Mapping[str, Sequence[float]]]:
    if returned is None:
        return None, {}
    if isinstance(returned, TrainResult):
        return returned.model, dict(returned.history or {})
    if _is_keras_model(returned) or _is_tf_module(returned):
        return returned, {}
    raise StepError(
        f"{import_path} returned a {type(returned).__name__}; {EXPORT_HINT} "
        "(or return mlops_sessions.TrainResult(model=..., history=...))"
    )


def _export(import_path: str, model: Any, model_dir: Path) -> None:
    """Write model to model_dir unless the entrypoint already wrote a SavedModel there."""
    wrote_own = (model_dir / "saved_model.pb").is_file()
    if wrote_own:
        return
    if model is None:
        raise StepError(
            f"{import_path} returned no model and wrote no SavedModel to ctx.model_dir; "
            + EXPORT_HINT
        )
    if model_dir.exists() and any(model_dir.iterdir()):
        raise StepError(
            f"{import_path}: ctx.model_dir ({model_dir}) holds files but no saved_model.pb; "
            "leave it empty when you return the model, or write a complete SavedModel there"
        )
    try:
        if _is_keras_model(model):
            model.export(str(model_dir), verbose=False)
        else:
            import tensorflow as tf

            tf.saved_model.save(model, str(model_dir))
    except Exception as exc:  # export errors come from the user's model structure
        raise StepError(
            f"{import_path}: exporting the returned {type(model).__name__} as a SavedModel "
            f"failed: {type(exc).__name__}: {exc}; build the model with a known input shape "
            "(keras.Input(shape=...)) so it can be exported"
        ) from exc


def verify_signature(import_path: str, model_dir: Path) -> dict[str, Any]:
    """Load the SavedModel back and check it can serve batches; returns its signature."""
    import numpy as np
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(model_dir))
    except Exception as exc:  # a corrupt or partial SavedModel
        raise StepError(
            f"{import_path}: the SavedModel in {model_dir} cannot be loaded: {exc}"
        ) from exc
    available = sorted(loaded.signatures.keys())
    if SIGNATURE not in available:
        raise StepError(
            f"{import_path}: the SavedModel has no '{SIGNATURE}' signature "
            f"(signatures: {', '.join(available) or 'none'}); {EXPORT_HINT}, or pass "
            f"signatures={{'{SIGNATURE}': fn}} to tf.saved_model.save"
        )
    fn = loaded.signatures[SIGNATURE]
    _, input_specs = fn.structured_input_signature
    outputs = fn.structured_outputs
    problems = []
    if not input_specs:
        problems.append("it takes no inputs")
    if not isinstance(outputs, Mapping) or not outputs:
        problems.append("it has no named outputs")
        outputs = {}
    for kind, specs in (("input", input_specs), ("output", outputs)):
        for name, spec in specs.items():
            shape = spec.shape
            if shape.rank is None or shape.rank == 0:
                problems.append(f"{kind} '{name}' has no batch dimension (shape {shape})")
            elif shape[0] is not None:
                problems.append(f"{kind} '{name}' has a fixed batch size (shape {shape.as_list()})")
    if problems:
        raise StepError(
            f"{import_path}: the '{SIGNATURE}' signature cannot serve batches: "
            + "; ".join(problems)
            + ". Give every input and output a leading batch dimension of None "
            "(e.g. keras.Input(shape=(64,)) or tf.TensorSpec([None, 64]))"
        )
    feed = {}
    for name, spec in input_specs.items():
        dims = [SMOKE_BATCH] + [d if d is not None else 1 for d in spec.shape.as_list()[1:]]
        if spec.dtype == tf.string:
            feed[name] = tf.constant(np.full(dims, b"", dtype=object), dtype=tf.string)
        else:
            feed[name] = tf.zeros(dims, dtype=spec.dtype)
    try:
        result = fn(**feed)
    except Exception as exc:  # the graph fails on well-formed input
        raise StepError(
            f"{import_path}: calling '{SIGNATURE}' on a batch of {SMOKE_BATCH} zero inputs "
            f"failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from exc
    for name, tensor in result.items():
        if tensor.shape.rank == 0 or tensor.shape[0] != SMOKE_BATCH:
            raise StepError(
                f"{import_path}: '{SIGNATURE}' output '{name}' has shape {tensor.shape.as_list()} "
                f"for a batch of {SMOKE_BATCH}; outputs must have one row per input row"
            )
    return {
        "name": SIGNATURE,
        "inputs": {n: _spec(s) for n, s in sorted(input_specs.items())},
        "outputs": {n: _spec(s) for n, s in sorted(outputs.items())},
    }


def _spec(spec: Any) -> dict[str, Any]:
    return {"dtype": spec.dtype.name, "shape": spec.shape.as_list()}


def weights_hash(model_dir: Path) -> str:
    """sha256 over the values of every variable in a SavedModel's checkpoint.

    Unlike the file hash it ignores graph bookkeeping, so two deterministic trainings of
    the same inputs give the same value — the determinism check compares this. Each
    tensor is hashed on its own (dtype, shape, bytes) and the digests are sorted: the
    checkpoint keys of tracked-variable lists (Keras's ``_all_variables``) come in an
    order that can change from run to run while the values do not.
    """
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(model_dir / "variables" / "variables"))
    dtypes = reader.get_variable_to_dtype_map()
    digests = []
    for name in dtypes:
        if name == "_CHECKPOINTABLE_OBJECT_GRAPH":
            continue  # serialized object graph, not weights
        value = reader.get_tensor(name)
        one = hashlib.sha256(f"{dtypes[name].name}|{list(value.shape)}|".encode())
        one.update(value.tobytes() if hasattr(value, "tobytes") else repr(value).encode())
        digests.append(one.hexdigest())
    return hashlib.sha256("\n".join(sorted(digests)).encode()).hexdigest()


def _is_keras_model(obj: Any) -> bool:
    return callable(getattr(obj, "export", None)) and callable(getattr(obj, "fit", None))


def _is_tf_module(obj: Any) -> bool:
    if "tensorflow" not in sys.modules:
        return False
    import tensorflow as tf

    return isinstance(obj, tf.Module)


def _keras_history(model: Any) -> Mapping[str, Sequence[float]]:
    history = getattr(getattr(model, "history", None), "history", None)
    return history if isinstance(history, Mapping) else {}


def _clean_history(history: Mapping[str, Sequence[Any]]) -> dict[str, list[float | None]]:
    """Plain floats for JSON; NaN/inf become null (JSON has no spelling for them)."""
    cleaned: dict[str, list[float | None]] = {}
    for name, values in history.items():
        row: list[float | None] = []
        for value in values:
            number = float(value)
            row.append(number if math.isfinite(number) else None)
        cleaned[str(name)] = row
    return cleaned


class _HistoryRecorder:
    """Collects epoch logs from whichever fit() the team's code passes ctx.callbacks to."""

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {}

    def callback(self) -> Any:
        import keras

        recorder = self

        class _Record(keras.callbacks.Callback):  # type: ignore[misc]
            def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
                for name, value in (logs or {}).items():
                    recorder.history.setdefault(name, []).append(float(value))

        return _Record()


def _timeout_callback(model: str, seconds: float) -> Any:
    import keras

    class _Timeout(keras.callbacks.Callback):  # type: ignore[misc]
        def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
            self.deadline = time.monotonic() + seconds

        def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
            if time.monotonic() > self.deadline:
                raise StepError(
                    f"model '{model}': training ran longer than train.timeout ({seconds:g}s) and "
                    "was stopped; raise train.timeout or make training cheaper"
                )

    return _Timeout()


# --- container entry point -------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run one training spec (used inside the train container)."
    )
    parser.add_argument("spec", type=Path, help="JSON spec written by TrainPlan.to_spec")
    parser.add_argument("output_dir", type=Path, help="directory for model/ and result.json")
    args = parser.parse_args(argv)
    try:
        plan = TrainPlan.from_spec(json.loads(args.spec.read_text()))
        args.output_dir.mkdir(parents=True, exist_ok=True)
        outcome = run_training(plan, args.output_dir)
    except StepError as exc:
        print(f"train: {exc}", file=sys.stderr)
        return exc.exit_code
    (args.output_dir / "result.json").write_text(
        json.dumps(asdict(outcome), indent=2, sort_keys=True)
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
