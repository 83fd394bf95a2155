"""API shapes of the artifact store."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class ArtifactVersionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    path: str
    version: int
    size: int
    sha256: str
    content_type: str
    created_at: datetime
    created_by: str
    deleted: bool


class PresignRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expires_in: int = Field(default=3600, ge=1, le=7 * 24 * 3600)
    version: int | None = Field(default=None, ge=1)


class PresignOut(BaseModel):
    url: str
    version: int
    expires_at: datetime
