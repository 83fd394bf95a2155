"""Routes of the model registry: groups, versions, approve/reject."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response, status
from fastapi.responses import HTMLResponse, PlainTextResponse

from shipyard.api.deps import PlatformDep, ProjectAccess, project_access
from shipyard.registry import cards, schemas
from shipyard.registry.models import ModelGroup, ModelVersion
from shipyard.security.permissions import Permission

router = APIRouter(prefix="/api/v1/projects/{team}/{project}/models", tags=["models"])
dashboard_router = APIRouter(prefix="/api/v1/projects/{team}/{project}", tags=["models"])
Readable = Annotated[ProjectAccess, Depends(project_access(Permission.MODEL_READ))]
Registrable = Annotated[ProjectAccess, Depends(project_access(Permission.MODEL_REGISTER))]
Approver = Annotated[ProjectAccess, Depends(project_access(Permission.MODEL_APPROVE))]
Group = Annotated[str, Path(max_length=128, description="a model group's name")]
Number = Annotated[int, Path(ge=1, le=2**31 - 1, description="a version number")]
Revision = Annotated[int | None, Query(ge=1, le=2**31 - 1, description="a card revision")]
# A card's HTML is text a registrant typed: the browser may show it but never run or fetch.
_CARD_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"


def _group(row: ModelGroup) -> schemas.ModelGroupOut:
    return schemas.ModelGroupOut.model_validate(row)


def _version(row: ModelVersion, group: str) -> schemas.ModelVersionOut:
    data = {c: getattr(row, c) for c in schemas.ModelVersionOut.model_fields if c != "group"}
    return schemas.ModelVersionOut.model_validate({**data, "group": group})


@router.post("", status_code=status.HTTP_201_CREATED)
def create_group(
    body: schemas.ModelGroupCreate, access: Registrable, platform: PlatformDep
) -> schemas.ModelGroupOut:
    """Create a model group: the versions of one model, numbered 1, 2, 3…"""
    with platform.db.transaction() as s:
        row = platform.registry.create_group(s, access.project.id, body, access.principal.username)
        return _group(row)


@router.get("")
def list_groups(access: Readable, platform: PlatformDep) -> list[schemas.ModelGroupOut]:
    """The project's model groups."""
    with platform.db.read() as s:
        return [_group(g) for g in platform.registry.groups(s, access.project.id)]


@router.get("/{group}")
def get_group(group: Group, access: Readable, platform: PlatformDep) -> schemas.ModelGroupOut:
    with platform.db.read() as s:
        return _group(platform.registry.group(s, access.project.id, group))


@router.post("/{group}/versions", status_code=status.HTTP_201_CREATED)
async def register_version(
    group: Group, body: schemas.ModelVersionCreate, access: Registrable, platform: PlatformDep
) -> schemas.ModelVersionOut:
    """Register a version from a completed job, a run's artifact or an artifact: its files
    are hashed into a manifest and scanned for unsafe pickles; a dangerous finding makes it
    Blocked, otherwise it waits for approval."""
    row = await platform.registry.register(
        platform.db, access.project.id, group, body, access.principal.username
    )
    return _version(row, group)


@router.get("/{group}/versions")
def list_versions(
    group: Group, access: Readable, platform: PlatformDep
) -> list[schemas.ModelVersionOut]:
    """The group's versions, newest first."""
    with platform.db.read() as s:
        rows = platform.registry.versions(s, access.project.id, group)
        return [_version(r, group) for r in rows]


@router.get("/{group}/versions/{version}")
def get_version(
    group: Group, version: Number, access: Readable, platform: PlatformDep
) -> schemas.ModelVersionOut:
    with platform.db.read() as s:
        return _version(platform.registry.version(s, access.project.id, group, version), group)


def _decide(
    platform: PlatformDep,
    access: ProjectAccess,
    group: str,
    version: int,
    body: schemas.Decision,
    *,
    approve: bool,
) -> schemas.ModelVersionOut:
    with platform.db.transaction() as s:
        row = platform.registry.decide(
            s,
            access.project.id,
            group,
            version,
            approve=approve,
            actor=access.principal.username,
            comment=body.comment,
        )
        return _version(row, group)


