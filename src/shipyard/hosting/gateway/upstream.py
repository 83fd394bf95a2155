"""A minimal HTTP/1.1 keep-alive client for replicas: one pool of connections per replica.

Why not httpx: on this path every microsecond is the gateway's overhead, and a general
client costs ~0.4 ms more per POST than this. A request here is one ``write`` of bytes the
app built once (head and body together, TCP_NODELAY), and the answer is parsed by httptools
(llhttp, C) straight off the socket; Content-Length and chunked answers both work.

Failures say whether retrying elsewhere is safe: ``UpstreamFailure`` means no byte of an
answer arrived (connection refused, reset or closed first), so the caller may try another
replica; an answer that breaks off half-way is a failure too (``answered=True``) but is not
retried. A reused keep-alive connection that turns out closed is retried once, here, on a
fresh connection before the failure reaches the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from typing import NamedTuple, cast

import httptools

_CONNECT_TIMEOUT_S = 2.0
_MAX_IDLE = 512
IDLE_EXPIRY_S = 30.0  # well under the replica's keep-alive (75 s): we close first


class UpstreamFailure(Exception):
    def __init__(self, message: str, *, answered: bool = False) -> None:
        super().__init__(message)
        self.answered = answered


class UpstreamTimeout(Exception):
    pass


class Answer(NamedTuple):
    status: int
    content_type: bytes | None
    attributes: bytes | None  # X-Amzn-SageMaker-Custom-Attributes
    body: bytes


class _Connection(asyncio.Protocol):
    """One socket to a replica, one request at a time; the parser's callbacks are methods."""

    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[Answer] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._answered = False
        self._status = 0
        self._type: bytes | None = None
        self._attributes: bytes | None = None
        self._chunks: list[bytes] = []
        self.closed = False
        self.idle_since = 0.0

    # --- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._transport is not None:
            return
        # uvloop's TCPTransport is not an asyncio.Transport subclass: no isinstance check
        self._transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self._answered = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._fail(UpstreamFailure("the replica's answer is not valid HTTP", answered=True))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        reason = f"the replica closed the connection ({exc or 'EOF'})"
        self._fail(UpstreamFailure(reason, answered=self._answered))

    # --- httptools callbacks ----------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-type":
            self._type = value
        elif name == b"x-amzn-sagemaker-custom-attributes":
            self._attributes = value

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        chunks = self._chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        answer = Answer(self._status, self._type, self._attributes, body)
        keep = self._parser.should_keep_alive()
        self._type = self._attributes = None
        self._chunks = []
        if not keep:
            self.close()
        waiter, self._waiter = self._waiter, None
        self._cancel_timer()
        if waiter is not None and not waiter.done():
            waiter.set_result(answer)

    # --- use --------------------------------------------------------------------------

    def request(self, data: bytes, timeout_s: float) -> asyncio.Future[Answer]:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Answer] = loop.create_future()
        self._waiter = waiter
        self._answered = False
        assert self._transport is not None
        self._transport.write(data)
        self._timer = loop.call_later(timeout_s, self._timed_out)
        return waiter

    def _timed_out(self) -> None:
        self._timer = None
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(UpstreamTimeout())
        self.close()

    def _fail(self, exc: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        self._cancel_timer()
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()


class ReplicaPool:
    """Idle keep-alive connections to one replica, most recently used first."""

    def __init__(self, replica_id: str, host: str, port: int) -> None:
        self.replica_id = replica_id
        self.host = host
        self.port = port
        self.in_flight = 0
        self.down_until = 0.0  # monotonic: skipped by pickers until then (refused, reset)
        self._idle: list[_Connection] = []
        self._closed = False  # the replica left the routing table

    async def send(self, data: bytes, timeout_s: float) -> Answer:
        """One request, ``data`` being its whole bytes; raises UpstreamFailure/Timeout."""
        self.in_flight += 1
        try:
            idle = self._idle
            while idle:
                conn = idle.pop()
                if conn.closed:
                    continue
                try:
                    return await self._exchange(conn, data, timeout_s)
                except UpstreamFailure as exc:
                    if exc.answered:
                        raise
                    break  # closed while idle, or the replica is gone: a fresh connection says
            return await self._exchange(await self._connect(), data, timeout_s)
        finally:
            self.in_flight -= 1

    async def _exchange(self, conn: _Connection, data: bytes, timeout_s: float) -> Answer:
        try:
            answer = await conn.request(data, timeout_s)
        except BaseException:  # cancelled mid-request: its answer must not meet the next one
            conn.close()
            raise
        if conn.closed:
            return answer
        if self._closed or len(self._idle) >= _MAX_IDLE:
            conn.close()
        else:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        return answer

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            transport, conn = await asyncio.wait_for(
                loop.create_connection(_Connection, self.host, self.port), _CONNECT_TIMEOUT_S
            )
        except (OSError, TimeoutError) as exc:
            self._drop_idle()  # the idle ones lead to the same dead end
            raise UpstreamFailure(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        conn.connection_made(transport)  # uvloop may return before calling it
        return conn

    def expire_idle(self, now: float) -> None:
        """Close connections idle longer than ``IDLE_EXPIRY_S`` (oldest are first)."""
        idle = self._idle
        stale = 0
        while stale < len(idle) and now - idle[stale].idle_since > IDLE_EXPIRY_S:
            idle[stale].close()
            stale += 1
        if stale:
            del idle[:stale]

    def close(self) -> None:
        """For good: idle connections close now, busy ones when their request ends."""
        self._closed = True
        self._drop_idle()

    def _drop_idle(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()
