"""Pure parts of the endpoint controller: traffic steps, error rates, route tables, scaling."""

from __future__ import annotations

import math

import pytest

from shipyard.hosting import plan
from shipyard.hosting.autoscaler import Cooldowns, CpuMeter, RateMeter, wanted_count
from shipyard.hosting.routes import CaptureRoute, EndpointRoute, ReplicaRoute
from shipyard.hosting.schemas import DeploymentPolicy, ScalingPolicy, Strategy


@pytest.mark.parametrize(
    ("policy", "steps"),
    [
        (DeploymentPolicy(strategy=Strategy.ALL_AT_ONCE, bake_s=30), [(1.0, 0.0)]),
        (DeploymentPolicy(strategy=Strategy.BLUE_GREEN, bake_s=30), [(1.0, 30.0)]),
        (
            DeploymentPolicy(strategy=Strategy.CANARY, canary_percent=10, bake_s=5),
            [(0.1, 5.0), (1.0, 5.0)],
        ),
        (
            DeploymentPolicy(
                strategy=Strategy.LINEAR, linear_step_percent=40, linear_interval_s=2, bake_s=9
            ),
            [(0.4, 2.0), (0.8, 2.0), (1.0, 9.0)],
        ),
    ],
)
def test_traffic_steps(policy: DeploymentPolicy, steps: list[tuple[float, float]]) -> None:
    got = plan.traffic_steps(policy)
    assert [(round(a, 6), b) for a, b in got] == steps
    assert plan.watches_errors(policy) == (policy.strategy != Strategy.ALL_AT_ONCE)


def test_error_rate_counts_4xx_and_5xx_since_the_baseline() -> None:
    baseline = {"AllTraffic": (100, 1, 1), "old@a": (50, 0, 0)}
    now = {"AllTraffic": (120, 3, 5), "old@a": (80, 10, 10)}
    rate, calls, errors = plan.error_rate(baseline, now, ["AllTraffic"])
    assert (calls, errors) == (20, 6) and rate == pytest.approx(0.3)
    assert plan.error_rate({}, {}, ["AllTraffic"]) == (0.0, 0, 0)


def _variant(config: str, name: str, weight: float, *ports: int) -> plan.FleetVariant:
    replicas = tuple(ReplicaRoute(f"{config}-{p}", "127.0.0.1", p) for p in ports)
    return plan.FleetVariant(config, name, weight, "m", "v1", replicas)


INPUTS = plan.RouteInputs("ep", "t", "p", "dev", "Updating", CaptureRoute(), 100.0)


def test_a_route_splits_traffic_between_fleets_and_keeps_names_apart() -> None:
    old = [_variant("a", "AllTraffic", 1, 1), _variant("a", "b", 3, 2)]
    new = [_variant("c", "AllTraffic", 1, 3)]
    route = plan.build_route(INPUTS, old, new, 0.25)
    weights = {v.name: v.weight for v in route.variants}
    assert weights == {"AllTraffic@a": 0.1875, "b": 0.5625, "AllTraffic": 0.25}
    assert math.isclose(sum(weights.values()), 1.0)
    assert EndpointRoute.from_json(route.to_json()) == route  # the gateway's contract
    only_new = plan.build_route(INPUTS, old, new, 1.0)
    assert [(v.name, v.weight) for v in only_new.variants] == [("AllTraffic", 1.0)]
    only_old = plan.build_route(INPUTS, old, new, 0.0)
    assert [v.name for v in only_old.variants] == ["AllTraffic", "b"]


def test_rate_meter_reads_a_rate_over_its_window() -> None:
    meter = RateMeter(window_s=10)
    assert meter.per_minute() is None
    for second in range(0, 21):
        meter.add(float(second), second * 5)  # 5 per second
    assert meter.per_minute() == pytest.approx(300.0)
    assert meter.last_increase == 20.0
    meter.add(21.0, 0)  # counters restarted: start over, no negative rate
    assert meter.per_minute() is None
    meter.add(22.0, 5)
    assert meter.per_minute() is None  # a second of samples: too young to trust
    meter.add(25.0, 20)
    assert meter.per_minute() == pytest.approx(300.0)  # a third of the window: a rate


def test_cpu_meter() -> None:
    cpu = CpuMeter()
    cpu.add(0.0, "r1", 1.0)
    cpu.add(2.0, "r1", 2.0)
    cpu.add(2.0, "r2", 0.0)
    assert cpu.total(["r1", "r2"]) == pytest.approx(50.0)
    cpu.forget("r1")
    assert cpu.total(["r1"]) is None


POLICY = ScalingPolicy(
    min_instance_count=1,
    max_instance_count=4,
    target_invocations_per_instance_per_minute=60,
    target_cpu_percent=50,
    scale_out_cooldown_s=10,
    scale_in_cooldown_s=30,
)


@pytest.mark.parametrize(
    ("rate", "cpu", "want"),
    [(None, None, 2), (0, None, 1), (150, None, 3), (10_000, None, 4), (60, 180, 4), (0, 40, 1)],
)
def test_target_tracking(rate: float | None, cpu: float | None, want: int) -> None:
    assert wanted_count(POLICY, 2, rate, cpu) == want


def test_cooldowns_hold_back_flapping() -> None:
    cooldowns = Cooldowns()
    assert cooldowns.decide(POLICY, 1, 3, now=100.0) == 3
    assert cooldowns.decide(POLICY, 2, 3, now=105.0) == 2  # cooling: no larger than the last
    assert cooldowns.decide(POLICY, 3, 4, now=106.0) == 4  # a larger scale-out goes at once
    assert cooldowns.decide(POLICY, 3, 4, now=110.0) == 3  # cooling again from 106
    assert cooldowns.decide(POLICY, 3, 4, now=116.0) == 4
    assert cooldowns.decide(POLICY, 4, 1, now=130.0) == 4  # scale-in waits after any scaling
    assert cooldowns.decide(POLICY, 4, 1, now=146.0) == 1
