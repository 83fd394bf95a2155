"""Platform administration routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from shipyard.api.deps import PlatformDep, platform_access
from shipyard.security.permissions import Permission
from shipyard.security.principal import Principal
from shipyard.security.rotation import rotate_master_key

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


class RotationOut(BaseModel):
    master_key_id: str
    rewrapped: int
    resealed: int


@router.post("/master-key/rotate")
def rotate(
    _: Annotated[Principal, Depends(platform_access(Permission.PLATFORM_ADMIN))],
    platform: PlatformDep,
) -> RotationOut:
    """Re-wrap every data key and API-key secret under a new master key (no data re-encrypted)."""
    counts = rotate_master_key(platform.db, platform.master_key, platform.rewrappers)
    return RotationOut(
        master_key_id=platform.master_key.key_id,
        rewrapped=counts.get("data_keys", 0),
        resealed=counts.get("api_key_secrets", 0),
    )
