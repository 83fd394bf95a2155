"""The Shipyard Python SDK: httpx only, so it imports in any notebook.

Everything public is listed in ``__all__`` (a test keeps it honest); modules starting with
``_`` are private and may change.
"""

from shipyard.sdk._artifacts import Artifacts, ArtifactVersion, PresignedUrl, Progress
from shipyard.sdk._client import Session
from shipyard.sdk._config import (
    Profile,
    config_path,
    delete_profile,
    load_profile,
    save_profile,
)
from shipyard.sdk._exceptions import (
    APIError,
    BadRequest,
    ConfigurationError,
    Conflict,
    CorruptArtifact,
    IntegrityError,
    InvalidPath,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    ServerError,
    ShipyardError,
    StaleWrite,
    StoreUnavailable,
    Timeout,
    TransportError,
    Unauthenticated,
    ValidationFailed,
)

__all__ = [
    "APIError",
    "ArtifactVersion",
    "Artifacts",
    "BadRequest",
    "ConfigurationError",
    "Conflict",
    "CorruptArtifact",
    "IntegrityError",
    "InvalidPath",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "PresignedUrl",
    "Profile",
    "Progress",
    "RateLimited",
    "ServerError",
    "Session",
    "ShipyardError",
    "StaleWrite",
    "StoreUnavailable",
    "Timeout",
    "TransportError",
    "Unauthenticated",
    "ValidationFailed",
    "config_path",
    "delete_profile",
    "load_profile",
    "save_profile",
]
