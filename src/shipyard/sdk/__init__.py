"""The Shipyard Python SDK: httpx only, so it imports in any notebook.

Everything public is listed in ``__all__`` (a test keeps it honest); modules starting with
``_`` are private and may change.
"""

from shipyard.sdk._artifacts import Artifacts, ArtifactVersion, PresignedUrl, Progress
from shipyard.sdk._autolog import autolog
from shipyard.sdk._client import Session
from shipyard.sdk._config import (
    Profile,
    config_path,
    delete_profile,
    load_profile,
    save_profile,
)
from shipyard.sdk._datasets import Datasets
from shipyard.sdk._events import Events, verify_signature
from shipyard.sdk._exceptions import (
    APIError,
    AsyncInferenceFailed,
    BadRequest,
    ConfigurationError,
    Conflict,
    CorruptArtifact,
    DeploymentFailed,
    IntegrityError,
    InvalidPath,
    JobFailed,
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
from shipyard.sdk._hosting import AsyncPrediction, Endpoint, Hosting, Predictor
from shipyard.sdk._jobs import Estimator, Job, Jobs, Processor
from shipyard.sdk._models import ModelRegistry, ModelVersion
from shipyard.sdk._monitoring import ModelMonitor, Monitoring
from shipyard.sdk._tracking import (
    ActiveRun,
    Tracking,
    active_run,
    log_metric,
    log_metrics,
    log_param,
    log_params,
    set_tag,
    start_run,
)
from shipyard.sdk._transform import Transformer, TransformJob

__all__ = [
    "APIError",
    "ActiveRun",
    "ArtifactVersion",
    "Artifacts",
    "AsyncInferenceFailed",
    "AsyncPrediction",
    "BadRequest",
    "ConfigurationError",
    "Conflict",
    "CorruptArtifact",
    "Datasets",
    "DeploymentFailed",
    "Endpoint",
    "Estimator",
    "Events",
    "Hosting",
    "IntegrityError",
    "InvalidPath",
    "Job",
    "JobFailed",
    "Jobs",
    "ModelMonitor",
    "ModelRegistry",
    "ModelVersion",
    "Monitoring",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "Predictor",
    "PresignedUrl",
    "Processor",
    "Profile",
    "Progress",
    "RateLimited",
    "ServerError",
    "Session",
    "ShipyardError",
    "StaleWrite",
    "StoreUnavailable",
    "Timeout",
    "Tracking",
    "TransformJob",
    "Transformer",
    "TransportError",
    "Unauthenticated",
    "ValidationFailed",
    "active_run",
    "autolog",
    "config_path",
    "delete_profile",
    "load_profile",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "save_profile",
    "set_tag",
    "start_run",
    "verify_signature",
]
