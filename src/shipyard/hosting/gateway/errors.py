"""Errors as SageMaker Runtime sends them, so boto3 raises its own modeled exceptions.

botocore's rest-json parser reads the code from the ``x-amzn-ErrorType`` header (else from
the body's ``__type``) and the message from the body's ``message``; a modeled error's extra
members (``ModelError``'s ``OriginalStatusCode``, ``OriginalMessage``, ``LogStreamArn``) are
read from the body by name. So every error carries the code twice and is JSON, never a bare
500 page::

    code                                  status  when
    MissingAuthenticationTokenException   403     no Authorization header
    UnrecognizedClientException           403     unknown, revoked or expired key
    IncompleteSignatureException          400     a malformed SigV4 Authorization header
    InvalidSignatureException             403     a SigV4 signature that does not match
    AccessDeniedException                 403     the key may not invoke this endpoint
    ValidationError                       400     unknown endpoint or target variant
    ValidationError                       413     a body over the limit (6 MB)
    ValidationError                       415     a Content-Type that is not a media type,
                                                  or one the model does not take
    ThrottlingException                   429     the key's token bucket is empty
                                                  (with Retry-After)
    ModelError                            424     the model answered 4xx/5xx, or timed out
    ServiceUnavailable                    503     no ready replica; a cold start took too long
    InternalFailure                       500     a fault of the gateway itself (logged)
    UnknownOperationException             404     any other path or method

``ValidationError`` at 413 and 415 keeps boto3's modeled exception (callers catch
``client.exceptions.ValidationError``) while the status says what was wrong.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson


class Reply(NamedTuple):
    """A whole response: what the app hands to ``send`` in two messages."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


class GatewayError(Exception):
    """An answer other than the model's; raised anywhere on the request path."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        fields: dict[str, Any] | None = None,
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields
        self.headers = headers

    def reply(self) -> Reply:
        document: dict[str, Any] = {"__type": self.code, "message": self.message}
        if self.fields:
            document.update(self.fields)
        body = orjson.dumps(document)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(body)),
            (b"x-amzn-errortype", self.code.encode()),
            *self.headers,
        ]
        return Reply(self.status, headers, body)


def validation(message: str, status: int = 400) -> GatewayError:
    return GatewayError(status, "ValidationError", message)


def endpoint_not_found(name: str) -> GatewayError:
    return validation(f"Endpoint {name} not found.")


def unavailable(message: str) -> GatewayError:
    return GatewayError(503, "ServiceUnavailable", message)


def throttled(retry_after_s: int) -> GatewayError:
    return GatewayError(
        429,
        "ThrottlingException",
        "Rate exceeded: this API key's request rate is over its limit.",
        headers=((b"retry-after", b"%d" % retry_after_s),),
    )


def access_denied(actor: str, endpoint: str) -> GatewayError:
    return GatewayError(
        403,
        "AccessDeniedException",
        f"{actor} is not authorized to perform: sagemaker:InvokeEndpoint on endpoint {endpoint}.",
    )


def unrecognized(reason: str) -> GatewayError:
    return GatewayError(
        403,
        "UnrecognizedClientException",
        f"The security token included in the request is invalid: {reason}.",
    )


def model_error(variant: str, status: int | None, message: str, log_stream: str) -> GatewayError:
    """The model refused or failed (``status`` None: it did not answer in time)."""
    if status is None:
        text = f"Your invocation timed out while waiting for a response from variant {variant}."
        return GatewayError(424, "ModelError", text, fields={"LogStreamArn": log_stream})
    kind = "client" if status < 500 else "server"
    text = f'Received {kind} error ({status}) from variant {variant} with message "{message}".'
    fields = {"OriginalStatusCode": status, "OriginalMessage": message, "LogStreamArn": log_stream}
    return GatewayError(424, "ModelError", text, fields=fields)


def replica_message(body: bytes) -> str:
    """A replica's ``{"error": {"message"}}``, else its body as text (bounded)."""
    try:
        document = orjson.loads(body)
        message = document["error"]["message"]
        if isinstance(message, str):
            return message
    except (orjson.JSONDecodeError, KeyError, TypeError):
        pass
    return body[:2048].decode("utf-8", "replace")


INTERNAL = GatewayError(500, "InternalFailure", "An internal error occurred in the gateway.")
