"""The inference.py contract and the request pipeline, in process; and the micro-batcher."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from shipyard.hosting.modelserver.batching import MicroBatcher
from shipyard.hosting.modelserver.errors import ModelLoadError
from shipyard.hosting.modelserver.flavors import PredictOptions
from shipyard.hosting.modelserver.handler import Handler, load_handler, plan
from shipyard.hosting.modelserver.script import Context


def _handler(tmp_path: Path, script: str, version: str | None = "v1") -> Handler:
    (tmp_path / "inference.py").write_text(textwrap.dedent(script))
    return load_handler(plan(tmp_path, "custom"), PredictOptions(), version)


def _ctx(content_type: str | None = "application/json", **kwargs: Any) -> Context:
    return Context(content_type=content_type, model_version="v1", **kwargs)


def test_transform_fn_does_it_all_and_may_name_its_content_type(tmp_path: Path) -> None:
    handler = _handler(
        tmp_path,
        """
        def model_fn(model_dir):
            return "upper"

        def transform_fn(model, body, content_type, accept):
            return body.decode().upper(), "text/plain"
        """,
    )
    response = handler.respond(b"hello", _ctx("text/plain"))
    assert (response.status, response.content_type, response.body) == (200, b"text/plain", b"HELLO")


def test_input_fn_and_output_fn_with_context_see_the_request(tmp_path: Path) -> None:
    handler = _handler(
        tmp_path,
        """
        def model_fn(model_dir, context):
            return {"dir": model_dir, "version": context.model_version}

        def input_fn(body, content_type, context):
            return {"words": body.decode().split(), "attrs": context.custom_attributes}

        def predict_fn(data, model):
            return {"count": len(data["words"]), "attrs": data["attrs"], "model": model}

        def output_fn(prediction, accept, context):
            context.response_custom_attributes = "seen=1"
            return prediction  # a plain object: the default codec writes it for the Accept
        """,
    )
    response = handler.respond(b"a b c", _ctx("text/plain", custom_attributes="k=v"))
    assert response.status == 200 and response.content_type == b"application/json"
    assert orjson.loads(response.body) == {
        "count": 3,
        "attrs": "k=v",
        "model": {"dir": str(tmp_path), "version": "v1"},
        "model_version": "v1",
    }
    assert response.headers == [(b"x-amzn-sagemaker-custom-attributes", b"seen=1")]


def test_output_fn_gets_the_accept_header_and_json_when_there_is_none(tmp_path: Path) -> None:
    handler = _handler(
        tmp_path,
        """
        def model_fn(model_dir):
            return None

        def predict_fn(data, model):
            return data

        def output_fn(prediction, accept):
            return accept.encode()
        """,
    )
    response = handler.respond(b"[1]", _ctx(accept="text/csv"))
    assert (response.content_type, response.body) == (b"text/csv", b"text/csv")
    response = handler.respond(b"[1]", _ctx(accept="*/*"))
    assert (response.content_type, response.body) == (b"application/json", b"application/json")


def test_a_model_fn_without_predict_fn_uses_the_models_own_predict(tmp_path: Path) -> None:
    handler = _handler(
        tmp_path,
        """
        class Doubler:
            def predict(self, rows):
                return rows.sum(axis=1) * 2

        def model_fn(model_dir):
            return Doubler()
        """,
    )
    response = handler.respond(b'{"features": [1, 2, 3]}', _ctx())
    assert orjson.loads(response.body) == {"prediction": 12.0, "model_version": "v1"}
    response = handler.respond(b'{"nothing": "useful"}', _ctx())
    assert response.status == 400 and b"features" in response.body


def test_a_failing_model_fn_or_import_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="model_fn failed: OSError: no weights"):
        _handler(tmp_path, "def model_fn(model_dir):\n    raise OSError('no weights')\n")
    with pytest.raises(ModelLoadError, match=r"importing .* failed: ZeroDivisionError"):
        _handler(tmp_path, "1 / 0\n")
    with pytest.raises(ModelLoadError, match=r"no model_fn .* no model file"):
        _handler(tmp_path, "def predict_fn(data, model):\n    return data\n")


def test_an_unencodable_prediction_is_a_500_not_a_traceback(tmp_path: Path) -> None:
    handler = _handler(
        tmp_path,
        """
        def model_fn(model_dir):
            return None

        def predict_fn(data, model):
            return object()
        """,
    )
    response = handler.respond(b"[1]", _ctx())
    assert response.status == 500
    assert orjson.loads(response.body)["error"]["code"] == "InternalFailure"


# --- micro-batching ---------------------------------------------------------------------------


def test_the_batcher_stacks_concurrent_rows_into_one_predict() -> None:
    calls: list[int] = []

    def predict(rows: np.ndarray) -> np.ndarray:
        calls.append(len(rows))
        if rows.shape[1] != 2:
            raise ValueError(f"expected 2 features, got {rows.shape[1]}")
        return np.asarray(rows.sum(axis=1))

    async def scenario() -> list[Any]:
        batcher = MicroBatcher(predict, max_rows=4, wait_s=0)
        rows = [np.array([[i, i]], dtype=float) for i in range(6)]
        rows.append(np.array([[1.0, 2.0, 3.0]]))  # a bad one: predicted alone, fails alone
        futures = [batcher.submit(row) for row in rows]
        return await asyncio.gather(*futures, return_exceptions=True)

    results = asyncio.run(scenario())
    assert [float(np.asarray(r).reshape(-1)[0]) for r in results[:6]] == [0, 2, 4, 6, 8, 10]
    assert isinstance(results[6], ValueError) and "got 3" in str(results[6])
    # a full batch of 4 at once; the other 3 do not stack (one is wider), so each goes alone
    assert calls == [4, 1, 1, 1]
