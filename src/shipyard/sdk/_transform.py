"""Batch transform: ``session.transformer("team/project")``, like SageMaker's ``Transformer``.

A transform runs a registry version over every record of a dataset version or an artifact
prefix and stores one ``<input file>.out`` per input file, one output line per record. It is
a job of the project (kind ``transform``), so its logs, ``stop`` and ``job.*`` events are the
job's; ``TransformJob`` wraps the transform view of it (model, options, output location).
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from shipyard.sdk._artifacts import Artifacts, split_project
from shipyard.sdk._exceptions import JobFailed
from shipyard.sdk._jobs import FAILED_STATUSES, TERMINAL_STATUSES, Jobs, default_job_name

if TYPE_CHECKING:
    from shipyard.sdk._client import Session

ModelRef = tuple[str, int] | str


def model_ref(model: ModelRef) -> dict[str, Any]:
    """``("churn", 3)`` or ``"churn:3"`` as the API's ``{"group", "version"}``."""
    if isinstance(model, str):
        group, sep, version = model.rpartition(":")
        if not sep or not group or not version.isdigit():
            raise ValueError(f"model {model!r} must be GROUP:VERSION, e.g. 'churn:3'")
        return {"group": group, "version": int(version)}
    group, number = model
    return {"group": group, "version": int(number)}


