"""API shapes of the identity domain."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from shipyard.security.permissions import Role

Name = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", max_length=64)
]
Tags = dict[Annotated[str, StringConstraints(min_length=1, max_length=128)], str]


class Schema(BaseModel):
    model_config = ConfigDict(from_attributes=True, extra="forbid")


class TokenRequest(Schema):
    username: str = Field(max_length=64)
    password: str = Field(max_length=1024)


class RefreshRequest(Schema):
    refresh_token: str = Field(max_length=256)


class TokenPair(Schema):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int


class UserCreate(Schema):
    username: Name
    password: str = Field(min_length=8, max_length=1024)
    is_admin: bool = False


class UserOut(Schema):
    id: str
    username: str
    is_admin: bool
    disabled: bool
    created_at: datetime


class TeamCreate(Schema):
    name: Name
    description: str = Field(default="", max_length=1024)
    required_tags: list[str] = Field(default_factory=list, max_length=50)
    tags: Tags = Field(default_factory=dict)


class TeamQuotas(Schema):
    max_instance_count: int | None = Field(
        default=None, ge=1, le=1024, description="most instances one job may ask for"
    )


class TeamPolicies(Schema):
    require_network_isolation: bool = Field(
        default=False, description="every job of the team must run network-isolated"
    )


class TeamUpdate(Schema):
    description: str | None = Field(default=None, max_length=1024)
    required_tags: list[str] | None = Field(default=None, max_length=50)
    quotas: TeamQuotas | None = None
    policies: TeamPolicies | None = None


class TeamOut(Schema):
    id: str
    name: str
    description: str
    required_tags: list[str]
    tags: dict[str, str]
    quotas: dict[str, Any] = Field(default_factory=dict)
    policies: dict[str, Any] | None = None
    created_at: datetime


class ProjectCreate(Schema):
    name: Name
    description: str = Field(default="", max_length=1024)
    tags: Tags = Field(default_factory=dict)


class ProjectOut(Schema):
    id: str
    team: str
    name: str
    description: str
    tags: dict[str, str]
    created_at: datetime


class MemberAdd(Schema):
    username: Name
    role: Role


class MemberOut(Schema):
    username: str
    role: Role
    since: datetime


class ApiKeyCreate(Schema):
    name: str = Field(default="", max_length=128)
    team: Name | None = Field(default=None, description="scope: a team (or use project)")
    project: str | None = Field(
        default=None, description="scope: TEAM/PROJECT", pattern=r"^[^/]+/[^/]+$", max_length=130
    )
    role: Role
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


class ApiKeyOut(Schema):
    key_id: str
    name: str
    username: str
    scope: str
    role: Role
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    api_key: str = Field(description="the bearer token; shown once")
    access_key_id: str = Field(description="for AWS Signature V4 clients (boto3)")
    secret_access_key: str = Field(description="for AWS Signature V4 clients; shown once")


class WhoAmI(Schema):
    username: str
    is_admin: bool
    teams: dict[str, Role]
    key_id: str | None


class AuditEventOut(Schema):
    seq: int
    at: datetime
    actor: str
    action: str
    resource: str
    outcome: str
    status_code: int
    request_id: str
    client: str
    hash: str


class AuditVerifyOut(Schema):
    ok: bool
    checked: int
    digests: int
    first_bad_seq: int | None
    reason: str
