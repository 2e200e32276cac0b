"""Observing what runs: the Prometheus query client of the progressive rollout's live
analysis. Adapters only: they ask and return facts; judging is planning's."""
