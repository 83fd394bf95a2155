"""Baselines: what a dataset version looks like (statistics), what traffic must obey (constraints).

``baseline_from_file`` profiles a CSV or Parquet file with DuckDB: the file is parsed once into
a temporary table, every column is summarised by one aggregate query, and each numeric column
is sorted once (NumPy) for its sketch; no Python loop over rows. Per feature it keeps:

- the inferred kind: ``integral`` or ``fractional`` numbers, or ``string`` categories (booleans,
  dates and anything else are compared as their text);
- completeness (the share of non-missing values);
- numeric: min, max, mean, std, a **quantile sketch** and a **histogram**. The sketch is the
  data's own values at p = 0, 0.001, …, 1 (rank floor(p (n - 1)) of the sorted column,
  deduplicated) with the exact number of baseline values in each bin between consecutive
  points. Current traffic is later
  counted into the same bins, so the Kolmogorov-Smirnov statistic is the largest gap between
  the two CDFs over the sketch points: exact there, and within one bin's mass (≈ 0.1% of the
  baseline) of the gap over every x, without keeping either sample. The histogram has 10
  equal-mass bins on the baseline deciles (points of the sketch, so it is the sketch re-binned):
  the usual bins for PSI and Jensen-Shannon, which follow the data's shape instead of its range;
- string: the K (100) most frequent values with their counts, an ``other`` count for the rest,
  and the number of distinct values.

Bins are right-closed, ``(-inf, e0], (e0, e1], …, (e_last, inf)`` (so ``counts`` has one more
entry than ``edges``): the way DuckDB's ``histogram(x, edges)`` counts traffic.

``Constraints.suggest`` turns statistics into constraints.json, which people edit (loosen a
range, allow a category, change a drift threshold); ``Constraints.from_json`` validates an
edited document and names the offending field (``features.age.max: …``).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any, Final, Literal, Self

import duckdb
import numpy as np
from pydantic import Field, model_validator

from shipyard.monitoring._duck import aggregate, connect, ident
from shipyard.monitoring._model import JsonModel

Kind = Literal["integral", "fractional", "string"]
NUMERIC_KINDS: Final = ("integral", "fractional")

SKETCH_POINTS: Final = 1000  # the sketch's points are at p = k / 1000
HISTOGRAM_BINS: Final = 10  # equal-mass (decile) bins for PSI and Jensen-Shannon
TOP_K: Final = 100  # categories kept with their counts
RANGE_SLACK: Final = 0.1  # suggested ranges: the baseline's, widened by this share of it

_INTEGRAL_TYPES: Final = frozenset(
    {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT"}
    | {"UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT"}
)
_FRACTIONAL_TYPES: Final = frozenset({"FLOAT", "DOUBLE", "REAL"})


class EmptyDataset(ValueError):
    """The dataset has no rows or no columns: there is nothing to build a baseline from."""


# --- statistics ------------------------------------------------------------------------------


class Bins(JsonModel):
    """Counts in the right-closed bins ``(-inf, edges[0]], …, (edges[-1], inf)``."""

    edges: list[float]
    counts: list[int]

    @model_validator(mode="after")
    def _check(self) -> Self:
        if len(self.counts) != len(self.edges) + 1:
            raise ValueError("counts must have one more entry than edges")
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError("edges must increase strictly")
        return self

    def rebin(self, counts: Sequence[int] | np.ndarray[Any, Any], edges: Sequence[float]) -> Any:
        """``counts`` in these bins, summed into the bins of ``edges`` (a subset of ours)."""
        uppers = np.append(np.asarray(self.edges, dtype=np.float64), math.inf)
        target = np.searchsorted(np.asarray(edges, dtype=np.float64), uppers, side="left")
        weights = np.asarray(counts, dtype=np.float64)
        return np.bincount(target, weights=weights, minlength=len(edges) + 1).astype(np.int64)


class NumericStatistics(JsonModel):
    min: float
    max: float
    mean: float
    std: float  # sample standard deviation; 0 for a single value
    sketch: Bins  # ~1000 quantile points with the baseline's count in each bin: KS
    histogram: Bins  # 10 bins on the deciles: PSI, Jensen-Shannon, plots


class CategoricalStatistics(JsonModel):
    distinct: int
    frequencies: dict[str, int]  # the TOP_K most frequent values, most frequent first
    other: int  # non-missing values outside ``frequencies``


class FeatureStatistics(JsonModel):
    name: str
    kind: Kind
    count: int  # rows in the dataset
    missing: int
    completeness: float  # (count - missing) / count
    numeric: NumericStatistics | None = None  # None for strings, or no value at all
    categorical: CategoricalStatistics | None = None

    @property
    def is_numeric(self) -> bool:
        return self.kind in NUMERIC_KINDS


class Statistics(JsonModel):
    """statistics.json: one entry per feature, in the order the model receives them."""

    version: Literal[1] = 1
    rows: int
    features: list[FeatureStatistics]

    @property
    def names(self) -> list[str]:
        return [feature.name for feature in self.features]

    def feature(self, name: str) -> FeatureStatistics:
        for feature in self.features:
            if feature.name == name:
                return feature
        raise KeyError(name)

    @model_validator(mode="after")
    def _unique_names(self) -> Self:
        names = self.names
        if len(set(names)) != len(names):
            raise ValueError("features: names must be unique")
        return self


# --- constraints -----------------------------------------------------------------------------


class DriftThresholds(JsonModel):
    """When a feature counts as drifted: any metric whose threshold is set crosses it.

    Distances rather than p-values by default: with hundreds of thousands of rows every test's
    p-value is ~0 for differences nobody cares about, while PSI ≥ 0.2 ("significant shift", the
    usual rule of thumb), a KS gap ≥ 0.1 and a Jensen-Shannon distance ≥ 0.1 do not depend on
    the sample size. Set ``ks_p_value`` / ``chi2_p_value`` to also flag p-values below them.
    """

    psi: float | None = Field(0.2, gt=0)
    ks: float | None = Field(0.1, gt=0, le=1)
    js: float | None = Field(0.1, gt=0, le=1)
    ks_p_value: float | None = Field(None, gt=0, lt=1)
    chi2_p_value: float | None = Field(None, gt=0, lt=1)
    # A distance past its threshold counts only if the feature's test (KS for numbers,
    # chi-square for strings) also says the move is not sampling noise: over a window of a
    # few hundred rows the distances of an unchanged distribution reach 0.1 by chance, while
    # over a busy hour every p-value is ~0 and the distances alone decide. None: no gate.
    significance: float | None = Field(0.01, gt=0, lt=1)


class FeatureConstraints(JsonModel):
    kind: Kind
    completeness: float = Field(1.0, ge=0, le=1)  # the least share of non-missing values
    min: float | None = None  # numeric: the allowed range (None: unbounded)
    max: float | None = None
    domain: list[str] | None = None  # string: the allowed values (None: any)
    drift: DriftThresholds | None = None  # overrides of the document's thresholds (set keys only)


class Constraints(JsonModel):
    """constraints.json: data-quality rules and drift thresholds, meant to be edited by people."""

    version: Literal[1] = 1
    drift: DriftThresholds = DriftThresholds()
    features: dict[str, FeatureConstraints]

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        for name, feature in self.features.items():
            numeric = feature.kind in NUMERIC_KINDS
            for key in ("min", "max"):
                if getattr(feature, key) is not None and not numeric:
                    raise ValueError(f"features.{name}.{key}: a range needs a numeric kind")
            if feature.domain is not None and numeric:
                raise ValueError(f"features.{name}.domain: a domain needs kind 'string'")
            low, high = feature.min, feature.max
            if low is not None and high is not None and low > high:
                raise ValueError(f"features.{name}.min: {low} is above max {high}")
        return self

    def thresholds(self, name: str) -> DriftThresholds:
        """The document's thresholds, with the keys that feature ``name`` overrides."""
        feature = self.features.get(name)
        if feature is None or feature.drift is None:
            return self.drift
        override = feature.drift
        return self.drift.model_copy(
            update={key: getattr(override, key) for key in override.model_fields_set}
        )

    def to_json(self) -> dict[str, Any]:
        doc = self.model_dump(mode="json")
        for name, feature in self.features.items():  # overrides keep only what was set
            if feature.drift is not None:
                doc["features"][name]["drift"] = feature.drift.model_dump(
                    mode="json", exclude_unset=True
                )
        return doc

    @classmethod
    def suggest(cls, statistics: Statistics) -> Constraints:
        """Constraints that the baseline itself satisfies, with default drift thresholds."""
        return cls(features={f.name: _suggest_feature(f) for f in statistics.features})


