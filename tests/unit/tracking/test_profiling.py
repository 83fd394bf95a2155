"""Dataset profiles: statistics equal Python's own on the same data, CSV and Parquet agree, and
unreadable files fail with a short reason instead of a wrong profile."""

from __future__ import annotations

import datetime as dt
import json
import math
import statistics
import tempfile
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipyard.tracking.profiling import (
    ColumnProfile,
    DatasetFormatError,
    DatasetProfile,
    Format,
    detect_format,
    profile_file,
)

FORMATS: list[Format] = ["csv", "parquet"]


def write(table: pa.Table, directory: Path, fmt: Format, name: str = "data") -> Path:
    path = directory / f"{name}.{fmt}"
    if fmt == "csv":
        pa_csv.write_csv(table, path)
    else:
        pq.write_table(table, path)
    return path


def profile_of(table: pa.Table, directory: Path, fmt: Format, *, top_k: int = 5) -> DatasetProfile:
    return profile_file(write(table, directory, fmt), fmt, top_k=top_k)


def column(profile: DatasetProfile, name: str) -> ColumnProfile:
    (found,) = [c for c in profile.columns if c.name == name]
    return found


def write_bytes(directory: Path, name: str, content: bytes) -> Path:
    path = directory / name
    path.write_bytes(content)
    return path


# --- statistics per type ------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_integer_column(tmp_path: Path, fmt: Format) -> None:
    values = [3, 1, 4, 1, 5, 9, 2, 6, None, 5, 3, 5]
    present = [v for v in values if v is not None]
    profile = profile_of(pa.table({"n": values}), tmp_path, fmt)

    assert profile.row_count == 12
    n = column(profile, "n")
    assert (n.type, n.physical_type) == ("integer", "BIGINT")
    assert (n.count, n.missing, n.distinct) == (11, 1, 7)
    assert (n.min, n.max) == (1.0, 9.0)
    assert n.mean == pytest.approx(statistics.fmean(present), rel=1e-12)
    assert n.std == pytest.approx(statistics.stdev(present), rel=1e-12)
    # 5 three times; 1 and 3 twice each, tied, so ascending; then the smallest single: 2.
    assert n.top_values == [("5", 3), ("1", 2), ("3", 2), ("2", 1), ("4", 1)]


@pytest.mark.parametrize("fmt", FORMATS)
def test_float_column_matches_numpy(tmp_path: Path, fmt: Format) -> None:
    rng = np.random.default_rng(7)
    data = rng.normal(loc=3.0, scale=2.5, size=5_000)
    mask = rng.random(5_000) < 0.1
    profile = profile_of(pa.table({"x": pa.array(data, mask=mask)}), tmp_path, fmt)

    x = column(profile, "x")
    present = data[~mask]
    assert (x.type, x.physical_type) == ("float", "DOUBLE")
    assert (x.count, x.missing) == (present.size, int(mask.sum()))
    assert x.distinct == np.unique(present).size
    assert (x.min, x.max) == (float(present.min()), float(present.max()))
    assert x.mean == pytest.approx(float(np.mean(present)), rel=1e-12)
    assert x.std == pytest.approx(float(np.std(present, ddof=1)), rel=1e-12)


@pytest.mark.parametrize("fmt", FORMATS)
def test_nan_counts_as_missing_and_stays_out_of_every_statistic(
    tmp_path: Path, fmt: Format
) -> None:
    nan = float("nan")
    table = pa.table({"x": [1.5, nan, 2.5, None, nan, 1.5]})
    x = column(profile_of(table, tmp_path, fmt), "x")

    assert (x.count, x.missing, x.distinct) == (3, 3, 2)
    assert (x.min, x.max) == (1.5, 2.5)
    assert x.mean == pytest.approx(statistics.fmean([1.5, 2.5, 1.5]))
    assert x.std == pytest.approx(statistics.stdev([1.5, 2.5, 1.5]))
    assert x.top_values == [("1.5", 2), ("2.5", 1)]


def test_an_all_nan_column_has_no_statistics(tmp_path: Path) -> None:
    x = column(profile_of(pa.table({"x": [float("nan")] * 3}), tmp_path, "parquet"), "x")
    assert (x.count, x.missing, x.distinct) == (0, 3, 0)
    assert (x.min, x.max, x.mean, x.std, x.top_values) == (None, None, None, None, [])


