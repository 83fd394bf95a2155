"""Parsing a JSON body straight from bytes, for hot routes.

FastAPI's own body handling decodes JSON with the standard library and then validates the
resulting objects; ``model_validate_json`` does both in one pass in pydantic-core, several
times faster on large batches. Errors come out as the same 422 ``validation_failed`` shape.
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def parse_body(model: type[M], raw: bytes) -> M:
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e.get("loc", ()))} for e in exc.errors()]
        raise RequestValidationError(errors) from None


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI text of a body that the route parses itself."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }
