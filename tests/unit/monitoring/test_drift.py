"""Drift and data quality of captured traffic against a baseline, on synthetic data."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats as scipy_stats
from tests.unit.monitoring.helpers import feature_record, write_capture, write_csv

from shipyard.monitoring.drift import (
    Analysis,
    analyze,
    ks_from_counts,
    numeric_metrics,
    psi,
)
from shipyard.monitoring.statistics import Constraints, Statistics, baseline_from_file

N = 4_000
CATEGORIES = np.array(["a", "b", "c"])
Row = list[Any]


def sample(seed: int, n: int = N, *, shift: float = 0.0) -> list[Row]:
    rng = np.random.default_rng(seed)
    x = (rng.normal(0, 1, n) + shift).round(4)
    k = rng.integers(0, 10, n)
    c = CATEGORIES[rng.choice(3, n, p=[0.5, 0.3, 0.2])]
    return [[float(a), int(b), str(s)] for a, b, s in zip(x, k, c, strict=True)]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Statistics:
    path = tmp_path_factory.mktemp("baseline") / "train.csv"
    return baseline_from_file(write_csv(path, ["x", "k", "c"], sample(seed=1)))


def run(
    tmp_path: Path,
    baseline: Statistics,
    rows: list[Row],
    constraints: Constraints | None = None,
) -> Analysis:
    path = write_capture(
        tmp_path / "capture.jsonl", (feature_record(i, r) for i, r in enumerate(rows))
    )
    return analyze(baseline, constraints or Constraints.suggest(baseline), [path])


def edit(rows: list[Row], every: int, change: Callable[[Row], None]) -> list[Row]:
    for row in rows[::every]:
        change(row)
    return rows


def test_the_same_distribution_does_not_drift(tmp_path: Path, baseline: Statistics) -> None:
    analysis = run(tmp_path, baseline, sample(seed=2))

    assert analysis.verdict == "ok"
    assert analysis.drifted == []
    assert analysis.violations == []
    assert analysis.counts.model_dump() == {
        "records": N,
        "rows": N,
        "no_input": 0,
        "unreadable": 0,
    }
    x, _, c = analysis.features
    assert x.metrics.psi is not None and x.metrics.psi < 0.02
    assert x.metrics.ks is not None and x.metrics.ks < 0.04
    assert x.metrics.ks_p_value is not None and x.metrics.ks_p_value > 0.01
    assert c.metrics.chi2_p_value is not None and c.metrics.chi2_p_value > 0.01
    assert (x.values, x.missing, x.invalid) == (N, 0, 0)
    assert x.numeric is not None and sum(x.numeric.sketch_counts) == N


def test_a_shifted_mean_drifts(tmp_path: Path, baseline: Statistics) -> None:
    analysis = run(tmp_path, baseline, sample(seed=2, shift=1.0))

    assert analysis.drifted == ["x"]
    assert analysis.verdict in {"drift", "drift_and_violations"}
    x = analysis.features[0]
    assert x.drifted
    assert x.metrics.psi is not None and x.metrics.psi > 0.5
    # a one-sigma shift of a normal: the CDFs are 2Φ(0.5) - 1 = 0.383 apart at most
    assert x.metrics.ks == pytest.approx(0.383, abs=0.03)
    assert x.metrics.ks_p_value is not None and x.metrics.ks_p_value < 1e-10
    assert x.numeric is not None
    assert x.numeric.mean == pytest.approx(1.0, abs=0.06)


def test_ks_from_the_sketch_matches_scipy_on_the_raw_samples(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    base = rng.gamma(2.0, 1.5, 20_000).round(5)
    current = rng.gamma(2.2, 1.5, 10_000).round(5)
    stats = baseline_from_file(write_csv(tmp_path / "g.csv", ["g"], ([v] for v in base)))
    numeric = stats.features[0].numeric
    assert numeric is not None
    edges = np.asarray(numeric.sketch.edges)
    counts = np.bincount(np.searchsorted(edges, current, side="left"), minlength=len(edges) + 1)

    metrics = numeric_metrics(numeric, counts.tolist())

    exact = scipy_stats.ks_2samp(base, current)
    assert metrics.ks == pytest.approx(exact.statistic, abs=0.002)  # within one sketch bin
    assert metrics.ks_p_value == pytest.approx(exact.pvalue, rel=0.5, abs=1e-12)


def test_psi_and_ks_formulas() -> None:
    expected, actual = np.array([50.0, 30, 20]), np.array([30.0, 30, 40])

    value = psi(expected, actual)
    statistic, _ = ks_from_counts(expected, actual)

    by_hand = (0.3 - 0.5) * np.log(0.3 / 0.5) + (0.4 - 0.2) * np.log(0.4 / 0.2)
    assert value == pytest.approx(by_hand)
    assert statistic == pytest.approx(0.2)  # |0.5 - 0.3| after the first bin


def test_a_new_category_is_a_violation(tmp_path: Path, baseline: Statistics) -> None:
    rows = edit(sample(seed=2), 200, lambda r: r.__setitem__(2, "zzz"))  # 20 rows

    analysis = run(tmp_path, baseline, rows)

    [violation] = analysis.violations
    assert (violation.feature, violation.kind, violation.count) == ("c", "new_category", 20)
    assert violation.observed == {"values": ["zzz"]}
    assert violation.expected["domain"] == ["a", "b", "c"]
    assert analysis.verdict == "violations"  # 0.5% of new values is no drift
    c = analysis.features[2]
    assert c.categorical is not None
    assert (c.categorical.other, c.categorical.other_examples) == (20, ["zzz"])


def test_out_of_range_values_are_a_violation(tmp_path: Path, baseline: Statistics) -> None:
    rows = edit(sample(seed=2), 100, lambda r: r.__setitem__(0, 1000.0))  # 40 rows

    analysis = run(tmp_path, baseline, rows)

    [violation] = analysis.violations
    assert (violation.feature, violation.kind, violation.count) == ("x", "range", 40)
    assert violation.observed["max"] == 1000.0
    limits = Constraints.suggest(baseline).features["x"]
    assert violation.expected == {"min": limits.min, "max": limits.max}


def test_missing_values_are_a_violation(tmp_path: Path, baseline: Statistics) -> None:
    rows = edit(sample(seed=2), 20, lambda r: r.__setitem__(1, None))  # 200 rows

    analysis = run(tmp_path, baseline, rows)

    [violation] = analysis.violations
    assert (violation.feature, violation.kind, violation.count) == ("k", "missing", 200)
    assert violation.observed == {"completeness": 0.95}
    assert violation.expected == {"completeness": 1.0}
    k = analysis.features[1]
    assert (k.values, k.missing) == (N - 200, 200)


def test_wrong_types_are_a_violation(tmp_path: Path, baseline: Statistics) -> None:
    rows = sample(seed=2)
    edit(rows, 50, lambda r: r.__setitem__(1, "ten"))  # 80 non-numbers
    edit(rows[1:], 50, lambda r: r.__setitem__(1, 2.5))  # 80 non-integers

    analysis = run(tmp_path, baseline, rows)

    [violation] = analysis.violations
    assert (violation.feature, violation.kind, violation.count) == ("k", "type", 160)
    assert violation.observed == {"not_a_number": 80, "not_an_integer": 80}
    assert analysis.features[1].invalid == 80


def test_constraints_override_thresholds_and_loosen_rules(
    tmp_path: Path, baseline: Statistics
) -> None:
    document = Constraints.suggest(baseline).to_json()
    document["features"]["x"]["drift"] = {"psi": None, "ks": None, "js": None}
    document["features"]["x"]["max"] = None
    constraints = Constraints.from_json(document)
    rows = sample(seed=2, shift=1.0)
    rows[0][0] = 1000.0

    analysis = run(tmp_path, baseline, rows, constraints)

    assert analysis.drifted == []
    assert [v.kind for v in analysis.violations if v.feature == "x"] == []


def test_no_data_and_the_json_document(tmp_path: Path, baseline: Statistics) -> None:
    analysis = analyze(baseline, Constraints.suggest(baseline), [])

    assert analysis.verdict == "no_data"
    assert analysis.counts.rows == 0
    document = json.loads(json.dumps(analysis.to_json()))
    assert Analysis.from_json(document) == analysis
    assert [f["metrics"]["psi"] for f in document["features"]] == [None, None, None]


def test_constraints_must_match_the_baseline(baseline: Statistics) -> None:
    document = Constraints.suggest(baseline).to_json()
    document["features"]["c"] = {"kind": "integral"}
    with pytest.raises(ValueError, match=r"features\.c\.kind"):
        analyze(baseline, Constraints.from_json(document), [])
    del document["features"]["c"]
    document["features"]["zzz"] = {"kind": "string"}
    with pytest.raises(ValueError, match="zzz"):
        analyze(baseline, Constraints.from_json(document), [])


def test_a_small_window_needs_a_significant_test_to_drift(
    tmp_path: Path, baseline: Statistics
) -> None:
    rows = sample(seed=3, n=30)  # the baseline's distribution, but only 30 rows
    ungated = Constraints.suggest(baseline).to_json()
    ungated["drift"]["significance"] = None

    gated = run(tmp_path, baseline, rows)
    noisy = run(tmp_path, baseline, rows, Constraints.from_json(ungated))

    x = gated.features[0]
    assert x.metrics.psi is not None and x.metrics.psi > 0.2  # by chance
    assert x.metrics.ks_p_value is not None and x.metrics.ks_p_value > 0.3
    assert gated.drifted == []
    assert noisy.drifted == ["x", "k"]