def test_infinities_are_values_but_not_json(tmp_path: Path) -> None:
    table = pa.table({"x": [1.0, float("inf"), float("-inf")]})
    x = column(profile_of(table, tmp_path, "parquet"), "x")

    assert (x.count, x.missing) == (3, 0)
    assert (x.min, x.max) == (-math.inf, math.inf)
    as_json = x.as_dict()
    assert (as_json["min"], as_json["max"], as_json["mean"], as_json["std"]) == (None,) * 4
    json.dumps(as_json, allow_nan=False)


@pytest.mark.parametrize("fmt", FORMATS)
def test_string_column(tmp_path: Path, fmt: Format) -> None:
    values = ["pear", "apple", "fig", None, "pear", "fig", "kiwi", "Zebra"]
    s = column(profile_of(pa.table({"s": values}), tmp_path, fmt), "s")

    assert (s.type, s.physical_type) == ("string", "VARCHAR")
    assert (s.count, s.missing, s.distinct) == (7, 1, 5)
    assert (s.min, s.max) == ("Zebra", "pear")  # byte order: upper case first
    assert (s.mean, s.std) == (None, None)
    assert s.top_values == [("fig", 2), ("pear", 2), ("Zebra", 1), ("apple", 1), ("kiwi", 1)]


@pytest.mark.parametrize("fmt", FORMATS)
def test_boolean_column_is_numeric_for_statistics(tmp_path: Path, fmt: Format) -> None:
    values = [True, False, True, True, None, False, True]
    as_numbers = [1, 0, 1, 1, 0, 1]
    b = column(profile_of(pa.table({"b": values}), tmp_path, fmt), "b")

    assert (b.type, b.physical_type) == ("boolean", "BOOLEAN")
    assert (b.count, b.missing, b.distinct) == (6, 1, 2)
    assert (b.min, b.max) == (0.0, 1.0)
    assert b.mean == pytest.approx(statistics.fmean(as_numbers))
    assert b.std == pytest.approx(statistics.stdev(as_numbers))
    assert b.top_values == [("true", 4), ("false", 2)]


@pytest.mark.parametrize("fmt", FORMATS)
def test_date_column_reports_iso_dates(tmp_path: Path, fmt: Format) -> None:
    values = [dt.date(2024, 3, 1), dt.date(2023, 12, 31), None, dt.date(2024, 3, 1)]
    d = column(profile_of(pa.table({"d": values}), tmp_path, fmt), "d")

    assert (d.type, d.physical_type) == ("date", "DATE")
    assert (d.count, d.missing, d.distinct) == (3, 1, 2)
    assert (d.min, d.max) == ("2023-12-31", "2024-03-01")
    assert (d.mean, d.std) == (None, None)
    assert d.top_values == [("2024-03-01", 2), ("2023-12-31", 1)]


def test_timestamp_columns_report_iso_timestamps(tmp_path: Path) -> None:
    naive = [dt.datetime(2024, 1, 2, 3, 4, 5, 600000), dt.datetime(2023, 6, 1), None]
    zoned = pa.array(
        [dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC), None, None],
        pa.timestamp("us", tz="Europe/Paris"),
    )
    profile = profile_of(pa.table({"t": naive, "z": zoned}), tmp_path, "parquet")

    t = column(profile, "t")
    assert (t.type, t.physical_type, t.count, t.missing) == ("timestamp", "TIMESTAMP", 2, 1)
    assert (t.min, t.max) == ("2023-06-01T00:00:00", "2024-01-02T03:04:05.6")
    assert t.top_values == [("2023-06-01T00:00:00", 1), ("2024-01-02T03:04:05.6", 1)]
    z = column(profile, "z")
    assert (z.type, z.physical_type) == ("timestamp", "TIMESTAMP WITH TIME ZONE")
    assert z.min == z.max == "2024-01-01T12:00:00+00"  # rendered in UTC whatever the zone


