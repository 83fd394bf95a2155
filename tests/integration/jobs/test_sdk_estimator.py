"""``shipyard.Estimator`` and ``shipyard.Processor`` as a data scientist uses them, against a
real server: a local source directory in, a finished job (its logs printed, its model and
outputs stored, its metrics in the job's run) out."""

from __future__ import annotations

import io
import os
import re
import tarfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import make_tenant
from tests.support.servers import RunningServer

import shipyard
from shipyard.sdk import _jobs

# Written for SageMaker (argparse hyperparameters, SM_* directories) plus one Shipyard call.
TRAIN = """
    import argparse, os, pathlib
    import shipyard

    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--model-dir", default=os.environ["SM_MODEL_DIR"])
    parser.add_argument("--train", default=os.environ["SM_CHANNEL_TRAIN"])
    args, _ = parser.parse_known_args()

    here = pathlib.Path(__file__).parent
    print("packed:", sorted(p.relative_to(here).as_posix() for p in here.rglob("*")))
    csv = next(pathlib.Path(args.train).glob("*.csv"))  # a dataset arrives as data.csv
    rows = csv.read_text().splitlines()[1:]
    print(f"rows={len(rows)}")
    for epoch in range(args.epochs):
        print(f"epoch={epoch} loss={1 / (epoch + 1):.2f}")
    shipyard.log_metric("acc", 0.9)
    pathlib.Path(args.model_dir, "model.txt").write_text(f"trained on {len(rows)} rows")
"""


@pytest.fixture
def session(server: RunningServer) -> Iterator[tuple[shipyard.Session, str]]:
    tenant = make_tenant(server, ("scientist",))
    with shipyard.Session(url=server.url, api_key=tenant.keys["scientist"]) as s:
        yield s, f"{tenant.team}/{tenant.project}"


def source(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "src"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))
    return root


def member(archive: bytes, name: str) -> str:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        extracted = tar.extractfile(name)
        assert extracted is not None
        return extracted.read().decode()


