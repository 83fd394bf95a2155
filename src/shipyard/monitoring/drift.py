"""Drift and data quality of captured traffic against a baseline, in one DuckDB pass.

``analyze`` runs a single aggregate query over the capture files (see ``capture``): per feature
it counts present, missing and non-numeric values, out-of-range and non-integral values, and
the current distribution: numbers counted into the baseline's sketch bins
(``histogram(x, edges)``), strings as value counts. Nothing of the traffic is kept but those
counts, so memory does not depend on the window's size. The metrics then come from the counts:

- **PSI** (population stability index) on the 10 baseline-decile bins (numbers) or on the
  baseline's top values plus "other" (strings): sum of (c - b) ln(c / b) over the bins'
  shares, each share floored at 1e-4 so an empty bin does not make it infinite. Rule of thumb:
  < 0.1 stable, 0.1-0.2 moderate, ≥ 0.2 significant.
- **Kolmogorov-Smirnov** (numbers): the largest gap between the baseline's and the traffic's
  CDFs at the ~1000 sketch points: exact there, and within one sketch bin (≈ 0.1% of the
  baseline) of the true statistic. Its p-value is the asymptotic two-sample one
  (``kstwo`` at the effective size n·m/(n+m)), as ``scipy.stats.ks_2samp`` computes it.
- **Jensen-Shannon distance** (base 2, in [0, 1]) on the same bins as PSI: symmetric and
  bounded, where PSI is neither.
- **Chi-square** (strings): the two-sample test of homogeneity on the top values plus "other"
  (the baseline is a sample too, so not a goodness-of-fit against fixed shares).

A feature is drifted when a distance crosses a threshold of ``Constraints.thresholds``
(defaults: PSI ≥ 0.2, KS ≥ 0.1, JS ≥ 0.1) and the feature's test calls the move significant
(p < ``significance``, 0.01): the distances say how far a feature moved whatever the window's
size, the test that a small window's move is more than sampling noise (with a million rows any
difference is "significant", so there the distances decide). p-value thresholds of their own
are off by default. Data-quality violations compare the traffic with the
constraints: completeness below the minimum (``missing``), non-numbers or non-integers
(``type``), values outside [min, max] (``range``) and values outside the domain
(``new_category``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np

from shipyard.monitoring._duck import (
    DEFAULT_MEMORY_LIMIT,
    Params,
    aggregate,
    connect,
)
from shipyard.monitoring._model import JsonModel
from shipyard.monitoring.capture import capture_query
from shipyard.monitoring.statistics import (
    NUMERIC_KINDS,
    CategoricalStatistics,
    Constraints,
    DriftThresholds,
    FeatureConstraints,
    FeatureStatistics,
    Kind,
    NumericStatistics,
    Statistics,
    bin_counts,
)

PSI_FLOOR: Final = 1e-4  # the least share of a bin in PSI: an empty bin is "rare", not "never"
NEW_VALUES_SHOWN: Final = 20  # current values beyond the baseline's kept in a result

Verdict = Literal["ok", "drift", "violations", "drift_and_violations", "no_data"]
ViolationKind = Literal["missing", "type", "range", "new_category"]


class Metrics(JsonModel):
    """Each None where it does not apply (or there was nothing to compare)."""

    psi: float | None = None
    js: float | None = None
    ks: float | None = None
    ks_p_value: float | None = None
    chi2: float | None = None
    chi2_p_value: float | None = None


class NumericCurrent(JsonModel):
    min: float | None
    max: float | None
    mean: float | None
    std: float | None
    sketch_counts: list[int]  # in the baseline's sketch bins
    histogram_counts: list[int]  # in the baseline's histogram bins


class CategoricalCurrent(JsonModel):
    frequencies: dict[str, int]  # each value the baseline lists or the domain allows
    other: int  # values in neither
    other_examples: list[str]  # the most frequent of those (approximately: approx_top_k)


class FeatureDrift(JsonModel):
    name: str
    kind: Kind
    values: int  # valid values compared with the baseline
    missing: int
    invalid: int  # present but not of the feature's kind
    metrics: Metrics
    thresholds: DriftThresholds
    drifted: bool
    numeric: NumericCurrent | None = None
    categorical: CategoricalCurrent | None = None


class Violation(JsonModel):
    feature: str
    kind: ViolationKind
    observed: Any
    expected: Any
    count: int  # rows concerned


class Counts(JsonModel):
    records: int  # capture records in the window
    rows: int  # feature rows read from them
    no_input: int  # records whose request body was not captured
    unreadable: int  # bodies (or rows) that could not be read


class Analysis(JsonModel):
    version: Literal[1] = 1
    start: datetime | None = None
    end: datetime | None = None
    counts: Counts
    verdict: Verdict
    drifted: list[str]
    features: list[FeatureDrift]
    violations: list[Violation]


def analyze(
    baseline: Statistics,
    constraints: Constraints,
    capture_paths: Sequence[Path],
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
) -> Analysis:
    """Drift and violations of the capture records with ``start <= time < end``."""
    _check_constraints(baseline, constraints)
    columns = [(f"f{i}", f.is_numeric) for i, f in enumerate(baseline.features)]
    query = capture_query(capture_paths, columns, start=start, end=end)
    params = Params(query.params)
    plan = _plan(baseline, constraints, params)
    with closing(connect(memory_limit=memory_limit)) as con:
        source = f"(SELECT *{_number_columns(baseline)} FROM ({query.sql})) AS capture"  # noqa: S608
        values = aggregate(con, source, plan, params)
    counts = Counts(
        records=_count(values, "records"),
        rows=_count(values, "rows"),
        no_input=_count(values, "no_input"),
        unreadable=_count(values, "unreadable"),
    )
    features: list[FeatureDrift] = []
    violations: list[Violation] = []
    for i, stats in enumerate(baseline.features):
        rules = constraints.features.get(stats.name)
        thresholds = constraints.thresholds(stats.name)
        result = _feature(stats, rules, thresholds, _scope(values, i), counts.rows)
        features.append(result)
        if rules is not None and counts.rows > 0:
            violations += _violations(stats, rules, result, _scope(values, i), counts.rows)
    drifted = [f.name for f in features if f.drifted]
    return Analysis(
        start=start,
        end=end,
        counts=counts,
        verdict=_verdict(counts.rows, bool(drifted), bool(violations)),
        drifted=drifted,
        features=features,
        violations=violations,
    )


def _check_constraints(baseline: Statistics, constraints: Constraints) -> None:
    """Constraints must talk about the baseline's features, with the same kind of values."""
    names = set(baseline.names)
    unknown = sorted(set(constraints.features) - names)
    if unknown:
        raise ValueError(f"features: constraints name features the baseline lacks: {unknown}")
    for stats in baseline.features:
        rules = constraints.features.get(stats.name)
        if rules is not None and (rules.kind in NUMERIC_KINDS) != stats.is_numeric:
            raise ValueError(
                f"features.{stats.name}.kind: {rules.kind!r} but the baseline has {stats.kind!r}"
            )


