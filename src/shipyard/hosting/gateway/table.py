"""The in-memory routing table, and the poller that keeps it in step with the DB.

The endpoint controller publishes each endpoint's ``EndpointRoute`` in its row
(hosting/routes.py). A poller thread asks for every row's version every
``gateway_routes_poll_s`` (250 ms; one narrow query) and reads only the rows whose version
changed; the event loop then compiles them into ``LiveEndpoint`` objects (cumulative
weights, one connection pool per replica, header bytes) and swaps ``RouteTable.endpoints``
in one assignment. A request reads that dict once, so it sees one published generation
throughout, and never waits for the DB: when the DB is unreachable the gateway goes on
serving the last table it read.

The one exception is a name the table does not hold: the API may have put that endpoint in
service since the last poll, and a caller who saw ``InService`` expects to invoke it at once
(as on SageMaker). ``RouteTable.find`` then wakes the poller and waits, briefly, for a read
that began after the request arrived. Only authenticated callers get that far, and
concurrent misses share the poller's next read, so unknown names cost at most one narrow
query at a time (and at most one every 50 ms); they are throttled like any request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from bisect import bisect_right
from collections.abc import Callable, Collection
from dataclasses import dataclass

from shipyard.db.engine import Database
from shipyard.hosting.gateway.stats import StatsRegistry, VariantStats
from shipyard.hosting.gateway.upstream import ReplicaPool
from shipyard.hosting.gateway_repository import RouteRow, gateway_repository
from shipyard.hosting.routes import CaptureRoute, EndpointRoute, VariantRoute

log = logging.getLogger("shipyard.gateway")

SERVED_STATUSES = frozenset({"InService", "Updating", "RollingBack"})
MISS_WAIT_S = 2.0  # how long a request for an unknown name waits for a fresh read
MIN_READ_GAP_S = 0.05  # reads asked for by misses come at most this often
DOWN_FOR_S = 1.0  # a replica that refused or reset is skipped this long


class LiveVariant:
    """A variant ready to route to: its replicas' pools and its counters."""

    __slots__ = (
        "_next",
        "header",
        "max_concurrency",
        "model_version",
        "name",
        "pools",
        "serverless",
        "stats",
    )

    def __init__(self, route: VariantRoute, pools: tuple[ReplicaPool, ...], stats: VariantStats):
        self.name = route.name
        self.header = route.name.encode()
        self.model_version = route.model_version
        self.serverless = route.serverless
        self.max_concurrency = route.max_concurrency
        self.pools = pools
        self.stats = stats
        self._next = 0

    def pick(self, tried: Collection[ReplicaPool] = ()) -> ReplicaPool | None:
        """The next replica round-robin, skipping ones tried or recently down.

        With ``max_concurrency`` (serverless), the least busy replica under the limit.
        A replica that is down is still picked when nothing else is left to try.
        """
        pools = self.pools
        if self.max_concurrency:
            return self._least_busy(tried)
        count = len(pools)
        if count == 1 and not tried:
            return pools[0]
        now = time.monotonic()
        fallback = None
        for step in range(count):
            pool = pools[(self._next + step) % count]
            if pool in tried:
                continue
            if pool.down_until > now:
                fallback = fallback or pool
                continue
            self._next = (self._next + step + 1) % count
            return pool
        return fallback

    def _least_busy(self, tried: Collection[ReplicaPool]) -> ReplicaPool | None:
        open_ = [p for p in self.pools if p not in tried and p.in_flight < self.max_concurrency]
        return min(
            open_, key=lambda p: (p.down_until > time.monotonic(), p.in_flight), default=None
        )