def test_fit_runs_a_sagemaker_script_prints_its_logs_and_lands_the_model(
    session: tuple[shipyard.Session, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    client, project = session
    csv = tmp_path / "marketing.csv"
    csv.write_text("age,churn\n25,0\n41,1\n33,0\n")
    client.datasets(project).upload("marketing", csv)
    src = source(
        tmp_path,
        {
            "train.py": TRAIN,
            "lib/helpers.py": "X = 1\n",
            ".git/HEAD": "ref: refs/heads/main\n",
            "__pycache__/train.cpython-311.pyc": "",
            ".venv/bin/python": "",
            "lib/old.pyc": "",
        },
    )
    estimator = shipyard.Estimator(
        "train.py",
        src,
        hyperparameters={"epochs": 3},
        metric_definitions=[{"name": "loss", "regex": r"loss=([0-9.]+)"}],
        project=project,
        session=client,
    )
    job = estimator.fit({"train": "dataset:marketing:1"})

    assert job.status == "Completed", job.reason
    assert re.fullmatch(r"train-\d{8}-\d{6}-\d{3}", job.name)
    assert estimator.latest_job is job
    printed = capsys.readouterr().out
    assert "packed: ['lib', 'lib/helpers.py', 'train.py']" in printed
    assert "rows=3" in printed and "epoch=2 loss=0.33" in printed

    path, version = str(job.model_artifact).rsplit("@", 1)
    assert path == f"jobs/{job.name}/model.tar.gz"
    model = client.artifacts(project).get(path, version=int(version))
    assert isinstance(model, bytes)
    assert member(model, "model.txt") == "trained on 3 rows"

    run = client.tracking(project).get_run(str(job.run_id))
    assert run["status"] == "FINISHED"
    assert run["metrics"]["acc"]["value"] == 0.9  # shipyard.log_metric inside the job
    assert run["metrics"]["loss"]["value"] == 0.33  # read from the log by the regex
    assert run["params"] == {"epochs": "3"}


def test_the_job_run_is_left_to_the_platform_to_end(
    session: tuple[shipyard.Session, str], tmp_path: Path
) -> None:
    """algo-1 logs and exits while algo-2 still works: its exit must not end the job's run."""
    client, project = session
    script = """
        import os, time
        import shipyard

        if os.environ["RANK"] == "0":
            shipyard.log_metric("acc", 0.9)
            print("rank 0 done")
        else:
            time.sleep(6)
            print("rank 1 done")
    """
    src = source(tmp_path, {"train.py": script})
    estimator = shipyard.Estimator(
        "train.py", src, instance_count=2, project=project, session=client
    )
    job = estimator.fit(wait=False)
    tracking = client.tracking(project)

    deadline = time.monotonic() + 30
    while "acc" not in (run := _run_of(job, tracking))["metrics"]:  # algo-1 flushed at exit
        assert time.monotonic() < deadline, job.refresh()
        time.sleep(0.1)
    time.sleep(1.0)  # time enough for an exit hook that wrongly ended the run to have done it
    assert job.refresh().status == "Running"
    assert tracking.get_run(run["id"])["status"] == "RUNNING"

    assert job.wait().status == "Completed"
    assert tracking.get_run(run["id"])["status"] == "FINISHED"
    assert list(job.logs(instance="algo-2"))[-1] == "rank 1 done"


def _run_of(job: shipyard.Job, tracking: shipyard.Tracking) -> dict[str, object]:
    job.refresh()
    if job.run_id is None:
        return {"metrics": {}}
    return tracking.get_run(job.run_id)


def test_a_failing_script_raises_job_failed_with_its_reason(
    session: tuple[shipyard.Session, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    client, project = session
    script = """
        print("loading the data")
        raise SystemExit("bad data in row 7")
    """
    src = source(tmp_path, {"fail.py": script})
    estimator = shipyard.Estimator(
        "fail.py", src, base_job_name="nightly", project=project, session=client
    )
    with pytest.raises(shipyard.JobFailed) as caught:
        estimator.fit()

    failed = caught.value
    assert failed.job.status == "Failed" and failed.job.name.startswith("nightly-")
    assert "AlgorithmError: algo-1 exited with code 1" in failed.reason
    assert "bad data in row 7" in failed.reason
    assert f"job '{failed.job.name}' ended Failed" in str(failed)
    assert "loading the data" in capsys.readouterr().out
    assert client.jobs(project).get(failed.job.name).status == "Failed"


def test_local_mistakes_are_refused_before_anything_is_sent(
    session: tuple[shipyard.Session, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, project = session
    src = source(tmp_path, {"train.py": "print('hi')\n"})

    missing = shipyard.Estimator(
        "train.py", src, requirements="requirements.txt", project=project, session=client
    )
    with pytest.raises(
        FileNotFoundError, match=re.escape("requirements file 'requirements.txt' is not in")
    ):
        missing.fit()
    no_script = shipyard.Estimator("tain.py", src, project=project, session=client)
    with pytest.raises(
        FileNotFoundError, match=re.escape("entry point 'tain.py' is not in source_dir")
    ):
        no_script.fit()
    (src / "weights.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    monkeypatch.setattr(_jobs, "MAX_SOURCE_BYTES", 1024 * 1024)
    too_big = shipyard.Estimator("train.py", src, project=project, session=client)
    with pytest.raises(ValueError, match="is over 1 MiB; keep data and large files out of it"):
        too_big.fit()

    assert client.jobs(project).list() == []
    assert client.artifacts(project).ls("jobs-src/") == []


def test_processor_runs_a_processing_job_and_stores_its_outputs(
    session: tuple[shipyard.Session, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, project = session
    client.artifacts(project).put("data/raw.csv", b"age\n25\n\n41\n")
    script = """
        import os, pathlib, sys
        raw = pathlib.Path(os.environ["SM_CHANNEL_RAW"], "raw.csv").read_text().splitlines()
        kept = [line for line in raw if line] if "--drop-empty" in sys.argv else raw
        out = pathlib.Path(os.environ["SM_OUTPUT_DATA_DIR"])
        (out / "clean.csv").write_text("\\n".join(kept) + "\\n")
        print("kept", len(kept) - 1, "rows")
    """
    src = source(tmp_path, {"clean.py": script})
    monkeypatch.setenv("SHIPYARD_PROJECT", project)  # the default project, as inside a notebook
    processor = shipyard.Processor("clean.py", src, session=client)
    job = processor.run({"raw": "data/raw.csv"}, arguments=["--drop-empty"], logs=False)

    assert (job.kind, job.status, job.model_artifact) == ("processing", "Completed", None)
    assert job.output_artifacts["output"] == [f"jobs/{job.name}/output/clean.csv@1"]
    assert client.artifacts(project).get(f"jobs/{job.name}/output/clean.csv") == b"age\n25\n41\n"
    assert "kept 2 rows" in list(job.logs())
    assert job.spec["arguments"] == ["--drop-empty"]