def test_other_parquet_types_still_get_counts_and_top_values(tmp_path: Path) -> None:
    table = pa.table(
        {
            "blob": [b"\x00\xff", b"ab", b"ab", None],
            "items": [[1, 2], [1, 2], None, [3]],
            "f32": pa.array([0.5, 0.5, 1.5, None], pa.float32()),
            "money": pa.array([None, *map(Decimal, "122")], pa.decimal128(10, 2)),
        }
    )
    profile = profile_of(table, tmp_path, "parquet")

    blob, items = column(profile, "blob"), column(profile, "items")
    assert (blob.type, blob.count, blob.distinct, blob.min) == ("binary", 3, 2, None)
    assert blob.top_values[0] == ("ab", 2)
    assert (items.type, items.physical_type, items.count) == ("other", "BIGINT[]", 3)
    assert items.top_values == [("[1, 2]", 2), ("[3]", 1)]
    f32 = column(profile, "f32")
    assert (f32.type, f32.physical_type, f32.mean, f32.top_values[0]) == (
        "float",
        "FLOAT",
        pytest.approx(statistics.fmean([0.5, 0.5, 1.5])),
        ("0.5", 2),
    )
    money = column(profile, "money")
    assert (money.type, money.physical_type) == ("float", "DECIMAL(10,2)")
    assert (money.min, money.max, money.top_values[0]) == (1.0, 2.0, ("2.00", 2))


def test_single_value_has_no_std_and_empty_column_no_statistics(tmp_path: Path) -> None:
    table = pa.table({"one": pa.array([None, 4, None]), "none": pa.array([None] * 3, pa.int64())})
    profile = profile_of(table, tmp_path, "parquet")

    one = column(profile, "one")
    assert (one.count, one.min, one.max, one.mean, one.std) == (1, 4.0, 4.0, 4.0, None)
    none = column(profile, "none")
    assert (none.count, none.missing, none.distinct, none.top_values) == (0, 3, 0, [])
    assert (none.min, none.max, none.mean, none.std) == (None, None, None, None)


# --- top values ---------------------------------------------------------------------------------


def test_top_value_ties_sort_numbers_numerically(tmp_path: Path) -> None:
    n = column(profile_of(pa.table({"n": [10, 2, 10, 2, 1, 30]}), tmp_path, "parquet"), "n")
    assert n.top_values == [("2", 2), ("10", 2), ("1", 1), ("30", 1)]


@pytest.mark.parametrize(
    ("top_k", "expected"), [(0, []), (1, [("c", 3)]), (2, [("c", 3), ("a", 2)])]
)
def test_top_k_limits_top_values_but_not_distinct(
    tmp_path: Path, top_k: int, expected: list[tuple[str, int]]
) -> None:
    table = pa.table({"s": ["a", "c", "b", "c", "a", "c"]})
    s = column(profile_of(table, tmp_path, "parquet", top_k=top_k), "s")
    assert (s.top_values, s.distinct) == (expected, 3)


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    path = write(pa.table({"a": [1]}), tmp_path, "csv")
    with pytest.raises(ValueError, match="top_k"):
        profile_file(path, "csv", top_k=-1)
    with pytest.raises(ValueError, match="unknown dataset format 'xlsx'"):
        profile_file(path, "xlsx")  # type: ignore[arg-type]


# --- names, parity, shapes ----------------------------------------------------------------------

