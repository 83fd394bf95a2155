"""The controller's promise: a server killed with -9, or stopped cleanly, never leaves a job
"Running" forever. The next server adopts the job, ends what the dead one left running, and
resumes it from its last checkpoint."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import psutil
import pytest
from tests.conftest import make_tenant
from tests.support.jobs import base, job, logs, pack, submit, upload, wait_for
from tests.support.servers import RunningServer, start_server

SLOW_TRAIN = """
    import json, os, pathlib, time

    print(f"pid={os.getpid()} attempt={os.environ['SHIPYARD_ATTEMPT']}", flush=True)
    ckpt = pathlib.Path(os.environ["SM_CHECKPOINT_DIR"], "epoch")
    start = int(ckpt.read_text()) if ckpt.exists() else 0
    for epoch in range(start, 16):
        ckpt.with_suffix(".tmp").write_text(str(epoch + 1))
        ckpt.with_suffix(".tmp").replace(ckpt)  # atomic: a kill never leaves half a file
        print(f"epoch {epoch}", flush=True)
        time.sleep(0.25)
    pathlib.Path(os.environ["SM_MODEL_DIR"], "done.txt").write_text(f"from {start}")
"""


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("how", ["sigkill", "sigterm"])
def test_a_restarted_server_adopts_and_resumes_the_job(
    how: str, fresh_db_url: str, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    first: RunningServer = start_server(home, db_url=fresh_db_url)
    second: RunningServer | None = None
    try:
        tenant = make_tenant(first, ("scientist",))
        with first.client(tenant.keys["scientist"]) as client:
            upload(client, tenant, "src/slow.tar.gz", pack({"train.py": SLOW_TRAIN}))
            submit(
                client,
                tenant,
                name="survivor",
                entry_point="train.py",
                source="src/slow.tar.gz",
                checkpointing=True,
            )
            wait_for(client, tenant, "survivor", {"Running"})
            deadline = time.monotonic() + 30
            while "epoch 3" not in logs(client, tenant, "survivor"):
                assert time.monotonic() < deadline
                time.sleep(0.1)
            found = re.search(r"pid=(\d+) attempt=1", logs(client, tenant, "survivor"))
            assert found
            first_pid = int(found.group(1))

        first.stop(signal.SIGKILL if how == "sigkill" else signal.SIGTERM)
        if how == "sigkill":
            assert not _gone(first_pid), "the instance should outlive a killed server"
        else:
            assert _gone(first_pid), "a clean stop ends the instances"

        second = start_server(home, db_url=fresh_db_url)
        with second.client(tenant.keys["scientist"]) as client:
            done = wait_for(client, tenant, "survivor", timeout=90)
            assert done["status"] == "Completed", done["reason"]
            assert done["attempt"] == 2
            assert "Interrupted" in done["phase_times"]
            text = logs(client, tenant, "survivor")
            assert "attempt=2" in text
            assert _gone(first_pid), "the adopted job's old instance must not keep running"
            model = client.get(f"{base(tenant)}/artifacts/jobs/survivor/model.tar.gz")
            assert model.status_code == 200
            assert job(client, tenant, "survivor")["status"] == "Completed"
    finally:
        first.stop(signal.SIGKILL)
        if second is not None:
            second.stop()