class TransformJob:
    """A transform job as last read from the server; ``refresh()`` reads it again.

    Attributes mirror the API: ``name``, ``status`` (the job's: Pending … Completed, Failed,
    Stopped), ``reason``, ``model`` (``{"group", "version"}``), ``input``, ``output_path``
    (the artifact prefix of the ``.out`` files), ``outputs`` (``"path@version"`` of each).

    Example::

        job = session.transformer("ml/churn").get("score-march")
        job.wait(timeout=600)
        job.download("predictions/")
    """

    def __init__(self, transformer: Transformer, data: Mapping[str, Any]) -> None:
        self._transformer = transformer
        self._update(data)

    def _update(self, data: Mapping[str, Any]) -> None:
        self.data: dict[str, Any] = dict(data)
        self.name: str = data["name"]
        self.status: str = data["status"]
        self.reason: str = data.get("reason") or ""
        self.model: dict[str, Any] = dict(data.get("model") or {})
        self.input: str = data["input"]
        self.output_path: str = data["output_path"]
        self.outputs: list[str] = list(data.get("outputs") or [])

    def __repr__(self) -> str:
        return f"<TransformJob {self.name} {self.status}>"

    @property
    def terminal(self) -> bool:
        """True once the job is Completed, Failed or Stopped."""
        return self.status in TERMINAL_STATUSES

    def as_dict(self) -> dict[str, Any]:
        """The transform exactly as the API returned it (JSON types)."""
        return dict(self.data)

    def refresh(self) -> TransformJob:
        self._update(self._transformer._get_data(self.name))
        return self

    def logs(self, *, follow: bool = False, instance: str | None = None) -> Iterator[str]:
        """The job's log lines, progress included (``transform: 120/300 records``)."""
        return self._transformer.jobs.logs(self.name, follow=follow, instance=instance)

    def stop(self) -> TransformJob:
        """Stop the job (SIGTERM, a grace period, SIGKILL); it ends Stopped."""
        self._transformer.jobs.stop(self.name)
        return self.refresh()

    def wait(
        self, timeout: float | None = None, *, poll: float = 1.0, logs: bool = False
    ) -> TransformJob:
        """Block until the job ends; ``JobFailed`` (with the job and its reason) if it ended
        Failed or Stopped, ``TimeoutError`` if it is still going after ``timeout`` seconds.
        With ``logs=True`` the log lines are printed as they arrive."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if logs:
            self._print_logs(deadline)
        while not self.refresh().terminal:
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"transform job {self.name!r} is still {self.status}")
            time.sleep(poll)
        if self.status in FAILED_STATUSES:
            raise JobFailed(self._transformer.jobs.get(self.name))
        return self

    def _print_logs(self, deadline: float | None) -> None:
        for line in self.logs(follow=True):
            print(line, flush=True)
            if deadline is not None and time.monotonic() >= deadline:
                return

    def download(self, dest: str | Path) -> builtins.list[Path]:
        """Every output file into ``dest`` (paths below ``output_path`` kept); the files."""
        store = Artifacts(self._transformer.session, self._transformer.project_ref)
        written = []
        for stored in self.outputs:
            path, _, version = stored.rpartition("@")
            relative = PurePosixPath(path).relative_to(self.output_path.rstrip("/"))
            target = Path(dest, *relative.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            store.get(path, version=int(version), dest=target)
            written.append(target)
        return written


class Transformer:
    """The batch transforms of one project; get it with ``session.transformer("team/p")``.

    Example::

        transformer = session.transformer("ml/churn")
        job = transformer.transform(
            "dataset:to-score:1", model=("churn", 1), skip_header=True, wait=True
        )
        print(job.outputs)     # ['transform/churn-1-20250301-…/output/to_score.csv.out@1']
    """

    def __init__(self, session: Session, project: str) -> None:
        self.session = session
        self.team, self.project = split_project(project)
        self.jobs = Jobs(session, project)
        self._base = f"/api/v1/projects/{quote(self.team)}/{quote(self.project)}/transform-jobs"

    @property
    def project_ref(self) -> str:
        return f"{self.team}/{self.project}"

    def _get_data(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.session.request("GET", f"{self._base}/{quote(name, safe='')}")
        return result

    def transform(
        self,
        data: str,
        *,
        model: ModelRef,
        name: str | None = None,
        content_type: str = "text/csv",
        accept: str | None = None,
        split_type: str = "Line",
        strategy: str = "MultiRecord",
        max_payload_records: int = 100,
        skip_header: bool = False,
        predict: str = "predict",
        output_path: str | None = None,
        instance_type: str = "cpu.small",
        instance_count: int = 1,
        environment: Mapping[str, str] | None = None,
        wait: bool = False,
        logs: bool = False,
        timeout: float | None = None,
    ) -> TransformJob:
        """Start a transform of ``data`` (``"dataset:NAME:VERSION"``, an artifact path or a
        prefix) with ``model`` (``("churn", 3)`` or ``"churn:3"``); with ``wait`` (or
        ``logs``), block until it ends, as ``TransformJob.wait``.

        A bad option is ``ValidationFailed`` naming it; an unknown model ``NotFound``; a
        Blocked or Rejected version, or one whose stored bytes changed, ``Conflict``.
        ``name`` defaults to ``<group>-<version>-<yyyymmdd-hhmmss-mmm>``.
        """
        ref = model_ref(model)
        body: dict[str, Any] = {
            "name": name or default_job_name(f"{ref['group']}-{ref['version']}"),
            "model": ref,
            "input": data,
            "content_type": content_type,
            "accept": accept,
            "split_type": split_type,
            "strategy": strategy,
            "max_payload_records": max_payload_records,
            "skip_header": skip_header,
            "predict": predict,
            "output_path": output_path,
            "instance_type": instance_type,
            "instance_count": instance_count,
            "environment": dict(environment or {}),
        }
        sent = {key: value for key, value in body.items() if value is not None}
        job = TransformJob(self, self.session.request("POST", self._base, json=sent))
        if wait or logs:
            job.wait(timeout, logs=logs)
        return job

    def get(self, name: str) -> TransformJob:
        """One transform job by name (``NotFound`` if there is none)."""
        return TransformJob(self, self._get_data(name))

    def list(self, status: str | None = None, *, limit: int = 100) -> builtins.list[TransformJob]:
        """The project's transform jobs, newest first; only those in ``status`` if given."""
        params: dict[str, Any] = {"limit": limit}
        if status is not None:
            params["status"] = status
        found = self.session.request("GET", self._base, params=params)
        return [TransformJob(self, item) for item in found]
