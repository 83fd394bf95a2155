"""The gateway's in-process parts: capture batching, token buckets, the routing table."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from shipyard.hosting.gateway.auth import TokenBucket
from shipyard.hosting.gateway.capture import CaptureRecord, CaptureWriter
from shipyard.hosting.gateway.errors import model_error
from shipyard.hosting.gateway.stats import StatsRegistry
from shipyard.hosting.gateway.table import LiveEndpoint, RouteTable
from shipyard.hosting.gateway_repository import RouteRow
from shipyard.hosting.routes import CaptureRoute, EndpointRoute, ReplicaRoute, VariantRoute


def _endpoint(*variants: VariantRoute, capture: CaptureRoute | None = None) -> LiveEndpoint:
    table = RouteTable(StatsRegistry())
    route = EndpointRoute(
        name="churn",
        team_id="t",
        project_id="p",
        environment="dev",
        status="InService",
        variants=variants,
        capture=capture or CaptureRoute(enabled=True, sampling_percent=100, prefix="cap/churn"),
    )
    table.apply([RouteRow("e1", "churn", "InService", 1, route.to_json())], {"e1"})
    return table.endpoints["churn"]


def _variant(name: str, weight: float = 1.0, ports: tuple[int, ...] = (1,)) -> VariantRoute:
    replicas = tuple(ReplicaRoute(f"{name}-{p}", "127.0.0.1", p) for p in ports)
    return VariantRoute(name, weight, "m", "v1", replicas)


def _record(endpoint: LiveEndpoint, n: int) -> CaptureRecord:
    variant = endpoint.variants["A"]
    return CaptureRecord(
        f"id{n}", time.time(), endpoint, variant, b'{"x": 1}', b"application/json",
        b"\x00\x01", b"application/x-npy", 0.001, 0.0002, None,
    )  # fmt: skip


class Sink:
    def __init__(self, fail: bool = False) -> None:
        self.batches: list[tuple[str, str, bytes]] = []
        self.fail = fail
        self.lock = threading.Lock()

    def __call__(self, project_id: str, path: str, data: bytes) -> None:
        if self.fail:
            raise OSError("No space left on device")
        with self.lock:
            self.batches.append((project_id, path, data))

    def sizes(self) -> list[int]:
        with self.lock:
            return [data.count(b"\n") for _, _, data in self.batches]


def test_capture_writes_full_batches_under_steady_traffic() -> None:
    endpoint = _endpoint(_variant("A"))
    sink = Sink()
    writer = CaptureWriter(write=sink, max_records=10_000, batch_records=50, interval_s=60)
    writer.start()
    for n in range(520):  # a steady trickle: never "whatever is there" in tiny batches
        assert writer.offer(_record(endpoint, n))
        if n % 10 == 0:
            time.sleep(0.002)
    deadline = time.monotonic() + 5
    while sum(sink.sizes()) < 500 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sink.sizes() == [50] * 10  # the last 20 wait for the interval or the stop
    writer.close()
    assert sink.sizes() == [50] * 10 + [20]
    assert endpoint.variants["A"].stats.capture_written == 520


def test_capture_interval_writes_what_is_queued() -> None:
    endpoint = _endpoint(_variant("A"))
    sink = Sink()
    writer = CaptureWriter(write=sink, max_records=100, batch_records=1000, interval_s=0.2)
    writer.start()
    for n in range(7):
        writer.offer(_record(endpoint, n))
    deadline = time.monotonic() + 5
    while not sink.sizes() and time.monotonic() < deadline:
        time.sleep(0.02)
    writer.close()
    assert sink.sizes() == [7]
    project_id, path, data = sink.batches[0]
    assert project_id == "p"
    hour = time.strftime("%Y/%m/%d/%H", time.gmtime())
    assert path.startswith(f"cap/churn/A/{hour}/") and path.endswith(".jsonl")
    first = data.split(b"\n")[0]
    assert (
        b'"output":{"content_type":"application/x-npy","encoding":"base64","data":"AAE="}' in first
    )
    assert (
        b'"input":{"content_type":"application/json","encoding":"text","data":"{\\"x\\": 1}"}'
        in first
    )


def test_capture_queue_is_bounded_and_a_failing_store_drops_with_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    endpoint = _endpoint(_variant("A"))
    writer = CaptureWriter(write=Sink(fail=True), max_records=5, batch_records=2, interval_s=60)
    accepted = [writer.offer(_record(endpoint, n)) for n in range(8)]
    assert accepted == [True] * 5 + [False] * 3  # the writer is not even running yet
    writer.start()
    writer.close()
    stats = endpoint.variants["A"].stats
    assert stats.capture_dropped_store == 5 and stats.capture_written == 0
    failures = [r for r in caplog.records if "cannot write to the store" in r.getMessage()]
    assert len(failures) == 1


def test_token_bucket_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=10, burst=2)
    assert [bucket.take(), bucket.take()] == [0, 0]
    assert bucket.take() == 1  # empty: retry after a second (rounded up)
    time.sleep(0.12)
    assert bucket.take() == 0
    assert TokenBucket(rate=0, burst=0).take() == 0  # rate 0: unlimited


def test_weighted_choice_uses_variants_with_replicas_only() -> None:
    endpoint = _endpoint(_variant("A", 3), _variant("B", 1), _variant("C", 5, ports=()))
    assert [v.name for v in endpoint.weighted] == ["A", "B"]
    seen = {"A": 0, "B": 0}
    for _ in range(4000):
        seen[endpoint.choose().name] += 1  # type: ignore[union-attr]
    assert 0.70 < seen["A"] / 4000 < 0.80


def test_pick_skips_replicas_that_are_down_or_tried() -> None:
    variant = _endpoint(_variant("A", ports=(1, 2, 3))).variants["A"]
    first, second, third = variant.pools
    assert [variant.pick() for _ in range(3)] == [first, second, third]
    second.down_until = time.monotonic() + 10
    assert {id(variant.pick()) for _ in range(6)} == {id(first), id(third)}
    assert variant.pick(tried=(first, third)) is second  # down, but nothing else is left
    assert variant.pick(tried=(first, second, third)) is None


def test_unserved_statuses_and_deleted_rows_leave_the_table() -> None:
    table = RouteTable(StatsRegistry())
    route = EndpointRoute("a", "t", "p", "dev", "InService", (_variant("A"),)).to_json()
    table.apply([RouteRow("e1", "a", "InService", 1, route)], {"e1"})
    assert "a" in table.endpoints
    table.apply([RouteRow("e1", "a", "Failed", 2, route)], {"e1"})
    assert "a" not in table.endpoints
    table.apply([RouteRow("e1", "a", "RollingBack", 3, route)], {"e1"})
    assert "a" in table.endpoints
    table.apply([], set())
    assert table.endpoints == {} and table.pools() == []


def test_a_miss_waits_for_a_read_that_began_after_it() -> None:
    """The poller's read 1 was already under way (it may predate the endpoint); the lookup
    must wait for read 2, which brings the endpoint, and not settle for read 1."""
    route = EndpointRoute("new", "t", "p", "dev", "InService", (_variant("A"),)).to_json()
    requested: list[int] = []

    async def scenario() -> tuple[LiveEndpoint | None, LiveEndpoint | None, float]:
        table = RouteTable(StatsRegistry())
        loop = asyncio.get_running_loop()

        def request_read() -> int:
            requested.append(2)
            loop.call_later(0.05, table.read_done, 1)
            row = RouteRow("e1", "new", "InService", 1, route)
            loop.call_later(0.1, table.apply, [row], {"e1"})
            loop.call_later(0.1, table.read_done, 2)
            return 2

        table.follow(request_read)
        started = loop.time()
        found = await table.find("new")
        elapsed = loop.time() - started
        unknown = await table.find("nobody", timeout_s=0.2)  # no read comes: gives up
        return found, unknown, elapsed

    found, unknown, elapsed = asyncio.run(scenario())
    assert found is not None and found.name == "new"
    assert 0.09 <= elapsed < 1.0
    assert unknown is None and requested == [2, 2]


def test_model_error_carries_the_modeled_fields() -> None:
    reply = model_error("A", 400, "bad input", "arn:x").reply()
    headers: dict[bytes, Any] = dict(reply.headers)
    assert reply.status == 424 and headers[b"x-amzn-errortype"] == b"ModelError"
    assert (
        b'"OriginalStatusCode":400' in reply.body and b'"OriginalMessage":"bad input"' in reply.body
    )