@dataclass(slots=True, eq=False)
class LiveEndpoint:
    id: str
    name: str
    team_id: str
    project_id: str
    variants: dict[str, LiveVariant]
    weighted: tuple[LiveVariant, ...]  # variants with replicas, else serverless ones
    bounds: tuple[float, ...]  # cumulative weights of ``weighted``
    shadow: LiveVariant | None
    shadow_fraction: float
    capture: CaptureRoute
    capture_fraction: float  # 0 when capture is off
    log_stream: str  # LogStreamArn of ModelError answers

    def choose(self) -> LiveVariant | None:
        weighted = self.weighted
        if len(weighted) == 1:
            return weighted[0]
        if not weighted:
            return None
        bounds = self.bounds
        index = bisect_right(bounds, random.random() * bounds[-1])
        return weighted[min(index, len(weighted) - 1)]


class _Wakeup:
    """Wakes every coroutine waiting on it, once per ``fire`` (on the event loop)."""

    def __init__(self) -> None:
        self._future: asyncio.Future[None] | None = None

    def fire(self) -> None:
        future, self._future = self._future, None
        if future is not None and not future.done():
            future.set_result(None)

    async def wait(self, timeout_s: float) -> None:
        """Until the next ``fire`` or the timeout, whichever comes first."""
        if self._future is None or self._future.done():
            self._future = asyncio.get_running_loop().create_future()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._future), timeout_s)


class RouteTable:
    """``endpoints`` is replaced whole on every change; readers never see it half-built."""

    def __init__(self, stats: StatsRegistry) -> None:
        self.endpoints: dict[str, LiveEndpoint] = {}
        self._by_id: dict[str, LiveEndpoint] = {}
        self._pools: dict[tuple[str, str, int], ReplicaPool] = {}
        self._stats = stats
        self._changed = _Wakeup()
        self._request_read: Callable[[], int] | None = None
        self._reads_done = 0
        self._read = _Wakeup()

    def follow(self, request_read: Callable[[], int]) -> None:
        """Ask ``request_read`` for a fresh read on a miss; it returns the number that read
        will report to ``read_done``."""
        self._request_read = request_read

    def apply(self, rows: list[RouteRow], present: Collection[str]) -> None:
        """On the event loop: compile changed rows, drop deleted ones, swap, wake waiters."""
        by_id = {id_: live for id_, live in self._by_id.items() if id_ in present}
        for row in rows:
            live = self._compile(row)
            if live is None:
                by_id.pop(row.id, None)
            else:
                by_id[row.id] = live
        self._by_id = by_id
        self.endpoints = {live.name: live for live in by_id.values()}
        self._close_unused_pools()
        self._changed.fire()

    async def wait_changed(self, timeout_s: float) -> None:
        """Until the next ``apply`` or the timeout, whichever comes first."""
        await self._changed.wait(timeout_s)

    def read_done(self, number: int) -> None:
        """On the event loop: the poller's read ``number`` ended (applied, or failed)."""
        self._reads_done = number
        self._read.fire()

    async def find(self, name: str, timeout_s: float = MISS_WAIT_S) -> LiveEndpoint | None:
        """The endpoint named ``name``; if the table lacks it, once more after a read of the
        DB that began after this call (or ``timeout_s``, if the DB is slow)."""
        endpoint = self.endpoints.get(name)
        if endpoint is not None or self._request_read is None:
            return endpoint
        wanted = self._request_read()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self._reads_done < wanted and (remaining := deadline - loop.time()) > 0:
            await self._read.wait(remaining)
        return self.endpoints.get(name)

    def live_ids(self) -> set[str]:
        return set(self._by_id)

    def pools(self) -> list[ReplicaPool]:
        return list(self._pools.values())

    def _compile(self, row: RouteRow) -> LiveEndpoint | None:
        if row.status not in SERVED_STATUSES or not row.routes:
            return None
        try:
            route = EndpointRoute.from_json(row.routes)
        except (KeyError, TypeError, ValueError) as exc:
            log.error("endpoint %s: unreadable routes, not served: %s", row.name, exc)
            return None
        variants = {v.name: self._variant(row, v, shadow=False) for v in route.variants}
        ready = [v for v in route.variants if v.replicas and v.weight > 0]
        if not ready:
            ready = [v for v in route.variants if v.serverless and v.weight > 0]
        weighted = tuple(variants[v.name] for v in ready)
        bounds, total = [], 0.0
        for v in ready:
            total += v.weight
            bounds.append(total)
        capture = route.capture
        return LiveEndpoint(
            id=row.id,
            name=row.name,
            team_id=route.team_id,
            project_id=route.project_id,
            variants=variants,
            weighted=weighted,
            bounds=tuple(bounds),
            shadow=self._variant(row, route.shadow, shadow=True) if route.shadow else None,
            shadow_fraction=max(0.0, min(route.shadow_percent, 100.0)) / 100,
            capture=capture,
            capture_fraction=(
                max(0.0, min(capture.sampling_percent, 100.0)) / 100
                if capture.enabled and capture.prefix
                else 0.0
            ),
            log_stream=f"arn:shipyard:logs:::log-group:/shipyard/endpoints/{row.name}",
        )

    def _variant(self, row: RouteRow, route: VariantRoute, *, shadow: bool) -> LiveVariant:
        pools = []
        for replica in route.replicas:
            key = (replica.id, replica.host, replica.port)
            pool = self._pools.get(key)
            if pool is None:
                pool = self._pools[key] = ReplicaPool(replica.id, replica.host, replica.port)
            pools.append(pool)
        stats = self._stats.variant(row.id, row.name, route.name, shadow)
        return LiveVariant(route, tuple(pools), stats)

    def _close_unused_pools(self) -> None:
        used: set[int] = set()
        for live in self._by_id.values():
            for variant in (*live.variants.values(), live.shadow):
                if variant is not None:
                    used.update(id(pool) for pool in variant.pools)
        for key, pool in list(self._pools.items()):
            if id(pool) not in used:
                del self._pools[key]
                pool.close()