def _suggest_feature(stats: FeatureStatistics) -> FeatureConstraints:
    """What the baseline itself satisfies, with some slack for what a sample cannot show.

    Completeness: the baseline's, less one point when it already had gaps (none allowed when
    it had none). Range: the baseline's [min, max] widened by 10% of its width on each side
    (not below 0 when the baseline's minimum is 0: counts, amounts), since a sample's extremes
    are not the feature's limits: a million rows of traffic reach further into the tails than
    100,000 rows of baseline did. Domain: the baseline's values, when it has them all (no "other").
    """
    completeness = 1.0
    if stats.missing > 0:
        completeness = max(0.0, math.floor(stats.completeness * 100 - 1) / 100)
    low = high = None
    if stats.numeric is not None:
        low, high = _suggested_range(stats.numeric, stats.kind)
    domain = None
    if stats.categorical is not None and stats.categorical.other == 0:
        domain = sorted(stats.categorical.frequencies)
    return FeatureConstraints(
        kind=stats.kind, completeness=completeness, min=low, max=high, domain=domain
    )


def _suggested_range(stats: NumericStatistics, kind: Kind) -> tuple[float, float]:
    slack = (stats.max - stats.min) * RANGE_SLACK
    low, high = stats.min - slack, stats.max + slack
    if stats.min == 0:  # counts, amounts: the slack must not invite negatives
        low = 0.0
    if kind == "integral":
        return float(math.floor(low)), float(math.ceil(high))
    return low, high


