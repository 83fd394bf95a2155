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
from datetime import datetime

from shipyard.hosting.fleet import EndpointDriver, HostingContext
from shipyard.hosting.promotion import PromotionRunner, fail_stale_promotions
from shipyard.hosting.repository import hosting_repository as repo
from shipyard.hosting.service import HostingService
from shipyard.kit.ids import utcnow
from shipyard.kit.leases import LeaseLoop, owner_is_dead

log = logging.getLogger("shipyard.hosting")

CLAIM_BATCH = 256
IDLE_POLL_S = 1.0
STALE_SWEEP_S = 10.0


class EndpointController(LeaseLoop):
    """Claims endpoints and drives each in a thread; the loop, leases and renewal are
    ``LeaseLoop``'s.

    Its own: ``wake()`` also wakes every driver (the change may be one of theirs); an
    endpoint it holds whose driver ended is taken again on the next pass (unlike the job
    controller; a driver that failed has waited a second first, see ``_drive``); and a pass
    also fails stale promotions, every ``STALE_SWEEP_S``.
    """

    def __init__(
        self, ctx: HostingContext, hosting: HostingService, *, owner: str | None = None
    ) -> None:
        super().__init__(
            "endpoint controller",
            log=log,
            kind="endpoint",
            lease_s=ctx.settings.hosting_lease_s,
            poll_s=IDLE_POLL_S,
            owner=owner,
        )
        self.ctx = ctx
        self.hosting = hosting
        self._drivers: dict[str, tuple[threading.Thread, threading.Event]] = {}
        self._promotions: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        self._last_sweep = 0.0

    # --- lifecycle ---------------------------------------------------------------------------

    def wake(self) -> None:
        """An endpoint was created or changed: look now rather than at the next poll."""
        super().wake()
        with self._lock:
            events = [event for _, event in self._drivers.values()]
        for event in events:
            event.set()

    def stop(self, timeout_s: float = 60.0) -> None:
        """Hand every endpoint back (stopping its replicas unless told to keep them)."""
        super().stop(timeout_s)
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

    # --- one pass ----------------------------------------------------------------------------

    def run_once(self) -> float:
        wait = super().run_once()  # claim, and renew when due
        self._sweep_stale_promotions()
        return wait

    def _sweep_stale_promotions(self) -> None:
        now = time.monotonic()
        if now - self._last_sweep >= STALE_SWEEP_S:
            fail_stale_promotions(self.ctx)
            self._last_sweep = now

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
            self._wake.set()  # the loop only: wake() would nudge every other driver too

    def _held(self) -> list[str]:
        return self.active_endpoints

    def _renew_leases(self, ids: list[str], until: datetime) -> set[str]:
        with self.ctx.db.transaction() as s:
            return repo.renew(s, self.owner, ids, until)
