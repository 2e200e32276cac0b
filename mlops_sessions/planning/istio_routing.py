"""Istio routing for one model: a DestinationRule with track subsets and a VirtualService.

The DestinationRule names one subset per track (``stable``, ``canary``), selected by the
pods' ``track`` label. The VirtualService sends an A/B slice (a header, or a cookie
regex) always to the canary, and splits the rest by the weights in ``rollout:``, which
must add up to 100 (the rules on weights and A/B routes live in
:mod:`mlops_sessions.config.rules`, which ``validate`` runs too). Both use
``networking.istio.io/v1``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mlops_sessions.config import Config, ModelConfig, RolloutConfig
from mlops_sessions.errors import StepError
from mlops_sessions.planning.k8s_common import Track, metadata, service_host

API_VERSION = "networking.istio.io/v1"


def weights(model: ModelConfig) -> dict[Track, int]:
    """Traffic per track in percent; stable's weight defaults to what the canary leaves.

    That they add up to 100 is the config's rule (:func:`rules.weight_findings`): this
    planner trusts a checked Config (``validate`` and render's rule registry ran it).
    """
    rollout = _rollout(model)
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


# The route names: Istio takes the first route that matches, so their order is the policy
# (gRPC by port first, then the A/B slice, then the weighted split for the rest).
GRPC_AB_ROUTE = "grpc-ab-canary"
GRPC_WEIGHTED_ROUTE = "grpc-weighted"
AB_ROUTE = "ab-canary"
WEIGHTED_ROUTE = "weighted"


@dataclass(frozen=True)
class RouteTarget:
    """Where a model's traffic goes: its Service host, REST port and gRPC port (if any)."""

    host: str
    port: int
    grpc_port: int | None = None

    @classmethod
    def of(cls, model: ModelConfig) -> RouteTarget:
        return cls(service_host(model), model.serve.port, model.serve.grpc_port or None)

    @classmethod
    def read(cls, vs: Mapping[str, Any]) -> RouteTarget:
        """The target a rendered VirtualService routes to (a recorded revision's, which has no
        config to build from): the weighted route's stable destination, the gRPC route's port."""
        routes = list((vs.get("spec") or {}).get("http") or [])
        weighted = next((r for r in routes if r.get("name") == WEIGHTED_ROUTE), routes[-1])
        stable = next(
            d["destination"]
            for d in weighted["route"]
            if d["destination"].get("subset") == "stable"
        )
        grpc = next((r for r in routes if r.get("name") == GRPC_WEIGHTED_ROUTE), None)
        grpc_port = int(grpc["match"][0]["port"]) if grpc is not None else None
        return cls(str(stable["host"]), int(stable["port"]["number"]), grpc_port)


def http_routes(
    target: RouteTarget, split: Mapping[str, int], ab: Sequence[Mapping[str, Any]] = ()
) -> list[dict[str, Any]]:
    """The VirtualService's HTTP routes: the one builder, used by render and by the rollout.

    split: percent per track (stable first); ab: the A/B matches always sent to the canary
    (empty: no A/B route).
    """
    http: list[dict[str, Any]] = []
    if target.grpc_port:
        # gRPC first, matched by port (Istio takes the first matching route): the same A/B
        # slice and weights, to the gRPC port. The rules below, without a port match, then
        # carry the rest (REST) as before.
        if ab:
            http.append(
                {
                    "name": GRPC_AB_ROUTE,
                    "match": [{**match, "port": target.grpc_port} for match in ab],
                    "route": [_destination(target, "canary", 100, target.grpc_port)],
                }
            )
        http.append(
            {
                "name": GRPC_WEIGHTED_ROUTE,
                "match": [{"port": target.grpc_port}],
                "route": [
                    _destination(target, track, weight, target.grpc_port)
                    for track, weight in split.items()
                ],
            }
        )
    if ab:
        http.append(
            {
                "name": AB_ROUTE,
                "match": [dict(match) for match in ab],
                "route": [_destination(target, "canary", 100)],
            }
        )
    http.append(
        {
            "name": WEIGHTED_ROUTE,
            "route": [_destination(target, track, weight) for track, weight in split.items()],
        }
    )
    return http


def virtual_service(config: Config, model: ModelConfig) -> dict[str, Any]:
    rollout = _rollout(model)
    split = {str(track): weight for track, weight in weights(model).items()}
    return {
        "apiVersion": API_VERSION,
        "kind": "VirtualService",
        "metadata": metadata(config, model, model.name),
        "spec": {
            "hosts": list(rollout.hosts),
            "gateways": list(rollout.gateways),
            "http": http_routes(RouteTarget.of(model), split, ab_matches(rollout)),
        },
    }


def ab_matches(rollout: RolloutConfig) -> list[dict[str, Any]]:
    """Istio HTTPMatchRequests for the A/B slice; entries are ORed, so header or cookie."""
    ab = rollout.ab
    if ab is None:
        return []
    # Header or cookie, a valid RE2-compatible cookie regex: the config's rules
    # (rules.ab_route_findings), already run on the checked Config.
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
    target: RouteTarget, subset: str, weight: int, port: int | None = None
) -> dict[str, Any]:
    return {
        "destination": {
            "host": target.host,
            "subset": subset,
            "port": {"number": port or target.port},
        },
        "weight": weight,
    }


def _rollout(model: ModelConfig) -> RolloutConfig:
    if model.rollout is None:
        raise StepError(f"model {model.name!r} has no rollout section; add rollout.hosts")
    return model.rollout