WEIRD_NAMES = ["with space", 'quo"te', "apostrophe's", "ünïcødé 列", "semi;colon", "select", "a.b"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_weird_column_names_survive(tmp_path: Path, fmt: Format) -> None:
    table = pa.table({name: [i, i + 1, None] for i, name in enumerate(WEIRD_NAMES)})
    profile = profile_of(table, tmp_path, fmt)

    assert [c.name for c in profile.columns] == WEIRD_NAMES
    for i, c in enumerate(profile.columns):
        assert (c.count, c.missing, c.min, c.max) == (2, 1, float(i), float(i + 1))


def mixed_table() -> pa.Table:
    rng = np.random.default_rng(3)
    size = 2_000
    mask = rng.random(size) < 0.07
    return pa.table(
        {
            "id": pa.array(np.arange(size)),
            "bucket": pa.array(rng.integers(-5, 5, size), mask=mask),
            "score": pa.array(rng.normal(size=size) + 0.5, mask=mask[::-1].copy()),
            "label": pa.array(np.array(["red", "green", "blue"])[rng.integers(0, 3, size)]),
            "flag": pa.array(rng.random(size) < 0.3, mask=mask),
            "day": pa.array(np.datetime64("2024-01-01") + rng.integers(0, 60, size)).cast(
                pa.date32()
            ),
        }
    )


def test_csv_and_parquet_profile_the_same_data_identically(tmp_path: Path) -> None:
    table = mixed_table()
    from_csv = profile_of(table, tmp_path, "csv")
    from_parquet = profile_of(table, tmp_path, "parquet")

    assert from_csv.as_dict() == from_parquet.as_dict()
    assert (from_csv.format, from_parquet.format) == ("csv", "parquet")
    assert from_csv.schema() == [
        {"name": "id", "type": "integer", "physical_type": "BIGINT"},
        {"name": "bucket", "type": "integer", "physical_type": "BIGINT"},
        {"name": "score", "type": "float", "physical_type": "DOUBLE"},
        {"name": "label", "type": "string", "physical_type": "VARCHAR"},
        {"name": "flag", "type": "boolean", "physical_type": "BOOLEAN"},
        {"name": "day", "type": "date", "physical_type": "DATE"},
    ]


def test_as_dict_is_plain_json(tmp_path: Path) -> None:
    profile = profile_of(mixed_table(), tmp_path, "parquet", top_k=2)
    as_dict = profile.as_dict()

    assert set(as_dict) == {"row_count", "columns"}
    assert as_dict["row_count"] == 2_000
    assert json.loads(json.dumps(as_dict, allow_nan=False)) == as_dict  # lists, not tuples
    label = as_dict["columns"][3]
    assert label["name"] == "label" and len(label["top_values"]) == 2
    assert all(isinstance(pair, list) for pair in label["top_values"])


def test_header_only_csv_keeps_its_column_names(tmp_path: Path) -> None:
    path = write_bytes(tmp_path, "h.csv", b"a,b,c\n")
    profile = profile_file(path, "csv")

    assert profile.row_count == 0
    assert [c.name for c in profile.columns] == ["a", "b", "c"]
    assert all(
        (c.count, c.missing, c.distinct, c.top_values) == (0, 0, 0, []) for c in profile.columns
    )


def test_parquet_without_rows_keeps_its_schema(tmp_path: Path) -> None:
    empty = pa.table({"a": pa.array([], pa.int32()), "b": pa.array([], pa.string())})
    profile = profile_of(empty, tmp_path, "parquet")

    assert profile.row_count == 0
    assert profile.schema() == [
        {"name": "a", "type": "integer", "physical_type": "INTEGER"},
        {"name": "b", "type": "string", "physical_type": "VARCHAR"},
    ]
    assert all(c.count == 0 and c.min is None for c in profile.columns)


def test_csv_value_beyond_the_sniffed_sample_widens_the_type(tmp_path: Path) -> None:
    """DuckDB types CSV columns from a sample; a late contradiction re-sniffs, never fails."""
    body = b"a,b\n" + b"1,2\n" * 30_000 + b"abc,2\n"
    profile = profile_file(write_bytes(tmp_path, "late.csv", body), "csv")

    a = column(profile, "a")
    assert (profile.row_count, a.type, a.count, a.distinct) == (30_001, "string", 30_001, 2)
    assert a.top_values == [("1", 30_000), ("abc", 1)]


def test_quoted_single_column_is_not_mistaken_for_ragged_rows(tmp_path: Path) -> None:
    path = write_bytes(tmp_path, "one.csv", b'"a,b"\n"1,2"\n"3,4"\n')
    profile = profile_file(path, "csv")
    assert [(c.name, c.count) for c in profile.columns] == [("a,b", 2)]


# --- unreadable files ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("content", [b"", b"\n", b"  \r\n\n"])
def test_empty_file_is_refused(tmp_path: Path, fmt: Format, content: bytes) -> None:
    path = write_bytes(tmp_path, f"empty.{fmt}", content)
    with pytest.raises(DatasetFormatError, match=r"^the file is empty$") as caught:
        profile_file(path, fmt)
    assert isinstance(caught.value, ValueError)
    assert caught.value.field == "body"


def test_garbage_declared_as_parquet_is_refused(tmp_path: Path) -> None:
    path = write_bytes(tmp_path, "junk.parquet", b"this is not parquet at all\n" * 10)
    with pytest.raises(DatasetFormatError, match="magic bytes") as caught:
        profile_file(path, "parquet")
    assert str(tmp_path) not in caught.value.message  # the server's paths stay private


def test_truncated_parquet_is_refused(tmp_path: Path) -> None:
    whole = write(mixed_table(), tmp_path, "parquet").read_bytes()
    path = write_bytes(tmp_path, "cut.parquet", whole[: len(whole) // 2])
    with pytest.raises(DatasetFormatError, match="magic bytes"):
        profile_file(path, "parquet")


def test_parquet_declared_as_csv_is_refused(tmp_path: Path) -> None:
    path = write(mixed_table(), tmp_path, "parquet")
    with pytest.raises(DatasetFormatError, match="CSV"):
        profile_file(path, "csv")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"a,b,c\n1,2,3\n4,5,6,7\n8,9,10\n", "line 3: expected 3 columns, got 4"),
        (b"a,b,c\n1,2,3\n4,5\n8,9,10\n", "line 3: expected 3 columns, got 2"),
        (
            b"a,b,c,d\n" + b"1,2,x,0.5\n" * 100 + b"1,2,3,4,5\n" + b"1,2,x,0.5\n" * 100,
            "line 102: expected 4 columns, got 5",
        ),
        # A wider last row once made DuckDB's sniffer skip the rows above it as a "preamble".
        (b"a,b\n1,2\n3,4,5\n", "line 3: expected 2 columns, got 3"),
        (b"a\tb\n1\t2\n3\t4\t5\n", "line 3: expected 2 columns, got 3"),
    ],
)
def test_ragged_csv_is_refused_with_the_line(tmp_path: Path, body: bytes, message: str) -> None:
    path = write_bytes(tmp_path, "ragged.csv", body)
    with pytest.raises(DatasetFormatError) as caught:
        profile_file(path, "csv")
    assert caught.value.message == message
    assert caught.value.field == "body"


