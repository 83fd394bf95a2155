"""Asynchronous inference (SageMaker's InvokeEndpointAsync) in the gateway.

``POST /endpoints/{name}/async-invocations`` stores the request in the ``async_invocations``
queue and answers 202 with where the result will be — only after the row has committed, so
an acknowledged request survives any crash. The input is an artifact of the endpoint's
project named by ``X-Amzn-SageMaker-InputLocation`` (``shipyard://team/project/path[@v]`` or a
path in the project; boto3 always sends one), or — for curl and the SDK — the request body,
which is stored as an artifact first.

The worker runs in every gateway, next to the replicas it already routes to: it claims due
requests with a lease, sends each to a replica like a real-time request (a serverless variant
at zero is started and waited for), writes the answer to ``OutputLocation`` or the error to
``FailureLocation``, and records the outcome in the same transaction as its event
(``endpoint.async.completed`` / ``endpoint.async.failed``), which webhooks deliver. A request
whose replica could not be reached is retried with a backoff, up to ``MAX_ATTEMPTS``; one still
queued after its time to live fails without running. Store and DB work runs on a small thread
pool with an event loop per thread: none of it blocks the real-time path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any, TypeVar

import orjson
from sqlalchemy.orm import Session

from shipyard.db.engine import Database
from shipyard.errors import ShipyardError
from shipyard.events.service import EventService
from shipyard.hosting.async_repository import COMPLETED, FAILED, QUEUED, async_repository
from shipyard.hosting.gateway import errors
from shipyard.hosting.gateway.auth import Caller
from shipyard.hosting.gateway.errors import GatewayError, Reply
from shipyard.hosting.gateway.table import LiveEndpoint, RouteTable
from shipyard.hosting.gateway.upstream import Answer
from shipyard.hosting.models import AsyncInvocation
from shipyard.kit.ids import new_id, utcnow
from shipyard.kit.leases import new_owner_id, owner_is_dead
from shipyard.security.models import Project, Team
from shipyard.security.permissions import Permission
from shipyard.storage.models import ArtifactVersion
from shipyard.storage.service import ArtifactService

log = logging.getLogger("shipyard.gateway.async")

T = TypeVar("T")
SCHEME = "shipyard://"
MAX_ATTEMPTS = 3
DEFAULT_TTL_S = 6 * 3600  # SageMaker's default RequestTTLSeconds
MAX_TTL_S = 6 * 3600
DEFAULT_TIMEOUT_S = 15 * 60  # SageMaker's default InvocationTimeoutSeconds
MAX_TIMEOUT_S = 60 * 60
_RETRY_AFTER_S = (2.0, 10.0, 30.0)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_EXTENSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,255}$")

# Send a request (headers, body, timeout) to one of the endpoint's replicas, as the real-time
# path does; the answer and the variant that gave it.
Forward = Callable[
    [LiveEndpoint, list[tuple[bytes, bytes]], bytes, float], Awaitable[tuple[Answer, str]]
]


@dataclass(frozen=True, slots=True)
class AsyncHeaders:
    """The InvokeEndpointAsync headers (names lower-case, as the ASGI server gives them)."""

    content_type: str | None
    accept: str | None
    attributes: str | None
    inference_id: str | None
    input_location: str | None
    output_extension: str | None
    filename: str | None
    ttl_s: int
    timeout_s: int

    @classmethod
    def parse(cls, headers: list[tuple[bytes, bytes]]) -> AsyncHeaders:
        found = {name.decode("latin-1"): value.decode("latin-1") for name, value in headers}

        def pick(*names: str) -> str | None:
            return next((found[n] for n in names if n in found), None)

        inference_id = pick("x-amzn-sagemaker-inference-id")
        if inference_id is not None and not _NAME.match(inference_id):
            raise errors.validation("InferenceId must be 1-64 letters, digits, '.', '_' or '-'.")
        extension = pick("x-amzn-sagemaker-s3outputpathextension")
        if extension is not None and (not _EXTENSION.match(extension) or ".." in extension):
            raise errors.validation("S3OutputPathExtension must be a relative path.")
        filename = pick("x-amzn-sagemaker-filename")
        if filename is not None and not _NAME.match(filename):
            raise errors.validation("Filename must be a plain file name.")
        return cls(
            content_type=pick("x-amzn-sagemaker-content-type", "content-type"),
            accept=pick("x-amzn-sagemaker-accept", "accept"),
            attributes=pick("x-amzn-sagemaker-custom-attributes"),
            inference_id=inference_id[:64] if inference_id else None,
            input_location=pick("x-amzn-sagemaker-inputlocation"),
            output_extension=extension,
            filename=filename,
            ttl_s=_seconds(found, "RequestTTLSeconds", DEFAULT_TTL_S, MAX_TTL_S),
            timeout_s=_seconds(found, "InvocationTimeoutSeconds", DEFAULT_TIMEOUT_S, MAX_TIMEOUT_S),
        )

    def upstream(self) -> list[tuple[bytes, bytes]]:
        """The headers a replica gets (as a real-time request's)."""
        pairs = [
            (b"content-type", self.content_type),
            (b"accept", self.accept),
            (b"x-amzn-sagemaker-custom-attributes", self.attributes),
        ]
        return [(name, value.encode("latin-1")) for name, value in pairs if value is not None]


def _seconds(found: dict[str, str], name: str, default: int, most: int) -> int:
    """The ``X-Amzn-SageMaker-<name>`` header's whole seconds, checked."""
    text = found.get(f"x-amzn-sagemaker-{name.lower()}")
    if text is None:
        return default
    if not text.isdigit() or not 1 <= int(text) <= most:
        raise errors.validation(f"{name} must be a whole number of seconds from 1 to {most}.")
    return int(text)


@dataclass(frozen=True, slots=True)
class Claimed:
    """What the worker needs of a claimed row (read in the claiming transaction)."""

    id: str
    inference_id: str
    endpoint_name: str
    project_id: str
    input_path: str
    input_version: int
    headers: list[tuple[bytes, bytes]]
    output_path: str
    failure_path: str
    attempts: int
    timeout_s: int


class ThreadLoops:
    """A small thread pool whose threads each keep one event loop, for the store's async
    API (its clients are bound to the loop that made them) off the gateway's own loop."""

    def __init__(self, threads: int) -> None:
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="gateway-async")
        self._local = threading.local()

    async def run(self, work: Callable[[], Awaitable[T]]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._run_here, work)

    def _run_here(self, work: Callable[[], Awaitable[T]]) -> T:
        loop: asyncio.AbstractEventLoop | None = getattr(self._local, "loop", None)
        if loop is None:
            loop = self._local.loop = asyncio.new_event_loop()
        return loop.run_until_complete(_awaited(work))

    def close(self) -> None:
        self._pool.shutdown(wait=True)


