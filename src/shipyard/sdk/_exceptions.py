"""The SDK's exceptions: one tree, mirroring the server's error codes.

    ShipyardError                     anything this SDK raises
     ├── ConfigurationError           no URL or credentials could be found
     ├── TransportError               the server could not be reached or the connection broke
     │    └── Timeout                 the server did not answer in time
     ├── IntegrityError               bytes that are not what was stored were refused
     ├── JobFailed                    a job waited on ended Failed or Stopped (``job``, ``reason``)
     ├── DeploymentFailed             an endpoint or promotion waited on failed or rolled back
     └── APIError                     the server answered with an error (``status``, ``code``)
          ├── BadRequest              400 bad_request
          │    └── InvalidPath        400 invalid_path
          ├── Unauthenticated         401 unauthenticated
          ├── PermissionDenied        403 permission_denied
          ├── NotFound                404 not_found
          ├── Conflict                409 conflict
          │    └── StaleWrite         409 stale_write
          ├── PayloadTooLarge         413 payload_too_large
          ├── ValidationFailed        422 validation_failed (``field`` names the input)
          ├── RateLimited             429 rate_limited (``retry_after`` in seconds)
          └── ServerError             5xx
               ├── CorruptArtifact    500 integrity_error (also an ``IntegrityError``)
               └── StoreUnavailable   503 store_unavailable (disk or S3 failing)

Every ``APIError`` carries the server's ``request_id``, so a report can be matched to the
server log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shipyard.sdk._jobs import Job


class ShipyardError(Exception):
    """Base of every exception the SDK raises."""


class ConfigurationError(ShipyardError):
    """No server URL or credentials: pass them, set ``SHIPYARD_URL``/``SHIPYARD_API_KEY``,
    or run ``shipyard login``."""


class TransportError(ShipyardError):
    """The request did not complete: connection refused or reset, DNS, TLS."""


class Timeout(TransportError):
    """The server did not answer within the session's timeout."""


class IntegrityError(ShipyardError):
    """Bytes that are not exactly what was stored were refused: by the SDK's own SHA-256
    check of a download, or by the server (``CorruptArtifact``). Never partial data."""


class JobFailed(ShipyardError):
    """A job that was waited on ended Failed or Stopped, like SageMaker's
    ``UnexpectedStatusException``. ``job`` is the job as it ended; ``reason`` is why (for a
    failed script: its exit code and last log lines)."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.status = job.status
        self.reason = job.reason
        super().__init__(f"job {job.name!r} ended {job.status}: {job.reason or 'no reason given'}")


class AsyncInferenceFailed(ShipyardError):
    """An asynchronous request ended Failed; ``inference_id`` and ``error`` say which, why."""

    def __init__(self, endpoint: str, inference_id: str, error: str) -> None:
        self.endpoint = endpoint
        self.inference_id = inference_id
        self.error = error
        super().__init__(f"async invocation {inference_id} on {endpoint} failed: {error}")


class DeploymentFailed(ShipyardError):
    """An endpoint that was waited on ended Failed, or its update rolled back, or a
    promotion Failed. ``endpoint``, ``status`` and ``reason`` say which and why;
    ``promotion`` is the promotion (its ``steps``) when one failed."""

    def __init__(
        self,
        endpoint: str,
        status: str,
        reason: str,
        *,
        promotion: dict[str, Any] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.status = status
        self.reason = reason
        self.promotion = promotion
        super().__init__(f"endpoint {endpoint!r}: {status}: {reason or 'no reason given'}")


class APIError(ShipyardError):
    """The server answered with an error body ``{"error": {code, message, request_id}}``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        request_id: str = "",
        field: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.field = field
        self.details = details or {}

    def __str__(self) -> str:
        return f"{self.message} ({self.status} {self.code})"


class BadRequest(APIError):
    """400: the request is malformed."""


class InvalidPath(BadRequest):
    """400: an artifact path was refused (traversal, absolute, encoded, control characters)."""


class Unauthenticated(APIError):
    """401: no, an expired, a revoked or a malformed token."""


class PermissionDenied(APIError):
    """403: the caller is known but their role does not allow this."""


class NotFound(APIError):
    """404: it does not exist, or the caller may not know it exists."""


class Conflict(APIError):
    """409: it already exists or is in a state that forbids this."""


class StaleWrite(Conflict):
    """409: it changed since it was read; re-read and retry."""


class PayloadTooLarge(APIError):
    """413: the body is over the server's limit."""


class ValidationFailed(APIError):
    """422: an input is invalid; ``field`` names it."""


class RateLimited(APIError):
    """429: too many attempts; wait ``retry_after`` seconds."""

    @property
    def retry_after(self) -> int:
        return int(self.details.get("retry_after", 0))


class ServerError(APIError):
    """5xx: the server failed; ``request_id`` finds it in the server log."""


class CorruptArtifact(ServerError, IntegrityError):
    """500 integrity_error: the server found the stored object altered and sent nothing."""


class StoreUnavailable(ServerError):
    """503 store_unavailable: the artifact store (disk or S3) is failing; retry later."""


_BY_CODE: dict[str, type[APIError]] = {
    "integrity_error": CorruptArtifact,
    "store_unavailable": StoreUnavailable,
    "invalid_path": InvalidPath,
    "stale_write": StaleWrite,
}
_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequest,
    401: Unauthenticated,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: ValidationFailed,
    429: RateLimited,
}


def error_class(status: int, code: str) -> type[APIError]:
    """The most specific exception class for a status and error code."""
    if code in _BY_CODE:
        return _BY_CODE[code]
    if status >= 500:
        return ServerError
    return _BY_STATUS.get(status, BadRequest)
