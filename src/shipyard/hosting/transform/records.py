"""Records of a batch transform: how a file is split, how records become one request, and how
the model's answer becomes one output line per record.

A record is a line (``split_type`` ``Line``; blank lines are not records, and with
``skip_header`` the first line of every file is not either) or the whole file (``None``).
Requests are what the endpoint would be sent, so the answer is what it would give:

- ``text/csv``: the batch's lines, one request body of CSV rows;
- ``application/json`` / ``application/jsonlines`` with ``Line``: one JSON document per line.
  A single record is sent as it is; a batch of several is sent as
  ``{"instances": [row, ...]}``, each record being a row (a JSON list, or
  ``{"features": [...]}``, unwrapped), as a multi-row invocation is;
- ``None``: the whole file, with its content type.

An answer is split back into records: CSV answers by line, JSON answers by their
``predictions`` (or ``prediction``), each written as one compact JSON value per line.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

CSV: Final = "text/csv"
JSON: Final = "application/json"
JSONLINES: Final = "application/jsonlines"
CONTENT_TYPES: Final = (CSV, JSON, JSONLINES)
LINE: Final = "Line"
WHOLE: Final = "None"
SPLIT_TYPES: Final = (LINE, WHOLE)
MULTI: Final = "MultiRecord"
SINGLE: Final = "SingleRecord"
STRATEGIES: Final = (MULTI, SINGLE)
DEFAULT_PAYLOAD_RECORDS: Final = 100
# The model server's default body limit: a batch never grows past what an endpoint takes.
MAX_PAYLOAD_BYTES: Final = 6 * 1024 * 1024
_ROW_HELP: Final = (
    'MultiRecord sends each line as one row, so it must be a JSON list or {"features": [...]}; '
    "use strategy SingleRecord to send other JSON documents as they are"
)


@dataclass(frozen=True, slots=True)
class Record:
    """One record and where it came from: its line in the file (1 for a whole file)."""

    line: int
    data: bytes


class RecordError(Exception):
    """A record that cannot be sent, or an answer that cannot be split into records."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


def wire_type(content_type: str) -> str:
    """What the model is told it receives: JSON Lines records travel as JSON documents."""
    return JSON if content_type == JSONLINES else content_type


def read_records(path: Path, split_type: str, skip_header: bool) -> Iterator[Record]:
    """The file's records in order, streamed (a large file is never held whole by ``Line``)."""
    if split_type == WHOLE:
        yield Record(1, path.read_bytes())
        return
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            if skip_header and number == 1:
                continue
            data = raw.rstrip(b"\r\n")
            if data.strip():
                yield Record(number, data)


def count_records(path: Path, split_type: str, skip_header: bool) -> int:
    """How many records ``read_records`` gives, so progress can say how far along it is."""
    return sum(1 for _ in read_records(path, split_type, skip_header))


def batches(
    records: Iterable[Record], size: int, max_bytes: int = MAX_PAYLOAD_BYTES
) -> Iterator[list[Record]]:
    """Up to ``size`` records per batch, fewer when the batch would pass ``max_bytes``."""
    batch: list[Record] = []
    held = 0
    for record in records:
        if batch and (len(batch) >= size or held + len(record.data) > max_bytes):
            yield batch
            batch, held = [], 0
        batch.append(record)
        held += len(record.data) + 1
    if batch:
        yield batch


def request_for(batch: list[Record], content_type: str, split_type: str) -> tuple[bytes, str]:
    """The body and media type of one request for ``batch``."""
    kind = wire_type(content_type)
    if split_type == WHOLE or len(batch) == 1:
        return batch[0].data, kind
    if kind == CSV:
        return b"\n".join(record.data for record in batch) + b"\n", CSV
    return orjson.dumps({"instances": [_row(record) for record in batch]}), JSON


def _row(record: Record) -> Any:
    try:
        value = orjson.loads(record.data)
    except orjson.JSONDecodeError as exc:
        raise RecordError(f"not valid JSON: {exc}", record.line) from None
    if isinstance(value, dict) and "features" in value:
        return value["features"]
    if isinstance(value, list):
        return value
    raise RecordError(_ROW_HELP, record.line)


def answer_lines(body: bytes, media_type: str, count: int) -> list[bytes]:
    """One line per record from a successful answer to ``count`` records."""
    if media_type == CSV:
        lines = [line.encode() for line in body.decode("utf-8", errors="replace").splitlines()]
    elif media_type in (JSON, JSONLINES):
        lines = [_compact(value) for value in _json_values(body, count)]
    elif count == 1 and b"\n" not in body.rstrip(b"\n"):
        lines = [body.rstrip(b"\n")]
    else:
        raise RecordError(f"an answer of type {media_type!r} cannot be split into records")
    if len(lines) != count:
        raise RecordError(
            f"the model answered {len(lines)} value(s) for {count} record(s); "
            "use strategy SingleRecord if it answers a batch as one value"
        )
    return lines


def _json_values(body: bytes, count: int) -> list[Any]:
    """The per-record values of a JSON answer (or of JSON Lines, one value a line)."""
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return [_loads_line(line) for line in body.splitlines() if line.strip()]
    if isinstance(answer, dict) and "predictions" in answer:
        values = answer["predictions"]
    elif isinstance(answer, dict) and "prediction" in answer:
        values = [answer["prediction"]]
    else:
        values = answer
    if not isinstance(values, list):
        values = [values]
    if count == 1 and len(values) != 1:
        values = [values]  # one record the model answered with several values
    return values


def _loads_line(line: bytes) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise RecordError(f"the model's answer is neither JSON nor JSON Lines: {exc}") from None


def _compact(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)


def error_text(body: bytes) -> str:
    """``code: message`` of a model server error answer, else the body's start."""
    try:
        error = orjson.loads(body)["error"]
        return f"{error['code']}: {error['message']}"
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return body[:500].decode("utf-8", errors="replace")