# --- the aggregate query ---------------------------------------------------------------------


def _plan(baseline: Statistics, constraints: Constraints, params: Params) -> list[tuple[str, str]]:
    """(key, SQL aggregate) pairs: the counts, then feature ``i``'s as ``<i>.<key>``."""
    plan = [
        ("records", 'count(*) FILTER (WHERE "row" = 1)'),
        ("rows", "count(*) FILTER (WHERE status = 'ok')"),
        ("no_input", "count(*) FILTER (WHERE status = 'no_input')"),
        ("unreadable", "count(*) FILTER (WHERE status = 'unreadable')"),
    ]
    for i, stats in enumerate(baseline.features):
        rules = constraints.features.get(stats.name)
        if stats.is_numeric:
            plan += _numeric_plan(i, stats.numeric, rules, params)
        else:
            plan += _categorical_plan(i, known_values(stats, rules), params)
    return plan


def known_values(stats: FeatureStatistics, rules: FeatureConstraints | None) -> list[str]:
    """The values counted one by one: the baseline's top values, then the domain's others."""
    listed = list(stats.categorical.frequencies) if stats.categorical is not None else []
    extra = sorted(set(rules.domain or []) - set(listed) - {""}) if rules is not None else []
    return listed + extra


def _categorical_plan(i: int, known: list[str], params: Params) -> list[tuple[str, str]]:
    """Counts of the known values, and the most frequent values (known ones included, so
    enough are asked for that up to NEW_VALUES_SHOWN others remain), in the same pass.

    Small fixed-size states: a plain ``histogram(f)`` would make DuckDB split the query into
    a grouped branch, and a ``FILTER (WHERE NOT list_contains(...))`` costs a list scan a row.
    """
    f = f"f{i}"
    plan = [
        (f"{i}.present", f"count({f})"),
        (f"{i}.top", f"approx_top_k({f}, {len(known) + NEW_VALUES_SHOWN})"),
    ]
    if known:
        plan.append((f"{i}.counts", f"histogram_exact({f}, {params.strings(known)})"))
    return plan


