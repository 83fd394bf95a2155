"""The batch-transform runner on a real model and real files: records in, one line per record
out, in order, exactly as the model server's handler answers; rejected records named by line.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from shipyard.hosting.modelserver.handler import Handler
from shipyard.hosting.transform import records
from shipyard.hosting.transform.runner import (
    Options,
    Paths,
    Shard,
    TransformFailed,
    main,
    prepare_model,
    run,
)
from shipyard.registry.manifest import manifest_digest, manifest_of

FEATURES = 3


@pytest.fixture(scope="module")
def model() -> LogisticRegression:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, FEATURES))
    return LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))


@pytest.fixture
def rows() -> np.ndarray[Any, Any]:
    return np.random.default_rng(1).normal(size=(7, FEATURES))


def _paths(tmp: Path, model: LogisticRegression, files: dict[str, bytes]) -> Paths:
    channel, data = tmp / "model-channel", tmp / "data"
    channel.mkdir()
    joblib.dump(model, channel / "model.joblib")
    for name, content in files.items():
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).write_bytes(content)
    return Paths(channel, data, tmp / "model", tmp / "out")


def _csv(rows: np.ndarray[Any, Any]) -> bytes:
    return "".join(",".join(repr(float(v)) for v in row) + "\n" for row in rows).encode()


def _count_calls(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The bodies the handler is asked to answer, in order."""
    bodies: list[bytes] = []
    respond = Handler.respond

    def spy(self: Handler, body: bytes, ctx: Any) -> Any:
        bodies.append(body)
        return respond(self, body, ctx)

    monkeypatch.setattr(Handler, "respond", spy)
    return bodies


@pytest.mark.parametrize(("strategy", "calls"), [("MultiRecord", 3), ("SingleRecord", 7)])
def test_csv_records_are_batched_and_answered_in_order(
    tmp_path: Path,
    model: LogisticRegression,
    rows: np.ndarray[Any, Any],
    monkeypatch: pytest.MonkeyPatch,
    strategy: str,
    calls: int,
) -> None:
    paths = _paths(tmp_path, model, {"a.csv": _csv(rows)})
    bodies = _count_calls(monkeypatch)
    progress = io.StringIO()

    done = run(paths, Options(strategy=strategy, max_payload_records=3), Shard(), progress)

    assert done == 7 and len(bodies) == calls
    lines = (paths.output_dir / "a.csv.out").read_text().splitlines()
    assert [int(v) for v in lines] == model.predict(rows).tolist()
    assert "transform: 7/7 records (100%) a.csv" in progress.getvalue()


def test_a_header_and_blank_lines_are_not_records(
    tmp_path: Path, model: LogisticRegression, rows: np.ndarray[Any, Any]
) -> None:
    body = b"x0,x1,x2\n" + _csv(rows[:3]) + b"\n\r\n" + _csv(rows[3:])
    paths = _paths(tmp_path, model, {"sub/b.csv": body})

    run(paths, Options(skip_header=True, predict="proba"), Shard(), io.StringIO())

    lines = (paths.output_dir / "sub" / "b.csv.out").read_text().splitlines()
    assert np.allclose([float(v) for v in lines], model.predict_proba(rows)[:, 1])


@pytest.mark.parametrize("strategy", ["MultiRecord", "SingleRecord"])
def test_json_lines_give_one_json_value_per_record(
    tmp_path: Path, model: LogisticRegression, rows: np.ndarray[Any, Any], strategy: str
) -> None:
    docs = [{"features": row.tolist()} if i % 2 else row.tolist() for i, row in enumerate(rows)]
    body = "".join(json.dumps(doc) + "\n" for doc in docs).encode()
    paths = _paths(tmp_path, model, {"c.jsonl": body})
    options = Options(content_type=records.JSONLINES, strategy=strategy, max_payload_records=4)

    run(paths, options, Shard(), io.StringIO())

    lines = (paths.output_dir / "c.jsonl.out").read_text().splitlines()
    assert [json.loads(line) for line in lines] == model.predict(rows).tolist()


def test_split_none_sends_each_file_whole(
    tmp_path: Path, model: LogisticRegression, rows: np.ndarray[Any, Any]
) -> None:
    paths = _paths(tmp_path, model, {"d.csv": _csv(rows)})

    run(paths, Options(split_type=records.WHOLE, accept=records.JSON), Shard(), io.StringIO())

    answer = json.loads((paths.output_dir / "d.csv.out").read_text())
    assert answer == {"predictions": model.predict(rows).tolist()}


def test_a_rejected_record_fails_naming_its_file_and_line(
    tmp_path: Path, model: LogisticRegression, rows: np.ndarray[Any, Any]
) -> None:
    lines = _csv(rows).decode().splitlines()
    lines[2] = "0.5,oops,1.0"
    body = ("x0,x1,x2\n" + "\n".join(lines) + "\n").encode()
    paths = _paths(tmp_path, model, {"e.csv": body})
    failure = tmp_path / "failure"
    argv = [
        *("--model-channel", str(paths.model_channel), "--data-channel", str(paths.data_channel)),
        *("--model-dir", str(paths.model_dir), "--output-dir", str(paths.output_dir)),
        *("--failure-file", str(failure), "--skip_header", "True"),
    ]

    assert main(argv, env={}) == 1

    reason = failure.read_text()
    assert reason.startswith("e.csv line 4: the model rejected the record: ModelError:"), reason
    assert "'oops' is not a number" in reason


