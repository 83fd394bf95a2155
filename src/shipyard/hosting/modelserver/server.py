"""Start-up and shutdown: check the model dir, open the port, load, print READY, drain on TERM.

The port opens before the model loads (in a thread), so ``/ping`` answers 503 while a large
model loads and 200 after; ``READY <port>`` on stdout is the hosting controller's signal. A
model that cannot be loaded ends the process with one ``modelserver: error: ...`` line on
stderr and exit code 1. SIGTERM (or Ctrl-C) stops accepting connections, lets in-flight
requests finish (up to ``--graceful-timeout``) and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import uvicorn

from shipyard.hosting.modelserver.app import ModelServerApp
from shipyard.hosting.modelserver.errors import ModelLoadError
from shipyard.hosting.modelserver.flavors import PredictOptions
from shipyard.hosting.modelserver.handler import Handler, load_handler, plan
from shipyard.hosting.modelserver.options import ServerOptions, parse_args
from shipyard.kit.gcpause import freeze_startup_heap

log = logging.getLogger("shipyard.modelserver")


class ReplicaServer(uvicorn.Server):
    """uvicorn, plus: load the model once listening, announce READY, exit 0 on SIGTERM."""

    def __init__(
        self, config: uvicorn.Config, app: ModelServerApp, load: Callable[[], Handler]
    ) -> None:
        super().__init__(config)
        self.app = app
        self.load = load
        self.failure: str | None = None
        self._loading: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn re-raises the signal after draining, which makes the exit code -15; a
        # replica told to stop has done nothing wrong.
        previous = {
            sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    async def startup(self, sockets: list[Any] | None = None) -> None:
        await super().startup(sockets)
        if self.started and not self.should_exit:
            self._loading = asyncio.create_task(self._load())

    async def _load(self) -> None:
        try:
            handler = await asyncio.get_running_loop().run_in_executor(None, self.load)
        except Exception as exc:
            if not isinstance(exc, ModelLoadError):
                log.debug("loading failed", exc_info=exc)
            self.failure = one_line(str(exc) or type(exc).__name__)
            self.should_exit = True
            return
        freeze_startup_heap()  # the model's objects live for good: keep them out of GC passes
        self.app.ready(handler)
        if not self.should_exit:
            port = self.servers[0].sockets[0].getsockname()[1]
            sys.stdout.write(f"READY {port}\n")
            sys.stdout.flush()


def one_line(text: str) -> str:
    return " ".join(text.split())


def build(options: ServerOptions) -> ReplicaServer:
    """Check the model dir (ModelLoadError before any port opens) and set the server up."""
    found = plan(options.model_dir, options.flavor)
    predict_options = PredictOptions(mode=options.predict, threads=options.intra_op_threads)
    app = ModelServerApp(
        max_body_bytes=options.max_body_bytes,
        inline_max_bytes=options.inline_max_bytes,
        batch_max=options.batch_max,
        batch_wait_ms=options.batch_wait_ms,
    )
    config = uvicorn.Config(
        app,
        host=options.host,
        port=options.port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level=options.log_level,
        timeout_keep_alive=int(options.keep_alive_timeout),
        timeout_graceful_shutdown=int(options.graceful_timeout),
        server_header=False,
    )
    return ReplicaServer(
        config, app, lambda: load_handler(found, predict_options, options.model_version)
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    logging.basicConfig(
        level=options.log_level.upper(),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        server = build(options)
    except ModelLoadError as exc:
        print(f"modelserver: error: {one_line(exc.message)}", file=sys.stderr)
        return 1
    try:
        server.run()
    finally:
        server.app.close()
    if server.failure is not None:
        print(f"modelserver: error: {server.failure}", file=sys.stderr)
        return 1
    return 0 if server.started else 1