def _numeric_plan(
    i: int, stats: NumericStatistics | None, rules: FeatureConstraints | None, params: Params
) -> list[tuple[str, str]]:
    f, v = f"f{i}", f"v{i}"  # v: the value when it is a number (f is NaN for a non-number)
    plan = [
        (f"{i}.present", f"count({f})"),
        (f"{i}.nan", f"count_if(isnan({f}))"),
        (f"{i}.min", f"min({v})"),
        (f"{i}.max", f"max({v})"),
        (f"{i}.mean", f"avg({v})"),
        (f"{i}.std", f"stddev_samp({v})"),
    ]
    if stats is not None:
        plan.append((f"{i}.sketch", f"histogram({v}, {params.doubles(stats.sketch.edges)})"))
    if rules is not None and rules.kind == "integral":
        plan.append((f"{i}.fractional", f"count_if({v} <> round({v}))"))
    if rules is not None and rules.min is not None:
        plan.append((f"{i}.below", f"count_if({v} < {params.add(float(rules.min))})"))
    if rules is not None and rules.max is not None:
        plan.append((f"{i}.above", f"count_if({v} > {params.add(float(rules.max))})"))
    return plan


def _number_columns(baseline: Statistics) -> str:
    """``v<i>``: numeric feature ``f<i>`` with NaN (a non-number) as NULL, for the aggregates."""
    numeric = [i for i, f in enumerate(baseline.features) if f.is_numeric]
    return "".join(f", if(isnan(f{i}), NULL, f{i}) AS v{i}" for i in numeric)


def _scope(values: Mapping[str, Any], i: int) -> dict[str, Any]:
    prefix = f"{i}."
    return {key[len(prefix) :]: value for key, value in values.items() if key.startswith(prefix)}


# --- per feature -----------------------------------------------------------------------------


def _feature(
    stats: FeatureStatistics,
    rules: FeatureConstraints | None,
    thresholds: DriftThresholds,
    values: Mapping[str, Any],
    rows: int,
) -> FeatureDrift:
    present = _count(values, "present")
    invalid = _count(values, "nan")
    numeric = categorical = None
    metrics = Metrics()
    if stats.is_numeric:
        numeric = _numeric_current(stats.numeric, values)
        if stats.numeric is not None and present - invalid > 0:
            metrics = numeric_metrics(stats.numeric, numeric.sketch_counts)
    else:
        categorical = _categorical_current(known_values(stats, rules), present, values)
        if stats.categorical is not None and present > 0 and stats.count > stats.missing:
            metrics = categorical_metrics(stats.categorical, categorical)
    return FeatureDrift(
        name=stats.name,
        kind=stats.kind,
        values=present - invalid,
        missing=rows - present,
        invalid=invalid,
        metrics=metrics,
        thresholds=thresholds,
        drifted=is_drifted(metrics, thresholds),
        numeric=numeric,
        categorical=categorical,
    )


