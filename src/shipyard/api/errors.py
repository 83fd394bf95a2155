"""The one place where errors become HTTP responses: ``{"error": {code, message, request_id}}``.

MLflow's compatibility routes (``/api/2.0/...``) answer in MLflow's shape instead,
``{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": ...}``, with the same HTTP status:
MLflow clients raise on the code. A code that is already MLflow's (upper case) passes through.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from shipyard.errors import RateLimited, ShipyardError

log = logging.getLogger("shipyard.api")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    411: "length_required",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "rate_limited",
}

MLFLOW_PREFIX = "/api/2.0/"
_MLFLOW_CODES = {
    "bad_request": "INVALID_PARAMETER_VALUE",
    "invalid_path": "INVALID_PARAMETER_VALUE",
    "validation_failed": "INVALID_PARAMETER_VALUE",
    "payload_too_large": "INVALID_PARAMETER_VALUE",
    "unauthenticated": "UNAUTHENTICATED",
    "permission_denied": "PERMISSION_DENIED",
    "not_found": "RESOURCE_DOES_NOT_EXIST",
    "method_not_allowed": "ENDPOINT_NOT_FOUND",
    "conflict": "RESOURCE_ALREADY_EXISTS",
    "stale_write": "ABORTED",
    "rate_limited": "REQUEST_LIMIT_EXCEEDED",
    "store_unavailable": "TEMPORARILY_UNAVAILABLE",
    "integrity_error": "DATA_LOSS",
}


def mlflow_error_code(code: str) -> str:
    return code if code.isupper() else _MLFLOW_CODES.get(code, "INTERNAL_ERROR")


def request_id_of(request: Request) -> str:
    return str(getattr(request.state, "request_id", ""))


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    *,
    field: str | None = None,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    if request.url.path.startswith(MLFLOW_PREFIX):
        mlflow_body = {"error_code": mlflow_error_code(code), "message": message}
        return JSONResponse(mlflow_body, status_code=status, headers=headers)
    body: dict[str, Any] = {"code": code, "message": message, "request_id": request_id_of(request)}
    if field:
        body["field"] = field
    if details:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status, headers=headers)


async def _shipyard_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ShipyardError)
    headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, RateLimited) else None
    if exc.status_code == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    if exc.status_code >= 500:
        log.error("%s: %s (request %s)", exc.code, exc.message, request_id_of(request))
    return error_response(
        request,
        exc.status_code,
        exc.code,
        exc.message,
        field=exc.field,
        details=exc.details or None,
        headers=headers,
    )


def _field_of(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or str(loc[-1] if loc else "body")


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [
        {"field": _field_of(tuple(e.get("loc", ()))), "message": e.get("msg", "invalid")}
        for e in exc.errors()
    ]
    first = problems[0] if problems else {"field": "body", "message": "invalid"}
    message = "; ".join(f"{p['field']}: {p['message']}" for p in problems[:5])
    return error_response(
        request,
        422,
        "validation_failed",
        message,
        field=first["field"],
        details={"problems": problems},
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "error")
    if exc.status_code == 404 and request.url.path.startswith(MLFLOW_PREFIX):
        code = "ENDPOINT_NOT_FOUND"  # no such route, as opposed to no such run
    return error_response(
        request, exc.status_code, code, str(exc.detail), headers=dict(exc.headers or {}) or None
    )


async def _stale_write(request: Request, exc: Exception) -> JSONResponse:
    message = "the resource changed since you read it; re-read and retry"
    return error_response(request, 409, "stale_write", message)


async def unhandled_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error (request %s)", request_id_of(request), exc_info=exc)
    return error_response(request, 500, "internal", "internal error; see the server log")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ShipyardError, _shipyard_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(StaleDataError, _stale_write)
    app.add_exception_handler(Exception, unhandled_error)
