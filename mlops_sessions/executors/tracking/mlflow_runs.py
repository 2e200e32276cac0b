"""Mirror the store into MLflow (``tracking.mlflow``): runs, evaluations, blessed versions.

For teams that already look at an MLflow tracking server. The store stays the source of
truth: everything here is a copy, written after the store's own record, so an MLflow that
is down or refuses costs a warning, never a run, a verdict or a blessing.

* a training run  -> an MLflow run named by the run id in the experiment: params, the
  per-epoch history as metric steps, and lineage tags (``mlops.run_id``, ``mlops.key``,
  ``mlops.model_hash``, ``mlops.git_commit``, ``mlops.git_dirty``, ``mlops.code_hash``,
  ``mlops.config_hash``, ``mlops.data.<input>``);
* an evaluation   -> a child run (``mlflow.parentRunId``) with the measured values as
  metrics and the verdict as tags (``mlops.verdict`` pass/fail, ``mlops.failures``);
* a blessing      -> a Model Registry version of ``registered_model`` (default
  ``<project>-<model>``) whose source is the model in the store, and the alias (default
  ``champion``) moved to it.

``mlflow`` (the client, mlflow-skinny is enough) is the ``mlflow`` extra, imported lazily.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from mlops_sessions.config.model import MlflowTracking

TAG = "mlops."
# MLflow's limits: tag values 8000 characters, param values 6000.
_MAX_TAG = 5000


class MlflowTracker:
    """One MLflow experiment and registered-model name per project model."""

    def __init__(
        self,
        spec: MlflowTracking,
        project: str,
        *,
        warn: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.spec = spec
        self.project = project
        self.warn = warn
        self._client: Any = None
        self._experiment: str | None = None

    # --- plumbing -------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        if self._client is None:
            # MLflow's default is 7 retries with backoff (minutes against a server that is
            # down); a copy of the store's records is not worth stalling a pipeline for.
            # Explicit settings in the environment win.
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.spec.uri, registry_uri=self.spec.uri)
        return self._client

    def experiment_id(self) -> str:
        if self._experiment is None:
            found = self.client.get_experiment_by_name(self.spec.experiment)
            if found is not None:
                self._experiment = str(found.experiment_id)
            else:
                self._experiment = str(self.client.create_experiment(self.spec.experiment))
        return self._experiment

    def registered_name(self, model: str) -> str:
        return self.spec.registered_model or f"{self.project}-{model}"

    def _safely(self, what: str, action: Callable[[], Any]) -> Any:
        """Run action; an MLflow failure is a warning (the store already holds the record)."""
        try:
            # The MLflow client prints "View run ... at: <url>" on stdout, which belongs to
            # the step's own output (one JSON document with --json).
            with contextlib.redirect_stdout(sys.stderr):
                return action()
        except ImportError:
            self.warn(
                f"tracking.mlflow: {what} not logged: the mlflow client is not installed "
                "(pip install 'mlops-sessions[mlflow]')"
            )
        except Exception as exc:  # any client/server failure: MLflow is a copy, not the truth
            self.warn(f"tracking.mlflow: {what} not logged to {self.spec.uri}: {exc}")
        return None

    def _find_run(self, run_id: str) -> str | None:
        runs = self.client.search_runs(
            [self.experiment_id()],
            filter_string=f"tags.`{TAG}run_id` = '{run_id}' and tags.`{TAG}kind` = 'train'",
            max_results=1,
        )
        return str(runs[0].info.run_id) if runs else None

    # --- what the steps call ------------------------------------------------------------
    def log_training(self, run: Mapping[str, Any]) -> str | None:
        result: str | None = self._safely(
            f"training run {run.get('run_id')}", lambda: self._log_training(run)
        )
        return result

    def _log_training(self, run: Mapping[str, Any]) -> str:
        from mlflow.entities import Metric, Param, RunTag

        run_id = str(run["run_id"])
        existing = self._find_run(run_id)
        if existing is not None:
            return existing  # logged already (a re-run of a reused key)
        lineage = run.get("lineage") or {}
        git = lineage.get("git") or {}
        tags = {
            "kind": "train",
            "run_id": run_id,
            "model": run.get("model"),
            "key": run.get("key"),
            "model_hash": run.get("model_hash"),
            "git_commit": git.get("commit"),
            "git_dirty": git.get("dirty"),
            "code_hash": lineage.get("code_hash"),
            "config_hash": lineage.get("config_hash"),
            "requirements_hash": lineage.get("requirements_hash"),
            **{f"data.{k}": v for k, v in (lineage.get("data_hashes") or {}).items()},
        }
        created = self.client.create_run(self.experiment_id(), run_name=run_id, tags=_tags(tags))
        mlflow_id = str(created.info.run_id)
        params = [Param(str(k), _text(v)[:_MAX_TAG]) for k, v in _flat(run.get("params") or {})]
        params.append(Param("seed", str(run.get("seed"))))
        metrics = [
            Metric(str(name), float(value), 0, step)
            for name, values in (run.get("history") or {}).items()
            for step, value in enumerate(values or [])
            if isinstance(value, (int, float))
        ]
        # log_batch takes at most 1000 metrics per call.
        for start in range(0, max(len(metrics), 1), 1000):
            self.client.log_batch(
                mlflow_id,
                metrics=metrics[start : start + 1000],
                params=params if start == 0 else [],
                tags=[RunTag("mlflow.source.git.commit", str(git.get("commit") or ""))]
                if start == 0
                else [],
            )
        self.client.set_terminated(mlflow_id, "FINISHED")
        return mlflow_id

    def log_evaluation(
        self,
        run: Mapping[str, Any],
        eval_id: str,
        values: Mapping[str, float],
        passed: bool,
        failures: list[str],
    ) -> str | None:
        result: str | None = self._safely(
            f"evaluation {eval_id}",
            lambda: self._log_evaluation(run, eval_id, values, passed, failures),
        )
        return result

    def _log_evaluation(
        self,
        run: Mapping[str, Any],
        eval_id: str,
        values: Mapping[str, float],
        passed: bool,
        failures: list[str],
    ) -> str:
        from mlflow.entities import Metric

        parent = self._find_run(str(run["run_id"])) or self._log_training(run)
        tags = {
            "kind": "evaluate",
            "run_id": run.get("run_id"),
            "eval_id": eval_id,
            "verdict": "pass" if passed else "fail",
            "failures": "; ".join(failures),
        }
        created = self.client.create_run(
            self.experiment_id(),
            run_name=f"evaluate {eval_id}",
            tags={**_tags(tags), "mlflow.parentRunId": parent},
        )
        mlflow_id = str(created.info.run_id)
        metrics = [Metric(str(k), float(v), 0, 0) for k, v in values.items()]
        self.client.log_batch(mlflow_id, metrics=metrics)
        self.client.set_terminated(mlflow_id, "FINISHED" if passed else "FAILED")
        return mlflow_id

    def register_blessed(
        self, run: Mapping[str, Any], source: str, blessing: Mapping[str, Any]
    ) -> str | None:
        result: str | None = self._safely(
            f"blessing of run {run.get('run_id')}",
            lambda: self._register(run, source, blessing),
        )
        return result

    def _register(self, run: Mapping[str, Any], source: str, blessing: Mapping[str, Any]) -> str:
        from mlflow.exceptions import MlflowException

        name = self.registered_name(str(run["model"]))
        try:
            self.client.create_registered_model(
                name, description=f"Blessed models of {run['model']} (mlops-sessions)"
            )
        except MlflowException as exc:
            if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
                raise
        mlflow_run = self._find_run(str(run["run_id"])) or self._log_training(run)
        version = self.client.create_model_version(
            name,
            source=source,
            run_id=mlflow_run,
            tags=_tags(
                {
                    "run_id": run.get("run_id"),
                    "model_hash": run.get("model_hash"),
                    "eval_id": blessing.get("eval_id"),
                    "blessed_at": blessing.get("blessed_at"),
                }
            ),
            description=f"mlops run {run['run_id']} (model {str(run.get('model_hash'))[:12]})",
        )
        self.client.set_registered_model_alias(name, self.spec.alias, version.version)
        return str(version.version)


def _tags(values: Mapping[str, Any]) -> dict[str, str]:
    return {f"{TAG}{k}": _text(v)[:_MAX_TAG] for k, v in values.items() if v is not None}


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def _flat(params: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested params as dotted names (MLflow params are flat)."""
    out: list[tuple[str, Any]] = []
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out += _flat(value, f"{name}.")
        else:
            out.append((name, value))
    return out
