"""The ``shipyard`` command: one Typer app, one module per command group."""

from __future__ import annotations

import typer

from shipyard.cli import up

app = typer.Typer(
    name="shipyard",
    no_args_is_help=True,
    add_completion=False,
    help="Shipyard: a self-hosted ML platform.",
)


@app.callback()
def _root() -> None:
    """Shipyard: a self-hosted ML platform."""


up.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
