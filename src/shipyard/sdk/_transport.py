"""One place where HTTP becomes SDK results: transport errors and error bodies to exceptions."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import httpx

from shipyard.sdk._exceptions import Timeout, TransportError, error_class


@contextlib.contextmanager
def mapped_transport_errors(url: str) -> Iterator[None]:
    """Turn httpx's connection-level errors into ``TransportError``/``Timeout``."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise Timeout(f"{url} did not answer in time: {exc}") from exc
    except httpx.TransportError as exc:
        raise TransportError(f"cannot reach Shipyard at {url}: {exc}") from exc


def raise_for_error(response: httpx.Response) -> None:
    """Raise the ``APIError`` subclass the response's status and error code call for."""
    if response.status_code < 400:
        return
    response.read()
    body: Any = None
    with contextlib.suppress(ValueError):
        body = response.json()
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        text = response.text[:200] or response.reason_phrase
        raise error_class(response.status_code, "")(response.status_code, "http_error", text)
    details = dict(error.get("details") or {})
    if "retry-after" in response.headers:
        details.setdefault("retry_after", response.headers["retry-after"])
    code = str(error.get("code", ""))
    raise error_class(response.status_code, code)(
        response.status_code,
        code,
        str(error.get("message", "")),
        request_id=str(error.get("request_id", "")),
        field=error.get("field"),
        details=details,
    )


def check(response: httpx.Response) -> Any:
    """The JSON body of a successful response (None for 204)."""
    raise_for_error(response)
    if response.status_code == 204 or not response.content:
        return None
    return response.json()
