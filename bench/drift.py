"""Drift + data quality over captured traffic: Shipyard vs Evidently's DataDriftPreset.

Usage: .venv/bin/python bench/drift.py [--rows 1000000] [--baseline-rows 100000]
                                       [--skip-evidently] [--keep DIR]

One run generates (seed 7, not timed) a baseline CSV and captured traffic: ``--rows`` records
of 20 features (14 numeric, 6 categorical; 10 of them drifted by design) as gateway JSONL files
of 10,000 records each, one ``{"features": [...]}`` request per record. Then, each in its own
process:

- Shipyard: ``baseline_from_file`` on the CSV, then ``analyze`` (drift and data quality) over
  the JSONL files. Its time includes parsing every capture record. Peak RSS is the process's
  own (``os.wait4``: the kernel's per-child ``RUSAGE_CHILDREN`` figure), once on a tenth of the
  files and once on all of them, to show that memory does not grow with the window.
- Evidently: the same baseline and the same rows, already parsed into pandas DataFrames
  (from a CSV and a Parquet file, loading not timed: this favours Evidently, which never reads
  the capture format), through ``Report([DataDriftPreset()])`` of the installed version.

Both must name the same drifted features; the table prints the sets and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _harness import console, ratio_table

SEED = 7
PER_FILE = 10_000
Generator = Callable[[np.random.Generator, int], np.ndarray]


def _ints(gen: Callable[[np.random.Generator, int], np.ndarray]) -> Generator:
    return lambda rng, n: gen(rng, n).astype(np.int64)


def _floats(gen: Callable[[np.random.Generator, int], np.ndarray]) -> Generator:
    return lambda rng, n: gen(rng, n).round(4)


# name -> (baseline, current); current is None when the feature does not drift
NUMERIC: dict[str, tuple[Generator, Generator | None]] = {
    "age": (_ints(lambda r, n: r.integers(18, 91, n)), None),
    "tenure_months": (_ints(lambda r, n: r.poisson(24, n)), _ints(lambda r, n: r.poisson(36, n))),
    "monthly_charges": (_floats(lambda r, n: r.normal(70, 20, n)), None),
    "total_charges": (
        _floats(lambda r, n: r.lognormal(7, 0.8, n)),
        _floats(lambda r, n: r.lognormal(7.6, 0.8, n)),
    ),
    "sessions": (_ints(lambda r, n: r.poisson(12, n)), None),
    "latency_ms": (
        _floats(lambda r, n: r.gamma(2, 30, n)),
        _floats(lambda r, n: r.gamma(2, 45, n)),
    ),
    "discount": (_floats(lambda r, n: r.uniform(0, 0.3, n)), None),
    "balance": (
        _floats(lambda r, n: r.normal(1000, 300, n)),
        _floats(lambda r, n: r.normal(1300, 300, n)),
    ),
    "support_calls": (_ints(lambda r, n: r.poisson(3, n)), None),
    "score": (_floats(lambda r, n: r.beta(2, 5, n)), _floats(lambda r, n: r.beta(3, 4, n))),
    "income": (_floats(lambda r, n: r.lognormal(10.5, 0.5, n)), None),  # 1% missing
    "items": (_ints(lambda r, n: r.poisson(5, n)), _ints(lambda r, n: r.poisson(8, n))),
    "days_active": (_ints(lambda r, n: r.integers(0, 366, n)), None),
    "ratio": (_floats(lambda r, n: r.normal(0, 1, n)), _floats(lambda r, n: r.normal(0, 2, n))),
}


def _zipf(k: int) -> np.ndarray:
    weights = 1 / np.arange(1, k + 1)
    return weights / weights.sum()


# name -> (values, baseline shares, current shares or None)
CATEGORICAL: dict[str, tuple[list[str], np.ndarray, np.ndarray | None]] = {
    "plan": (["basic", "premium", "gold"], np.array([0.6, 0.3, 0.1]), np.array([0.3, 0.4, 0.3])),
    "region": (["north", "south", "east", "west", "central"], np.full(5, 0.2), None),
    "device": (
        ["ios", "android", "web", "ipad", "mac", "windows", "linux", "smart-tv"],
        np.array([0.3, 0.3, 0.2, 0.05, 0.05, 0.05, 0.05, 0.0]),  # smart-tv: a new category
        np.array([0.2, 0.2, 0.2, 0.05, 0.05, 0.05, 0.05, 0.2]),
    ),
    "channel": ([f"ch-{i:02d}" for i in range(12)], _zipf(12), None),
    "country": ([f"c{i:02d}" for i in range(30)], _zipf(30), _zipf(30)[::-1].copy()),
    "payment": (["card", "paypal", "transfer", "cash"], np.array([0.5, 0.2, 0.2, 0.1]), None),
}
FEATURES = [*NUMERIC, *CATEGORICAL]
DRIFTED = sorted(
    [n for n, (_, cur) in NUMERIC.items() if cur is not None]
    + [n for n, (_, _, cur) in CATEGORICAL.items() if cur is not None]
)


# --- data ------------------------------------------------------------------------------------


def columns(rows: int, current: bool, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Each feature's values: the baseline's distribution, or the drifted one when asked."""
    out: dict[str, np.ndarray] = {}
    for name, (base, drifted) in NUMERIC.items():
        out[name] = (drifted if current and drifted is not None else base)(rng, rows)
    for name, (values, base_p, drifted_p) in CATEGORICAL.items():
        shares = drifted_p if current and drifted_p is not None else base_p
        out[name] = np.asarray(values, dtype=object)[rng.choice(len(values), rows, p=shares)]
    return out


