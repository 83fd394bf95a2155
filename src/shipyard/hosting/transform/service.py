"""Batch-transform logic: check the model version, verify its bytes, submit the job.

A transform is a job (kind ``transform``, entry point ``shipyard.hosting.transform``) whose
``model`` channel is the version's artifact and whose ``data`` channel is the input; its
options travel as hyperparameters, so nothing new is stored and the job controller runs it
like any other. The rules are the dev environment's: any registry version that is not
Blocked or Rejected, its stored bytes re-hashed against the registered manifest first (a
changed file is a 409 naming it). The job re-checks the digest on the bytes it loads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from shipyard.db.engine import Database
from shipyard.errors import Conflict, NotFound, ValidationFailed
from shipyard.hosting.transform import records, schemas
from shipyard.jobs.execution import job_prefix
from shipyard.jobs.models import Job
from shipyard.jobs.schemas import JobCreate, JobKind
from shipyard.jobs.service import JobService
from shipyard.registry.models import ModelVersion
from shipyard.registry.schemas import VersionStatus
from shipyard.registry.service import RegistryService
from shipyard.security.models import Project, Team

ENTRY_POINT = "shipyard.hosting.transform"
NEVER_RUN = (VersionStatus.BLOCKED.value, VersionStatus.REJECTED.value)
# The job's channel fields, as the transform request names them.
FIELDS = {"inputs.data": "input", "inputs.model": "model"}


class TransformService:
    def __init__(self, *, registry: RegistryService, jobs: JobService) -> None:
        self.registry = registry
        self.jobs = jobs

    async def create(
        self,
        db: Database,
        team: Team,
        project: Project,
        body: schemas.TransformJobCreate,
        actor: str,
    ) -> Job:
        """Admit the transform's job (Pending); nothing is stored if any check fails."""
        with db.read() as s:
            version = self._runnable(s, project.id, body.model)
        await self.registry.verify(db, version)  # 409 naming every changed file
        spec = job_spec(body, version)
        try:
            return await self.jobs.admit(db, team, project, spec, actor)
        except ValidationFailed as exc:
            if exc.field not in FIELDS:
                raise
            raise ValidationFailed(exc.message, field=FIELDS[exc.field]) from exc

    def _runnable(self, s: Session, project_id: str, ref: schemas.ModelRef) -> ModelVersion:
        version = self.registry.version(s, project_id, ref.group, ref.version)  # 404 if unknown
        if version.status in NEVER_RUN:
            raise Conflict(
                f"{ref.group} v{ref.version} is {version.status}: it may not be used anywhere",
                field="model.version",
            )
        return version

    def get(self, s: Session, project_id: str, name: str) -> Job:
        """A transform job; a job of another kind is as unknown here as a missing one."""
        job = self.jobs.get(s, project_id, name)
        if job.kind != JobKind.TRANSFORM.value:
            raise NotFound(f"transform job {name!r} not found", field="name")
        return job

    def listing(self, s: Session, project_id: str, limit: int, status: str | None) -> Sequence[Job]:
        return self.jobs.listing(s, project_id, limit, status, kind=JobKind.TRANSFORM.value)


def job_spec(body: schemas.TransformJobCreate, version: ModelVersion) -> JobCreate:
    """The job that runs the transform: the version's artifact pinned, the options as
    hyperparameters (the runner's command-line flags)."""
    try:
        return JobCreate(
            name=body.name,
            kind=JobKind.TRANSFORM,
            entry_point=ENTRY_POINT,
            hyperparameters=_hyperparameters(body, version),
            inputs={
                "model": f"artifact:{version.artifact_path}@{version.artifact_version}",
                "data": body.input,
            },
            output_path=body.resolved_output_path,
            instance_type=body.instance_type,
            instance_count=body.instance_count,
            max_runtime_s=body.max_runtime_s,
            environment=dict(body.environment),
        )
    except ValidationError as exc:  # e.g. an artifact path the job grammar cannot carry
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ValidationFailed(f"{where}: {first['msg']}", field=FIELDS.get(where, where)) from exc


def _hyperparameters(
    body: schemas.TransformJobCreate, version: ModelVersion
) -> dict[str, str | int | bool]:
    return {
        "content_type": body.content_type,
        "accept": body.resolved_accept,
        "split_type": body.split_type.value,
        "strategy": body.strategy.value,
        "max_payload_records": body.max_payload_records,
        "skip_header": body.skip_header,
        "predict": body.predict,
        "flavor": version.flavor,
        "model_group": body.model.group,
        "model_version": version.version,
        "model_digest": version.manifest_digest,
    }


def view(job: Job) -> schemas.TransformJobOut:
    """The transform as its job stands: status from the job, options from its spec. Read
    leniently: a ``transform`` job submitted straight to the jobs API may lack options."""
    spec: dict[str, Any] = job.spec
    hps: dict[str, Any] = spec.get("hyperparameters") or {}
    return schemas.TransformJobOut(
        name=job.name,
        status=job.status,
        reason=job.reason,
        model=_model_of(hps),
        input=(spec.get("inputs") or {}).get("data", ""),
        content_type=hps.get("content_type", records.CSV),
        accept=hps.get("accept", records.CSV),
        split_type=hps.get("split_type", records.LINE),
        strategy=hps.get("strategy", records.MULTI),
        max_payload_records=hps.get("max_payload_records", records.DEFAULT_PAYLOAD_RECORDS),
        skip_header=hps.get("skip_header", False),
        predict=hps.get("predict", "predict"),
        instance_type=spec["instance_type"],
        instance_count=spec["instance_count"],
        output_path=f"{spec.get('output_path') or job_prefix(job.name)}/output/",
        outputs=list((job.output_artifacts or {}).get("output", [])),
        run_id=job.run_id,
        created_by=job.created_by,
        created_at=job.created_at,
        phase_times=job.phase_times or {},
    )


def _model_of(hps: dict[str, Any]) -> schemas.ModelRef | None:
    try:
        return schemas.ModelRef(group=hps["model_group"], version=hps["model_version"])
    except (KeyError, ValidationError):
        return None
