"""``shipyard up``: start the platform on the embedded defaults (or the configured engines)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    from shipyard.config import Settings

console = Console(stderr=True, soft_wrap=True)


def up(
    home: Annotated[
        Path | None, typer.Option(help="Where state lives (default $SHIPYARD_HOME or ~/.shipyard)")
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="Interface to bind (default $SHIPYARD_HOST or 127.0.0.1)")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="API port (default $SHIPYARD_PORT or 8080)")
    ] = None,
    gateway_port: Annotated[
        int | None, typer.Option(help="Gateway port (default: API port + 1)")
    ] = None,
) -> None:
    """Start the platform: migrate the DB, create the admin on first start, serve."""
    from shipyard.config import Settings
    from shipyard.hosting.gateway.supervisor import GatewaySupervisor
    from shipyard.server import prepare, serve

    overrides: dict[str, object] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    if home is not None:
        overrides["home"] = home.expanduser().resolve()
    if gateway_port is not None:
        overrides["gateway_port"] = gateway_port
    settings = Settings(**overrides)  # type: ignore[arg-type]
    platform, created = prepare(settings)
    gateway = GatewaySupervisor(settings) if settings.gateway_enabled else None
    if gateway is not None:
        gateway.start()  # after prepare: the DB is migrated, the key made
    try:
        _banner(settings, created is not None)
        serve(platform)
    finally:
        if gateway is not None:
            gateway.stop()


def _banner(settings: Settings, first_start: bool) -> None:
    url, creds = settings.api_url, settings.credentials_path
    console.print(f"[bold green]Shipyard[/] is up at [bold]{url}[/]  (API docs: {url}/api/v1/docs)")
    if settings.gateway_enabled:
        console.print(f"Gateway (SageMaker Runtime compatible): [bold]{settings.gateway_url}[/]")
    else:
        console.print("Gateway: off (SHIPYARD_GATEWAY_ENABLED=false); run `shipyard gateway`")
    state = "created now" if first_start else "from the first start"
    console.print(f"Admin credentials ({state}): [bold]{creds}[/]")
    console.print(f"Log in with: shipyard login --url {url} --username admin")
    console.print("Press Ctrl-C to stop.")


def register(app: typer.Typer) -> None:
    app.command("up")(up)