def _numeric_current(stats: NumericStatistics | None, values: Mapping[str, Any]) -> NumericCurrent:
    sketch: list[int] = []
    histogram: list[int] = []
    if stats is not None:
        sketch = bin_counts(values["sketch"] or {}, stats.sketch.edges)
        histogram = stats.sketch.rebin(sketch, stats.histogram.edges).tolist()
    return NumericCurrent(
        min=_number(values["min"]),
        max=_number(values["max"]),
        mean=_number(values["mean"]),
        std=_number(values["std"]),
        sketch_counts=sketch,
        histogram_counts=histogram,
    )


def _count(values: Mapping[str, Any], key: str) -> int:
    """A count from the aggregates (``count_if`` over no rows is NULL, not 0)."""
    return int(values.get(key) or 0)


def _number(value: Any) -> float | None:
    return None if value is None or not math.isfinite(float(value)) else float(value)


def _categorical_current(
    known: list[str], present: int, values: Mapping[str, Any]
) -> CategoricalCurrent:
    counts = values.get("counts") or {}
    frequencies = {value: int(counts.get(value, 0)) for value in known}
    listed = set(known)
    others = [str(v) for v in values.get("top") or [] if str(v) not in listed]
    return CategoricalCurrent(
        frequencies=frequencies,
        other=present - sum(frequencies.values()),
        other_examples=others[:NEW_VALUES_SHOWN],
    )


# --- metrics ---------------------------------------------------------------------------------


def numeric_metrics(baseline: NumericStatistics, sketch_counts: Sequence[int]) -> Metrics:
    """PSI and JS on the decile bins, KS on the sketch, from the traffic's sketch counts."""
    base = np.asarray(baseline.sketch.counts, dtype=np.float64)
    current = np.asarray(sketch_counts, dtype=np.float64)
    ks, p_value = ks_from_counts(base, current)
    histogram = baseline.sketch.rebin(current, baseline.histogram.edges)
    base_histogram = np.asarray(baseline.histogram.counts, dtype=np.float64)
    return Metrics(
        psi=psi(base_histogram, histogram),
        js=js_distance(base_histogram, histogram),
        ks=ks,
        ks_p_value=p_value,
    )


def categorical_metrics(baseline: CategoricalStatistics, current: CategoricalCurrent) -> Metrics:
    """PSI, JS and chi-square on the baseline's top values plus one "other" bin."""
    values = list(baseline.frequencies)
    base = np.array([baseline.frequencies[v] for v in values] + [baseline.other], np.float64)
    listed = [current.frequencies.get(v, 0) for v in values]
    total = sum(current.frequencies.values()) + current.other
    actual = np.array([*listed, total - sum(listed)], np.float64)
    chi2, p_value = chi2_homogeneity(base, actual)
    return Metrics(
        psi=psi(base, actual),
        js=js_distance(base, actual),
        chi2=chi2,
        chi2_p_value=p_value,
    )


