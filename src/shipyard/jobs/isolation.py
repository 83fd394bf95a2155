"""Network isolation for the instances of a training job (Linux namespaces).

A job with ``network_isolation=True`` runs its user code with no network except its peers:
the other instances of the same job. Locally every instance is a process group on this
machine and the instances talk over loopback (``MASTER_ADDR=127.0.0.1``), so a job gets one
fresh network namespace in which only ``lo`` is up, and every instance joins it. Inside,
127.0.0.1 is the namespace's own loopback: the platform API on the host's 127.0.0.1:8080 and
every other interface of the host are out of reach, while the peers still reach each other.
The platform fetches inputs and uploads outputs from outside the namespace.

How: ``JobNetwork`` starts a small holder process with
``unshare --user --map-root-user --net -- python <holder>``; the holder brings ``lo`` up
(``SIOCSIFFLAGS`` ioctl, so iproute2 is not needed), says ``ready`` and then blocks on its
stdin until it is killed or the platform goes away (the pipe closes). Instances are started
with ``prefix()`` in front of their command: ``nsenter --user=… --net=… --preserve-credentials
--``, which joins the namespaces and then execs the command, so the instance's pid is the user
process itself and ``InstanceProcess`` signals, limits and logs it unchanged.

Why a user namespace even as root: a root process that only sits in a new network namespace
still holds ``CAP_SYS_ADMIN`` on the host and can ``setns`` back into any host process's
network namespace (``nsenter --net=/proc/<pid>/ns/net``) and reach the platform. Inside its
own user namespace it is root only there: it may configure its own ``lo``, but not join a
namespace owned by the host. Unprivileged, the user namespace is what allows creating the
network namespace at all. Either way the command is the same.

Why ``/proc/<our pid>/fd/<n>`` rather than ``nsenter --target <holder pid>``: the platform
keeps the namespaces open as file descriptors from the moment they are made, so the prefix
names exactly this job's namespaces for as long as the ``JobNetwork`` is open. A pid could
be reused by an unrelated host process if the holder died, and ``nsenter`` would then join
*that* process's network, i.e. run unisolated; a closed descriptor makes ``nsenter`` fail
instead, and the instance never starts.

Where isolation cannot be set up (not Linux, a tool missing, user namespaces disabled) the
job is refused with ``NetworkIsolationUnavailable``; it never runs unisolated.

Not covered by a network namespace: Unix sockets bound to a *path* in the filesystem (they
belong to the file system, not to the network namespace); keep platform sockets out of the
paths a job can see.
"""

from __future__ import annotations

import functools
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from types import TracebackType

# Runs inside the new namespaces as "python -I -S -c": isolated mode (ignores PYTHON* vars and
# the user site) and no ``site`` import: it starts fast and needs nothing but the stdlib.
_HOLDER = """\
import fcntl, socket, struct, sys
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP, IFREQ = 0x8913, 0x8914, 0x1, "16sH22x"
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    got = fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack(IFREQ, b"lo", 0))
    flags = struct.unpack(IFREQ, got)[1]
    fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack(IFREQ, b"lo", flags | IFF_UP))
sys.stdout.write("ready\\n")
sys.stdout.flush()
sys.stdin.buffer.read()
"""

# Printed by the self-test of ``check_available`` from inside: the network namespace's inode.
_PROBE = "import os; print(os.stat('/proc/self/ns/net').st_ino)"

# What unshare says when the kernel refuses the user namespace or its uid/gid maps.
_USERNS_REFUSED = ("unshare failed", "uid_map", "gid_map", "setgroups")
_USERNS_HINT = (
    "user namespaces are disabled or restricted here (see the sysctls "
    "user.max_user_namespaces, kernel.unprivileged_userns_clone and "
    "kernel.apparmor_restrict_unprivileged_userns)"
)


class NetworkIsolationUnavailable(Exception):
    """Network isolation cannot be set up on this machine; the message says why.

    A job that asked for isolation must be refused with this rather than run without it.
    """


def _which(name: str, path: str | None) -> str:
    """The absolute path of a tool, looked up in ``path`` (``$PATH`` when None)."""
    found = shutil.which(name, path=path)
    if found is None:
        raise NetworkIsolationUnavailable(
            f"{name} is not installed (util-linux); network isolation needs it"
        )
    return os.path.abspath(found)


