"""``shipyard gateway``: run the data plane alone (``shipyard up`` starts one itself)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def gateway(
    home: Annotated[
        Path | None, typer.Option(help="Where state lives (default $SHIPYARD_HOME or ~/.shipyard)")
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="Interface to bind (default $SHIPYARD_HOST or 127.0.0.1)")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(help="Gateway port (default $SHIPYARD_GATEWAY_PORT, else the API port + 1)"),
    ] = None,
) -> None:
    """Serve POST /endpoints/{name}/invocations (SageMaker Runtime compatible) until stopped.

    Uses the same settings as the API (SHIPYARD_DB_URL, SHIPYARD_STORE_URL, the master key).
    """
    from shipyard.config import Settings
    from shipyard.hosting.gateway.server import serve

    overrides: dict[str, object] = {}
    if home is not None:
        overrides["home"] = home.expanduser().resolve()
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["gateway_port"] = port
    serve(Settings(**overrides))  # type: ignore[arg-type]


def register(app: typer.Typer) -> None:
    app.command("gateway")(gateway)
