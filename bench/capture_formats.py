"""What the capture format costs the drift monitor: one DuckDB pass over the same rows as
today's JSONL (the body a string), as JSONL with the body embedded as a JSON value, and as
Parquet with typed columns.

Usage: .venv/bin/python bench/capture_formats.py DIR

``DIR`` is what ``bench/drift.py --keep DIR`` generated (``capture/*.jsonl`` and
``current.parquet``); the embedded variant is written next to it once (not timed). Each pass
pulls the 20 features out of every record, casts the numbers, and sums them (counts the
distinct values of the strings), on 2 DuckDB threads; each is run twice and the faster run is
reported. It answers one question: how much of ``analyze``'s time a different capture format
could save, before anyone changes the gateway's. The last row runs ``analyze``'s own aggregate
plan (drift and quality, reaching into its private helpers on purpose: a what-if, not an API)
over the Parquet rows, i.e. what a monitoring run would cost if the capture were columnar.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import duckdb
import orjson

sys.path.insert(0, str(Path(__file__).parent))
from _harness import console, ratio_table
from drift import CATEGORICAL, FEATURES

STRINGS = [i for i, name in enumerate(FEATURES) if name in CATEGORICAL]
ENVELOPE = "'event_id': 'VARCHAR', 'time': 'VARCHAR'"


def embed(source: Path, target: Path) -> list[str]:
    """The capture files with each JSON body stored as a JSON value (``encoding: json``)."""
    target.mkdir(exist_ok=True)
    for path in sorted(source.glob("*.jsonl")):
        out = target / path.name
        if out.exists():
            continue
        records = [orjson.loads(line) for line in path.read_bytes().splitlines()]
        for record in records:
            record["input"]["data"] = orjson.loads(record["input"]["data"])
            record["input"]["encoding"] = "json"
        out.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return sorted(str(p) for p in target.glob("*.jsonl"))


def _aggregates() -> str:
    return ", ".join(
        f"count(DISTINCT f{i})" if i in STRINGS else f"sum(f{i})" for i in range(len(FEATURES))
    )


def string_body_sql() -> str:
    """Today's fast path: numbers by ``from_json`` as DOUBLE[], strings by JSON path."""
    paths = ", ".join(f"'$.features[{i}]'" for i in STRINGS)
    columns = ", ".join(
        f"strings[{STRINGS.index(i) + 1}] AS f{i}" if i in STRINGS else f"numbers[{i + 1}] AS f{i}"
        for i in range(len(FEATURES))
    )
    body = "STRUCT(content_type VARCHAR, encoding VARCHAR, data VARCHAR)"
    return f"""
SELECT count(*), {_aggregates()} FROM (SELECT {columns} FROM (
  SELECT TRY(from_json(input.data, '{{"features": ["DOUBLE"]}}')).features AS numbers,
         json_extract_string(input.data, [{paths}]) AS strings
  FROM read_json($paths, format = 'newline_delimited', ignore_errors = true,
                 columns = {{{ENVELOPE}, 'input': '{body}'}})))"""


def embedded_body_sql() -> str:
    """The body as a JSON value: the reader types ``features`` in the same pass."""
    columns = ", ".join(
        f"values[{i + 1}] AS f{i}"
        if i in STRINGS
        else f"TRY_CAST(values[{i + 1}] AS DOUBLE) AS f{i}"
        for i in range(len(FEATURES))
    )
    body = "STRUCT(content_type VARCHAR, encoding VARCHAR, data STRUCT(features VARCHAR[]))"
    return f"""
SELECT count(*), {_aggregates()} FROM (SELECT {columns} FROM (
  SELECT input.data.features AS "values"
  FROM read_json($paths, format = 'newline_delimited', ignore_errors = true,
                 columns = {{{ENVELOPE}, 'input': '{body}'}})))"""


def parquet_sql() -> str:
    columns = ", ".join(f'"{name}" AS f{i}' for i, name in enumerate(FEATURES))
    return f"SELECT count(*), {_aggregates()} FROM (SELECT {columns} FROM read_parquet($paths))"


def analyze_plan_over_parquet(directory: Path) -> tuple[float, int]:
    """``analyze``'s aggregates (baseline and constraints from the generated CSV) over the
    Parquet rows: the part of a run that parsing does not explain."""
    from shipyard.monitoring import drift
    from shipyard.monitoring._duck import Params, aggregate
    from shipyard.monitoring.statistics import Constraints, baseline_from_file

    baseline = baseline_from_file(directory / "baseline.csv")
    params = Params({})
    plan = drift._plan(baseline, Constraints.suggest(baseline), params)
    columns = ", ".join(f'"{name}" AS f{i}' for i, name in enumerate(FEATURES))
    parquet = str(directory / "current.parquet").replace("'", "''")
    rows = f"SELECT 1 AS \"row\", 'ok' AS status, {columns} FROM read_parquet('{parquet}')"
    source = f"(SELECT *{drift._number_columns(baseline)} FROM ({rows})) AS capture"
    timings, found = [], 0
    for _ in range(2):
        with duckdb.connect() as con:
            con.execute("SET threads = 2")
            started = time.perf_counter()
            values = aggregate(con, source, plan, params)
            timings.append(time.perf_counter() - started)
            found = int(values["rows"])
    return min(timings), found


def best_of_two(sql: str, paths: list[str]) -> tuple[float, int]:
    timings, rows = [], 0
    for _ in range(2):
        with duckdb.connect() as con:
            con.execute("SET threads = 2")
            started = time.perf_counter()
            found = con.execute(sql, {"paths": paths}).fetchone()
            timings.append(time.perf_counter() - started)
            rows = int(found[0]) if found else 0
    return min(timings), rows


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    directory = Path(sys.argv[1])
    strings = sorted(str(p) for p in (directory / "capture").glob("*.jsonl"))
    if not strings:
        raise SystemExit(f"no capture files under {directory}: run bench/drift.py --keep first")
    console.print("Embedding the bodies (once, not timed)…")
    embedded = embed(directory / "capture", directory / "capture-embedded")
    runs = [
        ("JSONL, body as a string", string_body_sql(), strings),
        ("JSONL, body as a JSON value", embedded_body_sql(), embedded),
        ("Parquet, typed columns", parquet_sql(), [str(directory / "current.parquet")]),
    ]
    results = [(name, *best_of_two(sql, paths)) for name, sql, paths in runs]
    results.append(("analyze's aggregates over the Parquet", *analyze_plan_over_parquet(directory)))
    base = results[0][1]
    ratio_table(
        "One pass over the same captured rows, 20 features",
        [
            (name, f"{seconds:.2f} s", f"{rows:,} rows, {seconds / base:.2f}x today's")
            for name, seconds, rows in results
        ],
    )


if __name__ == "__main__":
    main()
