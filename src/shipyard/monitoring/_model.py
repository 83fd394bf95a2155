"""The base of the JSON documents (statistics, constraints, analyses): strict, frozen, and
validation errors that name the offending field path."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, ValidationError


def describe_errors(exc: ValidationError) -> str:
    """Pydantic's errors as ``features.age.max: message`` (``; ``-joined)."""
    parts = []
    for error in exc.errors():
        path = ".".join(str(part) for part in error["loc"])
        ctx = error.get("ctx") or {}
        message = str(ctx["error"]) if error["type"] == "value_error" else error["msg"]
        parts.append(f"{path}: {message}" if path else message)
    return "; ".join(parts)


class JsonModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Self:
        """Validate a parsed JSON document; ``ValueError`` names the offending field path."""
        try:
            return cls.model_validate(doc)
        except ValidationError as exc:
            raise ValueError(describe_errors(exc)) from None
