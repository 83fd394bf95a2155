"""One model's request pipeline, decode → predict → encode, and its loading.

``Handler.respond`` never raises: every failure becomes a JSON error ``Response`` (see the
package docstring for the codes). It is synchronous, so the app can run it inline on the event
loop (small bodies) or in a thread (large ones) without two code paths.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import orjson

from shipyard.hosting.modelserver import codecs, flavors
from shipyard.hosting.modelserver.errors import ModelError, ModelLoadError, ModelServerError
from shipyard.hosting.modelserver.script import Context, Script, find_script, load_script

log = logging.getLogger("shipyard.modelserver")

_MEDIA_BYTES = {kind: kind.encode() for kind in codecs.MEDIA_TYPES}
_JSON_BYTES = _MEDIA_BYTES[codecs.JSON]
_ATTRIBUTES_HEADER = b"x-amzn-sagemaker-custom-attributes"


class Response(NamedTuple):
    status: int
    content_type: bytes
    body: bytes
    headers: list[tuple[bytes, bytes]] | None = None


def error_response(exc: BaseException) -> Response:
    """An exception as ``{"error": {"code", "message"}}``; the model's own errors are 400."""
    if isinstance(exc, ModelServerError):
        status, code, message = exc.status_code, exc.code, exc.message
    else:  # raised by the model or by an inference.py function
        chosen = getattr(exc, "status_code", None)
        status = chosen if isinstance(chosen, int) and 400 <= chosen <= 599 else 400
        code, message = "ModelError", flavors.model_message(exc)
        if isinstance(exc, MemoryError):  # the replica's memory cap, not the caller's fault
            status, message = 500, f"MemoryError: {message} (the instance type's memory)"
    if status >= 500:
        log.error("invocation failed (%s): %s", code, message, exc_info=exc)
    else:
        log.info("invocation refused (%d %s): %s", status, code, message)
        log.debug("the refusal's traceback", exc_info=exc)
    body = orjson.dumps({"error": {"code": code, "message": message}})
    return Response(status, _JSON_BYTES, body)


class Handler:
    """decode → predict → encode, each stage either the script's function or the default."""

    def __init__(
        self,
        *,
        model: Any,
        predict: flavors.Predict | None,
        script: Script | None = None,
        model_version: str | None = None,
    ) -> None:
        self.model = model
        self.model_version = model_version
        self._predict = predict
        self._input_fn = script.input_fn if script else None
        self._predict_fn = script.predict_fn if script else None
        self._output_fn = script.output_fn if script else None
        self._transform_fn = script.transform_fn if script else None
        # Only the built-in path stacks one-row requests into one predict call.
        self.batchable = predict is not None and not (
            self._input_fn or self._predict_fn or self._transform_fn
        )

    def respond(self, body: bytes, ctx: Context) -> Response:
        try:
            if self._transform_fn is not None:
                result = self._transform_fn(
                    self.model, body, ctx.content_type, ctx.accept or codecs.JSON, ctx
                )
                return self._reply(result, ctx)
            return self.encode(self.predict(self.decode(body, ctx), ctx), ctx)
        except Exception as exc:
            return error_response(exc)

    async def respond_batched(
        self, body: bytes, ctx: Context, submit: Callable[[Any], Awaitable[Any]]
    ) -> Response:
        """``respond``, with a one-row request's predict handed to the micro-batcher."""
        try:
            data = self.decode(body, ctx)
            if ctx.shape == codecs.ROW and isinstance(data, np.ndarray) and len(data) == 1:
                prediction = await submit(data)
            else:
                prediction = self.predict(data, ctx)
            return self.encode(prediction, ctx)
        except Exception as exc:
            return error_response(exc)

    def predict_rows(self, data: Any) -> Any:
        """The default predict, for the micro-batcher."""
        assert self._predict is not None
        return self._predict(data)

    def decode(self, body: bytes, ctx: Context) -> Any:
        if self._input_fn is not None:
            return self._input_fn(body, ctx.content_type or codecs.JSON, ctx)
        data, ctx.shape = codecs.decode(body, ctx.content_type)
        return data

    def predict(self, data: Any, ctx: Context) -> Any:
        if self._predict_fn is not None:
            return self._predict_fn(data, self.model, ctx)
        if ctx.shape == codecs.OTHER and isinstance(data, dict | str | int | float):
            raise ModelError(f"{codecs.SHAPES_HELP}; got a JSON {type(data).__name__}")
        assert self._predict is not None  # set whenever predict_fn is absent
        return self._predict(data)

    def encode(self, prediction: Any, ctx: Context) -> Response:
        if self._output_fn is not None:
            accept = ctx.accept if ctx.accept and ctx.accept != "*/*" else codecs.JSON
            return self._reply(self._output_fn(prediction, accept, ctx), ctx)
        return self._encode_default(prediction, ctx)

    def _encode_default(self, prediction: Any, ctx: Context) -> Response:
        kind = codecs.negotiate(ctx.accept)
        try:
            body = codecs.encode(prediction, kind, ctx.shape, self.model_version)
        except (TypeError, ValueError) as exc:
            raise ModelServerError(f"cannot write the prediction as {kind}: {exc}") from exc
        return Response(200, _MEDIA_BYTES[kind], body, _attributes(ctx))

    def _reply(self, result: Any, ctx: Context) -> Response:
        """What an output_fn or transform_fn returned, as a response."""
        content_type = None
        if isinstance(result, tuple) and len(result) == 2:
            result, content_type = result
        if isinstance(result, str):
            result = result.encode()
        if not isinstance(result, bytes | bytearray | memoryview):
            return self._encode_default(result, ctx)
        kind = content_type or _first_media_type(ctx.accept)
        return Response(200, kind.encode("latin-1"), bytes(result), _attributes(ctx))


