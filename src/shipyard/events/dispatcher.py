"""The webhook dispatcher: a background loop that delivers pending deliveries.

Like the job controller (DESIGN §2), it keeps nothing in memory that matters: deliveries are
rows. It claims due ones with a conditional update (a lease naming itself), so of several
API processes exactly one makes a given attempt; it records every attempt and either ends
the delivery (Delivered; Failed after ``webhook_max_attempts``, or at once on a redirect) or
schedules the next attempt with exponential backoff and jitter. A process that stops hands
back what it claimed; one that dies loses its leases when they lapse. On start it simply
reads what is due, so what was acknowledged before a restart is still delivered.

Each attempt re-checks the URL (the allow-list may have changed, the name may now resolve
elsewhere) and connects to the very address it checked, with the original Host header and
TLS server name: a name that resolves to a public address for the check and a private one
for the connection (DNS rebinding) gets nowhere. Redirects are never followed.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx

from shipyard.config import Settings
from shipyard.db.engine import Database
from shipyard.events import signing
from shipyard.events.models import Event, WebhookAttempt, WebhookDelivery, WebhookSubscription
from shipyard.events.repository import event_repository as repo
from shipyard.events.service import EventService
from shipyard.kit.ids import new_id, utcnow
from shipyard.kit.leases import new_owner_id
from shipyard.kit.loops import BackgroundLoop
from shipyard.kit.netguard import AllowList, CheckedTarget, IPAddress, UnsafeTarget, check_url
from shipyard.kit.tls import client_ssl_context

log = logging.getLogger("shipyard.events")

IDLE_POLL_S = 1.0
MIN_WAIT_S = 0.01
MAX_ADDRESSES = 3  # addresses of one name tried in turn when a connection is refused
MAX_ERROR = 1000


def backoff_s(attempt: int, base_s: float, max_s: float, rand: float | None = None) -> float:
    """The wait after failed attempt ``attempt`` (1-based): doubling from ``base_s`` up to
    ``max_s``, then "equal jitter" — between half and all of it — so receivers that
    recover are not hit by every retry at the same instant."""
    delay = min(max_s, base_s * 2.0 ** max(0, attempt - 1))
    jitter = random.random() if rand is None else rand
    return delay / 2 + jitter * delay / 2


@dataclass(frozen=True)
class Result:
    """How one attempt went."""

    status_code: int | None = None
    error: str = ""
    delivered: bool = False
    final: bool = False  # no retry, whatever attempts are left (a redirect)
    address: str = ""


class WebhookDispatcher(BackgroundLoop):
    """Claims due deliveries and makes their attempts on a pool; the loop is
    ``BackgroundLoop``'s.

    Not a ``LeaseLoop``: a claim is never renewed (its lease outlasts the longest attempt),
    and after a pass it sleeps until the next delivery is due rather than a fixed poll, so
    that retries with short backoffs are made on time. ``wake()`` when deliveries were
    committed, to look now rather than at the next poll.
    """

    def __init__(
        self,
        *,
        db: Database,
        events: EventService,
        settings: Settings,
        owner: str | None = None,
        workers: int = 8,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__("webhook dispatcher", log=log, poll_s=IDLE_POLL_S)
        self.db = db
        self.events = events
        self.settings = settings
        self.owner = owner or new_owner_id()
        self.workers = workers
        self._transport = transport
        timeout = settings.webhook_timeout_s
        self._lease = timedelta(seconds=(2 + MAX_ADDRESSES) * timeout + 10)
        self._lock = threading.Lock()
        self._inflight: set[str] = set()
        self._pool: ThreadPoolExecutor | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="webhook")
        super().start()

    def stop(self, timeout_s: float = 60.0) -> None:
        """Finish the attempts under way (each bounded by the timeout), hand back the rest."""
        super().stop(timeout_s)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            leftover = sorted(self._inflight)
            self._inflight.clear()
        if leftover:
            try:
                with self.db.transaction() as s:
                    repo.release(s, self.owner, leftover)
            except Exception:  # their leases lapse on their own
                log.exception(
                    "webhook dispatcher: could not hand back %d deliveries", len(leftover)
                )

    # --- one pass ----------------------------------------------------------------------------

    def run_once(self) -> float:
        self._claim()
        return self._idle_wait()

    def _free(self) -> int:
        with self._lock:
            return self.workers - len(self._inflight)

    def _claim(self) -> None:
        free = self._free()
        if free <= 0 or self._pool is None:
            return
        now = utcnow()
        with self.db.read() as s:
            due = repo.due(s, now, free)
        if not due:
            return
        with self.db.transaction() as s:
            claimed = [d for d in due if repo.claim(s, d, self.owner, now + self._lease, now)]
        for delivery_id in claimed:
            with self._lock:
                self._inflight.add(delivery_id)
            self._pool.submit(self._run, delivery_id)

    def _idle_wait(self) -> float:
        """Until the next delivery is due (retries with short backoffs), at most a poll."""
        if self._free() <= 0:
            return IDLE_POLL_S  # a finishing attempt wakes the loop
        with self.db.read() as s:
            due = repo.next_due(s)
        if due is None:
            return IDLE_POLL_S
        return min(IDLE_POLL_S, max(MIN_WAIT_S, (due - utcnow()).total_seconds()))

    def _run(self, delivery_id: str) -> None:
        try:
            self.deliver(delivery_id)
        except Exception:
            log.exception("webhook dispatcher: delivery %s failed unexpectedly", delivery_id)
        finally:
            with self._lock:
                self._inflight.discard(delivery_id)
            self.wake()

    # --- one attempt -------------------------------------------------------------------------

    def deliver(self, delivery_id: str) -> None:
        """Make the next attempt of a delivery this dispatcher holds, and record it."""
        with self.db.read() as s:
            found = repo.bundle(s, delivery_id)
            if found is None:
                return
            delivery, subscription, event = found
            if delivery.state != "Pending" or delivery.lease_owner != self.owner:
                return
            allow = self.events.allow_list(s)
        number = delivery.attempts + 1
        started_at, started = utcnow(), time.monotonic()
        if subscription.deleted_at is not None:
            result = Result(error="the webhook was deleted", final=True)
        else:
            try:
                result = self._attempt(delivery, subscription, event, allow)
            except Exception as exc:  # counted like any failure, never retried forever
                log.exception("webhook delivery %s: the attempt failed", delivery_id)
                result = Result(error=f"internal error: {_describe(exc)}")
        duration_ms = int((time.monotonic() - started) * 1000)
        self._record(delivery.id, number, result, started_at, duration_ms)

    def _attempt(
        self,
        delivery: WebhookDelivery,
        subscription: WebhookSubscription,
        event: Event,
        allow: AllowList,
    ) -> Result:
        try:
            checked = check_url(subscription.url, allow=allow, resolve=self.events.resolve)
        except UnsafeTarget as exc:
            return Result(error=f"refused: {exc.reason}")
        body = self.events.body_of(event)
        headers = signing.headers(
            event_type=event.type,
            delivery_id=delivery.id,
            timestamp=int(time.time()),
            secret=self.events.secret_of(subscription),
            body=body,
        )
        return self._post(checked, headers, body)

    def _post(self, checked: CheckedTarget, headers: dict[str, str], body: bytes) -> Result:
        target = checked.target
        extensions: dict[str, Any] = {}
        if target.scheme == "https" and target.address is None:
            extensions["sni_hostname"] = target.host
        error = ""
        for ip in checked.addresses[:MAX_ADDRESSES]:
            try:
                status, location = self._send(
                    target.url_for(ip), target.host_header, headers, body, extensions
                )
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                error = f"could not connect to {ip}: {_describe(exc)}"
                continue  # another address of the name may answer
            except httpx.HTTPError as exc:
                return Result(error=_describe(exc), address=str(ip))
            return _judge(status, location, ip)
        return Result(error=error or "no address to connect to")

    def _send(
        self,
        url: str,
        host: str,
        headers: dict[str, str],
        body: bytes,
        extensions: dict[str, Any],
    ) -> tuple[int, str]:
        """POST to an address; a fresh client each time, so no pooled connection made for
        one host name is ever reused for another with the same address."""
        with httpx.Client(
            timeout=self.settings.webhook_timeout_s,
            follow_redirects=False,
            trust_env=False,  # a proxy from the environment would resolve the name itself
            verify=client_ssl_context(trust_env=False),
            transport=self._transport,
        ) as client:
            request = client.build_request(
                "POST", url, content=body, headers={**headers, "Host": host}, extensions=extensions
            )
            response = client.send(request, stream=True)
            response.close()  # the body is not needed; do not read an unbounded one
            return response.status_code, response.headers.get("location", "")

    def _record(
        self, delivery_id: str, number: int, result: Result, started_at: datetime, duration_ms: int
    ) -> None:
        now = utcnow()
        settings = self.settings
        next_at: datetime | None = None
        if result.delivered:
            state = "Delivered"
        elif result.final or number >= settings.webhook_max_attempts:
            state = "Failed"
        else:
            state = "Pending"
            wait = backoff_s(number, settings.webhook_backoff_s, settings.webhook_backoff_max_s)
            next_at = now + timedelta(seconds=wait)
        error = result.error[:MAX_ERROR]
        last_error = error
        if state == "Failed" and not result.final:
            last_error = f"{error} (gave up after {number} attempts)"
        values = {
            "state": state,
            "attempts": number,
            "next_attempt_at": next_at,
            "last_status_code": result.status_code,
            "last_error": last_error,
            "lease_owner": None,
            "lease_until": None,
            "finished_at": None if state == "Pending" else now,
        }
        with self.db.transaction() as s:
            if not repo.write_held(s, delivery_id, self.owner, values):
                log.warning("webhook delivery %s: the lease lapsed during the attempt", delivery_id)
                return
            repo.add(
                s,
                WebhookAttempt(
                    id=new_id(),
                    delivery_id=delivery_id,
                    number=number,
                    started_at=started_at,
                    duration_ms=duration_ms,
                    status_code=result.status_code,
                    error=error,
                    next_attempt_at=next_at,
                    address=result.address,
                ),
            )
        if state != "Delivered":
            log.info("webhook delivery %s attempt %d: %s", delivery_id, number, error or state)


def _judge(status: int, location: str, ip: IPAddress) -> Result:
    if 200 <= status < 300:
        return Result(status_code=status, delivered=True, address=str(ip))
    if 300 <= status < 400:
        where = f" to {location[:200]}" if location else ""
        return Result(
            status_code=status,
            error=f"redirect refused (HTTP {status}{where}); webhooks never follow redirects",
            final=True,
            address=str(ip),
        )
    return Result(status_code=status, error=f"HTTP {status}", address=str(ip))


def _describe(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"