def _with_missing(data: dict[str, np.ndarray], rng: np.random.Generator) -> list[Any]:
    """``income`` as a list with 1% None (missing), in baseline and traffic alike."""
    income = data["income"].astype(object)
    income[rng.random(len(income)) < 0.01] = None
    return income.tolist()


def write_baseline(path: Path, rows: int) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(SEED)
    data = columns(rows, current=False, rng=rng)
    table = pa.table({**data, "income": pa.array(_with_missing(data, rng), pa.float64())})
    pacsv.write_csv(table.select(FEATURES), path)


def write_capture(directory: Path, rows: int, parquet: Path) -> list[Path]:
    """Gateway JSONL (one request per record, 10,000 records a file) and the same rows as
    Parquet for Evidently."""
    import orjson
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(SEED + 1)
    data = columns(rows, current=True, rng=rng)
    data["income"] = np.asarray(_with_missing(data, rng), dtype=object)
    pq.write_table(
        pa.table({n: pa.array(data[n].tolist()) for n in FEATURES}).cast(
            pa.schema([(n, pa.string() if n in CATEGORICAL else pa.float64()) for n in FEATURES])
        ),
        parquet,
    )
    t0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    paths = []
    for start in range(0, rows, PER_FILE):
        stop = min(rows, start + PER_FILE)
        chunk = [data[n][start:stop].tolist() for n in FEATURES]
        lines = [
            orjson.dumps(_record(start + i, list(row), t0)) + b"\n"
            for i, row in enumerate(zip(*chunk, strict=True))
        ]
        path = directory / f"{start // PER_FILE:04d}.jsonl"
        path.write_bytes(b"".join(lines))
        paths.append(path)
    return paths


def _record(i: int, features: list[Any], t0: datetime) -> dict[str, Any]:
    import orjson

    at = t0 + timedelta(microseconds=3_600 * i)  # a million requests in an hour
    return {
        "event_id": f"0123456789abcdef-{i:010x}",
        "time": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "endpoint": "churn",
        "variant": "AllTraffic",
        "model_version": "v23",
        "input": {
            "content_type": "application/json",
            "encoding": "text",
            "data": orjson.dumps({"features": features}).decode(),
        },
        "output": {
            "content_type": "application/json",
            "encoding": "text",
            "data": orjson.dumps({"prediction": 0.87, "model_version": "v23"}).decode(),
        },
        "latencies": {"model_ms": 0.41, "overhead_ms": 0.12},
        "custom_attributes": None,
    }


