"""The job controller: claims unfinished jobs and drives each in its own thread.

Leases make it restartable (DESIGN §2). A controller claims a job by writing its owner id and
an expiry; it renews every job it drives; every write it makes names itself as the owner. A
controller that dies (``kill -9``) stops renewing, so its jobs become claimable when their
leases lapse — or at once, when the dead owner was a process on this same machine, which is
known for certain from its pid. The new owner ends what is left of the old attempt and resumes
the job from its last checkpoint; nothing stays "Running" forever.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from shipyard.jobs.execution import JobContext, run_execution
from shipyard.jobs.repository import job_repository as repo
from shipyard.kit.ids import utcnow
from shipyard.kit.leases import new_owner_id, owner_is_dead

log = logging.getLogger("shipyard.jobs")

CLAIM_BATCH = 32
IDLE_POLL_S = 1.0


class JobController:
    def __init__(self, ctx: JobContext, *, owner: str | None = None) -> None:
        self.ctx = ctx
        self.owner = owner or new_owner_id()
        self._lease = timedelta(seconds=ctx.settings.job_lease_s)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._running: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="job-controller", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """A job was submitted or asked to change: look now rather than at the next poll."""
        self._wake.set()

    def stop(self, timeout_s: float = 60.0) -> None:
        """Hand every job back (each ends its instances gently and keeps its checkpoints)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        with self._lock:
            threads = list(self._running.values())
        for thread in threads:
            thread.join(timeout_s)

    @property
    def active_jobs(self) -> list[str]:
        with self._lock:
            return list(self._running)

    # --- the loop ----------------------------------------------------------------------------

    def _loop(self) -> None:
        renew_every = max(0.2, self._lease.total_seconds() / 3)
        last_renew = 0.0
        while not self._stopping.is_set():
            try:
                self._claim()
                now = time.monotonic()
                if now - last_renew >= renew_every:
                    self._renew()
                    last_renew = now
            except Exception:  # the database may be briefly unreachable: try again
                log.exception("job controller: a pass failed")
            self._wake.wait(min(IDLE_POLL_S, renew_every))
            self._wake.clear()

    def _claim(self) -> None:
        now = utcnow()
        with self.ctx.db.read() as s:
            candidates = repo.claimable(s, now, CLAIM_BATCH)
        for job_id, holder in candidates:
            if job_id in self._running or holder == self.owner:
                continue
            steal = holder if owner_is_dead(holder) else None
            with self.ctx.db.transaction() as s:
                claimed = repo.claim(s, job_id, self.owner, now + self._lease, now, steal=steal)
            if claimed:
                self._spawn(job_id)

    def _spawn(self, job_id: str) -> None:
        thread = threading.Thread(
            target=run_execution,
            args=(self.ctx, job_id, self.owner, self._stopping, self._done),
            name=f"job-{job_id[:8]}",
            daemon=True,
        )
        with self._lock:
            self._running[job_id] = thread
        thread.start()

    def _done(self, job_id: str) -> None:
        with self._lock:
            self._running.pop(job_id, None)
        self._wake.set()

    def _renew(self) -> None:
        with self._lock:
            held = list(self._running)
        if not held:
            return
        with self.ctx.db.transaction() as s:
            still = repo.renew(s, self.owner, held, utcnow() + self._lease)
        for job_id in set(held) - still:
            log.warning("job controller: lost the lease of job %s", job_id)
