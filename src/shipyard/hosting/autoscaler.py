"""Target-tracking autoscaling (DESIGN §5): how many replicas a variant should have.

Two metrics, as SageMaker's predefined ones: invocations per instance per minute (from the
``endpoint_traffic`` counters the gateways add to, summed over gateways, as a rate over a
sliding window) and CPU utilisation (from ``/proc/<pid>/stat`` of local replicas). For each
metric with a target, the count that would bring it to the target is
``ceil(total load / target per instance)``; the variant gets the largest such count, kept
between min and max. Within ``scale_out_cooldown_s`` of a scale-out only a larger one follows;
scale-in waits ``scale_in_cooldown_s`` after any scaling, so a burst is not followed by a
flap. Everything here is pure: the controller feeds it samples and clock readings.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from shipyard.hosting.schemas import ScalingPolicy

EPSILON = 1e-9


class RateMeter:
    """A cumulative counter's rate per minute over a sliding window."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, int]] = deque()
        self.last_increase: float | None = None

    def add(self, now: float, total: int) -> None:
        if self._samples and total > self._samples[-1][1]:
            self.last_increase = now
        if self._samples and total < self._samples[-1][1]:
            self._samples.clear()  # counters went back (rows deleted): start over
        self._samples.append((now, total))
        # keep one sample older than the window, so the rate spans the whole window
        while len(self._samples) > 2 and self._samples[1][0] <= now - self.window_s:
            self._samples.popleft()

    def per_minute(self) -> float | None:
        """None until the samples span a third of the window (at most 10 s, at least 1 s):
        a rate over a second or two of a young meter — a new endpoint, a controller that
        just took over — is mostly noise, and scaling on it overshoots."""
        if len(self._samples) < 2:
            return None
        (t0, n0), (t1, n1) = self._samples[0], self._samples[-1]
        if t1 - t0 < max(1.0, min(self.window_s / 3, 10.0)):
            return None
        return (n1 - n0) / (t1 - t0) * 60.0


class CpuMeter:
    """CPU utilisation of a set of processes, in percent of one core, from CPU-time samples."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, float]] = {}
        self.percent: dict[str, float] = {}

    def add(self, now: float, key: str, cpu_seconds: float | None) -> None:
        if cpu_seconds is None:
            self.forget(key)
            return
        previous = self._last.get(key)
        self._last[key] = (now, cpu_seconds)
        if previous is not None and now - previous[0] > 0:
            used = max(0.0, cpu_seconds - previous[1])
            self.percent[key] = used / (now - previous[0]) * 100.0

    def forget(self, key: str) -> None:
        self._last.pop(key, None)
        self.percent.pop(key, None)

    def total(self, keys: list[str]) -> float | None:
        known = [self.percent[k] for k in keys if k in self.percent]
        return sum(known) if known else None


def wanted_count(
    policy: ScalingPolicy,
    current: int,
    invocations_per_minute: float | None,
    cpu_percent_total: float | None,
) -> int:
    """The count that brings each targeted metric to its target, within [min, max]; the
    current count when no metric has a reading yet."""
    wants: list[int] = []
    target_inv = policy.target_invocations_per_instance_per_minute
    if target_inv is not None and invocations_per_minute is not None:
        wants.append(math.ceil(invocations_per_minute / target_inv - EPSILON))
    if policy.target_cpu_percent is not None and cpu_percent_total is not None:
        wants.append(math.ceil(cpu_percent_total / policy.target_cpu_percent - EPSILON))
    if not wants:
        return max(policy.min_instance_count, min(policy.max_instance_count, current))
    return max(policy.min_instance_count, min(policy.max_instance_count, max(wants)))


@dataclass
class Cooldowns:
    """When a variant last scaled out and in (monotonic seconds), and to how many."""

    last_out: float = field(default=-math.inf)
    last_in: float = field(default=-math.inf)
    out_to: int = 0

    def decide(self, policy: ScalingPolicy, current: int, wanted: int, now: float) -> int:
        """The count to set now: ``wanted`` if its cooldown allows, else ``current``.

        As Application Auto Scaling does, a scale-out cooldown holds back only scale-outs no
        larger than the last one: a load that keeps growing while the first replicas start
        gets more at once, rather than waiting out the cooldown at a count known too small.
        """
        if wanted > current:
            cooling = now - self.last_out < policy.scale_out_cooldown_s
            if not cooling or wanted > self.out_to:
                self.last_out, self.out_to = now, wanted
                return wanted
            return current
        last_scaling = max(self.last_in, self.last_out)
        if wanted < current and now - last_scaling >= policy.scale_in_cooldown_s:
            self.last_in = now
            return wanted
        return current
