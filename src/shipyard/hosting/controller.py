"""The endpoint controller: claims endpoints and drives each in its own thread (``fleet.py``).

Leases make it restartable, exactly as the job controller's (DESIGN §2): a controller claims
an endpoint by writing its owner id and an expiry, renews what it drives, and every write
names itself as the owner. A controller killed with ``kill -9`` stops renewing; its
endpoints are adopted when the leases lapse — or at once when the dead owner was a process
on this machine (known from its pid). The adopter keeps the replicas that still answer and
replaces the others: one fleet per endpoint, never two.

It also runs promotions (``promotion.py``), one thread each; a promotion whose runner died
with its process (its heartbeat stopped) is marked Failed by the next controller.

On a clean stop every endpoint is handed back: its replicas are stopped (the gateway answers
503 until the platform is back) unless ``hosting_keep_replicas_on_stop`` says to leave them
serving for the next start to adopt.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from shipyard.hosting.fleet import EndpointDriver, HostingContext
from shipyard.hosting.promotion import PromotionRunner, fail_stale_promotions
from shipyard.hosting.repository import hosting_repository as repo
from shipyard.hosting.service import HostingService
from shipyard.kit.ids import utcnow
from shipyard.kit.leases import new_owner_id, owner_is_dead

log = logging.getLogger("shipyard.hosting")

CLAIM_BATCH = 256
IDLE_POLL_S = 1.0
STALE_SWEEP_S = 10.0


class EndpointController:
    def __init__(
        self, ctx: HostingContext, hosting: HostingService, *, owner: str | None = None
    ) -> None:
        self.ctx = ctx
        self.hosting = hosting
        self.owner = owner or new_owner_id()
        self._lease = timedelta(seconds=ctx.settings.hosting_lease_s)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._drivers: dict[str, tuple[threading.Thread, threading.Event]] = {}
        self._promotions: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="endpoint-controller", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """An endpoint was created or changed: look now rather than at the next poll."""
        self._wake.set()
        with self._lock:
            events = [event for _, event in self._drivers.values()]
        for event in events:
            event.set()

    def stop(self, timeout_s: float = 60.0) -> None:
        """Hand every endpoint back (stopping its replicas unless told to keep them)."""
        self._stopping.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout_s)
        with self._lock:
            threads = [thread for thread, _ in self._drivers.values()]
            threads += list(self._promotions.values())
        for thread in threads:
            thread.join(timeout_s)

    @property
    def active_endpoints(self) -> list[str]:
        with self._lock:
            return list(self._drivers)

    # --- promotions --------------------------------------------------------------------------

    def run_promotion(self, promotion_id: str) -> None:
        """Run a recorded promotion in its own thread (the API answered 202 already)."""
        runner = PromotionRunner(self.ctx, self.hosting, promotion_id, self._stopping)
        thread = threading.Thread(
            target=self._promote, args=(runner,), name=f"promote-{promotion_id[:8]}", daemon=True
        )
        with self._lock:
            self._promotions[promotion_id] = thread
        thread.start()

    def _promote(self, runner: PromotionRunner) -> None:
        try:
            runner.run()
        finally:
            with self._lock:
                self._promotions.pop(runner.promotion_id, None)

    # --- the loop ----------------------------------------------------------------------------

    def _loop(self) -> None:
        renew_every = max(0.2, self._lease.total_seconds() / 3)
        last_renew = last_sweep = 0.0
        while not self._stopping.is_set():
            try:
                self._claim()
                now = time.monotonic()
                if now - last_renew >= renew_every:
                    self._renew()
                    last_renew = now
                if now - last_sweep >= STALE_SWEEP_S:
                    fail_stale_promotions(self.ctx)
                    last_sweep = now
            except Exception:  # the database may be briefly unreachable: try again
                log.exception("endpoint controller: a pass failed")
            self._wake.wait(min(IDLE_POLL_S, renew_every))
            self._wake.clear()

    def _claim(self) -> None:
        now = utcnow()
        with self.ctx.db.read() as s:
            candidates = repo.claimable(s, now, CLAIM_BATCH)
        for endpoint_id, holder, lapsed in candidates:
            with self._lock:
                if endpoint_id in self._drivers:
                    continue
            if self._stopping.is_set():
                return
            # our own lease without a driver: the driver ended (an error) — take it again
            steal = holder if holder == self.owner or owner_is_dead(holder) else None
            if holder is not None and not lapsed and steal is None:
                continue  # a live controller drives it: no write needed to know that
            with self.ctx.db.transaction() as s:
                claimed = repo.claim(
                    s, endpoint_id, self.owner, now + self._lease, now, steal=steal
                )
            if claimed:
                self._spawn(endpoint_id)

    def _spawn(self, endpoint_id: str) -> None:
        wake = threading.Event()
        driver = EndpointDriver(self.ctx, endpoint_id, self.owner, self._stopping, wake)
        thread = threading.Thread(
            target=self._drive, args=(driver,), name=f"endpoint-{endpoint_id[:8]}", daemon=True
        )
        with self._lock:
            self._drivers[endpoint_id] = (thread, wake)
        thread.start()

    def _drive(self, driver: EndpointDriver) -> None:
        try:
            driver.run()
        except Exception:
            log.exception("endpoint %s: the driver failed", driver.endpoint_id)
            time.sleep(1.0)  # a driver that fails at once is not respawned in a busy loop
        finally:
            with self._lock:
                self._drivers.pop(driver.endpoint_id, None)
            self._wake.set()

    def _renew(self) -> None:
        held = self.active_endpoints
        if not held:
            return
        with self.ctx.db.transaction() as s:
            still = repo.renew(s, self.owner, held, utcnow() + self._lease)
        for endpoint_id in set(held) - still:
            log.warning("endpoint controller: lost the lease of endpoint %s", endpoint_id)
