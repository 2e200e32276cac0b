"""Training drivers: one Trainer per backend (local, container, Kubernetes Job, Kubeflow TFJob)."""
