"""What happens to a job when things go wrong: an interrupt (like a spot reclaim), a stop, the
max runtime, a failing attempt with retries left — each through the real server, with real
processes and the store."""

from __future__ import annotations

import io
import json
import tarfile
import time
from pathlib import Path

import httpx
from tests.conftest import Tenant, make_tenant
from tests.support.jobs import TERMINAL, base, job, logs, pack, submit, upload, wait_for
from tests.support.servers import RunningServer, start_server

# A deterministic trainer: each epoch's update depends only on the epoch number and the
# weights so far, and its state is checkpointed (atomically) after every epoch. Resumed from
# a checkpoint it must reach exactly the weights of an uninterrupted run.
DETERMINISTIC_TRAIN = """
    import json, os, pathlib, random, time

    ckpt = pathlib.Path(os.environ["SM_CHECKPOINT_DIR"], "state.json")
    hps = json.loads(os.environ["SM_HPS"])
    state = {"epoch": 0, "w": [0.0] * 4}
    if ckpt.exists():
        state = json.loads(ckpt.read_text())
        print(f"resumed from epoch {state['epoch']}", flush=True)
    for epoch in range(state["epoch"], hps["epochs"]):
        rng = random.Random(1000 + epoch)
        state["w"] = [w * 0.9 + rng.uniform(-1, 1) for w in state["w"]]
        state["epoch"] = epoch + 1
        tmp = ckpt.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(ckpt)
        print(f"epoch {epoch} done", flush=True)
        time.sleep(hps["pause"])
    pathlib.Path(os.environ["SM_MODEL_DIR"], "weights.json").write_text(json.dumps(state["w"]))
"""


def _model(client: httpx.Client, tenant: Tenant, job: dict[str, object]) -> bytes:
    path, version = str(job["model_artifact"]).rsplit("@", 1)
    r = client.get(f"{base(tenant)}/artifacts/{path}", params={"version": version})
    with tarfile.open(fileobj=io.BytesIO(r.content)) as tar:
        member = tar.extractfile("weights.json")
        assert member is not None
        return member.read()


def _checkpoint_epoch(client: httpx.Client, tenant: Tenant, name: str) -> int:
    r = client.get(f"{base(tenant)}/artifacts/jobs/{name}/checkpoints/state.json")
    return int(json.loads(r.content)["epoch"]) if r.status_code == 200 else 0


def _wait_checkpoint(client: httpx.Client, tenant: Tenant, name: str, epoch: int) -> None:
    deadline = time.monotonic() + 60
    while _checkpoint_epoch(client, tenant, name) < epoch:
        state = job(client, tenant, name)
        if time.monotonic() > deadline or state["status"] in TERMINAL:
            raise AssertionError(
                f"no checkpoint reached the store: {state['status']} ({state['reason']}), "
                f"log: {logs(client, tenant, name)[-2000:]}"
            )
        time.sleep(0.1)


def _trainer(client: httpx.Client, tenant: Tenant, name: str, **extra: object) -> None:
    submit(
        client,
        tenant,
        name=name,
        entry_point="train.py",
        source="src/det.tar.gz",
        hyperparameters={"epochs": 16, "pause": 0.4},
        checkpointing=True,
        metric_definitions=[{"name": "epoch", "regex": r"epoch (\d+) done"}],
        **extra,
    )


def test_an_interrupted_job_resumes_to_the_same_model(server: RunningServer) -> None:
    tenant = make_tenant(server, ("scientist",))
    with server.client(tenant.keys["scientist"]) as client:
        upload(client, tenant, "src/det.tar.gz", pack({"train.py": DETERMINISTIC_TRAIN}))
        _trainer(client, tenant, "steady")
        _trainer(client, tenant, "reclaimed", spot=True)

        _wait_checkpoint(client, tenant, "reclaimed", 3)
        r = client.post(f"{base(tenant)}/jobs/reclaimed/interrupt")
        assert r.status_code == 202, r.text

        steady = wait_for(client, tenant, "steady")
        reclaimed = wait_for(client, tenant, "reclaimed")
        assert steady["status"] == reclaimed["status"] == "Completed", reclaimed["reason"]
        assert steady["attempt"] == 1
        assert reclaimed["attempt"] == 2 and reclaimed["retries"] == 0
        for phase in ("Interrupted", "Resuming"):
            assert phase in reclaimed["phase_times"]
        text = logs(client, tenant, "reclaimed")
        assert "interrupted: instances reclaimed" in text
        resumed_at = int(text.split("resumed from epoch ")[1].split()[0])
        assert resumed_at >= 3
        assert "epoch 0 done" in text and text.count("epoch 0 done") == 1
        assert _model(client, tenant, reclaimed) == _model(client, tenant, steady)
        # the temporary name the script writes through is never synced, only the result
        r = client.get(f"{base(tenant)}/artifact-versions/jobs/reclaimed/checkpoints/state.tmp")
        assert r.status_code == 404
        # both attempts logged into one run; the second's points follow the first's
        run = client.get(f"{base(tenant)}/runs/{reclaimed['run_id']}").json()
        assert run["status"] == "FINISHED"
        url = f"{base(tenant)}/runs/{reclaimed['run_id']}/metrics/epoch/history"
        history = client.get(url).json()
        assert history["steps"] == list(range(text.count(" done")))
        assert history["values"][-1] == 15.0 and history["values"].count(0.0) == 1


