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
from datetime import datetime

from shipyard.jobs.execution import JobContext, run_execution
from shipyard.jobs.repository import job_repository as repo
from shipyard.kit.ids import utcnow
from shipyard.kit.leases import LeaseLoop, owner_is_dead

log = logging.getLogger("shipyard.jobs")

CLAIM_BATCH = 32
IDLE_POLL_S = 1.0


class JobController(LeaseLoop):
    """Claims jobs and runs each in a thread; the loop, leases and renewal are ``LeaseLoop``'s.

    ``wake()`` when a job is submitted or asked to change, to look now rather than at the next
    poll. Only a dead owner's lease is taken before it lapses, never our own (unlike the
    endpoint controller): a job we hold without a thread is one whose execution just ended or
    could not start, and this process does not start it again.
    """

    def __init__(self, ctx: JobContext, *, owner: str | None = None) -> None:
        super().__init__(
            "job controller",
            log=log,
            kind="job",
            lease_s=ctx.settings.job_lease_s,
            poll_s=IDLE_POLL_S,
            owner=owner,
        )
        self.ctx = ctx
        self._running: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    # --- lifecycle ---------------------------------------------------------------------------

    def stop(self, timeout_s: float = 60.0) -> None:
        """Hand every job back (each ends its instances gently and keeps its checkpoints)."""
        super().stop(timeout_s)
        with self._lock:
            threads = list(self._running.values())
        for thread in threads:
            thread.join(timeout_s)

    @property
    def active_jobs(self) -> list[str]:
        with self._lock:
            return list(self._running)

    # --- one pass (LeaseLoop.run_once) -------------------------------------------------------

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
        self.wake()

    def _held(self) -> list[str]:
        return self.active_jobs

    def _renew_leases(self, ids: list[str], until: datetime) -> set[str]:
        with self.ctx.db.transaction() as s:
            return repo.renew(s, self.owner, ids, until)
