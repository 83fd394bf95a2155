"""Request bodies to arrays and predictions to response bodies: JSON, CSV and NPY.

``decode(body, media_type)`` gives ``(data, shape)``: ``shape`` says whether the caller sent
one row (``{"features": [...]}``: answer ``{"prediction": x}``), rows (answer
``{"predictions": [...]}``) or some other JSON value (handed over as parsed, for an
``inference.py`` to make sense of). ``encode(prediction, media_type, shape, version)`` gives
the body. The conventions are in the package docstring.

JSON goes through orjson, which writes NumPy arrays and scalars natively: a one-row answer
costs a few microseconds, not the tens that ``ndarray.tolist()`` + ``json.dumps`` do.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from typing import Any, Final

import numpy as np
import orjson

from shipyard.hosting.modelserver.errors import ModelError, NotAcceptable, UnsupportedMediaType

JSON: Final = "application/json"
CSV: Final = "text/csv"
NPY: Final = "application/x-npy"
MEDIA_TYPES: Final = (JSON, CSV, NPY)

# What the caller sent, which decides the shape of a JSON answer.
OTHER: Final = 0  # a JSON value that is not rows: passed as parsed
ROW: Final = 1  # {"features": [...]}: one row, answered {"prediction": ...}
ROWS: Final = 2  # rows in any form, answered {"predictions": [...]}

SHAPES_HELP: Final = (
    'expected {"features": [...]} (one row), {"instances": [[...], ...]} or a list of rows'
)
_JSON_OPTIONS: Final = orjson.OPT_SERIALIZE_NUMPY
_ALIASES: Final = {"application/*": JSON, "*/*": JSON, "text/*": CSV, "text/json": JSON}


def media_type(header: bytes | str | None) -> str | None:
    """``application/json; charset=utf-8`` → ``application/json``; None when absent."""
    if not header:
        return None
    text = header.decode("latin-1") if isinstance(header, bytes) else header
    return text.split(";", 1)[0].strip().lower() or None


def negotiate(accept: str | None) -> str:
    """The first media type of an Accept header that can be produced (JSON when absent)."""
    if not accept:
        return JSON
    for item in accept.split(","):
        kind = item.split(";", 1)[0].strip().lower()
        if kind in MEDIA_TYPES:
            return kind
        if kind in _ALIASES:
            return _ALIASES[kind]
    raise NotAcceptable(f"cannot answer in {accept!r}; supported: {', '.join(MEDIA_TYPES)}")


# --- decoding ---------------------------------------------------------------------------------


def decode(body: bytes, kind: str | None) -> tuple[Any, int]:
    """A request body as ``(data, shape)``; ``kind`` is its media type (None means JSON)."""
    decoder = _DECODERS.get(kind or JSON)
    if decoder is None:
        raise UnsupportedMediaType(
            f"unsupported Content-Type {kind!r}; supported: {', '.join(MEDIA_TYPES)}"
        )
    if not body:
        raise ModelError("the request body is empty")
    return decoder(body)


def decode_json(body: bytes) -> tuple[Any, int]:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ModelError(f"the body is not valid JSON: {exc}") from None
    if isinstance(value, dict):
        if "features" in value:
            return to_rows([value["features"]]), ROW
        for key in ("instances", "inputs"):
            if key in value:
                return to_rows(value[key]), ROWS
        return value, OTHER
    if isinstance(value, list):
        return to_rows(value), ROWS
    return value, OTHER


def to_rows(rows: Any) -> np.ndarray[Any, Any]:
    """JSON rows as a 2-D array: float64 when every value is a number (null is NaN), else an
    object array (a pipeline with string columns takes it). A flat list is one row."""
    if not isinstance(rows, list) or not rows:
        raise ModelError(f"no rows: {SHAPES_HELP}")
    try:
        array = np.asarray(rows, dtype=np.float64)
    except (ValueError, TypeError):
        array = np.array(rows, dtype=object)
        if array.ndim == 1 and any(isinstance(row, list) for row in rows):
            raise ModelError("the rows do not all have the same number of values") from None
    return array.reshape(1, -1) if array.ndim == 1 else array


def decode_csv(body: bytes) -> tuple[Any, int]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelError(f"the CSV body is not UTF-8: {exc}") from None
    rows = [line.split(",") for line in text.splitlines() if line.strip()]
    if not rows:
        raise ModelError("the CSV body has no rows")
    try:  # NumPy parses the numeric strings in C; the slow path below finds the culprit
        return np.array(rows, dtype=np.float64), ROWS
    except ValueError:
        return _csv_slowly(rows), ROWS


def _csv_slowly(rows: list[list[str]]) -> np.ndarray[Any, Any]:
    width = len(rows[0])
    out = np.empty((len(rows), width), dtype=np.float64)
    for i, row in enumerate(rows):
        if len(row) != width:
            raise ModelError(f"CSV line {i + 1} has {len(row)} values, line 1 has {width}")
        for j, cell in enumerate(row):
            try:
                out[i, j] = float(cell) if cell.strip() else math.nan
            except ValueError:
                message = f"CSV line {i + 1}, column {j + 1}: {cell!r} is not a number"
                raise ModelError(message) from None
    return out


def decode_npy(body: bytes) -> tuple[Any, int]:
    try:
        array = np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ModelError(f"the body is not a NPY array: {exc}") from None
    if not isinstance(array, np.ndarray):
        raise ModelError("the body is not a NPY array (an NPZ archive?)")
    return (array.reshape(1, -1) if array.ndim == 1 else array), ROWS


_DECODERS: Final[dict[str, Callable[[bytes], tuple[Any, int]]]] = {
    JSON: decode_json,
    CSV: decode_csv,
    NPY: decode_npy,
}


# --- encoding ---------------------------------------------------------------------------------


def encode(prediction: Any, kind: str, shape: int, version: str | None) -> bytes:
    """``prediction`` as a body of media type ``kind`` (one of ``MEDIA_TYPES``)."""
    if kind == JSON:
        return encode_json(prediction, shape, version)
    if kind == CSV:
        return encode_csv(prediction)
    return encode_npy(prediction)


def encode_json(prediction: Any, shape: int, version: str | None) -> bytes:
    obj: Any
    if shape == ROW:
        obj = {"prediction": _first(prediction)}
    elif shape == ROWS or isinstance(prediction, (np.ndarray, list, tuple)):
        obj = {"predictions": flat_column(prediction)}
    elif isinstance(prediction, dict):
        obj = {**prediction}
    elif isinstance(prediction, (str, int, float, bool, np.generic)) or prediction is None:
        obj = {"prediction": prediction}
    else:
        obj = prediction
    if version is not None and isinstance(obj, dict):
        obj.setdefault("model_version", version)
    return orjson.dumps(obj, default=_to_json, option=_JSON_OPTIONS)


def encode_csv(prediction: Any) -> bytes:
    array = np.asarray(flat_column(prediction))
    if array.ndim == 0:
        array = array.reshape(1)
    if array.ndim == 1:  # str() of a NumPy scalar is its shortest repr, float32 included
        lines = [str(value) for value in array]
    else:
        lines = [",".join(map(str, row)) for row in array.reshape(len(array), -1)]
    lines.append("")
    return "\n".join(lines).encode()


def encode_npy(prediction: Any) -> bytes:
    array = np.asarray(prediction)
    if array.dtype == object:
        array = array.astype(str)
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def flat_column(prediction: Any) -> Any:
    """An ``(n, 1)`` output (a regressor's column) as ``n`` values; anything else unchanged."""
    if isinstance(prediction, np.ndarray) and prediction.ndim == 2 and prediction.shape[1] == 1:
        return prediction.reshape(-1)
    return prediction


def _first(prediction: Any) -> Any:
    """The answer for a one-row request: the first (only) element of the output."""
    values = flat_column(prediction)
    if isinstance(values, np.ndarray):
        return values if values.ndim == 0 else values[0]
    if isinstance(values, (list, tuple)) and values:
        return values[0]
    return values


def _to_json(value: Any) -> Any:
    """What orjson cannot write natively: object/string arrays, tensors, sets."""
    if isinstance(value, np.ndarray | np.generic) or hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, set | frozenset):
        return list(value)
    raise TypeError(f"cannot write a {type(value).__name__} as JSON")
