"""Per-variant counters and latency histograms: plain attributes on the request path,
Prometheus families at scrape time, deltas for ``endpoint_traffic`` every few seconds.

prometheus_client's own Counter and Histogram take a lock and look up label children on
every call, a few microseconds a request; here the event loop's thread is the only writer
of request counters, so an increment is an attribute add and a histogram observation one
``bisect``. The scrape (``collect``) and the traffic flusher read them from other threads;
a read that lands between two increments is off by one for one interval, never lost.

Families (labels ``endpoint``, ``variant``), named after SageMaker's CloudWatch metrics:

    shipyard_gateway_invocations_total                 requests routed to the variant
    shipyard_gateway_invocation_4xx_errors_total       the model answered 4xx
    shipyard_gateway_invocation_5xx_errors_total       5xx from the model, a timeout, no replica
    shipyard_gateway_model_latency_seconds             histogram: the replica's answer time
    shipyard_gateway_overhead_latency_seconds          histogram: the gateway's own time
    shipyard_gateway_shadow_invocations_total          the same four for mirrored traffic
    shipyard_gateway_shadow_errors_total
    shipyard_gateway_shadow_latency_seconds
    shipyard_gateway_shadow_dropped_total              mirrors skipped (too many in flight)
    shipyard_gateway_capture_written_total             captured records stored
    shipyard_gateway_capture_dropped_total{reason}     queue_full | store
    shipyard_gateway_retries_total                     requests re-sent to another replica
    shipyard_gateway_rejected_total{endpoint, code}    refused before reaching a variant
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from shipyard.hosting.gateway_repository import TrafficDelta

MODEL_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
OVERHEAD_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
)  # fmt: skip


class Histogram:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative, as Prometheus wants them (``le`` is inclusive, as bisect_left)."""
        total, out = 0, []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(total)))
        return out


class VariantStats:
    """Everything counted for one variant of one endpoint (a shadow variant has its own)."""

    __slots__ = (
        "capture_dropped_full",
        "capture_dropped_store",
        "capture_written",
        "endpoint",
        "endpoint_id",
        "errors_4xx",
        "errors_5xx",
        "flushed",
        "invocations",
        "model",
        "overhead",
        "retries",
        "shadow",
        "shadow_dropped",
        "variant",
    )

    def __init__(self, endpoint_id: str, endpoint: str, variant: str, *, shadow: bool) -> None:
        self.endpoint_id = endpoint_id
        self.endpoint = endpoint
        self.variant = variant
        self.shadow = shadow
        self.invocations = 0
        self.errors_4xx = 0
        self.errors_5xx = 0
        self.retries = 0
        self.model = Histogram(MODEL_BUCKETS)
        self.overhead = Histogram(OVERHEAD_BUCKETS)
        self.shadow_dropped = 0
        self.capture_written = 0  # by the capture writer's thread
        self.capture_dropped_full = 0  # by the event loop
        self.capture_dropped_store = 0  # by the capture writer's thread
        self.flushed = (0, 0, 0, 0.0)  # what endpoint_traffic already has

    def pending_delta(self) -> TrafficDelta | None:
        """What happened since the last flush, or None if nothing did."""
        current = (self.invocations, self.errors_4xx, self.errors_5xx, self.model.sum)
        inv, e4, e5, latency = (now - then for now, then in zip(current, self.flushed, strict=True))
        if not (inv or e4 or e5):
            return None
        return TrafficDelta(self.endpoint_id, self.variant, int(inv), int(e4), int(e5), latency)

    def mark_flushed(self, delta: TrafficDelta) -> None:
        inv, e4, e5, latency = self.flushed
        self.flushed = (
            inv + delta.invocations,
            e4 + delta.errors_4xx,
            e5 + delta.errors_5xx,
            latency + delta.model_latency_s,
        )


