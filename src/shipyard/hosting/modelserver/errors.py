"""Errors of the model server. Codes are SageMaker's spelling, as the gateway passes them on.

ShipyardError
 └── ModelServerError                500 InternalFailure
      ├── ModelError                 400 ModelError (the model or its script refused input)
      ├── NotAcceptable              406 NotAcceptable
      ├── PayloadTooLarge            413 PayloadTooLarge
      ├── UnsupportedMediaType       415 UnsupportedMediaType
      ├── ModelNotReady              503 ModelNotReady
      └── ModelLoadError             (start-up only: one stderr line, non-zero exit)
"""

from __future__ import annotations

from shipyard.errors import ShipyardError


class ModelServerError(ShipyardError):
    status_code = 500
    code = "InternalFailure"


class ModelError(ModelServerError):
    status_code = 400
    code = "ModelError"


class NotAcceptable(ModelServerError):
    status_code = 406
    code = "NotAcceptable"


class PayloadTooLarge(ModelServerError):
    status_code = 413
    code = "PayloadTooLarge"


class UnsupportedMediaType(ModelServerError):
    status_code = 415
    code = "UnsupportedMediaType"


class ModelNotReady(ModelServerError):
    status_code = 503
    code = "ModelNotReady"


class ModelLoadError(ModelServerError):
    code = "ModelLoadError"
