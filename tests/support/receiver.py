"""A real webhook receiver on a loopback address: records every request, and can be told to
fail the next N requests, answer with a redirect, or hang before answering."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# Linux routes all of 127/8 to the loopback interface. Receivers listen on 127.0.0.9, which
# the tests allow-list, so the plain 127.0.0.1 spellings stay refused on the same server.
RECEIVER_HOST = "127.0.0.9"


@dataclass
class Received:
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    at: float
    answered: int

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str:
        return self.headers[name.lower()]


class Receiver:
    def __init__(self, host: str = RECEIVER_HOST, port: int = 0) -> None:
        self.requests: list[Received] = []
        self.fail_next = 0  # answer this many requests with ``fail_status`` first
        self.fail_status = 500
        self.always_status: int | None = None  # every request gets this
        self.redirect_to: str | None = None  # answer 301 to this location
        self.hang_next = 0  # let this many requests wait ``hang_s`` before the answer
        self.hang_s = 0.0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True
        self.host, self.port = host, int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hook"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _answer(self) -> tuple[int, dict[str, str], float]:
        with self._lock:
            hang = 0.0
            if self.hang_next > 0:
                self.hang_next -= 1
                hang = self.hang_s
            if self.redirect_to is not None:
                return 301, {"Location": self.redirect_to}, hang
            if self.always_status is not None:
                return self.always_status, {}, hang
            if self.fail_next > 0:
                self.fail_next -= 1
                return self.fail_status, {}, hang
            return 200, {}, hang

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, headers, hang = receiver._answer()
                with receiver._lock:
                    receiver.requests.append(
                        Received(
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                            time.time(),
                            status,
                        )
                    )
                if hang:
                    time.sleep(hang)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def wait_for(
        self, predicate: Callable[[list[Received]], bool], timeout: float = 30.0
    ) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                seen = list(self.requests)
            if predicate(seen):
                return seen
            time.sleep(0.05)
        raise AssertionError(f"the receiver did not see what was expected; it saw {seen}")

    def of_type(self, event_type: str) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.header("X-Shipyard-Event") == event_type]
