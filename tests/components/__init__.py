"""Helpers that fetch the real components tests run against (published modules, CRDs)."""
