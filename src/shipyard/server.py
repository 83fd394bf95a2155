"""Runs the control plane: ``shipyard up`` and ``shipyard api``."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Iterator

import uvicorn

from shipyard.api.app import create_app
from shipyard.bootstrap import Platform, build_platform, ensure_admin
from shipyard.config import Settings
from shipyard.security import passwords

log = logging.getLogger("shipyard.server")


class _Server(uvicorn.Server):
    """Treats SIGINT/SIGTERM as a graceful stop and exits 0 (uvicorn re-raises the signal)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self.handle_exit)
        yield


def prepare(settings: Settings) -> tuple[Platform, dict[str, str] | None]:
    os.umask(0o077)  # the DB, blobs and keys in the home are the platform's alone
    passwords.use_cost(settings.password_hash_cost)
    if settings.password_hash_cost != "standard":
        log.warning("password hashes use minimal argon2id cost: for tests only")
    platform = build_platform(settings)
    created = ensure_admin(platform)
    return platform, created


def serve(platform: Platform) -> None:
    """Serve until Ctrl-C or SIGTERM; uvicorn drains requests, then the lifespan seals audit."""
    settings = platform.settings
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    config = uvicorn.Config(
        create_app(platform),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        timeout_graceful_shutdown=10,
        loop="uvloop",
        http="httptools",
    )
    try:
        _Server(config).run()
    finally:
        platform.db.dispose()
