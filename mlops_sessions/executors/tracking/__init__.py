"""Experiment-tracking engine: mirror a run's params, metrics and artifacts to MLflow."""