def _first_media_type(accept: str | None) -> str:
    kind = codecs.media_type(accept.split(",", 1)[0]) if accept else None
    return kind if kind and "*" not in kind else codecs.JSON


def _attributes(ctx: Context) -> list[tuple[bytes, bytes]] | None:
    if ctx.response_custom_attributes is None:
        return None
    return [(_ATTRIBUTES_HEADER, ctx.response_custom_attributes.encode("latin-1"))]


# --- loading ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    """What start-up found without importing anything heavy: checked before the port opens."""

    model_dir: Path
    flavor: str
    script: Path | None


def plan(model_dir: Path, flavor: str | None) -> Plan:
    """Check the model directory for what ``flavor`` needs; ModelLoadError says what is amiss."""
    if not model_dir.is_dir():
        raise ModelLoadError(f"the model directory {model_dir} does not exist")
    script = find_script(model_dir)
    chosen = flavor or flavors.detect_flavor(model_dir) or ("custom" if script else None)
    if chosen is None:
        raise ModelLoadError(f"no model in {model_dir}: pass --flavor, or add a model file")
    if chosen not in flavors.FLAVORS:
        raise ModelLoadError(f"unknown flavor {chosen!r}; one of {', '.join(flavors.FLAVORS)}")
    if chosen == "custom" and script is None:
        raise ModelLoadError(
            f"the custom flavor needs inference.py in {model_dir} or {model_dir / 'code'}"
        )
    if chosen != "custom" and script is None:
        flavors.find_model_file(chosen, model_dir)
    return Plan(model_dir, chosen, script)


def load_handler(plan: Plan, options: flavors.PredictOptions, model_version: str | None) -> Handler:
    """Import the script, load the model, and put the pipeline together (the slow part)."""
    script = load_script(plan.script) if plan.script else None
    predict: flavors.Predict | None = None
    if script is not None and script.model_fn is not None:
        ctx = Context(model_version=model_version, model_dir=str(plan.model_dir))
        try:
            model = script.model_fn(str(plan.model_dir), ctx)
        except Exception as exc:
            raise ModelLoadError(f"model_fn failed: {type(exc).__name__}: {exc}") from exc
    else:
        flavor = plan.flavor if plan.flavor != "custom" else flavors.detect_flavor(plan.model_dir)
        if flavor is None:
            raise ModelLoadError(
                f"inference.py has no model_fn and {plan.model_dir} has no model file"
            )
        loaded = flavors.load(flavor, plan.model_dir, options)
        model, predict = loaded.model, loaded.predict
    needs_predict = script is None or (script.predict_fn is None and script.transform_fn is None)
    if predict is None and needs_predict:
        predict = flavors.predictor_for(model, options)
    return Handler(model=model, predict=predict, script=script, model_version=model_version)
