"""``shipyard datasets``: versioned, profiled CSV and Parquet datasets of a project."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from shipyard.cli._common import JsonOption, emit, emit_one, session, transfer_progress
from shipyard.cli.tracking import RUN_COLUMNS, jsonable, run_row

datasets = typer.Typer(
    help="Datasets: immutable CSV/Parquet versions with a schema and profile.",
    no_args_is_help=True,
)
Project = Annotated[str, typer.Argument(help="TEAM/PROJECT")]
Name = Annotated[str, typer.Argument(help="The dataset's name")]
DATASET_COLUMNS = ("name", "latest_version", "description", "created_by", "created_at")
VERSION_COLUMNS = ("version", "format", "row_count", "size", "digest", "created_by", "created_at")
PROFILE_COLUMNS = ("column", "type", "count", "missing", "distinct", "min", "max", "mean", "std")


@datasets.command("create")
def create(
    project: Project,
    name: Name,
    description: Annotated[str, typer.Option(help="What the data is")] = "",
    as_json: JsonOption = False,
) -> None:
    """Create an empty dataset (an upload also creates it when missing)."""
    with session() as client:
        emit_one(client.datasets(project).create(name, description=description), as_json)


@datasets.command("upload")
def upload(
    project: Project,
    name: Name,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    description: Annotated[str, typer.Option(help="What changed in this version")] = "",
    format: Annotated[
        str | None, typer.Option(help="csv or parquet (default: from the file)")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Upload FILE (CSV or Parquet) as the next version of the dataset NAME."""
    with session() as client, transfer_progress(f"upload {file.name}") as progress:
        version = client.datasets(project).upload(
            name, file, description=description, format=format, progress=progress
        )
    if as_json:
        emit_one(version, True)
        return
    keys = ("dataset", "version", "format", "row_count", "size", "digest", "artifact_path")
    emit_one({k: version[k] for k in keys}, False)


@datasets.command("ls")
def ls(project: Project, as_json: JsonOption = False) -> None:
    """List the project's datasets with their latest version."""
    with session() as client:
        emit(client.datasets(project).ls(), DATASET_COLUMNS, as_json)


@datasets.command("versions")
def versions(project: Project, name: Name, as_json: JsonOption = False) -> None:
    """List every version of a dataset, oldest first."""
    with session() as client:
        found = client.datasets(project).versions(name)
    emit(found, VERSION_COLUMNS, as_json)


@datasets.command("show")
def show(
    project: Project,
    name: Name,
    version: Annotated[int | None, typer.Option(help="A version (default: the latest)")] = None,
    as_json: JsonOption = False,
) -> None:
    """Show a version: digest, row count, and the schema and profile of every column."""
    with session() as client:
        found = client.datasets(project).show(name, version)
    if as_json:
        emit_one(found, True)
        return
    keys = ("dataset", "version", "format", "row_count", "size", "digest", "description")
    emit_one({k: found[k] for k in keys}, False)
    emit(profile_rows(found["profile"]), (*PROFILE_COLUMNS, "top values"), False)


def profile_rows(profile: dict[str, Any]) -> list[dict[str, Any]]:
    """One table row per column: its type and statistics, numbers to 6 significant digits."""
    rows = []
    for column in profile.get("columns", []):
        row = {k: _number(column.get(k)) for k in PROFILE_COLUMNS[1:]}
        top = ", ".join(f"{value} ({count})" for value, count in column.get("top_values", []))
        rows.append({**row, "column": column["name"], "top values": top})
    return rows


def _number(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value


@datasets.command("runs")
def lineage(
    project: Project,
    name: Name,
    version: Annotated[int, typer.Argument(help="A version number")],
    as_json: JsonOption = False,
) -> None:
    """Lineage: the runs that read a dataset version."""
    with session() as client:
        found = client.datasets(project).runs(name, version)
    emit(jsonable(found) if as_json else [run_row(r) for r in found], RUN_COLUMNS, as_json)


def register(app: typer.Typer) -> None:
    app.add_typer(datasets, name="datasets")