# --- profiling a file ------------------------------------------------------------------------


def baseline_from_file(
    path: Path, *, exclude: Collection[str] = (), top_k: int = TOP_K
) -> Statistics:
    """Statistics of a CSV or Parquet file (``exclude``: columns that are not features).

    Raises ``EmptyDataset`` when there are no rows or no columns left, ``FileNotFoundError``
    when the file is missing and ``ValueError`` for an unknown format or excluded name.
    """
    source = _source(path)
    with closing(connect()) as con:
        # Parse the file once; the column types DuckDB inferred come with it.
        sql = f"CREATE TEMP TABLE raw AS SELECT * FROM {source}"  # noqa: S608 (a parameter)
        con.execute(sql, {"path": str(path)})
        columns = _columns(con, path, exclude)
        _load(con, columns)
        profile = aggregate(con, "base", _profile_plan(columns))
        rows = int(profile["rows"])
        if rows == 0:
            raise EmptyDataset(f"{path.name}: the dataset has no rows")
        numeric = _numeric_statistics(con, columns, profile)
        features = [
            _feature(con, i, name, kind, profile, numeric.get(i), top_k)
            for i, (name, kind) in enumerate(columns)
        ]
        return Statistics(rows=rows, features=features)


def _feature(
    con: duckdb.DuckDBPyConnection,
    i: int,
    name: str,
    kind: Kind,
    profile: dict[str, Any],
    numeric: NumericStatistics | None,
    top_k: int,
) -> FeatureStatistics:
    rows, present = int(profile["rows"]), int(profile[f"{i}.present"])
    categorical = None
    if kind == "string":
        categorical = _categorical(con, i, present, int(profile[f"{i}.distinct"]), top_k)
    return FeatureStatistics(
        name=name,
        kind=kind,
        count=rows,
        missing=rows - present,
        completeness=present / rows,
        numeric=numeric,
        categorical=categorical,
    )


def _source(path: Path) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"no such dataset file: {path}")
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        return "read_parquet($path)"
    if name.endswith((".csv", ".csv.gz", ".tsv", ".txt")):
        return "read_csv($path)"
    raise ValueError(f"{path.name}: expected a .csv or .parquet file")


def _columns(
    con: duckdb.DuckDBPyConnection, path: Path, exclude: Collection[str]
) -> list[tuple[str, Kind]]:
    described = con.execute("DESCRIBE raw").fetchall()
    names = [str(row[0]) for row in described]
    unknown = sorted(set(exclude) - set(names))
    if unknown:
        raise ValueError(f"exclude names columns that {path.name} does not have: {unknown}")
    columns = [(str(row[0]), _kind(str(row[1]))) for row in described if row[0] not in exclude]
    if not columns:
        raise EmptyDataset(f"{path.name}: the dataset has no feature columns")
    return columns


def _kind(duck_type: str) -> Kind:
    """DuckDB's inferred column type as a feature kind (DECIMAL(p,s) is fractional)."""
    if duck_type in _INTEGRAL_TYPES:
        return "integral"
    if duck_type in _FRACTIONAL_TYPES or duck_type.startswith("DECIMAL"):
        return "fractional"
    return "string"


