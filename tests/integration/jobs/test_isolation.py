"""Network isolation of a job: real namespaces, real sockets, real processes (no mocks).

Inside a job's network only its own loopback exists: the host's services (127.0.0.1 and the
host's other addresses) are out of reach, while the job's instances reach each other.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from shipyard.jobs.backends.process import InstanceProcess, Limits, pick_cpus, tail_lines
from shipyard.jobs.isolation import JobNetwork, NetworkIsolationUnavailable, check_available

PY = sys.executable

# Tries each "host:port" of argv and prints {target: "connected" | errno name} as JSON.
CONNECT = """\
import errno, json, socket, sys
out = {}
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
        out[target] = "connected"
    except OSError as e:
        out[target] = errno.errorcode.get(e.errno, type(e).__name__) if e.errno else repr(e)
print(json.dumps(out), flush=True)
"""

# Listens on 127.0.0.1 (a free port), prints the port, answers one message with "pong:<msg>".
LISTEN = """\
import socket
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    s.listen()
    print(s.getsockname()[1], flush=True)
    s.settimeout(20)
    conn, _ = s.accept()
    with conn:
        conn.sendall(b"pong:" + conn.recv(64))
"""

# Sends "ping" to 127.0.0.1:<argv[1]> and prints the reply (or the error).
TALK = """\
import socket, sys
try:
    with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5) as c:
        c.sendall(b"ping")
        print(c.recv(64).decode(), flush=True)
except OSError as e:
    print("failed:", e, flush=True)
