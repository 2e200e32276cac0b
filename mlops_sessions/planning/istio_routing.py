"""Istio routing for one model: a DestinationRule with track subsets and a VirtualService.

The DestinationRule names one subset per track (``stable``, ``canary``), selected by the
pods' ``track`` label. The VirtualService sends an A/B slice (a header, or a cookie
regex) always to the canary, and splits the rest by the weights in ``rollout:``, which
must add up to 100 (the rules on weights and A/B routes live in
:mod:`mlops_sessions.config.checks`, which ``validate`` runs too). Both use
``networking.istio.io/v1``.
"""

from __future__ import annotations

from typing import Any

from mlops_sessions.config import Config, ModelConfig, RolloutConfig, checks
from mlops_sessions.errors import StepError
from mlops_sessions.planning.k8s_common import Track, metadata, service_host

API_VERSION = "networking.istio.io/v1"


def weights(model: ModelConfig) -> dict[Track, int]:
    """Traffic per track in percent; stable's weight defaults to what the canary leaves.

    That they add up to 100 is the config's rule (:func:`checks.weight_findings`), which
    ``validate`` runs too; render refuses a Config that skipped it.
    """
    rollout = _rollout(model)
    checks.require(checks.weight_findings(model))
    canary = rollout.canary.weight if rollout.canary is not None else None
    if rollout.canary is not None and canary is None:
        # Only with rollout.steps (the config's rule): the steady state between rollouts,
        # all traffic on stable; the rollout driver sets each step's split.
        canary = 0
    stable = rollout.stable.weight if rollout.stable is not None else 100 - (canary or 0)
    split: dict[Track, int] = {"stable": stable}
    if canary is not None:
        split["canary"] = canary
    return split


def destination_rule(
    config: Config, model: ModelConfig, tracks: tuple[Track, ...]
) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "DestinationRule",
        "metadata": metadata(config, model, model.name),
        "spec": {
            "host": service_host(model),
            "subsets": [{"name": track, "labels": {"track": track}} for track in tracks],
        },
    }


def virtual_service(config: Config, model: ModelConfig) -> dict[str, Any]:
    rollout = _rollout(model)
    http: list[dict[str, Any]] = []
    matches = ab_matches(rollout)
    grpc_port = model.serve.grpc_port
    if grpc_port:
        # gRPC first, matched by port (Istio takes the first matching route): the same A/B
        # slice and weights, to the gRPC port. The rules below, without a port match, then
        # carry the rest (REST) as before.
        if matches:
            http.append(
                {
                    "name": "grpc-ab-canary",
                    "match": [{**match, "port": grpc_port} for match in matches],
                    "route": [_destination(model, "canary", 100, grpc_port)],
                }
            )
        http.append(
            {
                "name": "grpc-weighted",
                "match": [{"port": grpc_port}],
                "route": [
                    _destination(model, track, weight, grpc_port)
                    for track, weight in weights(model).items()
                ],
            }
        )
    if matches:
        http.append(
            {
                "name": "ab-canary",
                "match": matches,
                "route": [_destination(model, "canary", 100)],
            }
        )
    http.append(
        {
            "name": "weighted",
            "route": [
                _destination(model, track, weight) for track, weight in weights(model).items()
            ],
        }
    )
    return {
        "apiVersion": API_VERSION,
        "kind": "VirtualService",
        "metadata": metadata(config, model, model.name),
        "spec": {
            "hosts": list(rollout.hosts),
            "gateways": list(rollout.gateways),
            "http": http,
        },
    }


def ab_matches(rollout: RolloutConfig) -> list[dict[str, Any]]:
    """Istio HTTPMatchRequests for the A/B slice; entries are ORed, so header or cookie."""
    ab = rollout.ab
    if ab is None:
        return []
    # Header or cookie, a valid RE2-compatible cookie regex: the config's rules, checked
    # by `mlops validate` through the same function.
    checks.require(checks.ab_route_findings(ab, ("rollout", "ab")))
    matches: list[dict[str, Any]] = []
    if ab.header is not None:
        # Header names are matched lower-case by Istio (HTTP/2 lower-cases them anyway).
        rule = {"exact": ab.value} if ab.value is not None else {"regex": ".+"}
        matches.append({"headers": {ab.header.lower(): rule}})
    if ab.cookie is not None:
        # The cookie regex may sit anywhere in the Cookie header's '; '-separated list.
        matches.append({"headers": {"cookie": {"regex": f"^(.*?;\\s*)?({ab.cookie})(;.*)?$"}}})
    return matches


def _destination(
    model: ModelConfig, subset: Track, weight: int, port: int | None = None
) -> dict[str, Any]:
    return {
        "destination": {
            "host": service_host(model),
            "subset": subset,
            "port": {"number": port or model.serve.port},
        },
        "weight": weight,
    }


def _rollout(model: ModelConfig) -> RolloutConfig:
    if model.rollout is None:
        raise StepError(f"model {model.name!r} has no rollout section; add rollout.hosts")
    return model.rollout
