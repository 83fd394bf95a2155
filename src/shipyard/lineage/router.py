"""Routes of lineage: the graph around one dataset version, job, run or model version."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from shipyard.api.deps import PlatformDep, ProjectAccess, project_access
from shipyard.lineage import schemas
from shipyard.security.permissions import Permission

router = APIRouter(prefix="/api/v1/projects/{team}/{project}", tags=["lineage"])
# Every role that reads models reads what they were made from: viewers included.
Readable = Annotated[ProjectAccess, Depends(project_access(Permission.MODEL_READ))]
EntityQuery = Annotated[
    str,
    Query(
        min_length=1,
        max_length=600,
        description="dataset:NAME:VERSION, job:NAME, run:RUN_ID or model:GROUP:VERSION",
        examples=["model:churn:3"],
    ),
]


@router.get("/lineage")
def lineage(entity: EntityQuery, access: Readable, platform: PlatformDep) -> schemas.LineageGraph:
    """Everything an entity was made from and everything made from it, as a graph."""
    with platform.db.read() as s:
        return platform.lineage.graph(s, access.project.id, entity)