"""


def _unavailable() -> str | None:
    try:
        check_available()
    except NetworkIsolationUnavailable as e:
        return str(e)
    return None


_WHY = _unavailable()
needs_isolation = pytest.mark.skipif(
    _WHY is not None, reason=f"network isolation cannot be set up on this machine: {_WHY}"
)


@pytest.fixture
def host_servers() -> Iterator[list[str]]:
    """Listening TCP servers on the host: on 127.0.0.1 and on each other IPv4 address."""
    addresses = ["127.0.0.1"] + [
        a.address
        for addrs in psutil.net_if_addrs().values()
        for a in addrs
        if a.family == socket.AF_INET and not a.address.startswith("127.")
    ]
    servers: list[socket.socket] = []
    try:
        for address in addresses:
            s = socket.socket()
            servers.append(s)
            s.bind((address, 0))
            s.listen(16)  # the kernel completes connections from the backlog; no accept
        yield [f"{host}:{port}" for host, port in (s.getsockname() for s in servers)]
    finally:
        for s in servers:
            s.close()


def _reach(prefix: list[str], targets: list[str]) -> dict[str, str]:
    done = subprocess.run(
        [*prefix, PY, "-c", CONNECT, *targets],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, str] = json.loads(done.stdout)
    return result


@needs_isolation
def test_the_host_is_reachable_from_outside_but_not_from_inside(host_servers: list[str]) -> None:
    loopback = host_servers[0]
    assert _reach([], host_servers) == dict.fromkeys(host_servers, "connected")

    with JobNetwork() as net:
        inside = _reach(net.prefix(), host_servers)

    assert "connected" not in inside.values(), inside
    # 127.0.0.1 inside is the job's own loopback: up, with nothing listening on that port.
    assert inside[loopback] == "ECONNREFUSED"
    # No route to any other address of the host.
    assert all(inside[t] == "ENETUNREACH" for t in host_servers[1:]), inside


@needs_isolation
def test_code_inside_cannot_join_the_hosts_network_even_as_root(host_servers: list[str]) -> None:
    # Root in a bare network namespace could setns() back into a host process's network;
    # inside the job's own user namespace it has no privilege over the host's namespaces.
    nsenter = shutil.which("nsenter")
    assert nsenter is not None
    host_net = f"--net=/proc/{os.getpid()}/ns/net"
    with JobNetwork() as net:
        escape = subprocess.run(
            [*net.prefix(), nsenter, host_net, "--", PY, "-c", CONNECT, host_servers[0]],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert escape.returncode != 0
    assert "connected" not in escape.stdout
    assert "nsenter" in escape.stderr, escape.stderr


def _start_listener(prefix: list[str]) -> tuple[subprocess.Popen[str], int]:
    listener = subprocess.Popen(
        [*prefix, PY, "-c", LISTEN], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert listener.stdout is not None
    line = listener.stdout.readline()
    assert line.strip().isdigit(), listener.stderr.read() if listener.stderr else line
    return listener, int(line)


@needs_isolation
def test_instances_of_one_job_talk_over_loopback() -> None:
    with JobNetwork() as net:
        listener, port = _start_listener(net.prefix())
        try:
            talk = subprocess.run(
                [*net.prefix(), PY, "-c", TALK, str(port)],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            assert listener.wait(20) == 0
        finally:
            listener.kill()
            listener.wait()
    assert talk.stdout.strip() == "pong:ping", talk.stderr


@needs_isolation
def test_two_jobs_do_not_see_each_other() -> None:
    with JobNetwork() as job_a, JobNetwork() as job_b:
        assert job_a.net_inode != job_b.net_inode
        listener, port = _start_listener(job_a.prefix())
        try:
            talk = subprocess.run(
                [*job_b.prefix(), PY, "-c", TALK, str(port)],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        finally:
            listener.kill()
            listener.wait()
    assert talk.stdout.startswith("failed:"), talk.stdout + talk.stderr
    assert "Connection refused" in talk.stdout


@needs_isolation
def test_close_ends_the_holder_and_the_prefix_stops_working() -> None:
    net = JobNetwork()
    with net:
        pid = net.holder_pid
        assert pid is not None and psutil.pid_exists(pid)
        assert pid in {c.pid for c in psutil.Process().children()}
        stale_prefix = net.prefix()

    assert net.holder_pid is None
    assert not psutil.pid_exists(pid)
    assert pid not in {c.pid for c in psutil.Process().children(recursive=True)}
    with pytest.raises(RuntimeError, match="not open"):
        net.prefix()
    # A prefix kept past close() must not run the command at all, let alone unisolated.
    late = subprocess.run(
        [*stale_prefix, PY, "-c", "print('ran')"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert late.returncode != 0
    assert "ran" not in late.stdout


def test_refused_with_a_clear_message_when_unshare_is_missing(tmp_path: Path) -> None:
    # Simulates a machine without util-linux: the tools are looked up in an empty directory
    # instead of $PATH.
    empty = str(tmp_path)
    with pytest.raises(NetworkIsolationUnavailable, match="unshare is not installed"):
        check_available(path=empty)
    with pytest.raises(NetworkIsolationUnavailable, match="unshare is not installed"):
        JobNetwork(path=empty).open()


@needs_isolation
def test_refused_with_a_clear_message_when_user_namespaces_are_disabled() -> None:
    # Simulates a kernel with user namespaces disabled: inside a user namespace of its own
    # the test sets user.max_user_namespaces (per user namespace) to 0, then asks.
    unshare = shutil.which("unshare")
    assert unshare is not None
    code = (
        "from shipyard.jobs.isolation import NetworkIsolationUnavailable, check_available\n"
        "try:\n    check_available()\n    print('available')\n"
        "except NetworkIsolationUnavailable as e:\n    print('refused:', e)\n"
    )
    script = 'echo 0 > /proc/sys/user/max_user_namespaces || exit 77; exec "$0" -c "$1"'
    done = subprocess.run(
        [unshare, "--user", "--map-root-user", "--", "/bin/sh", "-c", script, PY, code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode == 77:
        pytest.skip(f"cannot lower user.max_user_namespaces here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("refused: user namespaces are disabled"), done.stdout
    assert "unshare failed" in done.stdout


@needs_isolation
def test_an_instance_process_in_the_job_network_cannot_reach_the_host(
    tmp_path: Path, host_servers: list[str]
) -> None:
    with JobNetwork() as net:
        proc = InstanceProcess(
            [*net.prefix(), PY, "-u", "-c", CONNECT, *host_servers],
            env={**os.environ, "MASTER_ADDR": "127.0.0.1"},
            cwd=tmp_path,
            log_path=tmp_path / "logs" / "algo-1.log",
            limits=Limits(cpus=pick_cpus(1), memory_bytes=None),
        )
        assert proc.wait(30) == 0

    (last,) = tail_lines(proc.log_path, 1)
    outcome = json.loads(last)
    assert set(outcome) == set(host_servers)
    assert "connected" not in outcome.values(), outcome
    assert outcome[host_servers[0]] == "ECONNREFUSED"