def test_interrupting_a_finished_job_is_a_conflict(server: RunningServer) -> None:
    tenant = make_tenant(server, ("scientist", "viewer"))
    with server.client(tenant.keys["scientist"]) as client:
        submit(client, tenant, name="quick", entry_point="this")
        wait_for(client, tenant, "quick")
        r = client.post(f"{base(tenant)}/jobs/quick/interrupt")
        assert r.status_code == 409
        assert "Completed" in r.json()["error"]["message"]
        r = client.post(f"{base(tenant)}/jobs/nosuch/stop")
        assert r.status_code == 404
    with server.client(tenant.keys["viewer"]) as viewer:
        assert viewer.post(f"{base(tenant)}/jobs/quick/stop").status_code == 403


STOPPABLE = """
    import os, pathlib, signal, sys, time

    ckpt = pathlib.Path(os.environ["SM_CHECKPOINT_DIR"])

    def on_term(signum, frame):
        (ckpt / "last.txt").write_text("saved on SIGTERM")
        print("got SIGTERM, checkpoint saved", flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_term)
    print("working", flush=True)
    time.sleep(120)
"""


def test_stop_sends_sigterm_and_keeps_the_checkpoint_written_then(
    server: RunningServer,
) -> None:
    tenant = make_tenant(server, ("scientist",))
    with server.client(tenant.keys["scientist"]) as client:
        upload(client, tenant, "src/stop.tar.gz", pack({"stop.py": STOPPABLE}))
        submit(
            client,
            tenant,
            name="stoppable",
            entry_point="stop.py",
            source="src/stop.tar.gz",
            checkpointing=True,
        )
        wait_for(client, tenant, "stoppable", {"Running"})
        deadline = time.monotonic() + 30
        while "working" not in logs(client, tenant, "stoppable"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert client.post(f"{base(tenant)}/jobs/stoppable/stop").status_code == 202
        done = wait_for(client, tenant, "stoppable")
        assert done["status"] == "Stopped"
        assert done["reason"] == "Stopped: stopped by request"
        assert "Stopping" in done["phase_times"]
        assert "got SIGTERM, checkpoint saved" in logs(client, tenant, "stoppable")
        r = client.get(f"{base(tenant)}/artifacts/jobs/stoppable/checkpoints/last.txt")
        assert r.text == "saved on SIGTERM"
        run = client.get(f"{base(tenant)}/runs/{done['run_id']}").json()
        assert run["status"] == "KILLED"


def test_max_runtime_stops_the_job_with_a_reason(server: RunningServer) -> None:
    tenant = make_tenant(server, ("scientist",))
    with server.client(tenant.keys["scientist"]) as client:
        submit(
            client,
            tenant,
            name="slow",
            entry_point="timeit",
            arguments=["-n1", "-r1", "import time; time.sleep(60)"],
            max_runtime_s=2,
        )
        done = wait_for(client, tenant, "slow")
    assert done["status"] == "Stopped"
    assert done["reason"].startswith("MaxRuntimeExceeded")
    assert "max_runtime_s=2" in done["reason"]


FLAKY = """
    import os, pathlib, sys, time

    marker = pathlib.Path(os.environ["SM_CHECKPOINT_DIR"], "tried")
    if os.environ["SM_HP_MODE"] == "always" or not marker.exists():
        marker.write_text("once")
        time.sleep(0.2)
        sys.exit(f"attempt failed (mode {os.environ['SM_HP_MODE']})")
    print("second time lucky", flush=True)
"""


def test_failures_are_retried_up_to_max_retries(server: RunningServer) -> None:
    tenant = make_tenant(server, ("scientist",))
    with server.client(tenant.keys["scientist"]) as client:
        upload(client, tenant, "src/flaky.tar.gz", pack({"flaky.py": FLAKY}))
        common = {"entry_point": "flaky.py", "source": "src/flaky.tar.gz", "checkpointing": True}
        submit(
            client, tenant, name="flaky", hyperparameters={"mode": "once"}, max_retries=1, **common
        )
        submit(
            client,
            tenant,
            name="hopeless",
            hyperparameters={"mode": "always"},
            max_retries=2,
            **common,
        )
        flaky = wait_for(client, tenant, "flaky")
        hopeless = wait_for(client, tenant, "hopeless", timeout=90)
        assert flaky["status"] == "Completed", flaky["reason"]
        assert (flaky["attempt"], flaky["retries"]) == (2, 1)
        assert "second time lucky" in logs(client, tenant, "flaky")
        assert hopeless["status"] == "Failed"
        assert (hopeless["attempt"], hopeless["retries"]) == (3, 2)
        assert "attempt failed (mode always)" in hopeless["reason"]


def test_chaos_reclaims_spot_jobs_only_and_they_still_finish(
    fresh_db_url: str, tmp_path: Path
) -> None:
    """With the chaos setting, spot jobs are reclaimed at random (a few times at most);
    on-demand jobs never are. Both reach the same model."""
    chaotic = start_server(
        tmp_path / "home",
        db_url=fresh_db_url,
        extra_env={"SHIPYARD_SPOT_INTERRUPTIONS_PER_HOUR": "20000"},
    )
    try:
        tenant = make_tenant(chaotic, ("scientist",))
        with chaotic.client(tenant.keys["scientist"]) as client:
            upload(client, tenant, "src/det.tar.gz", pack({"train.py": DETERMINISTIC_TRAIN}))
            _trainer(client, tenant, "on-demand")
            _trainer(client, tenant, "spot", spot=True)
            on_demand = wait_for(client, tenant, "on-demand", timeout=120)
            spot = wait_for(client, tenant, "spot", timeout=120)
            assert on_demand["status"] == spot["status"] == "Completed", spot["reason"]
            assert on_demand["attempt"] == 1
            assert spot["attempt"] > 1
            assert "instances reclaimed" in logs(client, tenant, "spot")
            assert _model(client, tenant, spot) == _model(client, tenant, on_demand)
    finally:
        chaotic.stop()
