"""A stand-in for the team's chat: a webhook receiver that prints each alert it is sent.

Shipyard POSTs every event a webhook subscribes to as JSON, with the event type in the
``X-Shipyard-Event`` header; a ``monitor.violation`` carries a ready-made, Slack-compatible
message in ``data.text``. This receiver keeps every delivery (``walkthrough.py`` reads them)
and, run as a script, prints one line per delivery::

    python examples/churn/receiver.py                      # listens on 127.0.0.9:9100
    shipyard webhooks allowlist set 127.0.0.9/32           # a platform admin lets it in
    shipyard webhooks create http://127.0.0.9:9100/alerts -p ml/churn -t 'monitor.*'

It does not check signatures (docs/events.md shows how a real receiver does); it listens on a
loopback address only.
"""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_HOST = "127.0.0.9"  # Linux routes all of 127/8 to loopback; elsewhere use 127.0.0.1
DEFAULT_PORT = 9100


class Receiver:
    """Listens on ``host:port`` (0: any free port) in a background thread."""

    def __init__(self, host: str = DEFAULT_HOST, port: int = 0, *, echo: bool = False) -> None:
        self.received: list[dict[str, Any]] = []
        self.echo = echo
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://{host}:{self._server.server_address[1]}/alerts"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.keep(self.headers.get("X-Shipyard-Event", ""), json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # one line per delivery is printed by keep(), not one per request

        return Handler

    def keep(self, event_type: str, event: dict[str, Any]) -> None:
        with self._lock:
            self.received.append({"type": event_type, "event": event})
        if self.echo:
            data = event.get("data") or {}
            print(f"{event_type}: {data.get('text') or event.get('subject', '')}", flush=True)

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        """The events of ``event_type`` received so far, oldest first."""
        with self._lock:
            return [r["event"] for r in self.received if r["type"] == event_type]

    def wait(self) -> None:
        self._thread.join()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description="Print the webhook deliveries Shipyard sends.")
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args()
    receiver = Receiver(args.host, args.port, echo=True)
    print(f"listening on {receiver.url}", flush=True)
    try:
        receiver.wait()
    except KeyboardInterrupt:
        receiver.close()


if __name__ == "__main__":
    main()