# --- workers (each in its own process) -------------------------------------------------------


def shipyard_worker(directory: Path, files: int) -> dict[str, Any]:
    # SciPy (the p-values) is imported on first use; the API process that runs monitors keeps it:
    # imported here before the clock starts, as the Evidently worker imports Evidently.
    import scipy.spatial.distance
    import scipy.stats  # noqa: F401

    from shipyard.monitoring.drift import analyze
    from shipyard.monitoring.statistics import Constraints, baseline_from_file

    paths = sorted((directory / "capture").glob("*.jsonl"))[:files]
    start = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)  # the hour, as a monitoring run asks
    started = time.perf_counter()
    baseline = baseline_from_file(directory / "baseline.csv")
    constraints = Constraints.suggest(baseline)
    profiled = time.perf_counter()
    analysis = analyze(baseline, constraints, paths, start=start, end=start + timedelta(hours=1))
    done = time.perf_counter()
    return {
        "baseline_s": profiled - started,
        "analyze_s": done - profiled,
        "drifted": sorted(analysis.drifted),
        "verdict": analysis.verdict,
        "counts": analysis.counts.model_dump(),
        "violations": sorted({f"{v.feature}:{v.kind}" for v in analysis.violations}),
    }


def evidently_worker(directory: Path) -> dict[str, Any]:
    os.environ.setdefault("DO_NOT_TRACK", "1")  # no usage telemetry (there is no network)
    import pandas as pd

    _pandas3_shim()
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    numeric = list(NUMERIC)
    categorical = list(CATEGORICAL)
    dtypes = dict.fromkeys(numeric, "float64") | dict.fromkeys(categorical, "object")
    reference = pd.read_csv(directory / "baseline.csv", dtype=dtypes)
    current = pd.read_parquet(directory / "current.parquet").astype(dtypes)
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    started = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": len(current), "drifted": _evidently_drifted(snapshot)}


def _pandas3_shim() -> None:
    """Evidently 0.7 imports ``infer_dtype_from_object``, which pandas 3 removed; only a
    legacy column-type test calls it, and DataDriftPreset never does."""
    import pandas.core.dtypes.common as common

    if not hasattr(common, "infer_dtype_from_object"):
        common.infer_dtype_from_object = lambda dtype: dtype  # type: ignore[attr-defined]


def _evidently_drifted(snapshot: Any) -> list[str]:
    """Columns whose ValueDrift crosses its threshold: a distance at or above it, a p-value
    below it (the rule Evidently's stattests apply)."""
    drifted = []
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if not str(config.get("type", "")).endswith("ValueDrift"):
            continue
        value, threshold = float(metric["value"]), float(config["threshold"])
        p_value = "p_value" in str(config.get("method", ""))
        if (value < threshold) if p_value else (value >= threshold):
            drifted.append(str(config["column"]))
    return sorted(drifted)


# --- the run ---------------------------------------------------------------------------------


def run_worker(kind: str, directory: Path, *extra: str) -> tuple[dict[str, Any], float]:
    """A worker's JSON answer and its peak RSS in MiB (from the kernel, via wait4)."""
    cmd = [sys.executable, __file__, "--worker", kind, str(directory), *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)  # stderr: the console, as is
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"the {kind} worker failed with code {proc.returncode}")
    return json.loads(out), usage.ru_maxrss / 1024


