"""Routes of jobs: submit, list, show, logs (followed live), stop, interrupt."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path as FilePath
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Path, Query, Request, status
from fastapi.responses import StreamingResponse

from shipyard.api.deps import PlatformDep, ProjectAccess, project_access
from shipyard.bootstrap import Platform
from shipyard.errors import NotFound, ShipyardError, ValidationFailed
from shipyard.jobs import schemas
from shipyard.jobs.execution import job_prefix, log_dir
from shipyard.jobs.models import Job
from shipyard.security.permissions import Permission

router = APIRouter(prefix="/api/v1/projects/{team}/{project}/jobs", tags=["jobs"])
Readable = Annotated[ProjectAccess, Depends(project_access(Permission.JOB_READ))]
Runnable = Annotated[ProjectAccess, Depends(project_access(Permission.JOB_RUN))]
JobName = Annotated[str, Path(max_length=63, description="the job's name")]
FOLLOW_POLL_S = 0.02  # a followed log is a stat and a read; lines show within ~10 ms
STATUS_POLL_S = 0.5


def _out(job: Job) -> schemas.JobOut:
    return schemas.JobOut.model_validate(job)


@router.post("", status_code=status.HTTP_201_CREATED)
async def submit_job(
    body: schemas.JobCreate, access: Runnable, platform: PlatformDep
) -> schemas.JobOut:
    """Submit a training or processing job; it starts as soon as a controller picks it up."""
    job = await platform.jobs.admit(
        platform.db, access.team, access.project, body, access.principal.username
    )
    platform.wake_jobs()
    return _out(job)


@router.get("")
def list_jobs(
    access: Readable,
    platform: PlatformDep,
    status_: Annotated[schemas.JobStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[schemas.JobOut]:
    """The project's jobs, newest first."""
    with platform.db.read() as s:
        rows = platform.jobs.listing(
            s, access.project.id, limit, status_.value if status_ else None
        )
        return [_out(row) for row in rows]


@router.get("/{name}")
def get_job(name: JobName, access: Readable, platform: PlatformDep) -> schemas.JobOut:
    """One job: spec, status, reason, phase timestamps, run and stored artifacts."""
    with platform.db.read() as s:
        return _out(platform.jobs.get(s, access.project.id, name))


@router.post("/{name}/stop", status_code=status.HTTP_202_ACCEPTED)
def stop_job(name: JobName, access: Runnable, platform: PlatformDep) -> schemas.JobOut:
    """Stop: SIGTERM to every instance, a grace period, then SIGKILL; ends Stopped."""
    with platform.db.transaction() as s:
        job = _out(platform.jobs.request(s, access.project.id, name, "stop"))
    platform.wake_jobs()
    return job


@router.post("/{name}/interrupt", status_code=status.HTTP_202_ACCEPTED)
def interrupt_job(name: JobName, access: Runnable, platform: PlatformDep) -> schemas.JobOut:
    """Kill the instances like a spot reclaim; the job resumes from its last checkpoint."""
    with platform.db.transaction() as s:
        job = _out(platform.jobs.request(s, access.project.id, name, "interrupt"))
    platform.wake_jobs()
    return job


@router.get("/{name}/logs", response_class=StreamingResponse)
async def job_logs(
    name: JobName,
    request: Request,
    access: Readable,
    platform: PlatformDep,
    follow: Annotated[bool, Query(description="keep streaming until the job ends")] = False,
    instance: Annotated[str | None, Query(max_length=16, description="e.g. algo-2")] = None,
) -> StreamingResponse:
    """The instances' stdout and stderr as text, each line prefixed with its instance when
    the job has several. With ``follow=true`` the stream stays open until the job ends."""

    def find() -> Job:
        with platform.db.read() as s:
            return platform.jobs.get(s, access.project.id, name)

    job = await anyio.to_thread.run_sync(find)
    hosts = [f"algo-{i + 1}" for i in range(int(job.spec.get("instance_count", 1)))]
    if instance is not None:
        if instance not in hosts:
            raise ValidationFailed(
                f"instance {instance!r} is not one of {', '.join(hosts)}", field="instance"
            )
        hosts = [instance]
    prefixed = len(hosts) > 1
    directory = log_dir(platform.settings, job.id)
    ended = schemas.JobStatus(job.status).terminal
    if not directory.exists() and (ended or not follow):
        body = await _stored_logs(platform, job, hosts, prefixed)
        return StreamingResponse(iter([body]), media_type="text/plain; charset=utf-8")
    return StreamingResponse(
        _stream(platform, job, directory, hosts, prefixed, follow, request),
        media_type="text/plain; charset=utf-8",
    )


async def _stored_logs(platform: Platform, job: Job, hosts: list[str], prefixed: bool) -> bytes:
    """Logs kept in the store, for a job that ran on another machine or long ago."""
    parts: list[bytes] = []
    for host in hosts:
        path = f"{job_prefix(job.name)}/logs/{host}.log"
        try:
            with platform.db.read() as s:
                row = platform.artifacts.find(s, job.project_id, path, None)
                download = await platform.artifacts.open_download(s, row)
            data = b"".join([piece async for piece in download])
        except NotFound:
            continue
        parts.append(_prefix_lines(data, host) if prefixed else data)
    return b"".join(parts)


def _prefix_lines(data: bytes, host: str) -> bytes:
    tag = f"[{host}] ".encode()
    return b"".join(tag + line + b"\n" for line in data.splitlines())


async def _stream(
    platform: Platform,
    job: Job,
    directory: FilePath,
    hosts: list[str],
    prefixed: bool,
    follow: bool,
    request: Request,
) -> AsyncIterator[bytes]:
    offsets = dict.fromkeys(hosts, 0)
    partial = dict.fromkeys(hosts, b"")
    finished = not follow
    last_status_check = 0.0
    while True:
        sent = False
        for host in hosts:
            chunk = _read_from(directory / f"{host}.log", offsets[host])
            if not chunk:
                continue
            offsets[host] += len(chunk)
            *lines, partial[host] = (partial[host] + chunk).split(b"\n")
            if lines:
                sent = True
                data = b"\n".join(lines) + b"\n"
                yield _prefix_lines(data, host) if prefixed else data
        if finished:
            rest = [(h, p) for h, p in partial.items() if p]
            for host, tail in rest:
                yield _prefix_lines(tail, host) if prefixed else tail + b"\n"
            if not directory.exists():  # it ran on another machine: what it stored
                yield await _stored_logs(platform, job, hosts, prefixed)
            return
        if sent:
            continue
        if await request.is_disconnected():
            return
        now = anyio.current_time()
        if now - last_status_check >= STATUS_POLL_S:
            last_status_check = now
            finished = await anyio.to_thread.run_sync(_ended, platform, job.id)
            if finished:
                continue  # one last read: lines written just before the end
        await anyio.sleep(FOLLOW_POLL_S)


def _read_from(path: FilePath, offset: int, limit: int = 1 << 20) -> bytes:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read(limit)
    except FileNotFoundError:
        return b""


def _ended(platform: Platform, job_id: str) -> bool:
    with platform.db.read() as s:
        try:
            job = platform.jobs.by_id(s, job_id)
        except ShipyardError:
            return True
        return schemas.JobStatus(job.status).terminal
