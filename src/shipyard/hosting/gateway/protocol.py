"""uvicorn's httptools protocol, with a response written in one piece instead of two.

uvicorn writes a response's head when the app sends ``http.response.start`` and its body on
``http.response.body``: two ``send`` calls, two TCP segments, and on loopback the kernel
runs the client's receive path once per segment in the sender's time slice. The gateway
sends both messages in one event-loop step, so a transport that gathers the writes of a
step and hands them on together at its end saves a system call and a segment per request
(both ends pay for them) without changing a byte of what is sent.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _GatheringTransport:
    """Delegates to the real transport; ``write``s of one loop step go out as one."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        pending = self._pending
        if pending is None:
            self._pending = [data]
            self._loop.call_soon(self._flush)
        else:
            pending.append(data)

    def _flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # get_extra_info, pause_reading, is_closing...
        return getattr(self._transport, name)


class GatewayHttpProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        gathering: Any = _GatheringTransport(transport, self.loop)  # type: ignore[arg-type]
        super().connection_made(gathering)