class RoutePoller:
    """A thread that reads changed endpoint rows and hands them to the loop: every
    ``interval_s``, or at once when ``read_soon`` asks."""

    def __init__(
        self,
        db: Database,
        deliver: Callable[[tuple[list[RouteRow], set[str]] | None, int], None],
        interval_s: float,
    ) -> None:
        self._db = db
        self._deliver = deliver
        self._interval = interval_s
        self._known: dict[str, int] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._begun = 0
        self._thread = threading.Thread(target=self._run, name="gateway-routes", daemon=True)
        self._failing = False

    def read(self) -> tuple[list[RouteRow], set[str]] | None:
        """The rows changed since the last read and every id present; None if none changed."""
        with self._db.read() as s:
            versions = gateway_repository.route_versions(s)
            changed = [id_ for id_, version in versions.items() if self._known.get(id_) != version]
            rows = gateway_repository.route_rows(s, changed)
        gone = self._known.keys() - versions.keys()
        if not rows and not gone:
            return None
        for id_ in gone:
            del self._known[id_]
        for row in rows:
            self._known[row.id] = row.row_version
        return rows, set(versions)

    def read_soon(self) -> int:
        """Wake the thread; the number of the first read that begins after this call."""
        with self._lock:
            number = self._begun + 1
        self._wake.set()
        return number

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(5)

    def _run(self) -> None:
        while True:
            self._wake.wait(self._interval)
            if self._stop.is_set():
                return
            self._wake.clear()
            with self._lock:
                self._begun += 1
                number = self._begun
            self._deliver(self._read_logged(), number)
            self._stop.wait(MIN_READ_GAP_S)

    def _read_logged(self) -> tuple[list[RouteRow], set[str]] | None:
        """``read``, or None while the DB cannot be read (logged once per outage)."""
        try:
            found = self.read()
        except Exception as exc:
            if not self._failing:
                log.warning("routes: cannot read the DB (serving the last table): %s", exc)
            self._failing = True
            return None
        if self._failing:
            log.info("routes: reading the DB again")
            self._failing = False
        return found
