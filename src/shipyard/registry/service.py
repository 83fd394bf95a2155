"""Registry logic: groups, registering versions (manifest, scan, number), decisions.

Registration reads the artifact once into a private temporary file, computes its manifest
and scans it there (the scanner reads pickle opcodes; nothing is ever unpickled in this
process), then takes the next number and stores the version in one transaction.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import anyio
from sqlalchemy.orm import Session

from shipyard.db.engine import Database
from shipyard.errors import (
    Conflict,
    NotFound,
    PermissionDenied,
    ShipyardError,
    ValidationFailed,
    VerificationFailed,
)
from shipyard.events.service import EventService
from shipyard.jobs.service import JobService
from shipyard.kit.ids import utcnow
from shipyard.registry import cards, schemas
from shipyard.registry.manifest import changed_files, manifest_digest, manifest_of
from shipyard.registry.models import ModelCard, ModelGroup, ModelVersion
from shipyard.registry.repository import registry_repository as repo
from shipyard.registry.scanning import ScanReport, scan_file
from shipyard.storage.models import ArtifactVersion
from shipyard.storage.service import ArtifactService
from shipyard.tracking.service import TrackingService

Status = schemas.VersionStatus
DASHBOARD_VERSIONS = 5  # the newest versions shown per group


class DeploymentSource(Protocol):
    """``{group: [{"endpoint", "environment", "version", "status"}, ...]}`` of a project."""

    def __call__(self, s: Session, project_id: str) -> dict[str, list[dict[str, Any]]]: ...


@dataclass
class Source:
    """Where a version's bytes and lineage come from."""

    artifact: ArtifactVersion
    run_id: str | None
    job_name: str | None
    datasets: list[dict[str, Any]]
    metrics: dict[str, float]


