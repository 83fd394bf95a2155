"""JSON, CSV and NPY bodies to arrays and back, and content negotiation."""

from __future__ import annotations

import io
import math

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shipyard.hosting.modelserver import codecs
from shipyard.hosting.modelserver.errors import ModelError, NotAcceptable, UnsupportedMediaType


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


# --- decoding -------------------------------------------------------------------------------


def test_json_features_is_one_row() -> None:
    data, shape = codecs.decode(b'{"features": [25, 2, 0.0, null]}', codecs.JSON)
    assert shape == codecs.ROW
    assert data.dtype == np.float64 and data.shape == (1, 4)
    assert data[0, :3].tolist() == [25.0, 2.0, 0.0] and math.isnan(data[0, 3])


@pytest.mark.parametrize(
    "body",
    [b'{"instances": [[1, 2], [3, 4]]}', b'{"inputs": [[1, 2], [3, 4]]}', b"[[1, 2], [3, 4]]"],
)
def test_json_instances_inputs_or_a_bare_list_are_rows(body: bytes) -> None:
    data, shape = codecs.decode(body, codecs.JSON)
    assert shape == codecs.ROWS and data.tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_a_flat_json_list_is_one_row_and_strings_stay_objects() -> None:
    data, shape = codecs.decode(b"[1, 2, 3]", codecs.JSON)
    assert shape == codecs.ROWS and data.shape == (1, 3)
    data, _ = codecs.decode(b'[["red", 1.5]]', codecs.JSON)
    assert data.dtype == object and data.tolist() == [["red", 1.5]]


def test_other_json_values_are_passed_as_parsed() -> None:
    assert codecs.decode(b'{"text": "hi"}', codecs.JSON) == ({"text": "hi"}, codecs.OTHER)
    assert codecs.decode(b"3", None) == (3, codecs.OTHER)  # no Content-Type: JSON


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{", "not valid JSON"),
        (b"[[1, 2], [3]]", "same number of values"),
        (b'{"instances": []}', "no rows"),
        (b'{"instances": 3}', "no rows"),
        (b"", "empty"),
    ],
)
def test_bad_json_is_a_model_error(body: bytes, words: str) -> None:
    with pytest.raises(ModelError, match=words):
        codecs.decode(body, codecs.JSON)


def test_csv_rows_with_blank_lines_crlf_and_empty_cells() -> None:
    data, shape = codecs.decode(b"1,2.5,3\r\n\r\n4, 5,\n", codecs.CSV)
    assert shape == codecs.ROWS and data.shape == (2, 3)
    assert data[0].tolist() == [1.0, 2.5, 3.0] and data[1, :2].tolist() == [4.0, 5.0]
    assert math.isnan(data[1, 2])


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"1,2\n3\n", "line 2 has 1 values, line 1 has 2"),
        (b"1,abc\n", "line 1, column 2: 'abc' is not a number"),
        (b"\n\n", "no rows"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_bad_csv_names_the_line(body: bytes, words: str) -> None:
    with pytest.raises(ModelError, match=words):
        codecs.decode(body, codecs.CSV)


def test_npy_arrays_keep_their_dtype_and_a_vector_is_one_row() -> None:
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    data, shape = codecs.decode(_npy(array), codecs.NPY)
    assert shape == codecs.ROWS and data.dtype == np.float32 and (data == array).all()
    data, _ = codecs.decode(_npy(np.arange(4)), codecs.NPY)
    assert data.shape == (1, 4)


def test_npy_refuses_garbage_and_pickles() -> None:
    with pytest.raises(ModelError, match="NPY"):
        codecs.decode(b"\x93NUMPY garbage", codecs.NPY)
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ModelError, match="NPY"):
        codecs.decode(buffer.getvalue(), codecs.NPY)


def test_an_unknown_content_type_is_415() -> None:
    with pytest.raises(UnsupportedMediaType, match="text/plain"):
        codecs.decode(b"x", "text/plain")


# --- encoding -------------------------------------------------------------------------------


