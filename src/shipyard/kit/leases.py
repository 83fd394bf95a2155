"""Who holds a lease: owner ids that name their host and process, and dead-owner detection.

A controller (jobs, endpoints) claims a row by writing its owner id and an expiry. A process
that dies with ``kill -9`` stops renewing, so its rows become claimable when the lease lapses
— or at once when the dead owner was a process on this same machine, which is known for
certain from its pid.
"""

from __future__ import annotations

import os
import secrets
import socket


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
