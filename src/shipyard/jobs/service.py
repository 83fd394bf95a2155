"""Job logic: admitting a spec (everything checkable before anything runs) and reading jobs.

Admission refuses, with the field named, what would only fail later: an unknown instance
type (422 listing the valid ones), more instances than the team's quota (403 naming it), an
entry point that is not in the uploaded source, and inputs that do not exist (422).
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable, Sequence
from pathlib import PurePosixPath

from sqlalchemy.orm import Session

from shipyard.db.engine import Database
from shipyard.errors import Conflict, NotFound, PermissionDenied, ShipyardError, ValidationFailed
from shipyard.events.service import EventService
from shipyard.jobs import schemas
from shipyard.jobs.catalog import Catalog
from shipyard.jobs.models import Job
from shipyard.jobs.repository import job_repository as repo
from shipyard.kit.ids import utcnow
from shipyard.security.models import Project, Team
from shipyard.storage.models import ArtifactVersion
from shipyard.storage.service import ArtifactService
from shipyard.tracking.datasets import DatasetService

QUOTA_INSTANCES = "max_instance_count"
POLICY_ISOLATION = "require_network_isolation"
MAX_SOURCE_BYTES = 512 * 1024 * 1024
MAX_CHANNEL_FILES = 10_000


def entry_point_files(entry_point: str) -> tuple[str, ...]:
    """The file(s) in the source that make an entry point runnable."""
    if entry_point.endswith(".py"):
        return (entry_point,)
    module = PurePosixPath(*entry_point.split("."))
    return (f"{module}.py", f"{module}/__main__.py")


def _basename(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def source_members(data: bytes) -> set[str]:
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            return {m.name.removeprefix("./") for m in tar.getmembers() if m.isfile()}
    except tarfile.TarError as exc:
        raise ValidationFailed(f"the source is not a tar archive: {exc}", field="source") from exc


class JobService:
    def __init__(
        self,
        *,
        catalog: Catalog,
        artifacts: ArtifactService,
        datasets: DatasetService,
        events: EventService,
        isolation_problem: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.catalog = catalog
        self.artifacts = artifacts
        self.datasets = datasets
        self.events = events
        self._isolation_problem = isolation_problem

    async def admit(
        self, db: Database, team: Team, project: Project, spec: schemas.JobCreate, actor: str
    ) -> Job:
        """Check the spec against configuration, quotas, the source and the inputs; store it
        as Pending. Nothing runs yet and nothing is stored if any check fails."""
        self.catalog.get(spec.instance_type)
        self._check_quota(team, spec)
        self._check_isolation(team, spec)
        source_version = await self._check_source(db, project.id, spec)
        with db.read() as s:
            inputs = self._check_inputs(s, project.id, spec)
        # Pinned: a retry, a resume or a job still queued runs what was checked here, even
        # if newer versions of its source or inputs are uploaded meanwhile.
        spec = spec.model_copy(update={"source_version": source_version, "inputs": inputs})
        with db.transaction() as s:
            if repo.by_name(s, project.id, spec.name) is not None:
                raise Conflict(f"job {spec.name!r} already exists", field="name")
            job = repo.add(s, self._new_job(team, project, spec, actor))
            self.events.emit(
                s,
                project_id=project.id,
                type="job.submitted",
                subject=f"job:{job.name}",
                data={
                    "name": job.name,
                    "kind": job.kind,
                    "status": job.status,
                    "instance_type": spec.instance_type,
                    "instance_count": spec.instance_count,
                },
                actor=actor,
            )
            return job

    @staticmethod
    def _new_job(team: Team, project: Project, spec: schemas.JobCreate, actor: str) -> Job:
        return Job(
            project_id=project.id,
            team_id=team.id,
            name=spec.name,
            kind=spec.kind.value,
            spec=spec.model_dump(mode="json"),
            status=schemas.JobStatus.PENDING.value,
            phase_times={schemas.JobStatus.PENDING.value: utcnow().isoformat()},
            created_by=actor,
        )

    @staticmethod
    def _check_quota(team: Team, spec: schemas.JobCreate) -> None:
        limit = (team.quotas or {}).get(QUOTA_INSTANCES)
        if limit is not None and spec.instance_count > int(limit):
            raise PermissionDenied(
                f"instance_count {spec.instance_count} is above team {team.name!r}'s quota "
                f"{QUOTA_INSTANCES}={limit}",
                field="instance_count",
                quota=QUOTA_INSTANCES,
                limit=int(limit),
            )

    def _check_isolation(self, team: Team, spec: schemas.JobCreate) -> None:
        """A team may require isolation; isolation that cannot be had here is refused now,
        never silently dropped."""
        if (team.policies or {}).get(POLICY_ISOLATION) and not spec.network_isolation:
            raise PermissionDenied(
                f"team {team.name!r}'s policy {POLICY_ISOLATION} requires network_isolation=true",
                field="network_isolation",
                policy=POLICY_ISOLATION,
            )
        if spec.network_isolation:
            problem = self._isolation_problem()
            if problem:
                raise ValidationFailed(
                    f"network isolation is not available here: {problem}",
                    field="network_isolation",
                )

    async def _check_source(
        self, db: Database, project_id: str, spec: schemas.JobCreate
    ) -> int | None:
        """The source's version, once its entry point (and requirements) are found in it."""
        if spec.source is None:
            if spec.entry_point.endswith(".py") or spec.requirements:
                raise ValidationFailed(
                    "a script entry point or a requirements file needs a source", field="source"
                )
            return None
        version, data = await self._read_source(db, project_id, spec.source, spec.source_version)
        members = source_members(data)
        if not any(name in members for name in entry_point_files(spec.entry_point)):
            raise ValidationFailed(
                f"entry point {spec.entry_point!r} is not in the source {spec.source!r}",
                field="entry_point",
            )
        if spec.requirements and spec.requirements not in members:
            raise ValidationFailed(
                f"{spec.requirements!r} is not in the source {spec.source!r}", field="requirements"
            )
        return version

    async def _read_source(
        self, db: Database, project_id: str, path: str, version: int | None
    ) -> tuple[int, bytes]:
        with db.read() as s:
            row = self._find(s, project_id, path, version, "source")
            if row.size > MAX_SOURCE_BYTES:
                raise ValidationFailed(
                    f"the source is larger than {MAX_SOURCE_BYTES} bytes", field="source"
                )
            download = await self.artifacts.open_download(s, row)
        return row.version, b"".join([piece async for piece in download])

    def _find(
        self, s: Session, project_id: str, path: str, version: int | None, field: str
    ) -> ArtifactVersion:
        """The artifact, or a 422 on the spec field that named it."""
        try:
            return self.artifacts.find(s, project_id, path, version)
        except NotFound as exc:
            raise ValidationFailed(exc.message, field=field) from exc

    def _check_inputs(self, s: Session, project_id: str, spec: schemas.JobCreate) -> dict[str, str]:
        """Every channel's files exist; the inputs with single artifacts pinned to a version
        (a prefix stays a prefix: it is read as it is when the job starts)."""
        pinned = dict(spec.inputs)
        for channel, source in spec.channels.items():
            files = self.channel_files(s, project_id, source, field=f"inputs.{channel}")
            row = files[0][0]
            if source.source == "artifact" and len(files) == 1 and row.path == source.name:
                pinned[channel] = f"artifact:{row.path}@{row.version}"
        return pinned

    def channel_files(
        self, s: Session, project_id: str, source: schemas.InputChannel, *, field: str
    ) -> list[tuple[ArtifactVersion, str]]:
        """The stored files a channel receives, each with its name inside the channel.

        A dataset version is its one file; an artifact path is that file, or — like an S3
        prefix on SageMaker — every file under it when no file has exactly that path.
        """
        if source.source == "dataset":
            try:
                _, version = self.datasets.version(s, project_id, source.name, source.version or 0)
            except ShipyardError as exc:
                raise ValidationFailed(exc.message, field=field) from exc
            row = self._find(s, project_id, version.artifact_path, version.artifact_version, field)
            return [(row, _basename(row.path))]
        try:
            row = self.artifacts.find(s, project_id, source.name, source.version)
            return [(row, _basename(row.path))]
        except NotFound as exc:
            prefix = source.name.rstrip("/") + "/"
            rows = (
                []
                if source.version
                else self.artifacts.list_latest(s, project_id, prefix, MAX_CHANNEL_FILES)
            )
            if not rows:
                raise ValidationFailed(
                    f"{exc.message}, and no artifact is stored under {prefix!r}", field=field
                ) from exc
            return [(r, r.path.removeprefix(prefix)) for r in rows]

    def by_id(self, s: Session, job_id: str) -> Job:
        job = repo.by_id(s, job_id)
        if job is None:
            raise NotFound(f"job {job_id!r} not found", field="name")
        return job

    def get(self, s: Session, project_id: str, name: str) -> Job:
        job = repo.by_name(s, project_id, name)
        if job is None:
            raise NotFound(f"job {name!r} not found", field="name")
        return job

    def by_run(self, s: Session, project_id: str, run_id: str) -> Job | None:
        """The job that ran as this tracking run, or None for a run started elsewhere."""
        return repo.by_run(s, project_id, run_id)

    def listing(
        self,
        s: Session,
        project_id: str,
        limit: int = 100,
        status: str | None = None,
        kind: str | None = None,
    ) -> Sequence[Job]:
        """Newest first; ``kind`` narrows to one kind (the transform API lists only its own)."""
        return repo.in_project(s, project_id, limit, status, kind)

    def request(self, s: Session, project_id: str, name: str, what: str) -> Job:
        """Ask the job's controller to stop it or interrupt it (409 if it cannot be)."""
        job = self.get(s, project_id, name)
        status = schemas.JobStatus(job.status)
        if status.terminal:
            raise Conflict(f"job {name!r} is {status.value}", field="name")
        if what == "interrupt" and status not in schemas.ACTIVE:
            raise Conflict(
                f"job {name!r} is {status.value}; only a job that holds instances "
                f"({', '.join(sorted(a.value for a in schemas.ACTIVE))}) can be interrupted",
                field="name",
            )
        if not repo.set_request(s, job.id, what):
            raise Conflict(f"job {name!r} changed meanwhile; look again", field="name")
        s.refresh(job)
        return job
