"""All SQL of jobs."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from shipyard.jobs.models import Job


class JobRepository:
    def by_name(self, s: Session, project_id: str, name: str) -> Job | None:
        return s.scalar(select(Job).where(Job.project_id == project_id, Job.name == name))

    def in_project(self, s: Session, project_id: str, limit: int) -> Sequence[Job]:
        query = (
            select(Job)
            .where(Job.project_id == project_id)
            .order_by(Job.created_at.desc(), Job.name)
            .limit(limit)
        )
        return s.scalars(query).all()

    def add(self, s: Session, job: Job) -> Job:
        s.add(job)
        s.flush()
        return job


job_repository = JobRepository()
