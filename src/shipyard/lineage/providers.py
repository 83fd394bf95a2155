"""The built-in neighbour providers: dataset versions, jobs, runs and model versions.

The flow they describe, and the relation on each edge::

    dataset:NAME:V ──input──▶ job:NAME ──tracked as──▶ run:ID ──registered as──▶ model:G:V
    dataset:NAME:V ──input──▶ run:ID            (a run that no job ran)
    job:NAME ──produced──▶ model:G:V            (registered from a job that has no run)

A dataset version read by a job's run is the job's input (the job is what a person launched
with that data); read by a run that no job ran, it is the run's. Everything is read through
the owning domain's service.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy.orm import Session

from shipyard.errors import NotFound
from shipyard.jobs.service import JobService
from shipyard.lineage.service import Entity, LineageService, Link, Node
from shipyard.registry.service import RegistryService
from shipyard.tracking.datasets import DatasetService
from shipyard.tracking.service import TrackingService

INPUT, TRACKED_AS, REGISTERED_AS, PRODUCED = "input", "tracked as", "registered as", "produced"


def _dataset(name: str, version: int) -> Entity:
    return Entity("dataset", (name, str(version)))


def _model(group: str, version: int) -> Entity:
    return Entity("model", (group, str(version)))


class DatasetLinks:
    """``dataset:NAME:VERSION``: downstream, the jobs (or job-less runs) that read it."""

    kinds: Mapping[str, tuple[str, ...]] = {"dataset": ("name", "version")}

    def __init__(self, datasets: DatasetService, jobs: JobService) -> None:
        self.datasets, self.jobs = datasets, jobs

    def describe(self, s: Session, project_id: str, entity: Entity) -> Node:
        name, number = entity.key[0], int(entity.key[1])
        dataset, row = self.datasets.version(s, project_id, name, number)
        attributes = {
            "dataset": dataset.name,
            "version": row.version,
            "format": row.format,
            "digest": row.digest,
            "row_count": row.row_count,
            "size": row.size,
            "created_by": row.created_by,
            "created_at": row.created_at,
        }
        return Node(entity, f"{dataset.name} v{row.version}", attributes)

    def upstream(self, s: Session, project_id: str, node: Node) -> Iterable[Link]:
        return ()

    def downstream(self, s: Session, project_id: str, node: Node) -> Iterable[Link]:
        if node.kind != "dataset":
            return []
        _, run_ids = self.datasets.usage(s, project_id, node.entity.key[0], int(node.entity.key[1]))
        links = []
        for run_id in run_ids:
            job = self.jobs.by_run(s, project_id, run_id)
            reader = Entity("job", (job.name,)) if job else Entity("run", (run_id,))
            links.append(Link(reader, INPUT))
        return links


class JobLinks:
    """``job:NAME``: upstream, the dataset versions its run read; downstream, its run and
    the versions registered from it when they name no run."""

    kinds: Mapping[str, tuple[str, ...]] = {"job": ("name",)}

    def __init__(
        self, jobs: JobService, tracking: TrackingService, registry: RegistryService
    ) -> None:
        self.jobs, self.tracking, self.registry = jobs, tracking, registry

    def describe(self, s: Session, project_id: str, entity: Entity) -> Node:
        job = self.jobs.get(s, project_id, entity.key[0])
        attributes = {
            "kind": job.kind,
            "status": job.status,
            "run_id": job.run_id,
            "model_artifact": job.model_artifact,
            "created_by": job.created_by,
            "created_at": job.created_at,
        }
        return Node(entity, job.name, attributes, {"run_id": job.run_id})

    def upstream(self, s: Session, project_id: str, node: Node) -> Iterable[Link]:
        run_id = node.facts.get("run_id") if node.kind == "job" else None
        if not run_id:
            return []
        try:
            run = self.tracking.view(s, project_id, run_id)
        except NotFound:
            return []
        return [Link(_dataset(i.dataset, i.version), INPUT) for i in run.inputs]

    def downstream(self, s: Session, project_id: str, node: Node) -> Iterable[Link]:
        if node.kind != "job":
            return []
        name, run_id = node.entity.key[0], node.facts.get("run_id")
        links = [Link(Entity("run", (run_id,)), TRACKED_AS)] if run_id else []
        for group, version in self.registry.versions_from(s, project_id, job_names=[name]):
            if version.run_id is None:  # with a run, the version hangs off the run
                links.append(Link(_model(group, version.version), PRODUCED))
        return links


class RunLinks:
    """``run:RUN_ID``: upstream, the job that ran it or else the dataset versions it read;
    downstream, the versions registered from it."""

    kinds: Mapping[str, tuple[str, ...]] = {"run": ("run_id",)}

    def __init__(
        self, tracking: TrackingService, jobs: JobService, registry: RegistryService
    ) -> None:
        self.tracking, self.jobs, self.registry = tracking, jobs, registry

    def describe(self, s: Session, project_id: str, entity: Entity) -> Node:
        run = self.tracking.view(s, project_id, entity.key[0])
        job = self.jobs.by_run(s, project_id, run.id)
        attributes: dict[str, Any] = {
            "name": run.name,
            "experiment": run.experiment,
            "status": run.status.value,
            "user": run.user,
            "start_time": run.start_time,
            "end_time": run.end_time,
            "lifecycle_stage": run.lifecycle_stage,
            "job": job.name if job else None,
        }
        inputs = [(i.dataset, i.version) for i in run.inputs]
        return Node(entity, run.name or run.id, attributes, {"inputs": inputs})

    def upstream(self, s: Session, project_id: str, node: Node) -> Iterable[Link]:
        if node.kind != "run":
            return []
        job = node.attributes.get("job")
        if job:
            return [Link(Entity("job", (job,)), TRACKED_AS)]
        return [Link(_dataset(name, version), INPUT) for name, version in node.facts["inputs"]]

    def downstream(self, s: Session, project_id: str, node: Node) -> Iterable[Link]:
        if node.kind != "run":
            return []
        found = self.registry.versions_from(s, project_id, run_ids=[node.entity.key[0]])
        return [Link(_model(group, version.version), REGISTERED_AS) for group, version in found]


class ModelLinks:
    """``model:GROUP:VERSION``: upstream, the run it was registered from, else its job."""

    kinds: Mapping[str, tuple[str, ...]] = {"model": ("group", "version")}

    def __init__(self, registry: RegistryService) -> None:
        self.registry = registry

    def describe(self, s: Session, project_id: str, entity: Entity) -> Node:
        group, number = entity.key[0], int(entity.key[1])
        row = self.registry.version(s, project_id, group, number)
        attributes = {
            "group": group,
            "version": row.version,
            "status": row.status,
            "flavor": row.flavor,
            "scan": "dangerous" if row.scan.get("dangerous") else "clean",
            "manifest_digest": row.manifest_digest,
            "artifact": f"{row.artifact_path}@{row.artifact_version}",
            "run_id": row.run_id,
            "job_name": row.job_name,
            "registered_by": row.registered_by,
            "decided_by": row.decided_by,
            "created_at": row.created_at,
        }
        return Node(entity, f"{group} v{row.version}", attributes)

    def upstream(self, s: Session, project_id: str, node: Node) -> Iterable[Link]:
        if node.kind != "model":
            return []
        run_id, job = node.attributes.get("run_id"), node.attributes.get("job_name")
        if run_id:
            return [Link(Entity("run", (run_id,)), REGISTERED_AS)]
        if job:
            return [Link(Entity("job", (job,)), PRODUCED)]
        return []

    def downstream(self, s: Session, project_id: str, node: Node) -> Iterable[Link]:
        return ()  # endpoints serving a version: the hosting domain's provider adds them


def standard_lineage(
    *,
    registry: RegistryService,
    tracking: TrackingService,
    datasets: DatasetService,
    jobs: JobService,
) -> LineageService:
    """The lineage of datasets, jobs, runs and model versions; add more with ``add``."""
    return LineageService(
        [
            DatasetLinks(datasets, jobs),
            JobLinks(jobs, tracking, registry),
            RunLinks(tracking, jobs, registry),
            ModelLinks(registry),
        ]
    )
