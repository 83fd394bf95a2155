"""Who holds a lease: owner ids that name their host and process, dead-owner detection, and
the loop of a controller that drives rows under leases.

A controller (jobs, endpoints) claims a row by writing its owner id and an expiry. A process
that dies with ``kill -9`` stops renewing, so its rows become claimable when the lease lapses
— or at once when the dead owner was a process on this same machine, which is known for
certain from its pid.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from abc import abstractmethod
from datetime import datetime, timedelta

from shipyard.kit.ids import utcnow
from shipyard.kit.loops import BackgroundLoop

MIN_RENEW_S = 0.2  # a very short lease (tests) is not renewed in a busy loop


def new_owner_id() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"


def owner_is_dead(owner: str | None) -> bool:
    """True when ``owner`` was a process on this machine that no longer exists."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname()[:40] or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False  # ourselves in an earlier life only if the id differs; see claim()
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class LeaseLoop(BackgroundLoop):
    """A controller's loop: claim free rows each pass, renew the ones it drives in time.

    Renewal runs on the first pass and then every third of a lease, so two renewals in a row
    may fail (the database away for a moment) before a lease lapses; the loop never sleeps
    longer than that cadence. A renewal that fails is retried on the next pass.

    What is claimable, and whose lease may be taken before it lapses, differs per table and
    matters (the endpoint controller retakes its own rows whose driver ended; the job
    controller must not), so ``_claim()`` is the subclass's, as is the SQL behind
    ``_renew_leases()``. ``owner`` names this loop in every write it makes.
    """

    def __init__(
        self,
        name: str,
        *,
        log: logging.Logger,
        kind: str,
        lease_s: float,
        poll_s: float,
        owner: str | None = None,
    ) -> None:
        self.owner = owner or new_owner_id()
        self._kind = kind
        self._lease = timedelta(seconds=lease_s)
        self._renew_every = max(MIN_RENEW_S, self._lease.total_seconds() / 3)
        self._last_renew = 0.0
        super().__init__(name, log=log, poll_s=min(poll_s, self._renew_every))

    @abstractmethod
    def _claim(self) -> None:
        """Claim what is claimable and start driving it."""

    @abstractmethod
    def _held(self) -> list[str]:
        """The ids of the rows this loop drives now."""

    @abstractmethod
    def _renew_leases(self, ids: list[str], until: datetime) -> set[str]:
        """Extend the leases on ``ids`` to ``until``; the ids whose lease this owner still held."""

    def run_once(self) -> float:
        self._claim()
        now = time.monotonic()
        if now - self._last_renew >= self._renew_every:
            self._renew()
            self._last_renew = now
        return self.poll_s

    def _renew(self) -> None:
        held = self._held()
        if not held:
            return
        still = self._renew_leases(held, utcnow() + self._lease)
        for row_id in set(held) - still:
            self._log.warning("%s: lost the lease of %s %s", self.name, self._kind, row_id)