@router.post("/{group}/versions/{version}/approve")
def approve_version(
    group: Group, version: Number, body: schemas.Decision, access: Approver, platform: PlatformDep
) -> schemas.ModelVersionOut:
    """Approve a pending version (a lead or admin other than its registrant)."""
    return _decide(platform, access, group, version, body, approve=True)


@router.post("/{group}/versions/{version}/reject")
def reject_version(
    group: Group, version: Number, body: schemas.Decision, access: Approver, platform: PlatformDep
) -> schemas.ModelVersionOut:
    """Reject a pending version; the comment saying why is required."""
    return _decide(platform, access, group, version, body, approve=False)


@router.delete("/{group}/versions/{version}", status_code=status.HTTP_204_NO_CONTENT)
def delete_version(
    group: Group, version: Number, access: Registrable, platform: PlatformDep
) -> Response:
    """Delete a version; its number is never handed out again."""
    may_approve = access.principal.can(
        Permission.MODEL_APPROVE, team_id=access.team.id, project_id=access.project.id
    )
    with platform.db.transaction() as s:
        platform.registry.delete(
            s,
            access.project.id,
            group,
            version,
            actor=access.principal.username,
            may_approve=may_approve,
        )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{group}/versions/{version}/verify")
async def verify_version(
    group: Group, version: Number, access: Readable, platform: PlatformDep
) -> schemas.VerificationOut:
    """Re-hash the stored bytes against the manifest the version was registered (and
    approved) with; 409 names every file whose digest changed."""
    return await platform.registry.verify_version(platform.db, access.project.id, group, version)


def _card(
    platform: PlatformDep, access: ProjectAccess, group: str, version: int, revision: int | None
) -> tuple[ModelVersion, schemas.ModelCardOut]:
    with platform.db.read() as s:
        row, card = platform.registry.card(s, access.project.id, group, version, revision)
        return row, cards.card_out(group, row, card)


@router.get("/{group}/versions/{version}/card")
def get_card(
    group: Group,
    version: Number,
    access: Readable,
    platform: PlatformDep,
    revision: Revision = None,
) -> schemas.ModelCardOut:
    """The version's model card (the newest revision unless one is asked for)."""
    return _card(platform, access, group, version, revision)[1]


@router.patch("/{group}/versions/{version}/card")
def edit_card(
    group: Group,
    version: Number,
    body: schemas.ModelCardUpdate,
    access: Registrable,
    platform: PlatformDep,
) -> schemas.ModelCardOut:
    """Edit the card while the version is pending: each edit is a new revision."""
    with platform.db.transaction() as s:
        row, card = platform.registry.edit_card(
            s, access.project.id, group, version, body, access.principal.username
        )
        return cards.card_out(group, row, card)


@router.get("/{group}/versions/{version}/card/revisions")
def card_revisions(
    group: Group, version: Number, access: Readable, platform: PlatformDep
) -> list[schemas.ModelCardOut]:
    """Every revision of the card, oldest first."""
    with platform.db.read() as s:
        row, revisions = platform.registry.card_revisions(s, access.project.id, group, version)
        return [cards.card_out(group, row, card) for card in revisions]


@router.get("/{group}/versions/{version}/card.md", response_class=PlainTextResponse)
def card_markdown(
    group: Group,
    version: Number,
    access: Readable,
    platform: PlatformDep,
    revision: Revision = None,
) -> PlainTextResponse:
    """The card as Markdown."""
    row, card = _card(platform, access, group, version, revision)
    return PlainTextResponse(
        cards.to_markdown(card, row), media_type="text/markdown; charset=utf-8"
    )


@router.get("/{group}/versions/{version}/card.html", response_class=HTMLResponse)
def card_html(
    group: Group,
    version: Number,
    access: Readable,
    platform: PlatformDep,
    revision: Revision = None,
) -> HTMLResponse:
    """The card as a standalone HTML page."""
    row, card = _card(platform, access, group, version, revision)
    page = cards.to_html(cards.to_markdown(card, row), f"{group} v{version} model card")
    return HTMLResponse(page, headers={"Content-Security-Policy": _CARD_CSP})


@dashboard_router.get("/model-dashboard")
def model_dashboard(access: Readable, platform: PlatformDep) -> list[schemas.DashboardGroup]:
    """Every model group with its newest versions, approval and scan state, and where
    its versions are deployed."""
    with platform.db.read() as s:
        return platform.registry.dashboard(s, access.project.id)
