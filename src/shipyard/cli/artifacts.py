"""``shipyard artifacts``: versioned, encrypted files of a project."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path, PurePosixPath
from typing import Annotated

import typer

from shipyard.cli._common import JsonOption, emit, emit_one, err, session, transfer_progress

artifacts = typer.Typer(help="Versioned, encrypted artifacts of a project.", no_args_is_help=True)
Project = Annotated[str, typer.Argument(help="TEAM/PROJECT")]
ArtifactPath = Annotated[str, typer.Argument(help="The artifact's path, e.g. data/train.csv")]
VERSION_COLUMNS = ("path", "version", "size", "sha256", "created_by", "created_at", "deleted")


@artifacts.command("put")
def put(
    project: Project,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    path: ArtifactPath,
    content_type: Annotated[str | None, typer.Option(help="Stored with the version")] = None,
    as_json: JsonOption = False,
) -> None:
    """Upload FILE as a new version of PATH."""
    with session() as client, transfer_progress(f"put {path}") as progress:
        version = client.artifacts(project).put(
            path, file, content_type=content_type, progress=progress
        )
    emit_one(asdict(version), as_json)


@artifacts.command("get")
def get(
    project: Project,
    path: ArtifactPath,
    version: Annotated[int | None, typer.Option(help="A version number (default: latest)")] = None,
    output: Annotated[
        str | None, typer.Option("-o", "--output", help="Where to write ('-' for stdout)")
    ] = None,
) -> None:
    """Download a version of PATH (to its file name in the current directory by default)."""
    with session() as client, transfer_progress(f"get {path}") as progress:
        store = client.artifacts(project)
        if output == "-":
            sys.stdout.buffer.write(bytes(store.get(path, version=version)))
            return
        dest = Path(output) if output else Path(PurePosixPath(path).name or "artifact")
        store.get(path, version=version, dest=dest, progress=progress)
    err.print(f"Wrote {dest}")


@artifacts.command("ls")
def ls(
    project: Project,
    prefix: Annotated[str, typer.Option(help="Only paths that start with this")] = "",
    as_json: JsonOption = False,
) -> None:
    """List the latest version of every artifact."""
    with session() as client:
        rows = [asdict(v) for v in client.artifacts(project).ls(prefix)]
    emit(rows, VERSION_COLUMNS, as_json)


@artifacts.command("versions")
def versions(project: Project, path: ArtifactPath, as_json: JsonOption = False) -> None:
    """List every version of PATH, delete markers included."""
    with session() as client:
        rows = [asdict(v) for v in client.artifacts(project).versions(path)]
    emit(rows, VERSION_COLUMNS, as_json)


@artifacts.command("rm")
def rm(project: Project, path: ArtifactPath, as_json: JsonOption = False) -> None:
    """Delete PATH: writes a delete marker; earlier versions stay readable."""
    with session() as client:
        emit_one(asdict(client.artifacts(project).delete(path)), as_json)


@artifacts.command("presign")
def presign(
    project: Project,
    path: ArtifactPath,
    expires_in: Annotated[int, typer.Option(help="Seconds the URL stays valid")] = 3600,
    version: Annotated[int | None, typer.Option(help="A version number (default: latest)")] = None,
    as_json: JsonOption = False,
) -> None:
    """Print an expiring URL that downloads PATH without a token."""
    with session() as client:
        signed = client.artifacts(project).presign(path, expires_in=expires_in, version=version)
    if as_json:
        emit_one(asdict(signed), True)
    else:
        sys.stdout.write(signed.url + "\n")


def register(app: typer.Typer) -> None:
    app.add_typer(artifacts, name="artifacts")
