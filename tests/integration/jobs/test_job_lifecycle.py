"""A job's life through the real server: submit, run an unmodified SageMaker-style script,
stream its logs, read its metrics, and find its model and outputs in the store."""

from __future__ import annotations

import io
import json
import stat
import tarfile
import time

from tests.conftest import make_tenant
from tests.support.jobs import base, logs, pack, submit, upload, wait_for
from tests.support.servers import RunningServer

# Written for SageMaker: reads SM_* variables and argparse hyperparameters, writes model and
# output where SageMaker would; knows nothing of Shipyard.
SAGEMAKER_TRAIN = """
    import argparse, json, os, pathlib

    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--model-dir", default=os.environ["SM_MODEL_DIR"])
    parser.add_argument("--train", default=os.environ["SM_CHANNEL_TRAIN"])
    args, _ = parser.parse_known_args()

    rows = pathlib.Path(args.train, "train.csv").read_text().splitlines()[1:]
    total = sum(float(r.split(",")[1]) for r in rows)
    for epoch in range(args.epochs):
        print(f"epoch={epoch} loss={1.0 / (epoch + 1):.4f} auc={0.5 + epoch * 0.1:.2f}")
    env = json.loads(os.environ["SM_TRAINING_ENV"])
    pathlib.Path(args.model_dir, "model.json").write_text(
        json.dumps({"total": total, "lr": args.lr, "hosts": env["hosts"]})
    )
    pathlib.Path(os.environ["SM_OUTPUT_DATA_DIR"], "report.txt").write_text("ok\\n")
    print("hps", os.environ["SM_HPS"], "rank", os.environ["RANK"], os.environ["WORLD_SIZE"])
"""


def test_a_sagemaker_script_runs_and_lands_its_model(server: RunningServer) -> None:
    tenant = make_tenant(server, ("scientist",))
    with server.client(tenant.keys["scientist"]) as client:
        upload(client, tenant, "src/train.tar.gz", pack({"train.py": SAGEMAKER_TRAIN}))
        upload(client, tenant, "data/train.csv", b"id,x\n1,2.5\n2,4.5\n")
        submit(
            client,
            tenant,
            name="first",
            entry_point="train.py",
            source="src/train.tar.gz",
            hyperparameters={"epochs": 3, "lr": 0.05},
            inputs={"train": "data/train.csv"},
            metric_definitions=[
                {"name": "loss", "regex": r"loss=([0-9.]+)"},
                {"name": "auc", "regex": r"auc=([0-9.]+)"},
            ],
        )
        done = wait_for(client, tenant, "first")
        assert done["status"] == "Completed", done["reason"]
        for phase in ("Pending", "Starting", "Downloading", "Running", "Uploading", "Completed"):
            assert phase in done["phase_times"]

        text = logs(client, tenant, "first")
        assert "epoch=2 loss=0.3333 auc=0.70" in text
        assert 'hps {"epochs":3,"lr":0.05} rank 0 1' in text.replace(": ", ":").replace(", ", ",")

        model_path, version = done["model_artifact"].rsplit("@", 1)
        assert model_path == "jobs/first/model.tar.gz"
        r = client.get(f"{base(tenant)}/artifacts/{model_path}", params={"version": version})
        with tarfile.open(fileobj=io.BytesIO(r.content)) as tar:
            member = tar.extractfile("model.json")
            assert member is not None
            model = json.loads(member.read())
        assert model == {"total": 7.0, "lr": 0.05, "hosts": ["algo-1"]}
        r = client.get(f"{base(tenant)}/artifacts/jobs/first/output/report.txt")
        assert r.text == "ok\n"

        run = client.get(f"{base(tenant)}/runs/{done['run_id']}").json()
        assert run["status"] == "FINISHED"
        assert run["params"]["epochs"] == "3"
        assert run["metrics"]["auc"]["value"] == 0.7
        history = client.get(f"{base(tenant)}/runs/{done['run_id']}/metrics/loss/history").json()
        assert history["values"] == [1.0, 0.5, 0.3333]
        assert history["steps"] == [0, 1, 2]


def test_a_failing_script_fails_with_its_last_log_lines(server: RunningServer) -> None:
    tenant = make_tenant(server, ("scientist",))
    script = """
        for i in range(80):
            print(f"line {i}")
        raise SystemExit("bad data in row 7")
    """
    with server.client(tenant.keys["scientist"]) as client:
        upload(client, tenant, "src/fail.tar.gz", pack({"fail.py": script}))
        submit(client, tenant, name="broken", entry_point="fail.py", source="src/fail.tar.gz")
        done = wait_for(client, tenant, "broken")
    assert done["status"] == "Failed"
    assert "AlgorithmError: algo-1 exited with code 1" in done["reason"]
    assert "bad data in row 7" in done["reason"]
    assert "line 79" in done["reason"] and "line 30" not in done["reason"]
    assert done["retries"] == 0 and done["attempt"] == 1