def test_json_one_row_is_a_scalar_prediction_with_the_version() -> None:
    body = codecs.encode(np.array([0.87]), codecs.JSON, codecs.ROW, "v23")
    assert body == b'{"prediction":0.87,"model_version":"v23"}'
    body = codecs.encode(np.array([[0.87]], dtype=np.float32), codecs.JSON, codecs.ROW, None)
    assert body == b'{"prediction":0.87}'  # float32 written at its own precision


def test_json_rows_are_predictions_and_columns_are_flattened() -> None:
    body = codecs.encode(np.array([[1.5], [2.5]]), codecs.JSON, codecs.ROWS, "v1")
    assert orjson.loads(body) == {"predictions": [1.5, 2.5], "model_version": "v1"}
    body = codecs.encode(np.array([[1, 2], [3, 4]]), codecs.JSON, codecs.ROWS, None)
    assert orjson.loads(body) == {"predictions": [[1, 2], [3, 4]]}
    body = codecs.encode(np.array(["yes", "no"]), codecs.JSON, codecs.ROWS, None)
    assert orjson.loads(body) == {"predictions": ["yes", "no"]}


def test_json_answers_to_other_values_stay_plain_but_carry_the_version() -> None:
    assert orjson.loads(codecs.encode({"label": "cat"}, codecs.JSON, codecs.OTHER, "v2")) == {
        "label": "cat",
        "model_version": "v2",
    }
    assert orjson.loads(codecs.encode(np.float64(0.5), codecs.JSON, codecs.OTHER, None)) == {
        "prediction": 0.5
    }
    assert orjson.loads(codecs.encode([1, 2], codecs.JSON, codecs.OTHER, None)) == {
        "predictions": [1, 2]
    }


def test_csv_is_one_line_per_row() -> None:
    assert codecs.encode(np.array([0.25, 1.0]), codecs.CSV, codecs.ROWS, "v") == b"0.25\n1.0\n"
    assert codecs.encode(np.array([[1], [2]]), codecs.CSV, codecs.ROWS, None) == b"1\n2\n"
    assert codecs.encode(np.array([[1, 2], [3, 4]]), codecs.CSV, codecs.ROWS, None) == (
        b"1,2\n3,4\n"
    )
    assert codecs.encode(np.float32(0.1), codecs.CSV, codecs.ROW, None) == b"0.1\n"


def test_npy_round_trips_the_output_as_is() -> None:
    output = np.arange(6, dtype=np.float32).reshape(3, 2)
    back = np.load(io.BytesIO(codecs.encode(output, codecs.NPY, codecs.ROWS, "v")))
    assert back.dtype == np.float32 and (back == output).all()


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64), min_size=1))
def test_csv_and_json_round_trip_any_finite_column(values: list[float]) -> None:
    column = np.array(values)
    csv_back = codecs.decode(codecs.encode(column, codecs.CSV, codecs.ROWS, None), codecs.CSV)
    assert csv_back[0].reshape(-1).tolist() == values
    json_back = orjson.loads(codecs.encode(column, codecs.JSON, codecs.ROWS, None))
    assert json_back["predictions"] == values


# --- negotiation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "media_type"),
    [
        (None, None),
        (b"", None),
        (b"application/json", "application/json"),
        (b"Application/JSON; charset=utf-8", "application/json"),
        ("text/csv;header=absent", "text/csv"),
    ],
)
def test_media_type_drops_parameters_and_case(
    header: bytes | str | None, media_type: str | None
) -> None:
    assert codecs.media_type(header) == media_type


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        (None, codecs.JSON),
        ("*/*", codecs.JSON),
        ("text/csv", codecs.CSV),
        ("image/png, application/x-npy;q=0.5", codecs.NPY),
        ("text/*", codecs.CSV),
        ("application/*", codecs.JSON),
    ],
)
def test_negotiate_takes_the_first_producible_type(accept: str | None, chosen: str) -> None:
    assert codecs.negotiate(accept) == chosen


def test_negotiate_refuses_what_it_cannot_produce() -> None:
    with pytest.raises(NotAcceptable, match="image/png"):
        codecs.negotiate("image/png")
