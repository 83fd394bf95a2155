"""Hold a child process to what its instance type grants: these CPUs, at most this memory.

The limits must hold from the child's first instruction, so they cannot be applied from the
parent after the spawn (the child may already have run: a job printed its affinity before the
parent pinned it) and not with ``preexec_fn`` either (a server has threads, and forking a
threaded process may deadlock in the child). ``confined`` puts a small launcher in front of
the command instead: a bare interpreter (``-I -S``: no site, no environment, ~10 ms) that
applies both limits to itself and then ``exec``s the command, which keeps them, as does
whatever it starts later. Memory is capped with RLIMIT_AS, so an allocation past the cap fails
in the process that asked (Python's ``MemoryError``) instead of the kernel's OOM killer picking
a victim on the whole machine.
"""

from __future__ import annotations

import sys
from collections.abc import Collection, Sequence
from typing import Final

# Exit status of the launcher when the limits cannot be applied or the command cannot start
# (the reason is its last line on stderr, which is the instance's log).
CANNOT_CONFINE: Final = 126

_LAUNCHER: Final = f"""\
import os, resource, sys
cpus, memory, command = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
try:
    if cpus:
        os.sched_setaffinity(0, [int(cpu) for cpu in cpus.split(",")])
    if memory >= 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    os.execvp(command[0], command)
except (OSError, ValueError) as exc:
    sys.stderr.write(f"cannot start {{command[0]}} with its limits: {{exc}}\\n")
    sys.exit({CANNOT_CONFINE})
"""


def confined(command: Sequence[str], cpus: Collection[int], memory_bytes: int | None) -> list[str]:
    """``command``, pinned to ``cpus`` (if any) and with its address space capped at
    ``memory_bytes`` (if given) before it runs."""
    if not command:
        raise ValueError("an empty command")
    memory = -1 if memory_bytes is None else memory_bytes
    pinned = ",".join(str(cpu) for cpu in sorted(cpus))
    return [sys.executable, "-I", "-S", "-c", _LAUNCHER, pinned, str(memory), *command]