async def _awaited(work: Callable[[], Awaitable[T]]) -> T:
    return await work()


class AsyncInference:
    """The accepting half (called by the app) and the worker half (a task on its loop)."""

    def __init__(
        self,
        *,
        db: Database,
        artifacts: ArtifactService,
        events: EventService,
        table: RouteTable,
        poll_s: float = 0.5,
        max_in_flight: int = 16,
        lease_s: float = 60.0,
    ) -> None:
        self._db = db
        self._artifacts = artifacts
        self._events = events
        self._table = table
        self._poll_s = poll_s
        self._max_in_flight = max_in_flight
        self._lease_s = lease_s
        self.owner = new_owner_id()
        self._threads = ThreadLoops(2)
        self._wake = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._forward: Forward | None = None

    # --- accepting ----------------------------------------------------------------------

    async def accept(
        self, endpoint: LiveEndpoint, caller: Caller, headers: AsyncHeaders, body: bytes
    ) -> Reply:
        """Queue the request (committed before this returns) and describe the 202."""
        row = await self._threads.run(partial(self._store, endpoint, caller, headers, body))
        self._wake.set()
        document = {
            "InferenceId": row.inference_id,
            "OutputLocation": row.output_location,
            "FailureLocation": row.failure_location,
        }
        payload = orjson.dumps(document)
        reply_headers = [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(payload)),
            (b"x-amzn-sagemaker-outputlocation", row.output_location.encode()),
            (b"x-amzn-sagemaker-failurelocation", row.failure_location.encode()),
        ]
        return Reply(202, reply_headers, payload)

    async def _store(
        self, endpoint: LiveEndpoint, caller: Caller, headers: AsyncHeaders, body: bytes
    ) -> _Accepted:
        with self._db.read() as s:
            prefix = _project_prefix(s, endpoint)
        row_id = new_id()
        inference_id = headers.inference_id or row_id
        out_dir = f"async-inference/{endpoint.name}/output"
        if headers.output_extension:
            out_dir = f"{out_dir}/{headers.output_extension.strip('/')}"
        output_path = f"{out_dir}/{headers.filename or inference_id + '.out'}"
        failure_path = f"async-inference/{endpoint.name}/failures/{inference_id}.error"
        now = utcnow()

        def queued(path: str, version: int) -> AsyncInvocation:
            return AsyncInvocation(
                id=row_id,
                endpoint_id=endpoint.id,
                project_id=endpoint.project_id,
                endpoint_name=endpoint.name,
                inference_id=inference_id,
                input_path=path,
                input_version=version,
                content_type=headers.content_type,
                accept=headers.accept,
                custom_attributes=headers.attributes,
                output_path=output_path,
                failure_path=failure_path,
                status=QUEUED,
                expires_at=now + timedelta(seconds=headers.ttl_s),
                timeout_s=headers.timeout_s,
                created_by=caller.principal.actor,
            )

        if headers.input_location is not None:
            path, version = self._input(prefix, endpoint, caller, headers.input_location)
            with self._db.transaction() as s:
                async_repository.add(s, queued(path, version))
        elif body:
            input_path = f"async-inference/{endpoint.name}/input/{row_id}"

            def then(s: Session, stored: ArtifactVersion) -> None:
                async_repository.add(s, queued(stored.path, stored.version))

            await self._artifacts.put(
                self._db,
                endpoint.project_id,
                input_path,
                body,
                content_type=headers.content_type or "application/octet-stream",
                actor=caller.principal.actor,
                then=then,
            )
        else:
            raise errors.validation(
                "InputLocation is required (the X-Amzn-SageMaker-InputLocation header), "
                "or send the input as the request body."
            )
        return _Accepted(inference_id, prefix + output_path, prefix + failure_path)

    def _input(
        self, prefix: str, endpoint: LiveEndpoint, caller: Caller, location: str
    ) -> tuple[str, int]:
        """The stored input the location names, pinned to a version; naming one needs the
        right to read the project's artifacts (an invoker key sends its input as the body)."""
        path, version = _parse_location(location, prefix, endpoint.name)
        if not caller.principal.can(
            Permission.ARTIFACT_READ, team_id=endpoint.team_id, project_id=endpoint.project_id
        ):
            raise GatewayError(
                403,
                "AccessDeniedException",
                f"{caller.principal.actor} may not read artifacts, so it may not name an "
                "InputLocation; send the input as the request body instead.",
            )
        try:
            with self._db.read() as s:
                row = self._artifacts.find(
                    s, endpoint.project_id, ArtifactService.clean_path(path), version
                )
        except ShipyardError as exc:
            raise errors.validation(f"InputLocation {location}: {exc.message}.") from None
        return row.path, row.version

    # --- the worker ---------------------------------------------------------------------

    def start(self, forward: Forward) -> None:
        """Start the worker on the running loop; ``forward`` sends a request to a replica."""
        self._forward = forward
        self._loop_task = asyncio.get_running_loop().create_task(self._work())

    async def stop(self, grace_s: float = 10.0) -> None:
        """Stop claiming, let requests in flight finish (bounded), hand back the rest."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        if self._running:
            _, pending = await asyncio.wait(set(self._running), timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        try:
            await self._threads.run(self._release)
        except Exception:
            log.exception("async inference: cannot hand back claimed requests")
        self._threads.close()

    async def _work(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_s)
            self._wake.clear()
            free = self._max_in_flight - len(self._running)
            ids = list(self._table.live_ids())
            if free <= 0 or not ids:
                continue
            try:
                claimed = await self._threads.run(partial(self._claim, ids, free))
            except Exception:
                log.exception("async inference: cannot claim requests")
                continue
            for item in claimed:
                task = asyncio.get_running_loop().create_task(self._run(item))
                self._running.add(task)
                task.add_done_callback(self._running.discard)

    async def _claim(self, endpoint_ids: list[str], limit: int) -> list[Claimed]:
        now = utcnow()
        with self._db.transaction() as s:
            for row_id in async_repository.expired(s, endpoint_ids, now):
                expired = async_repository.expire(
                    s, row_id, now, "The request's time to live ran out before it ran."
                )
                if expired is not None:
                    self._emit(s, expired, "endpoint.async.failed")
        claimed: list[Claimed] = []
        until = now + timedelta(seconds=self._lease_s)
        with self._db.transaction() as s:
            for row_id, owner in async_repository.claimable(s, endpoint_ids, now, limit):
                steal = owner if owner_is_dead(owner) else None
                row = async_repository.claim(s, row_id, self.owner, now, until, steal)
                if row is not None:
                    claimed.append(_claimed(row))
                    if len(claimed) >= limit:
                        break
        return claimed

    async def _run(self, item: Claimed) -> None:
        try:
            await self._process(item)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("async inference %s failed", item.id)
            await self._threads.run(partial(self._retry_or_fail, item, f"internal error: {exc}"))

    async def _process(self, item: Claimed) -> None:
        endpoint = self._table.endpoints.get(item.endpoint_name)
        if endpoint is None:
            await self._threads.run(partial(self._fail, item, "The endpoint is not served."))
            return
        data = await self._threads.run(partial(self._read_input, item))
        assert self._forward is not None
        try:
            answer, variant = await asyncio.wait_for(
                self._forward(endpoint, item.headers, data, float(item.timeout_s)),
                item.timeout_s + 5,
            )
        except GatewayError as exc:
            if exc.status in (503, 429):  # no replica now: later, like a queued SQS message
                await self._threads.run(partial(self._retry_or_fail, item, exc.message))
            else:
                await self._threads.run(partial(self._fail, item, exc.message, exc.code))
            return
        except TimeoutError:
            text = f"The model did not answer within {item.timeout_s} s."
            await self._threads.run(partial(self._fail, item, text, "ModelError"))
            return
        await self._threads.run(partial(self._complete, item, answer, variant))

    async def _read_input(self, item: Claimed) -> bytes:
        with self._db.read() as s:
            row = self._artifacts.find(s, item.project_id, item.input_path, item.input_version)
            download = await self._artifacts.open_download(s, row)
        return b"".join([piece async for piece in download])

    async def _complete(self, item: Claimed, answer: Answer, variant: str) -> None:
        if answer.status >= 300:
            message = errors.replica_message(answer.body)
            text = f"Received error ({answer.status}) from variant {variant}: {message}"
            await self._fail(item, text, "ModelError", answer.status)
            return

        content_type = answer.content_type.decode("latin-1") if answer.content_type else None
        await self._record(
            item,
            item.output_path,
            answer.body,
            content_type or "application/json",
            status=COMPLETED,
            variant=variant,
            error="",
        )

    async def _fail(
        self, item: Claimed, message: str, code: str = "InternalFailure", status: int | None = None
    ) -> None:
        """Write the error document to the failure location and mark the request Failed."""
        document: dict[str, Any] = {
            "InferenceId": item.inference_id,
            "code": code,
            "message": message,
        }
        if status is not None:
            document["OriginalStatusCode"] = status
        await self._record(
            item,
            item.failure_path,
            orjson.dumps(document),
            "application/json",
            status=FAILED,
            error=message[:4000],
        )

    async def _record(
        self, item: Claimed, path: str, data: bytes, content_type: str, **outcome: Any
    ) -> None:
        """Store ``data`` at ``path`` and, in the same transaction, the outcome and its event
        — unless the claim was lost meanwhile (another gateway took over): then neither."""
        event = f"endpoint.async.{outcome['status'].lower()}"

        def then(s: Session, stored: ArtifactVersion) -> None:
            row = async_repository.finish(
                s, item.id, self.owner, utcnow(), finished_at=utcnow(), **outcome
            )
            if row is None:
                raise _LostClaim(item.id)
            self._emit(s, row, event)

        try:
            await self._artifacts.put(
                self._db,
                item.project_id,
                path,
                data,
                content_type=content_type,
                actor="gateway",
                then=then,
            )
        except _LostClaim:
            log.warning("async inference %s: claim lost; its outcome was not recorded", item.id)

    async def _retry_or_fail(self, item: Claimed, message: str) -> None:
        if item.attempts >= MAX_ATTEMPTS:
            await self._fail(item, f"Gave up after {item.attempts} attempts: {message}")
            return
        delay = _RETRY_AFTER_S[min(item.attempts, len(_RETRY_AFTER_S)) - 1]
        with self._db.transaction() as s:
            async_repository.finish(
                s,
                item.id,
                self.owner,
                utcnow(),
                status=QUEUED,
                error=message[:4000],
                not_before=utcnow() + timedelta(seconds=delay),
            )

    async def _release(self) -> None:
        with self._db.transaction() as s:
            async_repository.release(s, self.owner, utcnow())

    def _emit(self, s: Session, row: AsyncInvocation, type: str) -> None:
        self._events.emit(
            s,
            project_id=row.project_id,
            type=type,
            subject=f"endpoint:{row.endpoint_name}",
            data={
                "endpoint": row.endpoint_name,
                "inference_id": row.inference_id,
                "status": row.status,
                "variant": row.variant,
                "output_path": row.output_path if row.status == COMPLETED else None,
                "failure_path": row.failure_path if row.status == FAILED else None,
                "error": row.error,
                "attempts": row.attempts,
            },
            actor=row.created_by,
        )


class _LostClaim(Exception):
    """Another gateway took the request over (this one was too slow): record nothing."""


@dataclass(frozen=True, slots=True)
class _Accepted:
    inference_id: str
    output_location: str
    failure_location: str


def _claimed(row: AsyncInvocation) -> Claimed:
    headers = AsyncHeaders(
        content_type=row.content_type,
        accept=row.accept,
        attributes=row.custom_attributes,
        inference_id=None,
        input_location=None,
        output_extension=None,
        filename=None,
        ttl_s=0,
        timeout_s=row.timeout_s,
    )
    return Claimed(
        id=row.id,
        inference_id=row.inference_id,
        endpoint_name=row.endpoint_name,
        project_id=row.project_id,
        input_path=row.input_path,
        input_version=row.input_version,
        headers=headers.upstream(),
        output_path=row.output_path,
        failure_path=row.failure_path,
        attempts=row.attempts,
        timeout_s=row.timeout_s,
    )


def _project_prefix(s: Session, endpoint: LiveEndpoint) -> str:
    project = s.get(Project, endpoint.project_id)
    team = s.get(Team, endpoint.team_id)
    if project is None or team is None:
        raise errors.endpoint_not_found(endpoint.name)
    return f"{SCHEME}{team.name}/{project.name}/"


def _parse_location(location: str, prefix: str, endpoint: str) -> tuple[str, int | None]:
    """``shipyard://team/project/path[@v]`` in the endpoint's project, or a bare path."""
    text = location.strip()
    if text.startswith(SCHEME):
        if not text.startswith(prefix):
            raise errors.validation(
                f"InputLocation {location} is not in the project of endpoint {endpoint} "
                f"({prefix.removesuffix('/')})."
            )
        text = text[len(prefix) :]
    elif "://" in text:
        raise errors.validation(
            f"InputLocation {location}: use {prefix}<path> or a path in the endpoint's project."
        )
    path, at, version = text.rpartition("@")
    if at and version.isdigit():
        return path, int(version)
    return text, None
