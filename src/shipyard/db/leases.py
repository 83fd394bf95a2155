"""SQL shared by every table whose rows controllers take under leases (jobs, endpoints,
monitoring executions, queued invocations).

A controller reads a bounded window of candidate rows and tries to claim each. Rows it cannot
take now (held by a live owner under an unexpired lease) must not fill that window: ordered by
age alone, 32 running jobs kept the 33rd from ever being claimed. ``takeable_first`` orders the
rows a claim would succeed on ahead of the others; held rows follow, oldest first, so a dead
owner on this machine is still noticed when the window has room (else its lease lapses).
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, case


def takeable_first(takeable: ColumnElement[bool]) -> ColumnElement[int]:
    """An ORDER BY key: 0 for rows ``takeable`` now, 1 for the rest."""
    return case((takeable, 0), else_=1)