class RegistryService:
    def __init__(
        self,
        *,
        artifacts: ArtifactService,
        tracking: TrackingService,
        jobs: JobService,
        events: EventService,
    ) -> None:
        self.artifacts = artifacts
        self.tracking = tracking
        self.jobs = jobs
        self.events = events
        self._deployments: DeploymentSource | None = None

    def set_deployments(self, source: DeploymentSource) -> None:
        """Where the dashboard learns which endpoints serve which versions (the hosting
        domain plugs itself in here at start-up; the registry does not import it)."""
        self._deployments = source

    # --- groups ------------------------------------------------------------------------------

    def create_group(
        self, s: Session, project_id: str, body: schemas.ModelGroupCreate, actor: str
    ) -> ModelGroup:
        if repo.group(s, project_id, body.name) is not None:
            raise Conflict(f"model group {body.name!r} already exists", field="name")
        group = ModelGroup(
            project_id=project_id,
            name=body.name,
            description=body.description,
            tags=dict(body.tags),
            created_by=actor,
        )
        repo.add(s, group)
        return group

    def group(self, s: Session, project_id: str, name: str) -> ModelGroup:
        group = repo.group(s, project_id, name)
        if group is None:
            raise NotFound(f"model group {name!r} not found", field="group")
        return group

    def groups(self, s: Session, project_id: str) -> Sequence[ModelGroup]:
        return repo.groups(s, project_id)

    # --- versions ----------------------------------------------------------------------------

    async def register(
        self,
        db: Database,
        project_id: str,
        group_name: str,
        body: schemas.ModelVersionCreate,
        actor: str,
    ) -> ModelVersion:
        with db.read() as s:
            group = self.group(s, project_id, group_name)
            source = self._source(s, project_id, body)
        manifest, report = await self._inspect(db, source.artifact)
        status = Status.BLOCKED if report.dangerous else Status.PENDING
        with db.transaction() as s:
            number = repo.next_number(s, group.id)
            row = ModelVersion(
                group_id=group.id,
                project_id=project_id,
                version=number,
                status=status.value,
                artifact_path=source.artifact.path,
                artifact_version=source.artifact.version,
                manifest=manifest,
                manifest_digest=manifest_digest(manifest),
                flavor=body.flavor.value,
                signature=body.signature.model_dump() if body.signature else None,
                example=body.example,
                metrics=body.metrics if body.metrics is not None else source.metrics,
                description=body.description,
                job_name=source.job_name,
                run_id=source.run_id,
                dataset_versions=source.datasets,
                scan=_scan_record(report),
                registered_by=actor,
            )
            repo.add(s, row)
            content = cards.first_content(row)
            repo.add(s, ModelCard(version_id=row.id, revision=1, content=content, updated_by=actor))
            self._emit(s, group.name, row, "registered", actor)
            if status == Status.BLOCKED:
                self._emit(s, group.name, row, "blocked", actor)
            return row

    def _emit(self, s: Session, group: str, row: ModelVersion, change: str, actor: str) -> None:
        """The event goes in the same transaction as the change (emit last: on PostgreSQL
        it takes the project's event-order lock until commit)."""
        self.events.emit(
            s,
            project_id=row.project_id,
            type=f"model.version.{change}",
            subject=f"model:{group}:{row.version}",
            data={
                "group": group,
                "version": row.version,
                "status": row.status,
                "manifest_digest": row.manifest_digest,
                "flavor": row.flavor,
                "registered_by": row.registered_by,
                "decided_by": row.decided_by,
                "comment": row.decision_comment,
                "job_name": row.job_name,
                "run_id": row.run_id,
                "scan_dangerous": bool(row.scan.get("dangerous")),
            },
            actor=actor,
        )

    def _source(self, s: Session, project_id: str, body: schemas.ModelVersionCreate) -> Source:
        if body.job is not None:
            return self._from_job(s, project_id, body.job)
        assert body.artifact_path is not None  # the schema requires one source
        if body.run_id is not None:
            run = self.tracking.view(s, project_id, body.run_id)
            path = f"runs/{run.id}/artifacts/{body.artifact_path.lstrip('/')}"
            artifact = self._artifact(s, project_id, path, body.artifact_version)
            return Source(artifact, run.id, None, _datasets(run.inputs), _metrics(run.metrics))
        artifact = self._artifact(s, project_id, body.artifact_path, body.artifact_version)
        return Source(artifact, None, None, [], {})

    def _from_job(self, s: Session, project_id: str, name: str) -> Source:
        job = self.jobs.get(s, project_id, name)
        if job.status != "Completed" or not job.model_artifact:
            raise Conflict(
                f"job {name!r} is {job.status}; only a completed training job has a model",
                field="job",
            )
        path, version = job.model_artifact.rsplit("@", 1)
        artifact = self._artifact(s, project_id, path, int(version))
        datasets: list[dict[str, Any]] = []
        metrics: dict[str, float] = {}
        if job.run_id:
            run = self.tracking.view(s, project_id, job.run_id)
            datasets, metrics = _datasets(run.inputs), _metrics(run.metrics)
        return Source(artifact, job.run_id, name, datasets, metrics)

    def _artifact(
        self, s: Session, project_id: str, path: str, version: int | None
    ) -> ArtifactVersion:
        """The artifact in this project; anything else (another project's, a bad path) is
        the same 404, so registering cannot probe what other projects hold."""
        try:
            return self.artifacts.find(s, project_id, self.artifacts.clean_path(path), version)
        except ShipyardError as exc:
            raise NotFound(
                f"artifact {path!r} not found in this project", field="artifact_path"
            ) from exc

    async def _inspect(
        self, db: Database, row: ArtifactVersion
    ) -> tuple[dict[str, Any], ScanReport]:
        """Manifest and scan, from one private copy of the stored bytes."""
        name = row.path.rsplit("/", 1)[-1]
        with tempfile.TemporaryDirectory(prefix="shipyard-model-") as tmp:
            copy = Path(tmp) / "artifact"
            await self._download(db, row, copy)
            manifest = await anyio.to_thread.run_sync(manifest_of, copy, name)
            report = await anyio.to_thread.run_sync(scan_file, copy, name)
        return manifest, report

    async def _download(self, db: Database, row: ArtifactVersion, target: Path) -> None:
        with db.read() as s:
            download = await self.artifacts.open_download(s, row)
        with target.open("wb") as out:
            async for piece in download:
                out.write(piece)

    def version(self, s: Session, project_id: str, group_name: str, number: int) -> ModelVersion:
        group = self.group(s, project_id, group_name)
        row = repo.version(s, group.id, number)
        if row is None:
            raise NotFound(f"{group_name} has no version {number}", field="version")
        return row

    def versions(self, s: Session, project_id: str, group_name: str) -> Sequence[ModelVersion]:
        return repo.versions(s, self.group(s, project_id, group_name).id)

    def versions_from(
        self,
        s: Session,
        project_id: str,
        *,
        run_ids: Sequence[str] = (),
        job_names: Sequence[str] = (),
    ) -> list[tuple[str, ModelVersion]]:
        """(group name, version) of every version registered from these runs or jobs."""
        rows = repo.versions_from(s, project_id, run_ids=run_ids, job_names=job_names)
        names = repo.group_names(s, list({row.group_id for row in rows}))
        return [(names[row.group_id], row) for row in rows]

    # --- decisions ---------------------------------------------------------------------------

    def decide(
        self,
        s: Session,
        project_id: str,
        group_name: str,
        number: int,
        *,
        approve: bool,
        actor: str,
        comment: str,
    ) -> ModelVersion:
        """Approve or reject a pending version: four-eyes, never a Blocked one, one outcome."""
        row = self.version(s, project_id, group_name, number)
        if row.registered_by == actor:
            raise PermissionDenied(
                f"four-eyes rule: {actor!r} registered {group_name} v{number} and may not "
                "decide on it; another lead must",
                field="version",
                rule="four-eyes",
            )
        if not approve and not comment.strip():
            raise ValidationFailed("a rejection needs a comment saying why", field="comment")
        if row.status != Status.PENDING.value:
            raise Conflict(
                f"{group_name} v{number} is {row.status}; only a version pending manual "
                "approval can be decided",
                field="version",
            )
        target = Status.APPROVED if approve else Status.REJECTED
        won = repo.decide(
            s,
            row.id,
            status=target.value,
            actor=actor,
            comment=comment,
            at=utcnow(),
            expected_digest=row.manifest_digest,
            expected_row_version=row.row_version,
        )
        if not won:
            raise Conflict(
                f"{group_name} v{number} was decided or its card edited meanwhile; "
                "read it again before deciding",
                field="version",
            )
        s.refresh(row)
        self._emit(s, group_name, row, "approved" if approve else "rejected", actor)
        return row

    def delete(
        self,
        s: Session,
        project_id: str,
        group_name: str,
        number: int,
        *,
        actor: str,
        may_approve: bool,
    ) -> None:
        """Hide a version; its number stays taken (the counter never goes back). Removing
        an approved version is an approver's call, not a registrant's."""
        row = self.version(s, project_id, group_name, number)
        if row.status == Status.APPROVED.value and not may_approve:
            raise PermissionDenied(
                f"{group_name} v{number} is Approved; only a lead or admin may delete it",
                field="version",
            )
        if repo.mark_deleted(s, row.id):
            self._emit(s, group_name, row, "deleted", actor)

    # --- model cards -------------------------------------------------------------------------

    def card(
        self, s: Session, project_id: str, group_name: str, number: int, revision: int | None
    ) -> tuple[ModelVersion, ModelCard]:
        row = self.version(s, project_id, group_name, number)
        card = repo.card(s, row.id, revision)
        if card is None:
            raise NotFound(
                f"{group_name} v{number} has no card revision {revision}", field="revision"
            )
        return row, card

    def card_revisions(
        self, s: Session, project_id: str, group_name: str, number: int
    ) -> tuple[ModelVersion, Sequence[ModelCard]]:
        row = self.version(s, project_id, group_name, number)
        return row, repo.card_revisions(s, row.id)

    def edit_card(
        self,
        s: Session,
        project_id: str,
        group_name: str,
        number: int,
        update: schemas.ModelCardUpdate,
        actor: str,
    ) -> tuple[ModelVersion, ModelCard]:
        """Add a card revision while the version is pending; a decided card is frozen."""
        row, current = self.card(s, project_id, group_name, number, None)
        if cards.is_frozen(row):
            raise Conflict(
                f"the card of {group_name} v{number} is frozen: the version is {row.status}",
                field="version",
            )
        if update.base_revision is not None and update.base_revision != current.revision:
            raise Conflict(
                f"the card is at revision {current.revision}, not {update.base_revision}; "
                "read it again and re-apply the edit",
                field="base_revision",
            )
        if not repo.claim_pending_edit(s, row.id, row.row_version):
            raise Conflict(
                f"{group_name} v{number} was decided or edited meanwhile", field="version"
            )
        card = ModelCard(
            version_id=row.id,
            revision=current.revision + 1,
            content=cards.edited(current.content, update),
            updated_by=actor,
        )
        repo.add(s, card)
        s.refresh(row)
        return row, card

    # --- verification and the dashboard ------------------------------------------------------

    async def verify_version(
        self, db: Database, project_id: str, group_name: str, number: int
    ) -> schemas.VerificationOut:
        with db.read() as s:
            row = self.version(s, project_id, group_name, number)
        await self.verify(db, row)
        return schemas.VerificationOut(
            group=group_name,
            version=number,
            verified=True,
            manifest_digest=row.manifest_digest,
            files=len(row.manifest.get("files", {})),
        )

    def dashboard(self, s: Session, project_id: str) -> list[schemas.DashboardGroup]:
        """Every group with its newest versions, approval and scan state (three queries), and
        the endpoints serving its versions."""
        groups = repo.groups(s, project_id)
        ids = [g.id for g in groups]
        latest = repo.latest_versions(s, ids, DASHBOARD_VERSIONS)
        summary = repo.status_summary(s, ids)
        deployed = self._deployments(s, project_id) if self._deployments is not None else {}
        return [
            schemas.DashboardGroup(
                name=g.name,
                description=g.description,
                last_version=g.last_version,
                latest_approved=summary.get(g.id, {}).get("latest_approved"),
                pending=summary.get(g.id, {}).get("pending", 0),
                versions=[_dashboard_version(v) for v in latest[g.id]],
                deployments=deployed.get(g.name, []),
            )
            for g in groups
        ]

    async def verify(self, db: Database, row: ModelVersion) -> None:
        """Recompute the manifest from the stored bytes; raise naming what changed."""
        with db.read() as s:
            artifact = self.artifacts.find(
                s, row.project_id, row.artifact_path, row.artifact_version
            )
        try:
            manifest, _ = await self._inspect(db, artifact)
        except ShipyardError as exc:  # the store's own checksum or decryption refused it
            raise VerificationFailed(
                f"the stored bytes of {row.artifact_path}@{row.artifact_version} are not the "
                f"approved ones: {exc.message}",
                field="artifact",
            ) from exc
        _compare(row, manifest)

    def verify_copy(self, row: ModelVersion, path: Path) -> None:
        """Check a local copy of the version's artifact (one the caller downloaded, e.g. the
        hosting tier's model cache) against the approved manifest; raise naming what changed.
        Checking the very bytes that will be used leaves no gap between check and use."""
        _compare(row, manifest_of(path, row.artifact_path.rsplit("/", 1)[-1]))


