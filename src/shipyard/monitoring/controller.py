"""The monitoring controller: fires due schedules, runs pending executions, follows retraining.

Each pass, in every API process that runs controllers:

1. every enabled schedule whose ``next_run_at`` has come is moved on to its next cron time by
   a conditional update; the process whose update matched records an execution over the
   window that ends at the fire time (so two processes never run one tick twice);
2. pending executions (and running ones whose lease lapsed: their process died) are claimed
   one at a time with a lease and run (``runner.py``);
3. executions whose retraining job finished get its model registered.

The store's async API runs on this thread's own event loop.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from shipyard.db.engine import Database
from shipyard.kit.ids import as_utc, utcnow
from shipyard.kit.leases import new_owner_id, owner_is_dead
from shipyard.kit.loops import BackgroundLoop
from shipyard.monitoring.repository import monitoring_repository as repo
from shipyard.monitoring.runner import MonitoringRunner
from shipyard.monitoring.service import MonitoringService, next_run

log = logging.getLogger("shipyard.monitoring")


class MonitoringController(BackgroundLoop):
    def __init__(
        self,
        *,
        db: Database,
        service: MonitoringService,
        runner: MonitoringRunner,
        poll_s: float = 5.0,
        lease_s: float = 300.0,
    ) -> None:
        super().__init__("monitoring controller", log=log, poll_s=poll_s)
        self.db = db
        self.service = service
        self.runner = runner
        self.owner = new_owner_id()
        self._lease_s = lease_s
        self._events_loop: asyncio.AbstractEventLoop | None = None

    def run_once(self) -> float:
        if self._events_loop is None:
            self._events_loop = asyncio.new_event_loop()
        self.fire_due()
        while not self._stopping.is_set() and self._run_one():
            pass
        self._follow_retraining()
        return self.poll_s

    def stop(self, timeout_s: float = 60.0) -> None:
        super().stop(timeout_s)
        if self._events_loop is not None and not self._events_loop.is_running():
            self._events_loop.close()

    def fire_due(self) -> int:
        """Executions for the schedules whose time has come; how many were made."""
        now = utcnow()
        made = 0
        with self.db.transaction() as s:
            for schedule_id, seen in repo.due(s, now):
                schedule = repo.schedule_by_id(s, schedule_id)
                if schedule is None:
                    continue
                fired = as_utc(seen)
                if not repo.advance(s, schedule_id, seen, next_run(schedule.cron, now)):
                    continue  # another process fired it
                start = fired - timedelta(seconds=schedule.window_s)
                self.service.new_execution(s, schedule, start, fired, "schedule", "scheduler")
                made += 1
        return made

    def _run_one(self) -> bool:
        """Claim one runnable execution and run it; False when there was none."""
        now = utcnow()
        until = now + timedelta(seconds=self._lease_s)
        with self.db.transaction() as s:
            claimed = None
            for execution_id, owner in repo.runnable(s, now):
                steal = owner if owner_is_dead(owner) else None
                claimed = repo.claim(s, execution_id, self.owner, now, until, steal)
                if claimed is not None:
                    break
        if claimed is None:
            return False
        assert self._events_loop is not None
        try:
            self._events_loop.run_until_complete(self.runner.execute(claimed, self.owner))
        except Exception:
            log.exception("monitoring execution %s failed", claimed.id)
        return True

    def _follow_retraining(self) -> None:
        with self.db.read() as s:
            waiting = list(repo.awaiting_retrain(s))
        assert self._events_loop is not None
        for execution in waiting:
            try:
                self._events_loop.run_until_complete(self.runner.follow_retrain(execution))
            except Exception:
                log.exception("retraining of execution %s: cannot register", execution.id)
