"""Datasets of one project: named, immutable, profiled versions of a CSV or Parquet file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from shipyard.sdk._artifacts import Progress, _file_chunks, split_project
from shipyard.sdk._exceptions import NotFound

if TYPE_CHECKING:
    from shipyard.sdk._client import Session

_MEDIA = {".csv": "text/csv", ".parquet": "application/vnd.apache.parquet"}


class Datasets:
    """The datasets of one project; get it with ``session.datasets("team/project")``.

    Each upload makes the next immutable version, stored (encrypted) in the artifact store
    with its SHA-256 ``digest``, ``schema``, ``row_count`` and a per-column ``profile``.

    Example::

        datasets = shipyard.Session().datasets("ml/churn")
        v = datasets.upload("marketing", "marketing.csv")
        print(v["version"], v["row_count"], [c["name"] for c in v["schema"]])
    """

    def __init__(self, session: Session, project: str) -> None:
        self._session = session
        self.team, self.project = split_project(project)
        self._base = f"/api/v1/projects/{quote(self.team)}/{quote(self.project)}/datasets"

    def _request(self, method: str, path: str = "", **kwargs: Any) -> Any:
        return self._session.request(method, f"{self._base}{path}", **kwargs)

    @staticmethod
    def _name(name: str) -> str:
        return "/" + quote(name, safe="")

    def create(self, name: str, *, description: str = "") -> dict[str, Any]:
        """Create an empty dataset; ``Conflict`` if the name is taken (uploads create it too).

        Example::

            datasets.create("marketing", description="campaign responses, one row a customer")
        """
        body = {"name": name, "description": description}
        result: dict[str, Any] = self._request("POST", json=body)
        return result

    def upload(
        self,
        name: str,
        path: str | os.PathLike[str],
        *,
        description: str = "",
        format: str | None = None,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Upload a CSV or Parquet file as the next version of ``name``, streamed from disk.

        The format is taken from ``format``, else from the file's magic bytes or suffix. The
        dataset is created if it does not exist. A file that does not parse records nothing
        (``ValidationFailed``).

        Example::

            v = datasets.upload("marketing", "marketing.parquet", description="cleaned")
            v["profile"]["columns"][0]["mean"]
        """
        file = Path(path)
        total = file.stat().st_size
        params = {"filename": file.name, "description": description}
        if format is not None:
            params["format"] = format
        headers = {
            "Content-Type": _MEDIA.get(file.suffix.lower(), "application/octet-stream"),
            "Content-Length": str(total),
        }
        with file.open("rb") as handle:
            body = _file_chunks(handle, total, progress)
            result: dict[str, Any] = self._request(
                "PUT", f"{self._name(name)}/versions", params=params, content=body, headers=headers
            )
        return result

    def register(
        self,
        name: str,
        artifact_path: str,
        *,
        version: int | None = None,
        format: str | None = None,
        description: str = "",
    ) -> dict[str, Any]:
        """Make the next version of ``name`` from a file already in the artifact store.

        ``version`` picks the artifact's version (default: its latest).

        Example::

            datasets.register("marketing", "data/marketing.csv", version=1)
        """
        body: dict[str, Any] = {"artifact_path": artifact_path, "description": description}
        if version is not None:
            body["artifact_version"] = version
        if format is not None:
            body["format"] = format
        result: dict[str, Any] = self._request("POST", f"{self._name(name)}/versions", json=body)
        return result

    def ls(self) -> list[dict[str, Any]]:
        """The project's datasets, each with its ``latest_version``."""
        result: list[dict[str, Any]] = self._request("GET")
        return result

    def get(self, name: str) -> dict[str, Any]:
        """One dataset with its ``latest_version`` (None before the first upload)."""
        result: dict[str, Any] = self._request("GET", self._name(name))
        return result

    def versions(self, name: str) -> list[dict[str, Any]]:
        """Every version of ``name``, oldest first, with schema and profile."""
        result: list[dict[str, Any]] = self._request("GET", f"{self._name(name)}/versions")
        return result

    def show(self, name: str, version: int | None = None) -> dict[str, Any]:
        """One version (the latest by default) with its digest, schema and profile.

        Example::

            v = datasets.show("marketing")
            {c["name"]: c["type"] for c in v["schema"]}
        """
        if version is None:
            version = self.get(name).get("latest_version")
            if version is None:
                raise NotFound(404, "not_found", f"dataset {name!r} has no version yet")
        result: dict[str, Any] = self._request("GET", f"{self._name(name)}/versions/{version}")
        return result

    def runs(self, name: str, version: int) -> list[dict[str, Any]]:
        """Lineage: the runs that read this version (``run.log_input``), oldest first.

        Example::

            [r["id"] for r in datasets.runs("marketing", 2)]
        """
        usage = self._request("GET", f"{self._name(name)}/versions/{version}/runs")
        result: list[dict[str, Any]] = usage["runs"]
        return result
