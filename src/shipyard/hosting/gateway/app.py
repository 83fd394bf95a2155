"""The gateway's ASGI app: ``POST /endpoints/{name}/invocations`` and a few probes.

No framework: a router, a request object and middleware would cost as much as the whole
hop. One request, step by step (nothing here touches the DB or writes a log line):

1. one pass over the headers; a Content-Length over the limit is refused before reading;
2. the body; 3. the caller, from the auth cache (bearer token or SigV4 key id; a miss is
   looked up on a thread); 4. the endpoint, from the in-memory table (one dict read);
5. the key's right to invoke it (cached per caller and endpoint) and its token bucket;
6. the variant: ``TargetVariant`` or a weighted draw; a serverless variant at zero waits
   for a replica (bounded); 7. the replica: round-robin over the variant's pools, the
   request written once; a replica that refuses or drops the connection before answering
   is skipped and another one tried; 8. counters and histograms, the capture record
   (queued), the response; 9. after it is sent, the shadow mirror as a detached task.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from shipyard.hosting.gateway import errors
from shipyard.hosting.gateway.asyncinvoke import AsyncHeaders, AsyncInference
from shipyard.hosting.gateway.auth import Authenticator, Caller, missing_token
from shipyard.hosting.gateway.capture import CaptureRecord, CaptureWriter, EventIds
from shipyard.hosting.gateway.errors import GatewayError, Reply
from shipyard.hosting.gateway.stats import StatsRegistry
from shipyard.hosting.gateway.table import DOWN_FOR_S, LiveEndpoint, LiveVariant, RouteTable
from shipyard.hosting.gateway.upstream import (
    Answer,
    ReplicaPool,
    UpstreamFailure,
    UpstreamTimeout,
)

log = logging.getLogger("shipyard.gateway")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# (scope, receive, start time) -> the reply, and what to mirror to the shadow variant after it
Handle = Callable[
    [Scope, Receive, float], Awaitable[tuple[Reply, "tuple[LiveEndpoint, bytes] | None"]]
]
_PREFIX, _SUFFIX, _ASYNC_SUFFIX = "/endpoints/", "/invocations", "/async-invocations"
_HEAD = b"POST /invocations HTTP/1.1\r\nhost: replica\r\n"
_MAX_SHADOWS_IN_FLIGHT = 256
_JSON = b"application/json"


class Request:
    """What the gateway reads of a request's headers, in one pass (names are lower-case)."""

    __slots__ = (
        "accept",
        "attributes",
        "authorization",
        "content_type",
        "inference_id",
        "length",
        "target",
    )

    def __init__(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.authorization = self.content_type = self.accept = None
        self.target = self.attributes = self.inference_id = None
        self.length = -1
        for name, value in headers:
            if name == b"authorization":
                self.authorization = value
            elif name == b"content-type":
                self.content_type = value
            elif name == b"content-length":
                self.length = int(value)
            elif name == b"accept":
                self.accept = value
            elif name == b"x-amzn-sagemaker-custom-attributes":
                self.attributes = value
            elif name == b"x-amzn-sagemaker-target-variant":
                self.target = value
            elif name == b"x-amzn-sagemaker-inference-id":
                self.inference_id = value

    def upstream(self, body: bytes) -> bytes:
        """The request to a replica, head and body in one buffer (one write, one segment)."""
        parts = [_HEAD]
        if self.content_type is not None:
            parts += (b"content-type: ", self.content_type, b"\r\n")
        if self.accept is not None:
            parts += (b"accept: ", self.accept, b"\r\n")
        if self.attributes is not None:
            parts += (b"x-amzn-sagemaker-custom-attributes: ", self.attributes, b"\r\n")
        parts += (b"content-length: %d\r\n\r\n" % len(body), body)
        return b"".join(parts)


class GatewayApp:
    def __init__(
        self,
        *,
        table: RouteTable,
        auth: Authenticator,
        capture: CaptureWriter,
        stats: StatsRegistry,
        registry: CollectorRegistry,
        max_body_bytes: int,
        model_timeout_s: float,
        cold_start_wait_s: float,
        mark_wanted: Callable[[LiveEndpoint, LiveVariant], None],
        startup: Callable[[], Awaitable[None]],
        shutdown: Callable[[], Awaitable[None]],
        async_inference: AsyncInference | None = None,
    ) -> None:
        self.table = table
        self._auth = auth
        self._capture = capture
        self._stats = stats
        self._registry = registry
        self._max_body = max_body_bytes
        self._timeout = model_timeout_s
        self._cold_wait = cold_start_wait_s
        self._mark_wanted = mark_wanted
        self._startup = startup
        self._shutdown = shutdown
        self._async = async_inference
        self._event_ids = EventIds()
        self._shadows: set[asyncio.Task[None]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path: str = scope["path"]
            if path.startswith(_PREFIX) and path.endswith(_SUFFIX):
                await self._invoke(scope, receive, send, self._handle)
            elif path.startswith(_PREFIX) and path.endswith(_ASYNC_SUFFIX):
                await self._invoke(scope, receive, send, self._handle_async)
            else:
                await _send(send, self._probe(path, scope["method"]))
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    # --- invocations --------------------------------------------------------------------

    async def _invoke(self, scope: Scope, receive: Receive, send: Send, handle: Handle) -> None:
        """Run ``handle`` (real-time or queued); any failure becomes SageMaker's error."""
        started = time.perf_counter()
        mirror: tuple[LiveEndpoint, bytes] | None = None
        try:
            reply, mirror = await handle(scope, receive, started)
        except GatewayError as exc:
            reply = exc.reply()
            self._stats.reject(_known(self.table, scope["path"]), exc.code)
        except Exception:
            log.exception("gateway: unexpected failure on %s", scope["path"])
            reply = errors.INTERNAL.reply()
        await _send(send, reply)
        if mirror is not None:
            self._mirror(*mirror)

    async def _handle(
        self, scope: Scope, receive: Receive, started: float
    ) -> tuple[Reply, tuple[LiveEndpoint, bytes] | None]:
        request = Request(scope["headers"])
        body, _, endpoint = await self._admit(request, scope, receive, _SUFFIX)
        if request.content_type is not None and not _is_media_type(request.content_type):
            raise _bad_media_type(request.content_type)
        variant = _target(endpoint, request.target)
        data = request.upstream(body)
        endpoint, variant = await self._ready(endpoint, variant)
        answer, model_s = await self._forward(endpoint, variant, data)
        reply = self._reply(endpoint, variant, request, body, answer, model_s, started)
        return reply, (endpoint, data) if endpoint.shadow is not None else None

    async def _admit(
        self, request: Request, scope: Scope, receive: Receive, suffix: str
    ) -> tuple[bytes, Caller, LiveEndpoint]:
        """The body, the caller and the endpoint, once the caller may invoke it now."""
        if scope["method"] != "POST":
            raise _unknown_operation(scope["method"], scope["path"])
        if request.length > self._max_body:
            raise _too_large(request.length, self._max_body)
        body = await _read_body(receive, self._max_body)
        caller = await self._authenticate(request, scope, body)
        wait = caller.bucket.take()  # before the lookup: unknown names are throttled too
        if wait:
            raise errors.throttled(wait)
        name = scope["path"][len(_PREFIX) : -len(suffix)]
        endpoint = await self.table.find(name)
        if endpoint is None:
            raise errors.endpoint_not_found(name)
        if not caller.may_invoke(endpoint.id, endpoint.team_id, endpoint.project_id):
            raise errors.access_denied(caller.principal.actor, name)
        return body, caller, endpoint

    async def _authenticate(self, request: Request, scope: Scope, body: bytes) -> Caller:
        header = request.authorization
        if header is None:
            raise missing_token()
        if header[:7].lower() == b"bearer ":
            return await self._auth.bearer(header[7:].strip())
        return await self._auth.sigv4(header, scope, body)

    # --- asynchronous inference (see asyncinvoke) ----------------------------------------

    async def _handle_async(
        self, scope: Scope, receive: Receive, started: float
    ) -> tuple[Reply, None]:
        if self._async is None:
            raise errors.unavailable("Asynchronous inference is off on this gateway.")
        headers = AsyncHeaders.parse(scope["headers"])
        request = Request(scope["headers"])
        body, caller, endpoint = await self._admit(request, scope, receive, _ASYNC_SUFFIX)
        return await self._async.accept(endpoint, caller, headers, body), None

    async def forward_queued(
        self,
        endpoint: LiveEndpoint,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        timeout_s: float,
    ) -> tuple[Answer, str]:
        """A queued request to a replica of a weighted variant (started if serverless)."""
        variant = _target(endpoint, None)
        endpoint, variant = await self._ready(endpoint, variant)
        answer, _ = await self._forward(
            endpoint, variant, Request(headers).upstream(body), timeout_s
        )
        return answer, variant.name

    async def _ready(
        self, endpoint: LiveEndpoint, variant: LiveVariant
    ) -> tuple[LiveEndpoint, LiveVariant]:
        """The variant with replicas: at once, or after a serverless cold start (bounded)."""
        if variant.pools:
            return endpoint, variant
        if not variant.serverless:
            variant.stats.invocations += 1
            variant.stats.errors_5xx += 1
            raise errors.unavailable(f"No ready replica for variant {variant.name}.")
        self._mark_wanted(endpoint, variant)
        deadline = time.monotonic() + self._cold_wait
        while (remaining := deadline - time.monotonic()) > 0:
            await self.table.wait_changed(remaining)
            fresh = self.table.endpoints.get(endpoint.name)
            found = fresh.variants.get(variant.name) if fresh else None
            if fresh is None or found is None:
                raise errors.endpoint_not_found(endpoint.name)
            if found.pools:
                return fresh, found
        variant.stats.invocations += 1
        variant.stats.errors_5xx += 1
        raise errors.unavailable(
            f"Variant {variant.name} did not start a replica within {self._cold_wait:g} s."
        )

    async def _forward(
        self,
        endpoint: LiveEndpoint,
        variant: LiveVariant,
        data: bytes,
        timeout_s: float | None = None,
    ) -> tuple[Answer, float]:
        """Send to a replica; on a refused or dropped connection, to another one."""
        stats = variant.stats
        stats.invocations += 1
        tried: tuple[ReplicaPool, ...] = ()
        while (pool := variant.pick(tried)) is not None:
            sent = time.perf_counter()
            try:
                answer = await pool.send(data, timeout_s or self._timeout)
            except UpstreamFailure as exc:
                if exc.answered:
                    stats.errors_5xx += 1
                    raise errors.unavailable("The replica broke off its answer.") from None
                pool.down_until = time.monotonic() + DOWN_FOR_S
                tried = (*tried, pool)
                stats.retries += 1
                continue
            except UpstreamTimeout:
                stats.errors_5xx += 1
                raise errors.model_error(variant.name, None, "", endpoint.log_stream) from None
            model_s = time.perf_counter() - sent
            if answer.status == 503 and len(tried) + 1 < len(variant.pools):
                tried = (*tried, pool)  # still loading its model: another one may be ready
                continue
            stats.model.observe(model_s)
            return answer, model_s
        if not tried and variant.max_concurrency:  # every replica is at its limit
            stats.errors_4xx += 1
            raise errors.GatewayError(
                429,
                "ThrottlingException",
                f"Variant {variant.name} is at its maximum concurrency "
                f"({variant.max_concurrency} per replica).",
                headers=((b"retry-after", b"1"),),
            )
        stats.errors_5xx += 1
        raise errors.unavailable(f"No replica of variant {variant.name} could be reached.")

    def _reply(
        self,
        endpoint: LiveEndpoint,
        variant: LiveVariant,
        request: Request,
        body: bytes,
        answer: Answer,
        model_s: float,
        started: float,
    ) -> Reply:
        status = answer.status
        if status >= 300:
            variant.stats.overhead.observe(time.perf_counter() - started - model_s)
            raise _model_refusal(endpoint, variant, answer)
        headers = [
            (b"content-type", answer.content_type or _JSON),
            (b"content-length", b"%d" % len(answer.body)),
            (b"x-amzn-invoked-production-variant", variant.header),
        ]
        if answer.attributes is not None:
            headers.append((b"x-amzn-sagemaker-custom-attributes", answer.attributes))
        fraction = endpoint.capture_fraction
        if fraction and (fraction >= 1.0 or random.random() < fraction):
            event_id = self._captured(endpoint, variant, request, body, answer, model_s, started)
            if event_id is not None:
                headers.append((b"x-shipyard-event-id", event_id.encode()))
        variant.stats.overhead.observe(time.perf_counter() - started - model_s)
        return Reply(status, headers, answer.body)

    def _captured(
        self,
        endpoint: LiveEndpoint,
        variant: LiveVariant,
        request: Request,
        body: bytes,
        answer: Answer,
        model_s: float,
        started: float,
    ) -> str | None:
        """Queue the capture record; its event id, or None when the queue was full."""
        given = request.inference_id
        event_id = given.decode("latin-1")[:64] if given else self._event_ids.next()
        record = CaptureRecord(
            event_id,
            time.time(),
            endpoint,
            variant,
            body,
            request.content_type,
            answer.body,
            answer.content_type,
            model_s,
            time.perf_counter() - started - model_s,
            request.attributes,
        )
        if self._capture.offer(record):
            return event_id
        variant.stats.capture_dropped_full += 1
        return None

    # --- shadow traffic -----------------------------------------------------------------

    def _mirror(self, endpoint: LiveEndpoint, data: bytes) -> None:
        shadow = endpoint.shadow
        if shadow is None or not shadow.pools:
            return
        if endpoint.shadow_fraction < 1.0 and random.random() >= endpoint.shadow_fraction:
            return
        if len(self._shadows) >= _MAX_SHADOWS_IN_FLIGHT:
            shadow.stats.shadow_dropped += 1
            return
        task = asyncio.get_running_loop().create_task(self._shadow_call(shadow, data))
        self._shadows.add(task)
        task.add_done_callback(self._shadows.discard)

    async def _shadow_call(self, shadow: LiveVariant, data: bytes) -> None:
        """Counted apart from production; any failure stays here."""
        stats = shadow.stats
        stats.invocations += 1
        pool = shadow.pick()
        if pool is None:
            stats.errors_5xx += 1
            return
        sent = time.perf_counter()
        try:
            answer = await pool.send(data, self._timeout)
        except (UpstreamFailure, UpstreamTimeout):
            pool.down_until = time.monotonic() + DOWN_FOR_S
            stats.errors_5xx += 1
            return
        except Exception:
            log.exception("gateway: shadow call failed")
            stats.errors_5xx += 1
            return
        stats.model.observe(time.perf_counter() - sent)
        if answer.status >= 500:
            stats.errors_5xx += 1
        elif answer.status >= 400:
            stats.errors_4xx += 1

    # --- probes and lifespan ------------------------------------------------------------

    def _probe(self, path: str, method: str) -> Reply:
        if path == "/ping" or path == "/healthz":
            body = b'{"status":"ok"}'
            return Reply(200, [(b"content-type", _JSON), (b"content-length", b"15")], body)
        if path == "/metrics":
            body = generate_latest(self._registry)
            headers = [
                (b"content-type", CONTENT_TYPE_LATEST.encode()),
                (b"content-length", b"%d" % len(body)),
            ]
            return Reply(200, headers, body)
        return _unknown_operation(method, path).reply()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self._startup()
                except Exception as exc:
                    log.exception("gateway: start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for task in list(self._shadows):
                    task.cancel()
                await self._shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _target(endpoint: LiveEndpoint, target: bytes | None) -> LiveVariant:
    if target is not None:
        name = target.decode("latin-1")
        variant = endpoint.variants.get(name)
        if variant is None:
            raise errors.validation(
                f"Variant {name} is not among the production variants of endpoint {endpoint.name}."
            )
        return variant
    chosen = endpoint.choose()
    if chosen is None:
        raise errors.unavailable(f"Endpoint {endpoint.name} has no variant with replicas.")
    return chosen


def _model_refusal(endpoint: LiveEndpoint, variant: LiveVariant, answer: Answer) -> GatewayError:
    status = answer.status
    message = errors.replica_message(answer.body)
    if status == 413:
        return errors.validation(message, 413)
    if status == 415:
        return errors.validation(message, 415)
    if status == 503:  # the replica is loading its model (and no other one was ready)
        variant.stats.errors_5xx += 1
        return errors.unavailable(f"Variant {variant.name} is not ready: {message}")
    if status >= 500:
        variant.stats.errors_5xx += 1
    else:
        variant.stats.errors_4xx += 1
    return errors.model_error(variant.name, status, message, endpoint.log_stream)


async def _read_body(receive: Receive, limit: int) -> bytes:
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise _too_large(len(body), limit)
        return body
    chunks, size = [body], len(body)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] != "http.request":
            raise errors.validation("The client went away.")
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise _too_large(size, limit)
    return b"".join(chunks)


_MEDIA_TYPES: dict[bytes, bool] = {}  # clients send a handful of values, over and over


def _is_media_type(value: bytes) -> bool:
    """``type/subtype`` with optional parameters: the shape of any Content-Type."""
    known = _MEDIA_TYPES.get(value)
    if known is None:
        kind, slash, subtype = value.partition(b";")[0].strip().partition(b"/")
        known = bool(slash and kind and subtype) and not any(
            c in b' \t()<>@,:\\"[]?=' for c in kind + subtype
        )
        if len(_MEDIA_TYPES) < 256:
            _MEDIA_TYPES[value] = known
    return known


def _too_large(size: int, limit: int) -> GatewayError:
    return errors.validation(
        f"Request body of {size} bytes is over the limit of {limit} bytes.", status=413
    )


def _bad_media_type(value: bytes) -> GatewayError:
    shown = value[:100].decode("latin-1")
    return errors.validation(f"Content-Type {shown!r} is not a media type.", status=415)


def _unknown_operation(method: str, path: str) -> GatewayError:
    return GatewayError(404, "UnknownOperationException", f"No operation at {method} {path[:200]}.")


def _known(table: RouteTable, path: str) -> str:
    """The endpoint label of a refusal: its name if it is served, else "" (bounded labels)."""
    suffix = _ASYNC_SUFFIX if path.endswith(_ASYNC_SUFFIX) else _SUFFIX
    if path.startswith(_PREFIX) and path.endswith(suffix):
        name = path[len(_PREFIX) : -len(suffix)]
        if name in table.endpoints:
            return name
    return ""


async def _send(send: Send, reply: Reply) -> None:
    await send({"type": "http.response.start", "status": reply.status, "headers": reply.headers})
    await send({"type": "http.response.body", "body": reply.body})
