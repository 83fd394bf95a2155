"""Captured traffic as a table: the gateway's JSONL records, parsed by DuckDB.

Each line of a capture file is one request (see ``shipyard.hosting.gateway.capture``); its
``input.data`` holds the body the model server received, as text. The bodies it accepts
(``shipyard.hosting.modelserver.codecs``) become rows here:

- ``{"features": [...]}``: one row;
- ``{"instances": [[...], ...]}`` or ``{"inputs": ...}``: rows (a flat list is one row);
- a bare list of rows, or one bare row;
- ``text/csv``: one row per line.

Features are positional: value *i* of a row is the baseline's feature *i*. Outputs
(``{"prediction": x}``, ``{"predictions": [...]}``, a bare list, or CSV lines) give each row's
``prediction``: its value as a number, or the first value of a list (class scores), else NULL.

All parsing happens inside one streaming DuckDB query (``read_json`` over the files, then JSON
functions on the bodies): nothing here loops over rows in Python, and memory does not grow
with the number of records. Columns of the relation, in order::

    event_id, time (TIMESTAMP, UTC), variant, model_version,
    row         1-based position of the row in its request
    status      'ok' | 'no_input' (not captured) | 'unreadable' (base64 body, invalid JSON,
                an unknown shape, a row of the wrong width): feature columns are NULL then
    prediction  DOUBLE
    <features>  numeric: DOUBLE, NULL when missing (null, an empty CSV cell) and NaN when
                the value is not a number (``true``/``false`` are 1/0, as the model server
                reads them); string: VARCHAR (a JSON number as its text)

Records without a readable row appear once (``row`` 1) with their status, so they can be
counted. Lines that are not JSON records (a torn last line: no ``event_id``) are skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import duckdb
import pyarrow as pa

from shipyard.monitoring._duck import connect, ident
from shipyard.monitoring.statistics import Statistics

RESERVED: Final = ("event_id", "time", "variant", "model_version", "row", "status", "prediction")

_BODY: Final = "STRUCT(content_type VARCHAR, encoding VARCHAR, data VARCHAR)"
_READ: Final = (
    "read_json($paths, format = 'newline_delimited', ignore_errors = true, columns = {"
    "'event_id': 'VARCHAR', 'time': 'VARCHAR', 'variant': 'VARCHAR', "
    f"'model_version': 'VARCHAR', 'input': '{_BODY}', 'output': '{_BODY}'}})"
)
_EMPTY: Final = (
    "(SELECT NULL::VARCHAR AS event_id, NULL::VARCHAR AS time, NULL::VARCHAR AS variant, "
    f"NULL::VARCHAR AS model_version, NULL::{_BODY} AS input, NULL::{_BODY} AS output "
    "WHERE false)"
)
_GLOB: Final = frozenset("*?[]{}")
_STAMP: Final = "%Y-%m-%dT%H:%M:%S.%fZ"  # how the gateway writes ``time``
_STAMP_LENGTH: Final = len("2026-11-24T10:00:00.123456Z")
# One parse of a JSON body finds its shape. For ``{"features": [...]}`` (the common one) it
# also gives the numbers, and a row whose numeric features all parsed takes the fast path:
# its strings are picked by JSON path, and nothing is converted to text and back. A row with
# a missing or non-numeric value there is parsed again as text cells, to tell those apart.
_KEYS: Final = '{"features": ["DOUBLE"], "instances": "JSON", "inputs": "JSON"}'
_CELLS: Final = '{"features": ["VARCHAR"]}'


@dataclass(frozen=True)
class CaptureQuery:
    """SQL that yields the capture relation, and its parameters."""

    sql: str
    params: dict[str, object]


def capture_query(
    paths: Sequence[Path],
    columns: Sequence[tuple[str, bool]],
    *,
    start: datetime | None = None,
    end: datetime | None = None,
) -> CaptureQuery:
    """The capture query over ``paths``; ``columns`` are (name, is numeric) in feature order.

    Only records with ``start <= time < end`` are kept (either bound may be None). Naive
    datetimes are taken as UTC.
    """
    files = [_checked(path) for path in paths]
    params: dict[str, object] = {"paths": files} if files else {}
    window = []
    for name, bound, op in (("start", start, ">="), ("end", end, "<")):
        if bound is not None:
            window.append(_bound_sql(name, op))
            params[name] = _utc(bound)
            params[f"{name}_text"] = _utc(bound).strftime(_STAMP)
    where = f"WHERE {' AND '.join(window)}" if window else ""
    source = _READ if files else _EMPTY
    return CaptureQuery(_sql(source, where, columns), params)


def capture_relation(
    connection: duckdb.DuckDBPyConnection,
    paths: Sequence[Path],
    baseline: Statistics,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
) -> duckdb.DuckDBPyRelation:
    """The captured rows as a lazy DuckDB relation, feature columns named from ``baseline``."""
    clash = sorted(set(baseline.names) & set(RESERVED))
    if clash:
        raise ValueError(f"feature names clash with capture columns: {clash}")
    columns = [(f.name, f.is_numeric) for f in baseline.features]
    query = capture_query(paths, columns, start=start, end=end)
    return connection.sql(query.sql, params=query.params)


def read_capture(
    paths: Sequence[Path],
    baseline: Statistics,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
) -> pa.Table:
    """The captured rows as an Arrow table (materialised: for a window that fits in memory)."""
    with closing(connect()) as connection:
        result = capture_relation(connection, paths, baseline, start=start, end=end).arrow()
        return result.read_all() if isinstance(result, pa.RecordBatchReader) else result


def _checked(path: Path) -> str:
    """DuckDB expands glob characters in file names: refuse them rather than read others."""
    text = str(path)
    if _GLOB & set(text):
        raise ValueError(f"capture file names may not contain any of *?[]{{}}: {text}")
    if not path.is_file():
        raise FileNotFoundError(f"no such capture file: {text}")
    return text


def _bound_sql(name: str, op: str) -> str:
    """``time <op> $<name>``, comparing the text when it has the gateway's fixed-width UTC form
    (the same order, without parsing a timestamp per record), else the parsed time."""
    canonical = f"length(stamp) = {_STAMP_LENGTH} AND ends_with(stamp, 'Z')"
    return f'if({canonical}, stamp {op} ${name}_text, "time" {op} ${name})'


def _utc(moment: datetime) -> datetime:
    """As a naive UTC datetime, which compares with the TIMESTAMP column."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def _sql(source: str, where: str, columns: Sequence[tuple[str, bool]]) -> str:
    numeric = [i + 1 for i, (_, is_number) in enumerate(columns) if is_number]
    strings = [i for i, (_, is_number) in enumerate(columns) if not is_number]
    paths = ", ".join(f"'$.features[{i}]'" for i in strings)
    features = ",\n    ".join(
        _feature_sql(i, name, is_number, strings.index(i) + 1 if not is_number else 0)
        for i, (name, is_number) in enumerate(columns)
    )
    width = f"len(cells) = {len(columns)}" if columns else "cells IS NOT NULL"
    present = "".join(f" AND numbers[{k}] IS NOT NULL" for k in numeric)
    return f"""
WITH records AS (
  SELECT event_id, "time" AS stamp,
         TRY_CAST(TRY_CAST("time" AS TIMESTAMPTZ) AS TIMESTAMP) AS "time",
         variant, model_version, input, output,
         input.content_type ILIKE 'text/csv%' AS csv_in,
         output.content_type ILIKE 'text/csv%' AS csv_out
  FROM {source}
  WHERE event_id IS NOT NULL
),
bodies AS (
  SELECT *,
    CASE WHEN input.data IS NULL THEN 'no_input'
         WHEN input.encoding IS DISTINCT FROM 'text' THEN 'unreadable'
         ELSE 'ok' END AS body,
    CASE WHEN input.encoding = 'text' AND NOT csv_in
         THEN TRY(from_json(input.data, '{_KEYS}'))
    END AS keys,
    CASE WHEN output.encoding = 'text' AND NOT csv_out
         THEN TRY(json_extract(output.data, ['$.prediction', '$.predictions']))
    END AS answer
  FROM records {where}
),
texts AS (
  SELECT event_id, "time", variant, model_version, body, csv_in, csv_out,
    input.data AS data,
    CASE WHEN body = 'ok' THEN keys.features END AS numbers,
    CASE
      WHEN body <> 'ok' OR keys.features IS NOT NULL THEN NULL
      WHEN csv_in THEN string_split(trim(replace(input.data, chr(13), ''), chr(10)), chr(10))
      WHEN keys.instances IS NOT NULL THEN {_rows("keys.instances")}
      WHEN keys.inputs IS NOT NULL THEN {_rows("keys.inputs")}
      WHEN TRY(json_type(input.data)) = 'ARRAY' THEN {_rows("input.data")}
    END AS rows,
    CASE
      WHEN output.encoding IS DISTINCT FROM 'text' THEN NULL
      WHEN csv_out THEN string_split(trim(replace(output.data, chr(13), ''), chr(10)), chr(10))
      WHEN answer[1] IS NOT NULL THEN [answer[1]::VARCHAR]
      WHEN answer[2] IS NOT NULL THEN TRY(from_json(answer[2], '["VARCHAR"]'))
      ELSE coalesce(TRY(from_json(output.data, '["VARCHAR"]')), [output.data])
    END AS answers
  FROM bodies
),
entries AS (
  SELECT event_id, "time", variant, model_version, csv_in, csv_out, answers, data, numbers,
    CASE WHEN body <> 'ok' OR numbers IS NOT NULL OR len(rows) > 0 THEN body
         ELSE 'unreadable' END AS body,
    UNNEST(CASE WHEN len(rows) > 0 THEN rows ELSE [NULL::VARCHAR] END) AS text,
    generate_subscripts(CASE WHEN len(rows) > 0 THEN rows ELSE [NULL::VARCHAR] END, 1) AS "row"
  FROM texts
),
sorted AS (
  SELECT *,
    numbers IS NOT NULL AND len(numbers) = {len(columns)}{present} AS fast
  FROM entries
),
cells AS (
  SELECT *,
    CASE WHEN fast THEN NULL
         WHEN numbers IS NOT NULL THEN TRY(from_json(data, '{_CELLS}')).features
         WHEN text IS NULL THEN NULL
         WHEN csv_in THEN string_split(text, ',')
         ELSE TRY(from_json(text, '["VARCHAR"]'))
    END AS cells,
    {f"CASE WHEN fast THEN json_extract_string(data, [{paths}]) END" if strings else "NULL"}
      AS strings,
    answers["row"] AS answer
  FROM sorted
),
checked AS (
  SELECT event_id, "time", variant, model_version, "row", csv_out, answer,
    fast, numbers, strings,
    CASE WHEN body <> 'ok' THEN body
         WHEN fast OR {width} THEN 'ok'
         ELSE 'unreadable' END AS status,
    CASE WHEN body = 'ok' AND NOT fast AND {width} THEN cells END AS cells
  FROM cells
)
SELECT event_id, "time", variant, model_version, "row", status,
    CASE WHEN csv_out THEN TRY_CAST(trim(split_part(answer, ',', 1)) AS DOUBLE)
         ELSE coalesce(TRY_CAST(TRY(json_extract_string(answer, '$')) AS DOUBLE),
                       TRY_CAST(TRY(json_extract_string(answer, '$[0]')) AS DOUBLE))
    END AS prediction{"," if columns else ""}
    {features}
FROM checked
"""  # noqa: S608 (identifiers quoted, values passed as parameters)


