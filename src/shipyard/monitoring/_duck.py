"""DuckDB plumbing shared by the monitoring modules: one configured connection, quoting."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb

# Enough for the aggregate states and a few read buffers: the capture query streams, so a
# larger window costs time, not memory (DuckDB spills what does not fit to a temp directory).
DEFAULT_MEMORY_LIMIT = "1GB"


def connect(*, memory_limit: str = DEFAULT_MEMORY_LIMIT) -> duckdb.DuckDBPyConnection:
    """An in-memory connection in UTC, with a memory cap and no ordering guarantees.

    ``preserve_insertion_order=false`` lets DuckDB stream aggregates and write results without
    buffering rows to keep them in file order, which nothing here needs.
    """
    connection = duckdb.connect(":memory:")
    connection.execute("SET TimeZone = 'UTC'")
    connection.execute(f"SET memory_limit = '{_safe_setting(memory_limit)}'")
    connection.execute("SET preserve_insertion_order = false")
    return connection


def aggregate(
    connection: duckdb.DuckDBPyConnection,
    source: str,
    plan: Sequence[tuple[str, str]],
    params: dict[str, object] | None = None,
) -> dict[str, Any]:
    """Run ``SELECT <aggregates> FROM <source>`` once; the results by the plan's keys."""
    # Built from quoted identifiers and $placeholders only: no value is ever SQL text.
    sql = f"SELECT {', '.join(expression for _, expression in plan)} FROM {source}"  # noqa: S608
    row = connection.execute(sql, params or {}).fetchone()
    assert row is not None  # an ungrouped aggregate always has one row
    return dict(zip((key for key, _ in plan), row, strict=True))


def ident(name: str) -> str:
    """``name`` as a quoted SQL identifier (any text is a valid column name)."""
    return '"' + name.replace('"', '""') + '"'


class Params(dict[str, object]):
    """Query parameters gathered while SQL is built: ``add`` returns the placeholder.

    Long lists (1,000 sketch edges per feature, category names) go in as parameters, not
    literals: DuckDB binds a parameter in microseconds but parses a literal list slowly, and a
    value from the data never becomes SQL text.
    """

    def add(self, value: object, cast: str = "") -> str:
        name = f"p{len(self)}"
        while name in self:
            name += "_"
        self[name] = value
        return f"${name}{cast}"

    def doubles(self, values: Sequence[float]) -> str:
        return self.add([float(v) for v in values], "::DOUBLE[]")

    def strings(self, values: Sequence[str]) -> str:
        return self.add(list(values), "::VARCHAR[]")


def _safe_setting(value: str) -> str:
    if not value.replace(" ", "").replace(".", "").isalnum():
        raise ValueError(f"not a memory size: {value!r}")
    return value
