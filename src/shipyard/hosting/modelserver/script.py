"""The ``inference.py`` contract, as SageMaker's inference toolkit defines it.

``inference.py`` sits at the model directory's root or under ``code/`` (whose directory goes
on ``sys.path``, so the script can import its neighbours) and may define::

    def model_fn(model_dir): ...                      # -> the model object
    def input_fn(request_body, content_type): ...     # bytes, "text/csv" -> data
    def predict_fn(data, model): ...                  # -> prediction
    def output_fn(prediction, accept): ...            # -> bytes | str | (body, content_type)
    def transform_fn(model, request_body, content_type, accept): ...  # all three in one

Any function may take one more positional argument, ``context`` (a ``Context``): the request's
``custom_attributes`` (``X-Amzn-SageMaker-Custom-Attributes``), ``content_type``, ``accept``,
``model_version`` and ``model_dir``; setting ``context.response_custom_attributes`` sends that
header back. A function left out falls back to the default: the built-in flavor's loader and
predict (the flavor named, or the one whose model file is present), and the JSON/CSV/NPY
codecs. ``output_fn`` may also return a plain object, written by the default codecs.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from shipyard.hosting.modelserver.errors import ModelLoadError

SCRIPT_PATHS: Final = ("inference.py", "code/inference.py")
# name -> how many positional arguments it takes without a context
_ARITY: Final = {"model_fn": 1, "input_fn": 2, "predict_fn": 2, "output_fn": 2, "transform_fn": 4}


class Context:
    """What a request carries besides its body; given to functions that accept ``context``."""

    __slots__ = (
        "accept",
        "content_type",
        "custom_attributes",
        "model_dir",
        "model_version",
        "response_custom_attributes",
        "shape",
    )

    def __init__(
        self,
        *,
        content_type: str | None = None,
        accept: str | None = None,
        custom_attributes: str | None = None,
        model_version: str | None = None,
        model_dir: str | None = None,
    ) -> None:
        self.content_type = content_type
        self.accept = accept
        self.custom_attributes = custom_attributes
        self.model_version = model_version
        self.model_dir = model_dir
        self.response_custom_attributes: str | None = None
        self.shape = 0  # set by the default decoder: codecs.OTHER, ROW or ROWS


# A script function adapted to take the context last, whether or not the script's does.
Adapted = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class Script:
    path: Path
    model_fn: Adapted | None
    input_fn: Adapted | None
    predict_fn: Adapted | None
    output_fn: Adapted | None
    transform_fn: Adapted | None


def find_script(model_dir: Path) -> Path | None:
    for relative in SCRIPT_PATHS:
        if (path := model_dir / relative).is_file():
            return path
    return None


def load_script(path: Path) -> Script:
    """Import ``path`` as the module ``inference`` and pick up its functions."""
    spec = importlib.util.spec_from_file_location("inference", path)
    if spec is None or spec.loader is None:
        raise ModelLoadError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["inference"] = module
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ModelLoadError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    functions = {name: _adapt(getattr(module, name, None), arity) for name, arity in _ARITY.items()}
    return Script(path=path, **functions)


def _adapt(function: Any, arity: int) -> Adapted | None:
    if function is None:
        return None
    if not callable(function):
        raise ModelLoadError(f"inference.py: {function!r} is not a function")
    if _takes_context(function, arity):
        return function  # type: ignore[no-any-return]

    def without_context(*args: Any) -> Any:
        return function(*args[:-1])

    return without_context


def _takes_context(function: Callable[..., Any], arity: int) -> bool:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = 0
    for parameter in parameters:
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            return True
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            positional += 1
    return positional > arity
