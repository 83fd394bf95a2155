"""Capture files to rows: every body shape the model server accepts, outputs, time windows."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from pathlib import Path

import orjson
import pytest
from tests.unit.monitoring.helpers import T0, body, record, write_capture

from shipyard.monitoring.capture import read_capture
from shipyard.monitoring.statistics import FeatureStatistics, Statistics


def baseline(*kinds: tuple[str, str]) -> Statistics:
    features = [
        FeatureStatistics(name=name, kind=kind, count=1, missing=0, completeness=1.0)  # type: ignore[arg-type]
        for name, kind in kinds
    ]
    return Statistics(rows=1, features=features)


BASELINE = baseline(("age", "integral"), ("income", "fractional"), ("plan", "string"))


def j(value: object) -> str:
    return orjson.dumps(value).decode()


def rows_of(path: Path, **window: object) -> list[dict[str, object]]:
    return read_capture([path], BASELINE, **window).to_pylist()  # type: ignore[arg-type]


def test_every_input_shape(tmp_path: Path) -> None:
    records = [
        record("features", body(j({"features": [25, 2.5, "basic"]})), body(j({"prediction": 0.9}))),
        record(
            "instances",
            body(j({"instances": [[31, 3.5, "premium"], [47, None, "basic"]]})),
            body(j({"predictions": [0.1, 0.2], "model_version": "v23"})),
        ),
        record(
            "bare-rows",
            body(j([[52, 4.5, "basic"], [38, 5.5, "gold"]])),
            body(j([[0.3, 0.7], [0.6, 0.4]])),
        ),
        record("bare-row", body(j([60, 6.5, "basic"])), body(j({"prediction": "yes"}))),
        record(
            "csv",
            body("19,1.25,basic\r\n23,,premium\n", "text/csv"),
            body("0.8\n0.7\n", "text/csv"),
        ),
        record("inputs", body(j({"inputs": [70, 7.5, "basic"]})), None),
        record("bool-and-number", body(j({"features": [True, 8.5, 3]}))),
    ]
    rows = rows_of(write_capture(tmp_path / "c.jsonl", records))

    got = [
        (r["event_id"], r["row"], r["age"], r["income"], r["plan"], r["prediction"]) for r in rows
    ]
    assert sorted(got, key=lambda r: (str(r[0]), r[1])) == [
        ("bare-row", 1, 60.0, 6.5, "basic", None),
        ("bare-rows", 1, 52.0, 4.5, "basic", 0.3),  # a list answer: its first value
        ("bare-rows", 2, 38.0, 5.5, "gold", 0.6),
        ("bool-and-number", 1, 1.0, 8.5, "3", None),  # as the model server reads them
        ("csv", 1, 19.0, 1.25, "basic", 0.8),
        ("csv", 2, 23.0, None, "premium", 0.7),  # an empty CSV cell is missing
        ("features", 1, 25.0, 2.5, "basic", 0.9),
        ("inputs", 1, 70.0, 7.5, "basic", None),
        ("instances", 1, 31.0, 3.5, "premium", 0.1),
        ("instances", 2, 47.0, None, "basic", 0.2),
    ]
    assert {r["status"] for r in rows} == {"ok"}
    assert {r["variant"] for r in rows} == {"AllTraffic"}
    assert {r["model_version"] for r in rows} == {"v23"}


def test_unreadable_and_uncaptured_records_are_kept_once_with_a_status(tmp_path: Path) -> None:
    records = [
        record("null-input", None, body(j({"prediction": 1.0}))),
        record("base64", body("AAAA", "application/x-npy", "base64")),
        record("bad-json", body("{not json")),
        record("wrong-width", body(j({"features": [1, 2]}))),
        record("object", body(j({"age": 3}))),
        record("text-in-number", body(j({"features": ["old", 2.0, "basic"]}))),
    ]
    path = write_capture(tmp_path / "c.jsonl", records)
    with path.open("ab") as out:
        out.write(b'{"event_id": "torn", "ti')  # a torn last line is skipped

    rows = {r["event_id"]: r for r in rows_of(path)}

    assert set(rows) == {r["event_id"] for r in records}
    assert rows["null-input"]["status"] == "no_input"
    assert rows["null-input"]["prediction"] == 1.0
    for name in ("base64", "bad-json", "wrong-width", "object"):
        assert rows[name]["status"] == "unreadable", name
        assert rows[name]["age"] is None
    text = rows["text-in-number"]
    assert text["status"] == "ok"
    assert math.isnan(text["age"])  # type: ignore[arg-type]  # NaN: present, not a number
    assert text["income"] == 2.0


def test_time_window_is_start_inclusive_end_exclusive(tmp_path: Path) -> None:
    records = [
        record(f"e{i}", body(j({"features": [i, 1.0, "a"]})), at=T0 + timedelta(minutes=i))
        for i in range(5)
    ]
    offset = record("offset", body(j({"features": [9, 1.0, "a"]})))
    offset["time"] = "2026-11-24T12:01:30+02:00"  # not the gateway's form: 10:01:30 UTC
    path = write_capture(tmp_path / "c.jsonl", [*records, offset])

    inside = rows_of(path, start=T0 + timedelta(minutes=1), end=T0 + timedelta(minutes=3))
    naive = rows_of(path, start=(T0 + timedelta(minutes=3)).replace(tzinfo=None))

    assert sorted(r["event_id"] for r in inside) == ["e1", "e2", "offset"]
    assert sorted(r["event_id"] for r in naive) == ["e3", "e4"]
    times = {r["event_id"]: r["time"] for r in inside}
    assert times["e2"] == datetime(2026, 11, 24, 10, 2)  # naive UTC
    assert times["offset"] == datetime(2026, 11, 24, 10, 1, 30)


def test_many_files_and_no_files(tmp_path: Path) -> None:
    paths = [
        write_capture(
            tmp_path / f"{n}.jsonl",
            [record(f"{n}-{i}", body(j({"features": [i, 0.5, "a"]}))) for i in range(10)],
        )
        for n in range(3)
    ]

    assert read_capture(paths, BASELINE).num_rows == 30
    empty = read_capture([], BASELINE)
    assert empty.num_rows == 0
    assert empty.column_names[:6] == [
        "event_id",
        "time",
        "variant",
        "model_version",
        "row",
        "status",
    ]


def test_refuses_glob_characters_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="may not contain"):
        read_capture([tmp_path / "*.jsonl"], BASELINE)
    with pytest.raises(FileNotFoundError):
        read_capture([tmp_path / "missing.jsonl"], BASELINE)


def test_feature_names_may_not_shadow_capture_columns(tmp_path: Path) -> None:
    path = write_capture(tmp_path / "c.jsonl", [])
    with pytest.raises(ValueError, match="time"):
        read_capture([path], baseline(("time", "integral")))
