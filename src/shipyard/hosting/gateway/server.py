"""The gateway process: its parts built from ``Settings``, started and stopped in order.

``shipyard gateway`` runs it alone; ``shipyard up`` runs it as a child process. It needs the
same DB, store and master key as the API (a key it does not find is an error, never made
anew: secrets sealed under another key could not be read), but none of the control plane.

Background threads, none on the request path: the routes poller (~250 ms), the traffic
flusher (~2 s: per-variant deltas into ``endpoint_traffic``, idle connections expired), the
capture writer, and a small pool for auth lookups and cold-start marks. On SIGTERM uvicorn
stops accepting and finishes the requests in flight, then the capture queue is written out
and the last traffic deltas added: a clean stop loses nothing that was acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import uvicorn
from prometheus_client import CollectorRegistry, ProcessCollector

from shipyard.config import Settings
from shipyard.db.engine import Database
from shipyard.events.service import EventService
from shipyard.hosting.gateway.app import GatewayApp
from shipyard.hosting.gateway.asyncinvoke import AsyncInference
from shipyard.hosting.gateway.auth import Authenticator
from shipyard.hosting.gateway.capture import CaptureWriter
from shipyard.hosting.gateway.protocol import GatewayHttpProtocol
from shipyard.hosting.gateway.stats import StatsRegistry
from shipyard.hosting.gateway.table import LiveEndpoint, LiveVariant, RoutePoller, RouteTable
from shipyard.hosting.gateway_repository import RouteRow, gateway_repository
from shipyard.kit.gcpause import freeze_startup_heap
from shipyard.kit.ids import utcnow
from shipyard.kit.ratelimit import SlidingWindow
from shipyard.security.keyring import MasterKey
from shipyard.security.service import IdentityService
from shipyard.security.tokens import AccessTokens
from shipyard.storage.backends import make_blob_store
from shipyard.storage.datakeys import DataKeys
from shipyard.storage.service import ArtifactService

log = logging.getLogger("shipyard.gateway")

TRAFFIC_FLUSH_S = 2.0
MAX_BODY_BYTES = 6 * 1024 * 1024  # SageMaker Runtime's limit for InvokeEndpoint
_WANTED_EVERY_S = 1.0  # a waiting variant is marked at most this often


class Gateway:
    """Owns the gateway's parts; ``app`` is what uvicorn serves."""

    def __init__(self, settings: Settings, *, port: int) -> None:
        if not settings.master_key and not settings.master_key_path.exists():
            raise FileNotFoundError(
                f"no master key at {settings.master_key_path}: start the API "
                "(`shipyard up` or `shipyard api`) on this home first, or set SHIPYARD_MASTER_KEY"
            )
        self.settings = settings
        self.gateway_id = f"{socket.gethostname()}:{port}"[:64]
        self.db = Database(settings.resolved_db_url)
        master = MasterKey(settings.master_key_path, settings.master_key)
        identity = IdentityService(
            master_key=master,
            access_tokens=AccessTokens(
                lambda: master.derive("access-tokens"), settings.access_token_ttl_s
            ),
            refresh_ttl_s=settings.refresh_token_ttl_s,
            default_key_ttl_days=settings.api_key_default_ttl_days,
            login_throttle=SlidingWindow(1, 1),  # the gateway logs nobody in
            cache_ttl_s=0,  # the authenticator keeps its own cache
        )
        self.artifacts = ArtifactService(
            blobs=make_blob_store(
                settings.resolved_store_url, s3_endpoint_url=settings.s3_endpoint_url
            ),
            data_keys=DataKeys(master),
            presign_secret=lambda: master.derive("presigned-urls"),
            max_upload_bytes=settings.max_upload_bytes,
        )
        self.stats = StatsRegistry()
        self.table = RouteTable(self.stats)
        self.auth = Authenticator(
            db=self.db,
            identity=identity,
            ttl_s=settings.gateway_auth_cache_ttl_s,
            rate=settings.gateway_rate_per_key,
            burst=settings.gateway_burst_per_key,
            key_limits=settings.gateway_key_limits,
        )
        self.capture = CaptureWriter(
            write=self._write_capture,
            max_records=settings.gateway_capture_queue_max,
            batch_records=settings.gateway_capture_batch_records,
            interval_s=settings.gateway_capture_interval_s,
        )
        self.async_inference = AsyncInference(
            db=self.db,
            artifacts=self.artifacts,
            events=EventService(master_key=master, identity=identity),
            table=self.table,
            poll_s=settings.gateway_async_poll_s,
            max_in_flight=settings.gateway_async_max_in_flight,
        )
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self.stats)
        ProcessCollector(registry=registry)
        self.app = GatewayApp(
            table=self.table,
            auth=self.auth,
            capture=self.capture,
            stats=self.stats,
            registry=registry,
            max_body_bytes=MAX_BODY_BYTES,
            model_timeout_s=settings.gateway_model_timeout_s,
            cold_start_wait_s=settings.gateway_cold_start_wait_s,
            mark_wanted=self._mark_wanted,
            startup=self.start,
            shutdown=self.stop,
            async_inference=self.async_inference,
        )
        self._poller: RoutePoller | None = None
        self._background = ThreadPoolExecutor(2, thread_name_prefix="gateway-bg")
        self._stop_flusher = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, name="gateway-traffic")
        self._wanted_at: dict[tuple[str, str], float] = {}
        self._capture_loop: asyncio.AbstractEventLoop | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- lifecycle (the app's lifespan) -------------------------------------------------

    async def start(self) -> None:
        loop = self._loop = asyncio.get_running_loop()

        def apply(found: tuple[list[RouteRow], set[str]] | None, number: int) -> None:
            if found is not None:
                self.table.apply(*found)
            self.table.read_done(number)

        def deliver(found: tuple[list[RouteRow], set[str]] | None, number: int) -> None:
            loop.call_soon_threadsafe(apply, found, number)

        poller = RoutePoller(self.db, deliver, self.settings.gateway_routes_poll_s)
        first = await loop.run_in_executor(self._background, poller.read)
        if first is not None:
            self.table.apply(*first)
        self.table.follow(poller.read_soon)
        self._poller = poller
        poller.start()
        self._flusher.start()
        self.capture.start()
        self.async_inference.start(self.app.forward_queued)
        freeze_startup_heap()
        log.info("gateway %s serving %d endpoints", self.gateway_id, len(self.table.endpoints))

    async def stop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._poller is not None:
            await loop.run_in_executor(None, self._poller.stop)
        await self.async_inference.stop()
        await loop.run_in_executor(None, self.capture.close)
        self._stop_flusher.set()
        await loop.run_in_executor(None, self._flusher.join, 10)
        for pool in self.table.pools():
            pool.close()
        self.auth.close()
        self._background.shutdown(wait=False)
        self.db.dispose()

    # --- background work ----------------------------------------------------------------

    def _flush_loop(self) -> None:
        while not self._stop_flusher.wait(TRAFFIC_FLUSH_S):
            self.flush_traffic()
        self.flush_traffic()

    def flush_traffic(self) -> None:
        """Add what each variant counted since the last flush (kept for later on failure)."""
        pending = self.stats.deltas()
        if pending:
            try:
                with self.db.transaction() as s:
                    gateway_repository.add_traffic(
                        s, self.gateway_id, [d for _, d in pending], utcnow()
                    )
            except Exception as exc:
                log.warning("traffic: cannot add counters (kept for the next try): %s", exc)
                return
            for stats, delta in pending:
                stats.mark_flushed(delta)
        self.stats.forget(self.table.live_ids())
        if self._loop is not None:  # pools belong to the event loop: expire them there
            with contextlib.suppress(RuntimeError):  # the loop has closed
                self._loop.call_soon_threadsafe(self._expire_idle)

    def _expire_idle(self) -> None:
        now = time.monotonic()
        for pool in self.table.pools():
            pool.expire_idle(now)

    def _mark_wanted(self, endpoint: LiveEndpoint, variant: LiveVariant) -> None:
        """From the loop: mark the variant wanted on a thread, at most once a second."""
        key = (endpoint.id, variant.name)
        now = time.monotonic()
        if now - self._wanted_at.get(key, -_WANTED_EVERY_S) < _WANTED_EVERY_S:
            return
        self._wanted_at[key] = now
        self._background.submit(self._write_wanted, endpoint.id, variant.name)

    def _write_wanted(self, endpoint_id: str, variant: str) -> None:
        try:
            with self.db.transaction() as s:
                gateway_repository.mark_wanted(s, self.gateway_id, endpoint_id, variant, utcnow())
        except Exception:
            log.exception("cold start: cannot mark %s/%s wanted", endpoint_id, variant)

    def _write_capture(self, project_id: str, path: str, data: bytes) -> None:
        """On the capture writer's thread, which runs its own event loop for the upload."""
        if self._capture_loop is None:
            self._capture_loop = asyncio.new_event_loop()

        self._capture_loop.run_until_complete(
            self.artifacts.put(
                self.db,
                project_id,
                ArtifactService.clean_path(path),
                data,
                content_type="application/x-ndjson",
                actor="gateway",
            )
        )


class _Server(uvicorn.Server):
    """A stop on SIGINT/SIGTERM is a clean exit (0), after the lifespan's shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self.handle_exit)
        yield


def serve(settings: Settings, *, host: str | None = None, port: int | None = None) -> None:
    """Run the gateway until SIGTERM or Ctrl-C."""
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    bind_host = host or settings.host
    bind_port = port or settings.resolved_gateway_port
    gateway = Gateway(settings, port=bind_port)
    config = uvicorn.Config(
        gateway.app,
        host=bind_host,
        port=bind_port,
        loop="uvloop",
        http=GatewayHttpProtocol,  # httptools, each response in one write
        lifespan="on",
        access_log=False,
        log_level=settings.log_level,
        server_header=False,
        timeout_keep_alive=60,
        timeout_graceful_shutdown=30,
        proxy_headers=False,  # no X-Forwarded-* rewriting: a middleware per request saved
    )
    # A background thread (capture writer, auth lookups) holding the GIL delays the event
    # loop by up to the switch interval: 1 ms instead of 5 bounds what that adds to a p99.
    sys.setswitchinterval(0.001)
    pinned = pin_cpus(settings.gateway_cpus)
    if pinned is not None:
        log.info("gateway pinned to CPUs %s", ",".join(map(str, sorted(pinned))))
    _Server(config).run()


def pin_cpus(spec: str) -> set[int] | None:
    """Run on the CPUs ``spec`` names (see ``Settings.gateway_cpus``); the set, or None."""
    available = sorted(os.sched_getaffinity(0))
    if spec == "all" or (spec == "auto" and len(available) < 2):
        return None
    if spec == "auto":
        chosen = {available[-1]}
    else:
        try:
            chosen = {int(part) for part in spec.split(",") if part.strip()}
        except ValueError:
            raise ValueError(f"SHIPYARD_GATEWAY_CPUS={spec!r}: use auto, all or e.g. 2,3") from None
    os.sched_setaffinity(0, chosen & set(available) or set(available))
    return chosen