class JobNetwork:
    """One fresh network namespace (only ``lo`` up) for all the instances of one job.

    Use as a context manager around the job's run; start each instance with
    ``prefix() + command``. ``close()`` ends the holder and releases the namespaces; instances
    still running keep theirs until they exit, and nothing new can join.

    ``path`` replaces ``$PATH`` when looking up ``unshare`` and ``nsenter`` (e.g. to check
    the behaviour on a machine without them).
    """

    def __init__(self, *, path: str | None = None, ready_timeout_s: float = 10.0) -> None:
        self._path = path
        self._ready_timeout_s = ready_timeout_s
        self._holder: subprocess.Popen[bytes] | None = None
        self._net_fd: int | None = None
        self._user_fd: int | None = None
        self._nsenter = ""

    def __enter__(self) -> JobNetwork:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def holder_pid(self) -> int | None:
        """The pid of the process holding the namespace; None when not open."""
        return self._holder.pid if self._holder is not None else None

    @property
    def net_inode(self) -> int:
        """The inode of the job's network namespace (compare with ``/proc/<pid>/ns/net``)."""
        if self._net_fd is None:
            raise RuntimeError("the job network is not open")
        return os.fstat(self._net_fd).st_ino

    def open(self) -> None:
        """Create the namespaces; raises ``NetworkIsolationUnavailable`` if that fails."""
        if self._holder is not None:
            raise RuntimeError("the job network is already open")
        if not sys.platform.startswith("linux"):
            raise NetworkIsolationUnavailable(
                f"network isolation needs Linux namespaces; this is not Linux ({sys.platform})"
            )
        unshare = _which("unshare", self._path)
        self._nsenter = _which("nsenter", self._path)
        argv = [unshare, "--user", "--map-root-user", "--net", "--"]
        argv += [sys.executable, "-I", "-S", "-c", _HOLDER]
        # Its own session: a Ctrl-C at the server's terminal does not reach it. If the
        # platform dies, its end of the stdin pipe closes and the holder exits.
        self._holder = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            self._wait_ready(self._holder)
            self._pin_namespaces(self._holder.pid)
        except BaseException:
            self.close()
            raise

    def prefix(self) -> list[str]:
        """The argv to put before a command so that it runs inside the job's network.

        Valid for processes this process starts while the ``JobNetwork`` is open (the
        paths name this process's descriptors of the namespaces).
        """
        if self._net_fd is None or self._user_fd is None:
            raise RuntimeError("the job network is not open")
        me = os.getpid()
        return [
            self._nsenter,
            f"--user=/proc/{me}/fd/{self._user_fd}",
            f"--net=/proc/{me}/fd/{self._net_fd}",
            "--preserve-credentials",  # keep our uid; it is root inside the user namespace
            "--",
        ]

    def close(self) -> None:
        """Kill the holder and release the namespaces; safe to call more than once."""
        for fd in (self._net_fd, self._user_fd):
            if fd is not None:
                os.close(fd)
        self._net_fd = self._user_fd = None
        holder, self._holder = self._holder, None
        if holder is not None:
            if holder.poll() is None:
                holder.send_signal(signal.SIGKILL)
            holder.wait()
            for stream in (holder.stdin, holder.stdout, holder.stderr):
                if stream is not None:
                    stream.close()

    def _wait_ready(self, holder: subprocess.Popen[bytes]) -> None:
        """Block until the holder says ``ready`` (``lo`` is up), it fails, or time runs out."""
        assert holder.stdout is not None
        fd = holder.stdout.fileno()
        seen = b""
        deadline = time.monotonic() + self._ready_timeout_s
        while b"\n" not in seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise NetworkIsolationUnavailable(
                    f"the network namespace was not ready within {self._ready_timeout_s:g}s"
                )
            readable, _, _ = select.select([fd], [], [], left)
            if readable:
                chunk = os.read(fd, 64)
                if not chunk:
                    break  # the holder ended
                seen += chunk
        if seen == b"ready\n":
            return
        holder.kill()
        _, err = holder.communicate(timeout=5)
        detail = err.decode(errors="replace").strip() or f"exit code {holder.returncode}"
        if any(sign in detail for sign in _USERNS_REFUSED):
            raise NetworkIsolationUnavailable(f"{_USERNS_HINT}: {detail}")
        raise NetworkIsolationUnavailable(f"could not create a network namespace: {detail}")

    def _pin_namespaces(self, pid: int) -> None:
        """Open the holder's namespaces and check that they are not ours.

        The holder is our unreaped child, so its pid cannot have been reused yet.
        """
        net_fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self._net_fd = net_fd
        self._user_fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        for kind, fd in (("net", net_fd), ("user", self._user_fd)):
            if os.fstat(fd).st_ino == os.stat(f"/proc/self/ns/{kind}").st_ino:
                raise NetworkIsolationUnavailable(
                    f"the holder did not get a {kind} namespace of its own"
                )


@functools.cache
def _probe(path: str | None) -> str | None:
    """Create a namespace once and run a command in it; why it failed, or None."""
    try:
        with JobNetwork(path=path) as net:
            done = subprocess.run(
                [*net.prefix(), sys.executable, "-I", "-S", "-c", _PROBE],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=30,
                check=False,
            )
            inside = done.stdout.decode(errors="replace").strip()
            if done.returncode != 0:
                err = done.stderr.decode(errors="replace").strip()
                return f"could not run a command in the namespace (nsenter): {err}"
            if inside != str(net.net_inode):
                return f"a command run with the prefix was not in the job's namespace ({inside})"
    except NetworkIsolationUnavailable as e:
        return str(e)
    except (OSError, subprocess.SubprocessError) as e:
        return f"could not set up a network namespace: {e}"
    return None


def check_available(*, path: str | None = None) -> None:
    """Raise ``NetworkIsolationUnavailable`` when isolation cannot work on this machine.

    Tries it for real once (a namespace, a command run in it that must report being inside)
    and caches the answer per ``path`` (which replaces ``$PATH`` for finding the tools).
    """
    reason = _probe(path)
    if reason is not None:
        raise NetworkIsolationUnavailable(reason)