def _rows(json: str) -> str:
    """A JSON list of rows as row texts; a flat list (one row) as a list holding itself."""
    return (
        f"CASE WHEN json_type({json}, '$[0]') = 'ARRAY' "
        f"THEN from_json({json}, '[\"VARCHAR\"]') ELSE [{json}::VARCHAR] END"
    )


def _feature_sql(i: int, name: str, numeric: bool, string_index: int) -> str:
    """One feature of a row: from ``numbers``/``strings`` on the fast path, else from ``cells``
    (both NULL unless the row is readable: see ``checked``).

    Cheap forms on purpose, since this runs for every value: DuckDB evaluates ``if`` on a
    vector faster than nested ``CASE``s. An empty cell (CSV ``1,,3``) is missing; ``true`` and
    ``false`` are 1 and 0, as the model server reads them.
    """
    cell = f"nullif(cells[{i + 1}], '')"
    if not numeric:
        return f"if(fast, nullif(strings[{string_index}], ''), {cell}) AS {ident(name)}"
    parsed = (
        f"coalesce(TRY_CAST({cell} AS DOUBLE), "
        f"CASE lower({cell}) WHEN 'true' THEN 1.0 WHEN 'false' THEN 0.0 END, 'NaN'::DOUBLE)"
    )
    slow = f"if({cell} IS NULL, NULL, {parsed})"
    return f"if(fast, numbers[{i + 1}], {slow}) AS {ident(name)}"
