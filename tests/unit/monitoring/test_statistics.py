"""Baselines: statistics of a CSV/Parquet file, suggested constraints, edited constraints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.unit.monitoring.helpers import write_csv

from shipyard.monitoring.statistics import (
    Constraints,
    EmptyDataset,
    Statistics,
    baseline_from_file,
)

ROWS = [
    (25, 1000.5, "basic", "true"),
    (31, 2500.0, "premium", "false"),
    (47, None, "basic", "true"),
    (52, 4100.25, "basic", "false"),
    (38, 3000.0, None, "true"),
]


@pytest.fixture
def small_csv(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "customers.csv", ["age", "income", "plan", "active"], ROWS)


def test_kinds_completeness_ranges_and_categories(small_csv: Path) -> None:
    stats = baseline_from_file(small_csv)

    assert stats.rows == 5
    assert stats.names == ["age", "income", "plan", "active"]
    age, income, plan, active = stats.features
    assert (age.kind, income.kind, plan.kind, active.kind) == (
        "integral",
        "fractional",
        "string",
        "string",
    )
    assert (age.missing, age.completeness) == (0, 1.0)
    assert (income.missing, income.completeness) == (1, 0.8)
    assert age.numeric is not None
    assert (age.numeric.min, age.numeric.max) == (25.0, 52.0)
    assert age.numeric.mean == pytest.approx(38.6)
    assert age.numeric.std == pytest.approx(np.std([25, 31, 47, 52, 38], ddof=1))
    assert income.numeric is not None
    assert income.numeric.mean == pytest.approx((1000.5 + 2500 + 4100.25 + 3000) / 4)
    assert plan.categorical is not None
    assert plan.categorical.frequencies == {"basic": 3, "premium": 1}
    assert (plan.categorical.other, plan.categorical.distinct, plan.missing) == (0, 2, 1)
    assert active.categorical is not None
    assert active.categorical.frequencies == {"true": 3, "false": 2}


def test_sketch_and_histogram_count_every_value(tmp_path: Path) -> None:
    values = np.random.default_rng(1).normal(10, 2, 20_000).round(3)
    path = write_csv(tmp_path / "x.csv", ["x"], ([v] for v in values))

    numeric = baseline_from_file(path).features[0].numeric

    assert numeric is not None
    sketch, histogram = numeric.sketch, numeric.histogram
    assert sum(sketch.counts) == sum(histogram.counts) == 20_000
    assert len(sketch.counts) == len(sketch.edges) + 1
    assert 900 <= len(sketch.edges) <= 1001  # ~1000 distinct quantile points
    assert sketch.edges[0] == values.min()
    assert sketch.edges[-1] == values.max()
    assert sketch.counts[-1] == 0  # nothing above the max
    assert len(histogram.edges) == 9  # 10 decile bins
    assert set(histogram.edges) <= set(sketch.edges)
    # equal-mass bins: each decile bin holds ~10% of the values
    assert all(abs(c - 2_000) <= 30 for c in histogram.counts)
    assert histogram.edges[4] == pytest.approx(np.median(values), abs=0.01)


def test_top_k_keeps_the_most_frequent_and_counts_the_rest(tmp_path: Path) -> None:
    rows = [[f"v{i % 7}"] for i in range(70)] + [["rare"]]
    path = write_csv(tmp_path / "c.csv", ["c"], rows)

    categorical = baseline_from_file(path, top_k=3).features[0].categorical

    assert categorical is not None
    assert categorical.frequencies == {"v0": 10, "v1": 10, "v2": 10}
    assert (categorical.other, categorical.distinct) == (41, 8)


def test_parquet_and_exclude(tmp_path: Path) -> None:
    table = pa.table({"x": [1.5, 2.5, None], "label": [0, 1, 0], "s": ["a", "b", "a"]})
    pq.write_table(table, tmp_path / "d.parquet")

    stats = baseline_from_file(tmp_path / "d.parquet", exclude=["label"])

    assert stats.names == ["x", "s"]
    assert stats.features[0].kind == "fractional"
    assert stats.features[0].missing == 1
    with pytest.raises(ValueError, match="nope"):
        baseline_from_file(tmp_path / "d.parquet", exclude=["nope"])


@pytest.mark.parametrize("content", ["", "a,b\n"])
def test_empty_csv_is_an_empty_dataset(tmp_path: Path, content: str) -> None:
    path = tmp_path / "empty.csv"
    path.write_text(content)

    with pytest.raises(EmptyDataset, match="no rows"):
        baseline_from_file(path)


def test_no_columns_left_is_an_empty_dataset(small_csv: Path) -> None:
    with pytest.raises(EmptyDataset, match="no feature columns"):
        baseline_from_file(small_csv, exclude=["age", "income", "plan", "active"])


def test_empty_parquet_is_an_empty_dataset(tmp_path: Path) -> None:
    pq.write_table(pa.table({"x": pa.array([], pa.float64())}), tmp_path / "e.parquet")

    with pytest.raises(EmptyDataset):
        baseline_from_file(tmp_path / "e.parquet")


def test_missing_file_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        baseline_from_file(tmp_path / "nope.csv")
    (tmp_path / "data.xlsx").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"\.csv or \.parquet"):
        baseline_from_file(tmp_path / "data.xlsx")


def test_statistics_round_trip_through_json(small_csv: Path) -> None:
    stats = baseline_from_file(small_csv)

    document = json.loads(json.dumps(stats.to_json()))

    assert Statistics.from_json(document) == stats
    assert document["features"][0]["numeric"]["sketch"]["edges"][0] == 25.0


# --- constraints -----------------------------------------------------------------------------


def test_suggested_constraints(small_csv: Path) -> None:
    constraints = Constraints.suggest(baseline_from_file(small_csv))

    age = constraints.features["age"]
    assert age.kind == "integral"
    assert age.completeness == 1.0
    # the baseline's range widened by 10% of its width (27), rounded outwards for integers
    assert (age.min, age.max) == (22.0, 55.0)
    assert constraints.features["income"].completeness == 0.79  # 0.8 less one point
    assert constraints.features["plan"].domain == ["basic", "premium"]
    assert constraints.features["plan"].min is None
    assert constraints.drift.psi == 0.2
    assert constraints.thresholds("age").ks == 0.1


def test_constraints_round_trip_and_partial_overrides(small_csv: Path) -> None:
    document = Constraints.suggest(baseline_from_file(small_csv)).to_json()
    document["features"]["age"]["max"] = 120  # a person loosens the range
    document["features"]["age"]["drift"] = {"psi": 0.3, "ks": None}

    constraints = Constraints.from_json(json.loads(json.dumps(document)))

    assert constraints.features["age"].max == 120.0
    thresholds = constraints.thresholds("age")
    assert (thresholds.psi, thresholds.ks, thresholds.js) == (0.3, None, 0.1)
    assert constraints.thresholds("income").psi == 0.2
    again = constraints.to_json()
    assert again["features"]["age"]["drift"] == {"psi": 0.3, "ks": None}
    assert Constraints.from_json(again) == constraints


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("age", "max"), "lots", "features.age.max"),
        (("age", "completeness"), 1.5, "features.age.completeness"),
        (("age", "min"), 99, "features.age.min: 99.0 is above max 55.0"),
        (("age", "maxx"), 3, "features.age.maxx"),
        (("age", "kind"), "number", "features.age.kind"),
        (("plan", "min"), 0, "features.plan.min: a range needs a numeric kind"),
        (("age", "drift"), {"psi": -1}, "features.age.drift.psi"),
    ],
)
def test_a_bad_edit_names_the_field(
    small_csv: Path, path: tuple[str, str], value: object, message: str
) -> None:
    document = Constraints.suggest(baseline_from_file(small_csv)).to_json()
    document["features"][path[0]][path[1]] = value

    with pytest.raises(ValueError, match="^" + message.replace(".", r"\.")) as caught:
        Constraints.from_json(document)
    assert message in str(caught.value)