def psi(expected: np.ndarray[Any, Any], actual: np.ndarray[Any, Any]) -> float:
    """Population stability index of two count vectors over the same bins."""
    e = np.maximum(expected / expected.sum(), PSI_FLOOR)
    a = np.maximum(actual / actual.sum(), PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def js_distance(expected: np.ndarray[Any, Any], actual: np.ndarray[Any, Any]) -> float:
    """Jensen-Shannon distance (base 2: 0 = same shares, 1 = disjoint)."""
    # SciPy is imported on first use here and below: it is a second of start-up for every
    # API process, which imports this module for its monitoring controller.
    from scipy.spatial.distance import jensenshannon

    return float(jensenshannon(expected / expected.sum(), actual / actual.sum(), base=2))


def ks_from_counts(
    expected: np.ndarray[Any, Any], actual: np.ndarray[Any, Any]
) -> tuple[float, float]:
    """KS statistic and asymptotic p-value from counts in the same (right-closed) bins."""
    n, m = expected.sum(), actual.sum()
    gaps = np.abs(np.cumsum(expected) / n - np.cumsum(actual) / m)
    statistic = float(gaps.max())
    effective = max(1, round(n * m / (n + m)))
    from scipy import stats as scipy_stats

    return statistic, float(scipy_stats.kstwo.sf(statistic, effective))


def chi2_homogeneity(
    expected: np.ndarray[Any, Any], actual: np.ndarray[Any, Any]
) -> tuple[float, float]:
    """Chi-square test that two samples share one distribution over the bins."""
    table = np.vstack([expected, actual])
    table = table[:, table.sum(axis=0) > 0]  # a bin empty in both says nothing
    if table.shape[1] < 2:
        return 0.0, 1.0
    from scipy import stats as scipy_stats

    result = scipy_stats.chi2_contingency(table, correction=False)
    return float(result.statistic), float(result.pvalue)


def is_drifted(metrics: Metrics, thresholds: DriftThresholds) -> bool:
    """A distance at or above its threshold that is also significant (the feature's test's
    p-value under ``significance``), or any p-value below its own threshold."""
    distances = [
        (metrics.psi, thresholds.psi),
        (metrics.ks, thresholds.ks),
        (metrics.js, thresholds.js),
    ]
    p_values = [
        (metrics.ks_p_value, thresholds.ks_p_value),
        (metrics.chi2_p_value, thresholds.chi2_p_value),
    ]
    moved = any(v is not None and t is not None and v >= t for v, t in distances)
    test = metrics.ks_p_value if metrics.ks_p_value is not None else metrics.chi2_p_value
    gate = thresholds.significance
    significant = gate is None or test is None or test < gate
    return (moved and significant) or any(
        v is not None and t is not None and v < t for v, t in p_values
    )


# --- data quality ----------------------------------------------------------------------------


def _violations(
    stats: FeatureStatistics,
    rules: FeatureConstraints,
    result: FeatureDrift,
    values: Mapping[str, Any],
    rows: int,
) -> list[Violation]:
    found: list[Violation] = []
    name = stats.name
    completeness = (rows - result.missing) / rows
    if completeness < rules.completeness:
        found.append(
            Violation(
                feature=name,
                kind="missing",
                observed={"completeness": completeness},
                expected={"completeness": rules.completeness},
                count=result.missing,
            )
        )
    if stats.is_numeric:
        found += _numeric_violations(name, rules, result, values)
    elif rules.domain is not None and result.categorical is not None:
        found += _domain_violations(name, rules.domain, result.categorical)
    return found


def _numeric_violations(
    name: str, rules: FeatureConstraints, result: FeatureDrift, values: Mapping[str, Any]
) -> list[Violation]:
    found: list[Violation] = []
    fractional = _count(values, "fractional") if rules.kind == "integral" else 0
    if result.invalid + fractional > 0:
        observed = {"not_a_number": result.invalid, "not_an_integer": fractional}
        found.append(
            Violation(
                feature=name,
                kind="type",
                observed=observed,
                expected={"kind": rules.kind},
                count=result.invalid + fractional,
            )
        )
    outside = _count(values, "below") + _count(values, "above")
    if outside > 0 and result.numeric is not None:
        found.append(
            Violation(
                feature=name,
                kind="range",
                observed={"min": result.numeric.min, "max": result.numeric.max},
                expected={"min": rules.min, "max": rules.max},
                count=outside,
            )
        )
    return found


def _domain_violations(
    name: str, domain: list[str], current: CategoricalCurrent
) -> list[Violation]:
    allowed = set(domain)
    listed = {v: n for v, n in current.frequencies.items() if v not in allowed and n > 0}
    count = sum(listed.values()) + current.other
    if count == 0:
        return []
    examples = [*sorted(listed, key=lambda v: -listed[v]), *current.other_examples]
    observed = {"values": examples[:NEW_VALUES_SHOWN]}
    return [
        Violation(
            feature=name,
            kind="new_category",
            observed=observed,
            expected={"domain": domain[:NEW_VALUES_SHOWN], "domain_size": len(domain)},
            count=count,
        )
    ]


def _verdict(rows: int, drift: bool, violations: bool) -> Verdict:
    if rows == 0:
        return "no_data"
    if drift and violations:
        return "drift_and_violations"
    if drift:
        return "drift"
    return "violations" if violations else "ok"
