"""Jobs on a real Ray cluster: a local head node, a Shipyard server that reaches it through
Ray Client (``SHIPYARD_COMPUTE=ray://...``), and jobs whose instances run as Ray actors.

The head runs as ``ray start --head --block`` in a session of its own, and is ended through
that session, not with ``ray stop``: ``ray stop`` ends every Ray process on the machine,
including a cluster a developer may be running next to the tests.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.conftest import Tenant, make_tenant
from tests.support.jobs import base, logs, pack, submit, upload, wait_for
from tests.support.processes import end_session
from tests.support.servers import RunningServer, free_port, start_server

pytest.importorskip(
    "ray", reason="the Ray backend needs the optional extra: pip install 'shipyard[ray]'"
)

RAY = Path(sys.executable).with_name("ray")
HEAD_START_S = 60.0


@dataclass
class RayHead:
    temp_dir: Path
    client_address: str
    proc: subprocess.Popen[bytes]


def _wait_for_client_port(head: RayHead, port: int, log: Path) -> None:
    deadline = time.monotonic() + HEAD_START_S
    while time.monotonic() < deadline:
        if head.proc.poll() is not None:
            raise RuntimeError(f"ray start exited early:\n{log.read_text(errors='replace')}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.2)
    raise RuntimeError(f"Ray head not up after {HEAD_START_S}s:\n{log.read_text(errors='replace')}")


@pytest.fixture(scope="module")
def ray_head() -> Iterator[RayHead]:
    # A short path: Ray's Unix sockets live under it and must fit in 107 bytes.
    temp_dir = Path(tempfile.mkdtemp(prefix="sy-ray-", dir="/tmp"))
    gcs_port, client_port = free_port(), free_port()
    # Ports Ray would otherwise take at fixed defaults, clashing with another Ray on the host.
    own_ports = [
        f"--{option}={free_port()}"
        for option in (
            "dashboard-agent-listen-port",
            "dashboard-agent-grpc-port",
            "runtime-env-agent-port",
            "metrics-export-port",
            "dashboard-port",
        )
    ]
    log = temp_dir.with_name(temp_dir.name + ".log")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                str(RAY),
                "start",
                "--head",
                "--block",
                "--node-ip-address=127.0.0.1",  # Ray swaps loopback for the host's own IP
                f"--port={gcs_port}",
                f"--ray-client-server-port={client_port}",
                "--num-cpus=2",
                "--object-store-memory=200000000",
                "--include-dashboard=false",
                "--disable-usage-stats",
                f"--temp-dir={temp_dir}",
                *own_ports,
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its session is how the teardown finds every process
        )
    head = RayHead(temp_dir, f"ray://127.0.0.1:{client_port}", proc)
    try:
        _wait_for_client_port(head, client_port, log)
        yield head
    finally:
        end_session(proc)
        shutil.rmtree(temp_dir, ignore_errors=True)
        log.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def ray_server(
    ray_head: RayHead, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    home = tmp_path_factory.mktemp("ray-home")
    running = start_server(home, extra_env={"SHIPYARD_COMPUTE": ray_head.client_address})
    yield running
    running.stop()


@pytest.fixture(scope="module")
def tenant(ray_server: RunningServer) -> Tenant:
    return make_tenant(ray_server, ("scientist",))


def _client_server_errors(head: RayHead) -> str:
    """The end of Ray Client's server logs, to tell a cluster fault from a Shipyard one."""
    tails = []
    for path in sorted(head.temp_dir.glob("session_latest/logs/ray_client_server*.err")):
        lines = path.read_text(errors="replace").splitlines()[-15:]
        tails.append(f"\n--- {path.name}\n" + "\n".join(lines))
    return "".join(tails)


# Rank 0 listens on MASTER_ADDR:MASTER_PORT, rank 1 connects; each says hello. Plain sockets,
# so the test needs no torch; torch.distributed's TCP store meets the same way.
TWO_RANKS = """
    import os, pathlib, socket, time

    rank = int(os.environ["RANK"])
    addr, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    print("cwd", os.getcwd(), flush=True)
    if rank == 0:
        with socket.create_server((addr, port)) as server:
            server.settimeout(60)
            conn, _ = server.accept()
            with conn:
                got = conn.recv(100).decode()
                conn.sendall(b"hello from rank 0")
        print("rank 0 got:", got, flush=True)
        pathlib.Path(os.environ["SM_MODEL_DIR"], "model.txt").write_text(got)
    else:
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = socket.create_connection((addr, port), timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        with conn:
            conn.sendall(b"hello from rank 1")
            print("rank 1 got:", conn.recv(100).decode(), flush=True)
"""

