"""Schema, row count and per-column profile of a tabular dataset file (CSV or Parquet).

Datasets are versioned artifacts; a profile (like an MLflow dataset's schema/profile or a SageMaker
data profile) lets a user compare two versions without downloading either. Files can hold
millions of rows, so everything is computed inside DuckDB: one aggregate query covers count,
missing, min, max, mean and std for all columns at once, and one ``GROUP BY`` per column gives
its exact distinct count and top values. No Python loop ever touches a row.

Semantics worth knowing:

* **Missing** means SQL NULL (an empty CSV field) *and* floating-point NaN. A NaN says "no
  number here" as much as an empty cell does, and counting it as present would poison mean, std,
  min and max. So ``count + missing == row_count`` always, and every statistic, ``distinct`` and
  ``top_values`` describe exactly the ``count`` present values.
* Infinities are values: they show up in min/max and can make mean infinite and std NaN.
  NaN results are reported as ``None``; ``as_dict`` also turns infinities into ``None`` because
  JSON cannot carry them.
* Booleans are numeric for statistics: min/max are 0.0/1.0 and mean is the fraction true.
* Dates and timestamps report min/max as ISO 8601 strings (``2024-01-31``,
  ``2024-01-31T12:00:00``, with ``+00`` for zoned timestamps, rendered in UTC).
* ``top_values`` are the ``top_k`` most frequent present values rendered as text, count
  descending, ties broken by the value ascending in the column's own order (numbers numerically).
* CSV types are DuckDB's auto-detected ones; if a value late in the file contradicts the sniffed
  sample, the file is sniffed again in full rather than rejected.
"""

from __future__ import annotations

import csv
import math
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import duckdb

Format = Literal["csv", "parquet"]

_PARQUET_MAGIC = b"PAR1"
_PARQUET_SUFFIXES = (".parquet", ".pq")
_PARQUET_CONTENT_TYPES = frozenset({"application/vnd.apache.parquet", "application/x-parquet"})
_THREADS = 2
_COLUMNS_PER_QUERY = 200  # keeps the one-pass aggregate query a reasonable size on wide tables
_MAX_ERROR_CHARS = 300
_BLANK_PROBE_BYTES = 64 * 1024
_HEADER_PROBE_BYTES = 1024 * 1024
# SQL text is built only from quoted identifiers and our own constants (hence the S608 noqa
# markers); the file path always travels as a bound parameter or through DuckDB's Python API.
_SOURCE = "src"

