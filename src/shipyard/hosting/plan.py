"""Pure parts of the endpoint controller: traffic-shift schedules, error rates, route tables.

A deployment (DESIGN §6) moves traffic from the serving fleet to the new one in steps; each
step is ``(share of traffic on the new fleet, seconds to watch before the next)``:

==============  ==========================================================================
all_at_once     100 % at once; no bake, no error watch (only a fleet that fails to start
                rolls back)
blue_green      100 % at once, then ``bake_s``
canary          ``canary_percent``, ``bake_s``; then 100 %, ``bake_s``
linear          ``linear_step_percent`` more every ``linear_interval_s``; 100 %, ``bake_s``
==============  ==========================================================================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from shipyard.hosting.routes import CaptureRoute, EndpointRoute, ReplicaRoute, VariantRoute
from shipyard.hosting.schemas import DeploymentPolicy, Strategy

ROUTE_NAME_CHARS = 63  # endpoint_traffic.variant


def traffic_steps(policy: DeploymentPolicy) -> list[tuple[float, float]]:
    if policy.strategy == Strategy.ALL_AT_ONCE:
        return [(1.0, 0.0)]
    if policy.strategy == Strategy.BLUE_GREEN:
        return [(1.0, policy.bake_s)]
    if policy.strategy == Strategy.CANARY:
        return [(policy.canary_percent / 100.0, policy.bake_s), (1.0, policy.bake_s)]
    steps: list[tuple[float, float]] = []
    share = 0.0
    while True:
        share = min(1.0, share + policy.linear_step_percent / 100.0)
        if share >= 1.0 - 1e-9:
            steps.append((1.0, policy.bake_s))
            return steps
        steps.append((share, policy.linear_interval_s))


def watches_errors(policy: DeploymentPolicy) -> bool:
    return policy.strategy != Strategy.ALL_AT_ONCE


Counters = Mapping[str, Sequence[int]]  # variant -> (invocations, 4xx, 5xx)


def error_rate(
    baseline: Counters, now: Counters, variants: Sequence[str]
) -> tuple[float, int, int]:
    """(rate, invocations, errors) of ``variants`` since ``baseline``; 4xx and 5xx both count."""
    calls = errors = 0
    for name in variants:
        before = baseline.get(name, (0, 0, 0))
        after = now.get(name, (0, 0, 0))
        calls += max(0, after[0] - before[0])
        errors += max(0, after[1] - before[1]) + max(0, after[2] - before[2])
    return (errors / calls if calls else 0.0), calls, errors


@dataclass(frozen=True)
class FleetVariant:
    """One variant of one fleet, as the route table shows it."""

    config: str
    name: str
    weight: float  # the config's initial weight
    model: str
    model_version: str
    replicas: tuple[ReplicaRoute, ...]
    serverless: bool = False
    max_concurrency: int = 0
    shadow: bool = False


def route_name(variant: FleetVariant, clashes: set[str]) -> str:
    """The variant's own name, or ``NAME@CONFIG`` while another fleet has the same name."""
    if variant.name not in clashes:
        return variant.name
    return f"{variant.name}@{variant.config}"[:ROUTE_NAME_CHARS]


def _shared(fleet: Sequence[FleetVariant], share: float, clashes: set[str]) -> list[VariantRoute]:
    total = sum(v.weight for v in fleet) or 1.0
    return [
        VariantRoute(
            name=route_name(v, clashes),
            weight=round(v.weight / total * share, 6),
            model=v.model,
            model_version=v.model_version,
            replicas=v.replicas,
            serverless=v.serverless,
            max_concurrency=v.max_concurrency,
        )
        for v in fleet
    ]


@dataclass(frozen=True)
class RouteInputs:
    name: str
    team_id: str
    project_id: str
    environment: str
    status: str
    capture: CaptureRoute
    shadow_percent: float


def build_route(
    inputs: RouteInputs,
    serving: Sequence[FleetVariant],
    new: Sequence[FleetVariant] = (),
    new_share: float = 0.0,
) -> EndpointRoute:
    """The route table of an endpoint whose ``new`` fleet takes ``new_share`` of traffic.

    The new fleet's variants keep their names; the serving fleet's variants that share a
    name with one of them are published as ``NAME@CONFIG`` meanwhile, so the gateway's
    per-variant counters (and the bake's error rate) never mix the two fleets.
    """
    old_prod = [v for v in serving if not v.shadow]
    new_prod = [v for v in new if not v.shadow] if new_share > 0 else []
    clashes = {v.name for v in new_prod} if new_prod else set()
    variants = _shared(old_prod, 1.0 - new_share, clashes) if new_share < 1.0 else []
    variants += _shared(new_prod, new_share, set())
    shadows = [v for v in (new if new_share >= 1.0 else serving) if v.shadow]
    shadow = _shared(shadows[:1], 1.0, set())[0] if shadows else None
    return EndpointRoute(
        name=inputs.name,
        team_id=inputs.team_id,
        project_id=inputs.project_id,
        environment=inputs.environment,
        status=inputs.status,
        variants=tuple(variants),
        shadow=shadow,
        shadow_percent=inputs.shadow_percent,
        capture=inputs.capture,
    )