def _load(con: duckdb.DuckDBPyConnection, columns: list[tuple[str, Kind]]) -> None:
    """The features as ``base(c0, c1, …)``: numbers as DOUBLE (NaN and ±inf count as missing),
    everything else as text (an empty string counts as missing, as in traffic)."""
    parts = []
    for i, (name, kind) in enumerate(columns):
        column = ident(name)
        if kind in NUMERIC_KINDS:
            value = f"CAST({column} AS DOUBLE)"
            parts.append(f"CASE WHEN isfinite({value}) THEN {value} END AS c{i}")
        else:
            parts.append(f"nullif(CAST({column} AS VARCHAR), '') AS c{i}")
    con.execute(f"CREATE TEMP TABLE base AS SELECT {', '.join(parts)} FROM raw")  # noqa: S608
    con.execute("DROP TABLE raw")


def _profile_plan(columns: list[tuple[str, Kind]]) -> list[tuple[str, str]]:
    """One pass over the table: per column its present count, then min, max, mean and std
    (numbers) or the number of distinct values (strings)."""
    plan = [("rows", "count(*)")]
    for i, (_, kind) in enumerate(columns):
        c = f"c{i}"
        plan.append((f"{i}.present", f"count({c})"))
        if kind in NUMERIC_KINDS:
            plan += [(f"{i}.min", f"min({c})"), (f"{i}.max", f"max({c})")]
            plan += [(f"{i}.mean", f"avg({c})"), (f"{i}.std", f"stddev_samp({c})")]
        else:
            plan.append((f"{i}.distinct", f"count(DISTINCT {c})"))
    return plan


def _numeric_statistics(
    con: duckdb.DuckDBPyConnection, columns: list[tuple[str, Kind]], profile: dict[str, Any]
) -> dict[int, NumericStatistics]:
    """Each numeric column's sketch, from the column sorted once (one column in memory at a
    time, as a NumPy array): the values of rank floor(p (n - 1)) for p = 0, 0.001, …, 1 are
    its points, and binary searches in the sorted values give the exact count of each bin."""
    out = {}
    for i, (_, kind) in enumerate(columns):
        if kind not in NUMERIC_KINDS or int(profile[f"{i}.present"]) == 0:
            continue
        sql = f"SELECT c{i} AS v FROM base WHERE c{i} IS NOT NULL"  # noqa: S608
        fetched = con.execute(sql).fetchnumpy()
        values = np.sort(np.asarray(fetched["v"], dtype=np.float64))
        ranks = np.floor(np.arange(SKETCH_POINTS + 1) * (len(values) - 1) / SKETCH_POINTS)
        points = values[ranks.astype(np.int64)]
        edges = np.unique(points)
        below = np.searchsorted(values, edges, side="right")  # values <= each edge
        counts = np.diff(np.concatenate(([0], below, [len(values)])))
        sketch = Bins(edges=edges.tolist(), counts=counts.tolist())
        out[i] = _numeric(profile, i, sketch, points.tolist())
    return out


def _numeric(
    profile: dict[str, Any], i: int, sketch: Bins, points: list[float]
) -> NumericStatistics:
    step = SKETCH_POINTS // HISTOGRAM_BINS
    deciles = sorted({points[k * step] for k in range(1, HISTOGRAM_BINS)})
    histogram = Bins(edges=deciles, counts=sketch.rebin(sketch.counts, deciles).tolist())
    std = profile[f"{i}.std"]
    return NumericStatistics(
        min=float(profile[f"{i}.min"]),
        max=float(profile[f"{i}.max"]),
        mean=float(profile[f"{i}.mean"]),
        std=float(std) if std is not None else 0.0,
        sketch=sketch,
        histogram=histogram,
    )


def bin_counts(histogram: Mapping[float, int], edges: Sequence[float]) -> list[int]:
    """DuckDB's ``histogram(x, edges)`` map as a list: one count per edge, then the overflow."""
    overflow = sum(int(n) for key, n in histogram.items() if key > edges[-1])
    return [int(histogram.get(edge, 0)) for edge in edges] + [overflow]


def _categorical(
    con: duckdb.DuckDBPyConnection, i: int, present: int, distinct: int, top_k: int
) -> CategoricalStatistics:
    c = f"c{i}"
    top = con.execute(
        f"SELECT {c}, count(*) AS n FROM base WHERE {c} IS NOT NULL "  # noqa: S608
        f"GROUP BY {c} ORDER BY n DESC, {c} LIMIT {int(top_k)}"
    ).fetchall()
    frequencies = {str(value): int(n) for value, n in top}
    return CategoricalStatistics(
        distinct=distinct, frequencies=frequencies, other=present - sum(frequencies.values())
    )
