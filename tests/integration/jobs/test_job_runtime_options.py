"""Jobs that need more than the defaults: two instances doing a torch.distributed all-reduce,
network isolation, and a requirements.txt environment built with uv."""

from __future__ import annotations

import io
import json
import tarfile

import pytest
from tests.conftest import make_tenant
from tests.support.jobs import base, logs, pack, submit, upload, wait_for
from tests.support.servers import RunningServer

ALL_REDUCE = """
    import json, os, pathlib
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method="env://")
    rank, world = dist.get_rank(), dist.get_world_size()
    tensor = torch.tensor([float(rank + 1)])
    dist.all_reduce(tensor)
    print(f"rank {rank}/{world} on {os.environ['SM_CURRENT_HOST']}: sum={tensor.item()}")
    if rank == 0:
        pathlib.Path(os.environ["SM_MODEL_DIR"], "sum.json").write_text(
            json.dumps({"sum": tensor.item(), "world": world})
        )
    dist.destroy_process_group()
"""


def test_two_instances_all_reduce_with_torch_distributed(server: RunningServer) -> None:
    pytest.importorskip("torch", reason="torch is in the dev extra (CPU wheel)")
    tenant = make_tenant(server, ("scientist",))
    with server.client(tenant.keys["scientist"]) as client:
        upload(client, tenant, "src/ddp.tar.gz", pack({"ddp.py": ALL_REDUCE}))
        submit(
            client,
            tenant,
            name="ddp",
            entry_point="ddp.py",
            source="src/ddp.tar.gz",
            instance_count=2,
        )
        done = wait_for(client, tenant, "ddp", timeout=120)
        assert done["status"] == "Completed", done["reason"]
        text = logs(client, tenant, "ddp")
        assert "[algo-1] rank 0/2 on algo-1: sum=3.0" in text
        assert "[algo-2] rank 1/2 on algo-2: sum=3.0" in text
        only_second = logs(client, tenant, "ddp", instance="algo-2")
        assert "rank 1/2 on algo-2: sum=3.0" in only_second and "algo-1:" not in only_second
        r = client.get(f"{base(tenant)}/jobs/ddp/logs", params={"instance": "algo-3"})
        assert r.status_code == 422 and r.json()["error"]["field"] == "instance"
        model = client.get(f"{base(tenant)}/artifacts/jobs/ddp/model.tar.gz").content
        with tarfile.open(fileobj=io.BytesIO(model)) as tar:
            member = tar.extractfile("sum.json")
            assert member is not None
            assert json.loads(member.read()) == {"sum": 3.0, "world": 2}


# Tries the platform API and a peer; records what it could reach, and still trains.
ISOLATED = """
    import json, os, pathlib, socket, sys, threading, time, urllib.parse

    url = urllib.parse.urlsplit(os.environ["SHIPYARD_URL"])
    try:
        socket.create_connection((url.hostname, url.port), timeout=2).close()
        print("platform API: reachable")
    except OSError as exc:
        print(f"platform API: blocked ({exc.__class__.__name__})")
    rank = int(os.environ["RANK"])
    addr, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    if rank == 0:
        server = socket.create_server((addr, port))
        conn, _ = server.accept()
        print("peer says", conn.recv(100).decode())
        conn.close()
        rows = pathlib.Path(os.environ["SM_CHANNEL_TRAIN"], "train.csv").read_text()
        pathlib.Path(os.environ["SM_MODEL_DIR"], "rows.txt").write_text(rows)
    else:
        for _ in range(100):
            try:
                sock = socket.create_connection((addr, port), timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        sock.sendall(b"hello from algo-2")
        sock.close()
"""


def test_isolated_code_cannot_reach_the_platform_but_the_job_completes(
    server: RunningServer,
) -> None:
    tenant = make_tenant(server, ("scientist",))
    with server.client(tenant.keys["scientist"]) as client:
        upload(client, tenant, "src/iso.tar.gz", pack({"iso.py": ISOLATED}))
        upload(client, tenant, "data/iso/train.csv", b"a,b\n1,2\n")
        submit(
            client,
            tenant,
            name="isolated",
            entry_point="iso.py",
            source="src/iso.tar.gz",
            inputs={"train": "data/iso/train.csv"},
            instance_count=2,
            network_isolation=True,
        )
        submit(
            client,
            tenant,
            name="open",
            entry_point="iso.py",
            source="src/iso.tar.gz",
            inputs={"train": "data/iso/train.csv"},
            instance_count=2,
        )
        isolated = wait_for(client, tenant, "isolated", timeout=90)
        opened = wait_for(client, tenant, "open", timeout=90)
        assert isolated["status"] == opened["status"] == "Completed", isolated["reason"]
        text = logs(client, tenant, "isolated")
        assert "[algo-1] platform API: blocked" in text
        assert "[algo-2] platform API: blocked" in text
        assert "[algo-1] peer says hello from algo-2" in text
        assert "platform API: reachable" in logs(client, tenant, "open")
        model = client.get(f"{base(tenant)}/artifacts/jobs/isolated/model.tar.gz").content
        with tarfile.open(fileobj=io.BytesIO(model)) as tar:
            member = tar.extractfile("rows.txt")
            assert member is not None and member.read() == b"a,b\n1,2\n"


def test_a_team_policy_can_require_isolation(server: RunningServer) -> None:
    tenant = make_tenant(server, ("lead", "scientist"))
    with server.client(tenant.keys["lead"]) as lead:
        r = lead.patch(
            f"/api/v1/teams/{tenant.team}",
            json={"policies": {"require_network_isolation": True}},
        )
        assert r.status_code == 200, r.text
        assert r.json()["policies"] == {"require_network_isolation": True}
    with server.client(tenant.keys["scientist"]) as client:
        r = client.post(f"{base(tenant)}/jobs", json={"name": "open", "entry_point": "this"})
        assert r.status_code == 403
        error = r.json()["error"]
        assert error["field"] == "network_isolation"
        assert "require_network_isolation" in error["message"]
        submit(client, tenant, name="closed", entry_point="this", network_isolation=True)
        assert wait_for(client, tenant, "closed")["status"] == "Completed"


WITH_REQUIREMENTS = """
    import six
    import shipyard
    print(f"six {six.__version__} from {six.__file__}")
"""


def test_a_requirements_file_builds_a_cached_environment(server: RunningServer) -> None:
    tenant = make_tenant(server, ("scientist",))
    source = pack({"req.py": WITH_REQUIREMENTS, "requirements.txt": "six==1.16.0\n"})
    with server.client(tenant.keys["scientist"]) as client:
        upload(client, tenant, "src/req.tar.gz", source)
        for name in ("needs-six", "needs-six-again"):
            submit(
                client,
                tenant,
                name=name,
                entry_point="req.py",
                source="src/req.tar.gz",
                requirements="requirements.txt",
            )
            done = wait_for(client, tenant, name, timeout=180)
            assert done["status"] == "Completed", done["reason"]
        first = logs(client, tenant, "needs-six")
        second = logs(client, tenant, "needs-six-again")
    assert "six 1.16.0 from " + str(server.home / "envs") in first
    assert "six 1.16.0" in second
    assert "Installed" in first  # uv's build output is in the job's log
    assert "Installed" not in second  # the cached environment was reused