class StatsRegistry:
    """Stats outlive route tables: a republished endpoint keeps counting where it was.

    Also the Prometheus collector of the gateway's registry (``describe`` and ``collect``).
    """

    def __init__(self) -> None:
        self.variants: dict[tuple[str, str, bool], VariantStats] = {}
        self.rejected: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def variant(self, endpoint_id: str, endpoint: str, variant: str, shadow: bool) -> VariantStats:
        key = (endpoint_id, variant, shadow)
        found = self.variants.get(key)
        if found is None:
            with self._lock:
                found = self.variants.setdefault(
                    key, VariantStats(endpoint_id, endpoint, variant, shadow=shadow)
                )
        return found

    def reject(self, endpoint: str, code: str) -> None:
        key = (endpoint, code)
        self.rejected[key] = self.rejected.get(key, 0) + 1

    def forget(self, live_endpoint_ids: set[str]) -> None:
        """Drop the stats of deleted endpoints (after their last flush has been taken)."""
        with self._lock:
            for key in [k for k, s in self.variants.items() if k[0] not in live_endpoint_ids]:
                stats = self.variants[key]
                if stats.pending_delta() is None:
                    del self.variants[key]

    def deltas(self) -> list[tuple[VariantStats, TrafficDelta]]:
        with self._lock:
            everything = list(self.variants.values())
        return [(s, d) for s in everything if (d := s.pending_delta()) is not None]

    # --- Prometheus -------------------------------------------------------------------

    def describe(self) -> Iterator[Metric]:
        return iter(())  # unchecked collector: families are built at scrape time

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            production = [s for s in self.variants.values() if not s.shadow]
            shadows = [s for s in self.variants.values() if s.shadow]
        yield from _production_families(production)
        yield from _shadow_families(shadows)
        yield from _capture_families([*production, *shadows])
        rejected = CounterMetricFamily(
            "shipyard_gateway_rejected",
            "Requests refused before reaching a variant, by error code.",
            labels=["endpoint", "code"],
        )
        for (endpoint, code), count in list(self.rejected.items()):
            rejected.add_metric([endpoint, code], count)
        yield rejected


def _counter(name: str, doc: str, stats: list[VariantStats], attr: str) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=["endpoint", "variant"])
    for s in stats:
        family.add_metric([s.endpoint, s.variant], getattr(s, attr))
    return family


def _histogram(name: str, doc: str, stats: list[VariantStats], attr: str) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=["endpoint", "variant"])
    for s in stats:
        histogram: Histogram = getattr(s, attr)
        family.add_metric([s.endpoint, s.variant], histogram.buckets(), histogram.sum)
    return family


def _production_families(stats: list[VariantStats]) -> Iterator[Metric]:
    prefix = "shipyard_gateway_"
    yield _counter(f"{prefix}invocations", "Requests routed to the variant.", stats, "invocations")
    yield _counter(f"{prefix}invocation_4xx_errors", "The model answered 4xx.", stats, "errors_4xx")
    yield _counter(
        f"{prefix}invocation_5xx_errors",
        "The model answered 5xx or timed out, or no replica was ready.",
        stats,
        "errors_5xx",
    )
    yield _histogram(
        f"{prefix}model_latency_seconds", "Time the replica took to answer.", stats, "model"
    )
    yield _histogram(
        f"{prefix}overhead_latency_seconds",
        "Time the gateway added (auth, routing, capture, metrics).",
        stats,
        "overhead",
    )
    yield _counter(
        f"{prefix}retries", "Requests re-sent to another replica of the variant.", stats, "retries"
    )


def _shadow_families(stats: list[VariantStats]) -> Iterator[Metric]:
    prefix = "shipyard_gateway_shadow_"
    yield _counter(f"{prefix}invocations", "Requests mirrored to the shadow.", stats, "invocations")
    errors = CounterMetricFamily(
        f"{prefix}errors", "Mirrored requests that failed.", labels=["endpoint", "variant"]
    )
    for s in stats:
        errors.add_metric([s.endpoint, s.variant], s.errors_4xx + s.errors_5xx)
    yield errors
    yield _histogram(f"{prefix}latency_seconds", "The shadow's answer time.", stats, "model")
    yield _counter(
        f"{prefix}dropped",
        "Mirrors skipped because too many were in flight.",
        stats,
        "shadow_dropped",
    )


def _capture_families(stats: list[VariantStats]) -> Iterator[Metric]:
    written = CounterMetricFamily(
        "shipyard_gateway_capture_written",
        "Captured records written to the store.",
        labels=["endpoint", "variant"],
    )
    dropped = CounterMetricFamily(
        "shipyard_gateway_capture_dropped",
        "Captured records dropped: queue_full (the writer is behind) or store (a write failed).",
        labels=["endpoint", "variant", "reason"],
    )
    for s in stats:
        written.add_metric([s.endpoint, s.variant], s.capture_written)
        dropped.add_metric([s.endpoint, s.variant, "queue_full"], s.capture_dropped_full)
        dropped.add_metric([s.endpoint, s.variant, "store"], s.capture_dropped_store)
    yield written
    yield dropped