# Uses the job's own credentials the way the SDK would, and keeps them to show they die with
# the job (only a test would write its key to its output).
USES_ITS_KEY = """
    import json, os, pathlib, time, urllib.request

    def get(path):
        request = urllib.request.Request(
            os.environ["SHIPYARD_URL"] + path,
            headers={"Authorization": "Bearer " + os.environ["SHIPYARD_API_KEY"]},
        )
        with urllib.request.urlopen(request) as response:
            return json.load(response)

    project = os.environ["SHIPYARD_PROJECT"]
    run = get(f"/api/v1/projects/{project}/runs/{os.environ['SHIPYARD_RUN_ID']}")
    print(f"my run is {run['status']} named {run['name']}", flush=True)
    print("auc=0.61", flush=True)
    out = pathlib.Path(os.environ["SM_OUTPUT_DATA_DIR"])
    time.sleep(float(os.environ["SM_HP_HOLD"]))
    print("auc=0.75", flush=True)
    (out / "key.txt").write_text(os.environ["SHIPYARD_API_KEY"])
"""


def test_the_jobs_key_works_while_it_runs_and_dies_with_it(server: RunningServer) -> None:
    tenant = make_tenant(server, ("scientist",))
    with server.client(tenant.keys["scientist"]) as client:
        upload(client, tenant, "src/key.tar.gz", pack({"key.py": USES_ITS_KEY}))
        submit(
            client,
            tenant,
            name="keyed",
            entry_point="key.py",
            source="src/key.tar.gz",
            hyperparameters={"hold": 2.0},
            metric_definitions=[{"name": "auc", "regex": r"auc=([0-9.]+)"}],
        )
        running = wait_for(client, tenant, "keyed", {"Running"})
        # metrics arrive while the job runs, not only at its end
        deadline = time.monotonic() + 20
        metric = None
        while metric is None and time.monotonic() < deadline:
            run = client.get(f"{base(tenant)}/runs/{running['run_id']}").json()
            metric = run["metrics"].get("auc")
            time.sleep(0.1)
        assert metric is not None and metric["value"] == 0.61
        assert client.get(f"{base(tenant)}/jobs/keyed").json()["status"] == "Running"

        done = wait_for(client, tenant, "keyed")
        assert done["status"] == "Completed", done["reason"]
        assert "my run is RUNNING named keyed" in logs(client, tenant, "keyed")
        key = client.get(f"{base(tenant)}/artifacts/jobs/keyed/output/key.txt").text
    with server.client(key) as stale:
        r = stale.get(f"{base(tenant)}/runs/{done['run_id']}")
        assert r.status_code == 401


LISTS_CHANNELS = """
    import os, pathlib

    for channel in ("train", "extra"):
        root = pathlib.Path(os.environ[f"SM_CHANNEL_{channel.upper()}"])
        files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
        print(channel, files)
"""


def test_channels_take_dataset_versions_and_artifact_prefixes(server: RunningServer) -> None:
    tenant = make_tenant(server, ("scientist",))
    with server.client(tenant.keys["scientist"]) as client:
        upload(client, tenant, "src/ls.tar.gz", pack({"ls.py": LISTS_CHANNELS}))
        r = client.put(f"{base(tenant)}/datasets/marketing/versions", content=b"a,b\n1,2\n")
        assert r.status_code == 201, r.text
        upload(client, tenant, "data/many/a.txt", b"a")
        upload(client, tenant, "data/many/sub/b.txt", b"b")
        r = client.post(
            f"{base(tenant)}/jobs",
            json={
                "name": "nothing-there",
                "entry_point": "ls.py",
                "source": "src/ls.tar.gz",
                "inputs": {"train": "data/nothing"},
            },
        )
        assert r.status_code == 422
        assert r.json()["error"]["field"] == "inputs.train"
        submit(
            client,
            tenant,
            name="lister",
            entry_point="ls.py",
            source="src/ls.tar.gz",
            inputs={"train": "dataset:marketing:1", "extra": "data/many"},
        )
        done = wait_for(client, tenant, "lister")
        assert done["status"] == "Completed", done["reason"]
        text = logs(client, tenant, "lister")
        assert "extra ['a.txt', 'sub/b.txt']" in text
        train_files = text.split("train [")[1].split("]")[0]
        assert train_files.count("'") == 2 and train_files.endswith(".csv'")
        readers = client.get(f"{base(tenant)}/datasets/marketing/versions/1/runs").json()
        assert done["run_id"] in [run["id"] for run in readers["runs"]]
    # what the job left on the machine (its logs) is private, like the rest of the home
    loose = [
        str(p)
        for p in (server.home / "jobs").rglob("*")
        if not p.is_symlink() and stat.S_IMODE(p.lstat().st_mode) & 0o077
    ]
    assert not loose