def test_error_messages_are_one_short_line(tmp_path: Path) -> None:
    path = write_bytes(tmp_path, "latin1.csv", b"a,b\n1,caf\xe9\n")
    with pytest.raises(DatasetFormatError) as caught:
        profile_file(path, "csv")
    message = caught.value.message
    assert "\n" not in message and 0 < len(message) <= 300
    assert message.startswith("line 2: ")


def test_missing_file_is_the_callers_problem(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        profile_file(tmp_path / "nope.csv", "csv")


# --- format detection ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "content_type", "head", "expected"),
    [
        (None, None, b"PAR1\x15\x04", "parquet"),
        ("data.csv", "text/csv", b"PAR1", "parquet"),  # the bytes win over the labels
        ("data.parquet", None, b"", "parquet"),
        ("DATA.PQ", None, b"a,b\n", "parquet"),
        (None, "application/vnd.apache.parquet", b"", "parquet"),
        (None, "Application/X-Parquet; charset=binary", b"", "parquet"),
        ("data.csv", "text/csv", b"a,b\n1,2\n", "csv"),
        (None, None, b"", "csv"),
        ("parquet.txt", "application/octet-stream", b"PAR", "csv"),
    ],
)
def test_detect_format(
    filename: str | None, content_type: str | None, head: bytes, expected: str
) -> None:
    assert detect_format(filename, content_type, head) == expected


# --- property: statistics equal Python's --------------------------------------------------------

optional_ints = st.lists(
    st.one_of(st.none(), st.integers(-(10**9), 10**9)), min_size=1, max_size=40
)
optional_float = st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=False))


@settings(max_examples=60, deadline=None)
@given(data=st.data(), fmt=st.sampled_from(FORMATS))
def test_statistics_equal_pythons(data: st.DataObject, fmt: Format) -> None:
    ints = data.draw(optional_ints, label="ints")
    floats = data.draw(st.lists(optional_float, min_size=len(ints), max_size=len(ints)))
    table = pa.table({"i": pa.array(ints, pa.int64()), "f": pa.array(floats, pa.float64())})
    with tempfile.TemporaryDirectory() as directory:
        profile = profile_of(table, Path(directory), fmt)

    assert profile.row_count == len(ints)
    for name, values in (("i", ints), ("f", floats)):
        present = [float(v) for v in values if v is not None]
        got = column(profile, name)
        assert (got.count, got.missing) == (len(present), len(values) - len(present))
        assert got.distinct == len(set(present))
        if not present:
            assert (got.min, got.max, got.mean) == (None, None, None)
            continue
        assert (got.min, got.max) == (min(present), max(present))
        assert got.mean == pytest.approx(statistics.fmean(present), rel=1e-9, abs=1e-6)
