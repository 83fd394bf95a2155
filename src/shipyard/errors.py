"""The one error hierarchy of the server; ``shipyard.api.errors`` maps it to HTTP in one place.

    ShipyardError                    500 internal
     ├── BadRequest                  400 bad_request
     │    └── InvalidPath            400 invalid_path
     ├── Unauthenticated             401 unauthenticated
     ├── PermissionDenied            403 permission_denied
     ├── NotFound                    404 not_found
     ├── Conflict                    409 conflict
     │    ├── StaleWrite             409 stale_write
     │    └── VerificationFailed     409 verification_failed
     ├── PayloadTooLarge             413 payload_too_large
     ├── ValidationFailed            422 validation_failed
     ├── RateLimited                 429 rate_limited
     ├── IntegrityFailure            500 integrity_error
     └── StoreUnavailable            503 store_unavailable

Services raise these; they never know about HTTP. ``field`` names the offending input so a
client can point at it.
"""

from __future__ import annotations


class ShipyardError(Exception):
    status_code = 500
    code = "internal"

    def __init__(self, message: str, *, field: str | None = None, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details


class BadRequest(ShipyardError):
    status_code = 400
    code = "bad_request"


class InvalidPath(BadRequest):
    code = "invalid_path"


class Unauthenticated(ShipyardError):
    status_code = 401
    code = "unauthenticated"


class PermissionDenied(ShipyardError):
    status_code = 403
    code = "permission_denied"


class NotFound(ShipyardError):
    status_code = 404
    code = "not_found"


class Conflict(ShipyardError):
    status_code = 409
    code = "conflict"


class StaleWrite(Conflict):
    code = "stale_write"


class VerificationFailed(Conflict):
    """Stored bytes are not the ones that were registered and approved."""

    code = "verification_failed"


class PayloadTooLarge(ShipyardError):
    status_code = 413
    code = "payload_too_large"


class ValidationFailed(ShipyardError):
    status_code = 422
    code = "validation_failed"


class RateLimited(ShipyardError):
    status_code = 429
    code = "rate_limited"

    def __init__(
        self, message: str, *, retry_after_s: int, field: str | None = None, **details: object
    ) -> None:
        super().__init__(message, field=field, **details)
        self.retry_after_s = retry_after_s


class IntegrityFailure(ShipyardError):
    status_code = 500
    code = "integrity_error"


class StoreUnavailable(ShipyardError):
    """The artifact store could not be reached or refused the operation (disk, S3)."""

    status_code = 503
    code = "store_unavailable"