FAILING = """
    print("loading the data", flush=True)
    print("about to divide by zero", flush=True)
    1 / 0
"""


def test_two_instances_run_as_ray_actors_and_talk_over_tcp(
    ray_head: RayHead, ray_server: RunningServer, tenant: Tenant
) -> None:
    with ray_server.client(tenant.keys["scientist"]) as client:
        upload(client, tenant, "src/ranks.tar.gz", pack({"train.py": TWO_RANKS}))
        submit(
            client,
            tenant,
            name="ranks",
            entry_point="train.py",
            source="src/ranks.tar.gz",
            instance_count=2,
        )
        # The first job also connects the server to the cluster; on a loaded machine Ray
        # Client may need a second try, which costs ~40 s (see RayBackend._connect).
        done = wait_for(client, tenant, "ranks", timeout=150)
        assert done["status"] == "Completed", done["reason"] + _client_server_errors(ray_head)

        text = logs(client, tenant, "ranks")
        assert "[algo-1] rank 0 got: hello from rank 1" in text, text
        assert "[algo-2] rank 1 got: hello from rank 0" in text, text
        cwds = [line.split(" cwd ", 1)[1] for line in text.splitlines() if " cwd " in line]
        assert len(cwds) == 2, text
        for cwd in cwds:  # the instances ran in the node's Ray directory, not the server's
            assert cwd.startswith(str(ray_head.temp_dir) + "/"), cwd
            assert str(ray_server.home) not in cwd

        model_path, version = done["model_artifact"].rsplit("@", 1)
        r = client.get(f"{base(tenant)}/artifacts/{model_path}", params={"version": version})
        assert r.status_code == 200, r.text
        with tarfile.open(fileobj=io.BytesIO(r.content)) as tar:
            member = tar.extractfile("model.txt")
            assert member is not None
            assert member.read() == b"hello from rank 1"


def test_a_failing_script_fails_the_job_with_its_last_lines(
    ray_server: RunningServer, tenant: Tenant
) -> None:
    with ray_server.client(tenant.keys["scientist"]) as client:
        upload(client, tenant, "src/fail.tar.gz", pack({"train.py": FAILING}))
        submit(client, tenant, name="fails", entry_point="train.py", source="src/fail.tar.gz")
        done = wait_for(client, tenant, "fails", timeout=60)
        assert done["status"] == "Failed"
        reason = done["reason"]
        assert "AlgorithmError: algo-1 exited with code 1" in reason, reason
        assert "about to divide by zero" in reason, reason
        assert "ZeroDivisionError: division by zero" in reason, reason


def test_network_isolation_is_refused_on_ray(ray_server: RunningServer, tenant: Tenant) -> None:
    with ray_server.client(tenant.keys["scientist"]) as client:
        upload(client, tenant, "src/iso.tar.gz", pack({"train.py": "print('hi')\n"}))
        r = client.post(
            f"{base(tenant)}/jobs",
            json={
                "name": "isolated",
                "entry_point": "train.py",
                "source": "src/iso.tar.gz",
                "network_isolation": True,
            },
        )
        assert r.status_code == 422, r.text
        assert "network_isolation" in r.text
        assert "Ray" in r.json()["error"]["message"]


SLEEPER = """
    import os, time

    print(f"pids {os.getpid()} {os.getppid()}", flush=True)
    time.sleep(120)
"""
PIDS = re.compile(r"(?m)^pids (\d+) (\d+)$")


def test_a_lost_actor_fails_the_attempt_and_takes_its_process_along(
    ray_server: RunningServer, tenant: Tenant
) -> None:
    with ray_server.client(tenant.keys["scientist"]) as client:
        upload(client, tenant, "src/sleep.tar.gz", pack({"train.py": SLEEPER}))
        submit(client, tenant, name="lost", entry_point="train.py", source="src/sleep.tar.gz")
        wait_for(client, tenant, "lost", {"Running"}, timeout=60)
        deadline = time.monotonic() + 30
        while not (found := PIDS.search(text := logs(client, tenant, "lost"))):
            assert time.monotonic() < deadline, text
            time.sleep(0.2)
        script, actor = int(found[1]), int(found[2])
        os.kill(actor, signal.SIGKILL)  # the actor's worker process: as if its node died

        done = wait_for(client, tenant, "lost", timeout=60)
        assert done["status"] == "Failed"
        assert "AlgorithmError: algo-1 exited with killed by signal 9" in done["reason"]
        assert "algo-1 was lost" in done["reason"], done["reason"]
        deadline = time.monotonic() + 10
        while Path(f"/proc/{script}").exists():  # the reaper ends the orphaned script
            assert time.monotonic() < deadline, f"script {script} outlived its actor"
            time.sleep(0.1)
