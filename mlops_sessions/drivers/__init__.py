"""Drivers: the orchestration between the steps and the executors.

A driver strings executor calls together (build then record, train then publish, follow a
Kubernetes run), turns what the executors report into records, and is the one layer that
writes records for what was done. Steps resolve facts and plans and hand them to a driver;
executors act and return facts.
"""
