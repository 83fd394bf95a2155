"""Hold a child process to what its instance type grants: these CPUs, at most this memory.

Applied from the parent right after the spawn (no ``preexec_fn``: a server has threads, and
forking a threaded process may deadlock in the child); whatever the child starts later
inherits both. Memory is capped with RLIMIT_AS, so an allocation past the cap fails in the
process that asked (Python's ``MemoryError``) instead of the kernel's OOM killer picking a
victim on the whole machine.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Collection


def confine(pid: int, cpus: Collection[int], memory_bytes: int | None) -> None:
    """Pin ``pid`` to ``cpus`` (if any) and cap its address space (if ``memory_bytes``)."""
    if cpus:
        os.sched_setaffinity(pid, cpus)
    if memory_bytes is not None:
        resource.prlimit(pid, resource.RLIMIT_AS, (memory_bytes, memory_bytes))