def generate(directory: Path, rows: int, baseline_rows: int) -> dict[str, Any]:
    """Write the data set (in a worker: a child inherits its parent's peak RSS as its own
    starting point, so the parent must never hold a million rows)."""
    marker = directory / "done"
    if marker.exists():
        console.print(f"reusing the data in {directory}")
        return dict(json.loads(marker.read_text()))
    console.print(f"generating {baseline_rows:,} baseline rows and {rows:,} capture records…")
    started = time.perf_counter()
    (directory / "capture").mkdir(parents=True, exist_ok=True)
    write_baseline(directory / "baseline.csv", baseline_rows)
    paths = write_capture(directory / "capture", rows, directory / "current.parquet")
    size = sum(p.stat().st_size for p in paths) / 2**20
    info = {"rows": rows, "baseline_rows": baseline_rows, "files": len(paths), "mib": size}
    console.print(
        f"  {len(paths)} files, {size:,.0f} MiB, in {time.perf_counter() - started:.0f} s"
    )
    marker.write_text(json.dumps(info))
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="capture records")
    parser.add_argument("--baseline-rows", type=int, default=100_000)
    parser.add_argument("--skip-evidently", action="store_true")
    parser.add_argument("--keep", type=Path, help="generate into (or reuse) this directory")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    console.width = max(console.width, 120)  # the table's notes, unwrapped in a log file
    if args.worker:
        console.file = sys.stderr  # stdout carries the worker's JSON answer
        kind, directory = args.worker[0], Path(args.worker[1])
        if kind == "shipyard":
            result = shipyard_worker(directory, int(args.worker[2]))
        elif kind == "generate":
            result = generate(directory, int(args.worker[2]), int(args.worker[3]))
        else:
            result = evidently_worker(directory)
        sys.stdout.write(json.dumps(result))
        return
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        bench(args, args.keep)
    else:
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
            bench(args, Path(tmp))


def bench(args: argparse.Namespace, directory: Path) -> None:
    data, _ = run_worker("generate", directory, str(args.rows), str(args.baseline_rows))
    args.baseline_rows = data["baseline_rows"]
    files = int(data["files"])
    console.print("Shipyard on a tenth of the files (memory check)…")
    small, small_rss = run_worker("shipyard", directory, str(max(1, files // 10)))
    console.print("Shipyard on all of them…")
    ship, ship_rss = run_worker("shipyard", directory, str(files))
    evidently, evidently_rss = ({}, 0.0)
    if not args.skip_evidently:
        console.print("Evidently DataDriftPreset…")
        evidently, evidently_rss = run_worker("evidently", directory)
    report(args, ship, ship_rss, small, small_rss, evidently, evidently_rss)


def report(
    args: argparse.Namespace,
    ship: dict[str, Any],
    ship_rss: float,
    small: dict[str, Any],
    small_rss: float,
    evidently: dict[str, Any],
    evidently_rss: float,
) -> None:
    total = ship["baseline_s"] + ship["analyze_s"]
    records = ship["counts"]["records"]
    speed = records / ship["analyze_s"]
    rows: list[tuple[str, str, str]] = [
        ("Shipyard: baseline", f"{ship['baseline_s']:.2f} s", f"{args.baseline_rows:,} CSV rows"),
        ("Shipyard: analyze", f"{ship['analyze_s']:.2f} s", "parse JSONL, drift, quality"),
        ("Shipyard: total", f"{total:.2f} s", f"{speed:,.0f} records/s analysed"),
        ("Shipyard: peak RSS", f"{ship_rss:,.0f} MiB", f"{records:,} records"),
        ("Shipyard: peak RSS", f"{small_rss:,.0f} MiB", f"{small['counts']['records']:,} records"),
        ("Shipyard: verdict", ship["verdict"], ", ".join(ship["violations"])),
    ]
    if evidently:
        ratio = evidently["seconds"] / total
        rows += [
            ("Evidently DataDriftPreset", f"{evidently['seconds']:.2f} s", "parsing not timed"),
            ("Evidently: peak RSS", f"{evidently_rss:,.0f} MiB", "with its two DataFrames"),
            ("Evidently / Shipyard", f"{ratio:.1f}x", f"at {evidently['rows']:,} rows"),
        ]
    ratio_table(f"Drift + data quality, {records:,} captured rows x 20 features, one run", rows)
    console.print(f"designed to drift: {DRIFTED}")
    agrees = ship["drifted"] == DRIFTED
    console.print(f"Shipyard drifted:  {ship['drifted']} (as designed: {agrees})")
    if evidently:
        same = evidently["drifted"] == ship["drifted"]
        console.print(f"Evidently drifted: {evidently['drifted']} (same as Shipyard: {same})")


if __name__ == "__main__":
    main()