def _compare(row: ModelVersion, manifest: dict[str, Any]) -> None:
    changed = changed_files(row.manifest, manifest)
    if changed or manifest_digest(manifest) != row.manifest_digest:
        raise VerificationFailed(
            f"{row.artifact_path}@{row.artifact_version} changed since it was registered: "
            f"digest differs for {', '.join(changed) or 'the artifact'}",
            field="artifact",
            files=changed,
        )


def _datasets(inputs: Sequence[Any]) -> list[dict[str, Any]]:
    return [
        {"dataset": i.dataset, "version": i.version, "context": i.context, "digest": i.digest}
        for i in inputs
    ]


def _metrics(latest: dict[str, Any]) -> dict[str, float]:
    return {key: float(m.value) for key, m in latest.items() if isinstance(m.value, int | float)}


def _dashboard_version(row: ModelVersion) -> schemas.DashboardVersion:
    findings = row.scan.get("findings", [])
    return schemas.DashboardVersion(
        version=row.version,
        status=schemas.VersionStatus(row.status),
        scan="dangerous" if row.scan.get("dangerous") else "clean",
        findings=len(findings),
        flavor=schemas.Flavor(row.flavor),
        registered_by=row.registered_by,
        decided_by=row.decided_by,
        created_at=row.created_at,
    )


def _scan_record(report: ScanReport) -> dict[str, Any]:
    return {
        "scanner": report.scanner,
        "scanned_files": report.scanned_files,
        "dangerous": report.dangerous,
        "findings": [asdict(finding) for finding in report.findings],
    }