_INTEGER_TYPES = frozenset(
    {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT"}
    | {"UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT"}
)
_FLOATING_TYPES = frozenset({"FLOAT", "DOUBLE"})
_TIMESTAMP_TYPES = frozenset(
    {"TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS", "TIMESTAMP WITH TIME ZONE"}
)
_NUMERIC_KINDS = frozenset({"integer", "float", "boolean"})
_ORDERED_KINDS = _NUMERIC_KINDS | {"string", "date", "timestamp"}

# skip=0: left to itself the sniffer may decide the first rows are a preamble (say, when the last
# row is wider than the rest) and silently drop them; the header is always the first line here.
_READ_CSV = "SELECT * FROM read_csv(?, header=true, auto_detect=true, skip=0)"
_READ_CSV_FULL_SNIFF = _READ_CSV.replace("skip=0", "skip=0, sample_size=-1")
_CSV_DELIMITERS = (",", ";", "\t", "|")

# Any other DuckDB error means the file could not be read (a corrupt Parquet page even surfaces as
# a bare ``duckdb.Error``); these mean a bug in our SQL, or a server-side problem, instead.
_NOT_THE_FILES_FAULT: tuple[type[Exception], ...] = (
    duckdb.ParserException,
    duckdb.SyntaxException,
    duckdb.BinderException,
    duckdb.CatalogException,
    duckdb.OutOfMemoryException,
    duckdb.InterruptException,
    duckdb.FatalException,
    duckdb.InternalError,
)


class DatasetFormatError(ValueError):
    """The file is not readable as its declared or detected format; the message says why."""

    field = "body"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class ColumnProfile:
    """Statistics of one column; see the module docstring for what counts as missing."""

    name: str
    type: str
    physical_type: str
    count: int
    missing: int
    distinct: int
    min: float | str | None
    max: float | str | None
    mean: float | None
    std: float | None
    top_values: list[tuple[str, int]]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: pairs become ``[value, count]`` lists and non-finite floats ``None``."""
        return {
            "name": self.name,
            "type": self.type,
            "physical_type": self.physical_type,
            "count": self.count,
            "missing": self.missing,
            "distinct": self.distinct,
            "min": _json_safe(self.min),
            "max": _json_safe(self.max),
            "mean": _json_safe(self.mean),
            "std": _json_safe(self.std),
            "top_values": [[value, count] for value, count in self.top_values],
        }


@dataclass(frozen=True)
class DatasetProfile:
    """The profile of a whole file: its row count and one ``ColumnProfile`` per column."""

    format: str
    row_count: int
    columns: list[ColumnProfile]

    def schema(self) -> list[dict[str, str]]:
        """The column names and types alone, for schema comparison between dataset versions."""
        return [
            {"name": c.name, "type": c.type, "physical_type": c.physical_type} for c in self.columns
        ]

    def as_dict(self) -> dict[str, Any]:
        return {"row_count": self.row_count, "columns": [c.as_dict() for c in self.columns]}


def detect_format(filename: str | None, content_type: str | None, head: bytes) -> Format:
    """Parquet when the bytes, the name or the content type say so; CSV otherwise.

    The magic bytes come first because clients often upload with a generic name or type.
    """
    if head.startswith(_PARQUET_MAGIC):
        return "parquet"
    if filename and filename.lower().endswith(_PARQUET_SUFFIXES):
        return "parquet"
    if content_type and _media_type(content_type) in _PARQUET_CONTENT_TYPES:
        return "parquet"
    return "csv"


def profile_file(path: Path, fmt: Format, *, top_k: int = 5) -> DatasetProfile:
    """Profile ``path`` read as ``fmt``; raises ``DatasetFormatError`` when it cannot be read.

    A missing file raises ``FileNotFoundError``: that is the caller's bug, not the upload's.
    """
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"unknown dataset format {fmt!r}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0, got {top_k}")
    if _is_blank(path):
        raise DatasetFormatError("the file is empty")
    with tempfile.TemporaryDirectory(prefix="shipyard-profile-") as spill_dir:
        con = _connect(spill_dir)
        try:
            return _profile(con, path, fmt, top_k)
        except duckdb.Error as exc:
            if isinstance(exc, _NOT_THE_FILES_FAULT):
                raise
            raise DatasetFormatError(_condense_error(str(exc), path)) from exc
        finally:
            con.close()


# --- reading ------------------------------------------------------------------------------------


def _connect(spill_dir: str) -> duckdb.DuckDBPyConnection:
    """A private in-memory database: bounded threads, spills to our own temporary directory, and
    no network access (extension auto-install would fetch code at request time)."""
    con = duckdb.connect(
        ":memory:",
        config={
            "threads": _THREADS,
            "temp_directory": spill_dir,
            "preserve_insertion_order": False,
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        },
    )
    con.execute("SET TimeZone = 'UTC'")  # zoned timestamps render the same on every server
    return con


def _profile(con: duckdb.DuckDBPyConnection, path: Path, fmt: Format, top_k: int) -> DatasetProfile:
    if fmt == "parquet":
        con.read_parquet(str(path)).create_view(_SOURCE)
    else:
        _load_csv(con, path)
    columns = _describe(con)
    row_count, stats = _aggregate(con, columns)
    profiles = [
        _column_profile(column, row_count, column_stats, _top_values(con, column, top_k))
        for column, column_stats in zip(columns, stats, strict=True)
    ]
    return DatasetProfile(format=fmt, row_count=row_count, columns=profiles)


def _load_csv(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Parse the CSV once into a temporary table: every later pass scans columns, not text."""
    create = f"CREATE TEMP TABLE {_SOURCE} AS "
    try:
        con.execute(create + _READ_CSV, [str(path)])
    except duckdb.ConversionException:
        # The sniffer typed the columns from a sample and a later value disagreed.
        con.execute(create + _READ_CSV_FULL_SNIFF, [str(path)])
    if len(_describe(con)) == 1:
        _check_single_column(con, path)


def _check_single_column(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Surface ragged rows, which DuckDB's sniffer hides by falling back to one column.

    When no delimiter gives every row the same width, the sniffer reads each whole line as one
    value, so a CSV with one bad row would profile "successfully" as a single text column. If the
    raw header line splits on a delimiter, reading strictly with it reports the offending line.
    (The raw line, not DuckDB's column name: a quoted ``"a,b"`` header is one genuine column.)
    """
    header = _first_line(path)
    delimiter = max(_CSV_DELIMITERS, key=header.count)
    width = len(next(csv.reader([header], delimiter=delimiter), []))
    if width < 2:
        return
    columns = ", ".join(f"'c{i}': 'VARCHAR'" for i in range(width))  # our own names only
    options = (
        f"header=true, auto_detect=false, delim=?, quote='\"', escape='\"', columns={{{columns}}}"
    )
    sql = f"SELECT count(*) FROM read_csv(?, {options})"  # noqa: S608
    con.execute(sql, [str(path), delimiter]).fetchall()


def _first_line(path: Path) -> str:
    with path.open("rb") as file:
        line = file.readline(_HEADER_PROBE_BYTES)
    return line.decode("utf-8", errors="replace").rstrip("\r\n")


@dataclass(frozen=True)
class _Column:
    """One column and the SQL expressions that profile it according to its kind."""

    name: str
    physical_type: str
    kind: str

    @property
    def value(self) -> str:
        """The column with NaN folded into NULL; exotic types as text so they group and sort."""
        quoted = _quote_identifier(self.name)
        if self.physical_type in _FLOATING_TYPES:
            return f"(CASE WHEN isnan({quoted}) THEN NULL ELSE {quoted} END)"
        if self.kind in ("binary", "other"):
            return f"CAST({quoted} AS VARCHAR)"
        return quoted

    def text(self, expression: str) -> str:
        """Render a value of this column as user-facing text (ISO 8601 for timestamps)."""
        rendered = f"CAST({expression} AS VARCHAR)"
        if self.kind == "timestamp":
            return f"regexp_replace({rendered}, ' ', 'T')"  # first space only: keeps ' (BC)'
        return rendered

    def aggregates(self) -> list[str]:
        """count, min, max, mean and std, in that order; NULL where they mean nothing."""
        v = self.value
        extremes = ["NULL", "NULL"]
        if self.kind in ("date", "timestamp"):
            extremes = [self.text(f"min({v})"), self.text(f"max({v})")]
        elif self.kind in _ORDERED_KINDS:
            extremes = [f"min({v})", f"max({v})"]
        moments = ["NULL", "NULL"]
        if self.kind in _NUMERIC_KINDS:
            numeric = f"CAST({v} AS INTEGER)" if self.kind == "boolean" else v
            moments = [f"avg({numeric})", f"stddev_samp(CAST({v} AS DOUBLE))"]
        return [f"count({v})", *extremes, *moments]


def _describe(con: duckdb.DuckDBPyConnection) -> list[_Column]:
    rows = con.execute(f"DESCRIBE {_SOURCE}").fetchall()
    return [_Column(str(name), str(kind), _kind(str(kind))) for name, kind, *_ in rows]


def _kind(physical_type: str) -> str:
    """Map DuckDB's type to the stable, user-facing type name."""
    if physical_type in _INTEGER_TYPES:
        return "integer"
    if physical_type in _FLOATING_TYPES or physical_type.startswith("DECIMAL"):
        return "float"
    if physical_type == "BOOLEAN":
        return "boolean"
    if physical_type == "VARCHAR":
        return "string"
    if physical_type == "DATE":
        return "date"
    if physical_type in _TIMESTAMP_TYPES:
        return "timestamp"
    if physical_type == "BLOB":
        return "binary"
    return "other"


# --- statistics ---------------------------------------------------------------------------------


def _aggregate(
    con: duckdb.DuckDBPyConnection, columns: list[_Column]
) -> tuple[int, list[tuple[Any, ...]]]:
    """Row count and per-column (count, min, max, mean, std), one scan per batch of columns."""
    if not columns:
        row = con.execute(f"SELECT count(*) FROM {_SOURCE}").fetchone()  # noqa: S608
        return (int(row[0]) if row else 0), []
    row_count = 0
    stats: list[tuple[Any, ...]] = []
    for start in range(0, len(columns), _COLUMNS_PER_QUERY):
        batch = columns[start : start + _COLUMNS_PER_QUERY]
        selects = ", ".join(["count(*)"] + [a for c in batch for a in c.aggregates()])
        row = con.execute(f"SELECT {selects} FROM {_SOURCE}").fetchone()  # noqa: S608
        assert row is not None  # an aggregate without GROUP BY always yields one row
        row_count = int(row[0])
        width = len(row[1:]) // len(batch)
        stats.extend(tuple(row[1 + i * width : 1 + (i + 1) * width]) for i in range(len(batch)))
    return row_count, stats


def _top_values(
    con: duckdb.DuckDBPyConnection, column: _Column, top_k: int
) -> tuple[int, list[tuple[str, int]]]:
    """Exact distinct count and the ``top_k`` most frequent present values with their counts.

    The window counts every group before ``LIMIT`` applies, so the distinct count comes free
    with the top values and is exact. ``LIMIT`` keeps at least one row so that count arrives.
    """
    sql = (
        f"SELECT {column.text('v')}, n, count(*) OVER () FROM ("  # noqa: S608
        f"SELECT {column.value} AS v, count(*) AS n FROM {_SOURCE} "
        f"WHERE {column.value} IS NOT NULL GROUP BY 1"
        f") ORDER BY n DESC, v ASC LIMIT {max(top_k, 1)}"
    )
    rows = con.execute(sql).fetchall()
    distinct = int(rows[0][2]) if rows else 0
    return distinct, [(str(value), int(n)) for value, n, _ in rows[:top_k]]


def _column_profile(
    column: _Column,
    row_count: int,
    stats: tuple[Any, ...],
    top: tuple[int, list[tuple[str, int]]],
) -> ColumnProfile:
    count, low, high, mean, std = stats
    distinct, top_values = top
    return ColumnProfile(
        name=column.name,
        type=column.kind,
        physical_type=column.physical_type,
        count=int(count),
        missing=row_count - int(count),
        distinct=distinct,
        min=_extreme(low),
        max=_extreme(high),
        mean=_number(mean),
        std=_number(std),
        top_values=top_values,
    )


def _extreme(value: Any) -> float | str | None:
    """Numbers (and booleans) as float, everything else as the text DuckDB gave."""
    if value is None or isinstance(value, str):
        return value
    return _number(value)


def _number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)  # int, float, bool or Decimal
    return None if math.isnan(number) else number


def _json_safe(value: float | str | None) -> float | str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --- small helpers ------------------------------------------------------------------------------


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _is_blank(path: Path) -> bool:
    """Empty or whitespace only: DuckDB would invent a ``column0`` rather than complain."""
    size = path.stat().st_size
    if size > _BLANK_PROBE_BYTES:
        return False
    return not path.read_bytes().strip()


_LINE_RE = re.compile(r"CSV Error on Line: (\d+)")
_WIDTH_RE = re.compile(r"Expected Number of Columns: (\d+) Found: (\d+)")
_CONVERT_RE = re.compile(r'converting column "(.*?)"\. Could not convert string (.*?) to \'(\w+)\'')
_PREFIX_RE = re.compile(r"^[A-Za-z ]*Error: ")
_SKIPPED_PREFIXES = ("CSV Error on Line", "Original Line")  # the number is kept; row data is not
_STOP_MARKERS = ("Possible fixes", "Possible solutions", "The search space", "LINE ", "file = ")


def _condense_error(message: str, path: Path) -> str:
    """One short line from DuckDB's multi-line message: the line number and what was wrong.

    Only the why: callers add which file and format. The server's directory layout stays out.
    """
    message = message.replace(str(path), path.name)
    line = _LINE_RE.search(message)
    width = _WIDTH_RE.search(message)
    convert = _CONVERT_RE.search(message)
    if width:
        detail = f"expected {width[1]} columns, got {width[2]}"
    elif convert:
        detail = f'column "{convert[1]}": could not convert {convert[2]} to {convert[3]}'
    else:
        detail = _first_lines(message)
    condensed = f"line {line[1]}: {detail}" if line else detail
    if len(condensed) > _MAX_ERROR_CHARS:
        condensed = condensed[: _MAX_ERROR_CHARS - 1] + "…"
    return condensed


def _first_lines(message: str) -> str:
    """The explanatory head of a DuckDB message, before its suggestions and SQL excerpt."""
    kept: list[str] = []
    for raw in message.splitlines():
        text = _PREFIX_RE.sub("", raw.strip())
        if text.startswith(_STOP_MARKERS) or (kept and not text):
            break
        if text and not text.startswith(_SKIPPED_PREFIXES):
            kept.append(text)
    return " ".join(kept) or message.strip()
