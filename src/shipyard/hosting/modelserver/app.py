"""The replica's ASGI app: ``/ping`` and ``/invocations``, no framework on the hot path.

A router, a request object and a middleware stack cost tens of microseconds a request, as
much as a one-row predict; this app reads the four headers it needs from the scope and sends
two messages. A body up to ``inline_max_bytes`` is decoded, predicted and encoded right on
the event loop (a thread hop costs more than a small predict); a larger one goes to a thread
so that one big request does not stall every other connection.
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson

from shipyard.hosting.modelserver import codecs
from shipyard.hosting.modelserver.batching import MicroBatcher
from shipyard.hosting.modelserver.errors import ModelNotReady, PayloadTooLarge
from shipyard.hosting.modelserver.handler import Handler, Response, error_response
from shipyard.hosting.modelserver.script import Context

log = logging.getLogger("shipyard.modelserver")

Scope = dict[str, Any]
Receive = Any  # the ASGI callables; typing them fully buys nothing here
Send = Any

_EMPTY: list[tuple[bytes, bytes]] = [(b"content-length", b"0")]
_JSON = b"application/json"


class ModelServerApp:
    def __init__(
        self,
        *,
        max_body_bytes: int,
        inline_max_bytes: int = 64 * 1024,
        batch_max: int = 0,
        batch_wait_ms: float = 0.0,
    ) -> None:
        self.handler: Handler | None = None
        self.max_body_bytes = max_body_bytes
        self.inline_max_bytes = inline_max_bytes
        self._batch = (batch_max, batch_wait_ms / 1000)
        self._batcher: MicroBatcher | None = None
        self._executor = ThreadPoolExecutor(
            max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="predict"
        )

    def ready(self, handler: Handler) -> None:
        """Serve ``handler`` from now on: /ping turns 200."""
        max_rows, wait_s = self._batch
        if max_rows > 1 and handler.batchable:
            self._batcher = MicroBatcher(handler.predict_rows, max_rows=max_rows, wait_s=wait_s)
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        try:
            if path == "/invocations":
                if scope["method"] == "POST":
                    await self._invocations(scope, receive, send)
                else:
                    await _send_error(send, 405, "MethodNotAllowed", "use POST /invocations")
            elif path == "/ping":
                status = 200 if self.handler is not None else 503
                await send({"type": "http.response.start", "status": status, "headers": _EMPTY})
                await send({"type": "http.response.body", "body": b""})
            else:
                await _send_error(send, 404, "NotFound", f"no route {path}")
        except Exception:  # a fault of ours: never a bare traceback page
            log.exception("unhandled error on %s", path)
            await _send_error(send, 500, "InternalFailure", "internal error; see the replica log")

    async def _invocations(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.handler
        if handler is None:
            await _send(send, error_response(ModelNotReady("the model is still loading")))
            return
        ctx, length = _context(scope["headers"], handler.model_version)
        if length > self.max_body_bytes:
            await _send(send, self._too_large(length))
            return
        body = await self._read_body(receive)
        if body is None:
            return  # the client went away
        if len(body) > self.max_body_bytes:
            await _send(send, self._too_large(len(body)))
            return
        if len(body) > self.inline_max_bytes:
            loop = asyncio.get_running_loop()
            response = await loop.run_in_executor(self._executor, handler.respond, body, ctx)
        elif self._batcher is not None:
            response = await handler.respond_batched(body, ctx, self._batcher.submit)
        else:
            response = handler.respond(body, ctx)
        await _send(send, response)

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body; stops reading once it is over the limit (its length says so)."""
        message = await receive()
        if message["type"] != "http.request":
            return None
        body: bytes = message.get("body", b"")
        if not message.get("more_body", False):
            return body
        chunks, size = [body], len(body)
        while size <= self.max_body_bytes:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    def _too_large(self, size: int) -> Response:
        message = f"the body is {size} bytes, over this endpoint's {self.max_body_bytes}"
        return error_response(PayloadTooLarge(message))

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _context(headers: list[tuple[bytes, bytes]], version: str | None) -> tuple[Context, int]:
    """The request's context from its headers (names arrive lower-cased), and its length."""
    content_type = accept = attributes = None
    length = -1
    for name, value in headers:
        if name == b"content-type":
            content_type = value
        elif name == b"accept":
            accept = value
        elif name == b"content-length":
            length = int(value)
        elif name == b"x-amzn-sagemaker-custom-attributes":
            attributes = value
    ctx = Context(
        content_type=codecs.media_type(content_type),
        accept=accept.decode("latin-1") if accept else None,
        custom_attributes=attributes.decode("latin-1") if attributes else None,
        model_version=version,
    )
    return ctx, length


async def _send(send: Send, response: Response) -> None:
    headers = [
        (b"content-type", response.content_type),
        (b"content-length", b"%d" % len(response.body)),
    ]
    if response.headers:
        headers.extend(response.headers)
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})


async def _send_error(send: Send, status: int, code: str, message: str) -> None:
    body = orjson.dumps({"error": {"code": code, "message": message}})
    await _send(send, Response(status, _JSON, body))