def test_a_json_line_that_is_not_a_row_is_named(tmp_path: Path, model: LogisticRegression) -> None:
    body = b'[1, 2, 3]\n{"instances": [[1, 2, 3]]}\n'
    paths = _paths(tmp_path, model, {"f.jsonl": body})

    with pytest.raises(TransformFailed, match=r"^f\.jsonl line 2: MultiRecord sends each line"):
        run(paths, Options(content_type=records.JSONLINES), Shard(), io.StringIO())


def test_inference_py_shapes_the_output(
    tmp_path: Path, model: LogisticRegression, rows: np.ndarray[Any, Any]
) -> None:
    paths = _paths(tmp_path, model, {"g.csv": _csv(rows)})
    script = """
        def predict_fn(data, model):
            return model.predict(data) + 100
    """
    (paths.model_channel / "model.joblib").unlink()
    _tar(paths.model_channel / "model.tar.gz", model, script)

    run(paths, Options(flavor="custom"), Shard(), io.StringIO())

    lines = (paths.output_dir / "g.csv.out").read_text().splitlines()
    assert [int(v) for v in lines] == (model.predict(rows) + 100).tolist()


def _tar(target: Path, model: LogisticRegression, script: str) -> None:
    weights = io.BytesIO()
    joblib.dump(model, weights)
    with tarfile.open(target, "w:gz") as tar:
        for name, data in (
            ("model.joblib", weights.getvalue()),
            ("inference.py", textwrap.dedent(script).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_the_artifact_is_checked_against_the_registered_digest(
    tmp_path: Path, model: LogisticRegression
) -> None:
    channel = tmp_path / "channel"
    channel.mkdir()
    _tar(channel / "model.tar.gz", model, "")
    good = manifest_digest(manifest_of(channel / "model.tar.gz", "model.tar.gz"))

    assert (prepare_model(channel, tmp_path / "ok", good) / "model.joblib").is_file()
    with pytest.raises(TransformFailed, match="changed since it was registered"):
        prepare_model(channel, tmp_path / "bad", "0" * 64)
    assert not (tmp_path / "bad").exists()


def test_an_unsafe_archive_is_refused(tmp_path: Path) -> None:
    channel = tmp_path / "channel"
    channel.mkdir()
    with tarfile.open(channel / "model.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("../escape.joblib")
        tar.addfile(info, io.BytesIO(b""))

    with pytest.raises(TransformFailed, match=r"cannot be unpacked: .*'\.\.'"):
        prepare_model(channel, tmp_path / "model", None)
    assert not (tmp_path / "escape.joblib").exists()


def test_instances_share_the_files_by_index(
    tmp_path: Path, model: LogisticRegression, rows: np.ndarray[Any, Any]
) -> None:
    """A real ``python -m shipyard.hosting.transform`` per instance, with the job runtime's
    variables: instance i of n takes the sorted files i, i + n, …"""
    files = {f"part-{i}.csv": _csv(rows[i : i + 2]) for i in range(5)}
    paths = _paths(tmp_path, model, files)
    taken: dict[str, set[str]] = {}
    for host in ("algo-1", "algo-2"):
        output = tmp_path / host
        env = {
            **os.environ,
            "SM_CHANNEL_MODEL": str(paths.model_channel),
            "SM_CHANNEL_DATA": str(paths.data_channel),
            "SM_MODEL_DIR": str(tmp_path / f"model-{host}"),
            "SM_OUTPUT_DATA_DIR": str(output),
            "SM_OUTPUT_DIR": str(tmp_path),
            "SM_HOSTS": json.dumps(["algo-1", "algo-2"]),
            "SM_CURRENT_HOST": host,
        }
        argv = [sys.executable, "-m", "shipyard.hosting.transform", "--max_payload_records", "2"]
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "transform: done:" in done.stdout
        taken[host] = {path.name for path in output.iterdir()}

    assert taken == {
        "algo-1": {"part-0.csv.out", "part-2.csv.out", "part-4.csv.out"},
        "algo-2": {"part-1.csv.out", "part-3.csv.out"},
    }
    out = (tmp_path / "algo-2" / "part-3.csv.out").read_text().splitlines()
    assert [int(v) for v in out] == model.predict(rows[3:5]).tolist()


def test_batches_stay_under_the_payload_limit() -> None:
    found = [records.Record(i, b"x" * 40) for i in range(1, 8)]

    sizes = [len(b) for b in records.batches(found, size=5, max_bytes=100)]

    assert sizes == [2, 2, 2, 1]


def test_an_answer_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(records.RecordError, match="answered 2 value"):
        records.answer_lines(b"1\n0\n", records.CSV, 3)
    assert records.answer_lines(b'{"prediction": [0.2, 0.8]}', records.JSON, 1) == [b"[0.2,0.8]"]
