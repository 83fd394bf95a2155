"""Admitting a job: every check that can fail before anything runs, against a real database
and artifact store (in-process; the HTTP routes come with the controller)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from tests.support.jobs import pack

from shipyard.bootstrap import Platform, build_platform
from shipyard.config import Settings
from shipyard.errors import Conflict, PermissionDenied, ValidationFailed
from shipyard.jobs.schemas import JobCreate
from shipyard.security.models import Project, Team


@pytest.fixture
def platform(fresh_db_url: str, tmp_path: Path) -> Iterator[Platform]:
    built = build_platform(Settings(home=tmp_path / "home", db_url=fresh_db_url))
    yield built
    built.db.dispose()


@pytest.fixture
def place(platform: Platform) -> tuple[Team, Project]:
    with platform.db.transaction() as s:
        team = Team(name="ml", quotas={"max_instance_count": 4})
        s.add(team)
        s.flush()
        project = Project(team_id=team.id, name="churn")
        s.add(project)
        s.flush()
    return team, project


def _store(platform: Platform, project: Project, path: str, data: bytes) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield data

    async def put() -> None:
        await platform.artifacts.upload(
            platform.db, project.id, path, body(), content_type="application/gzip", actor="t"
        )

    anyio.run(put)


def _admit(platform: Platform, place: tuple[Team, Project], **spec: Any) -> Any:
    body = JobCreate.model_validate({"name": "train", "entry_point": "train.py", **spec})
    return anyio.run(platform.jobs.admit, platform.db, *place, body, "alice")


def test_a_good_spec_is_stored_pending(platform: Platform, place: tuple[Team, Project]) -> None:
    _store(platform, place[1], "src/job.tar.gz", pack({"train.py": b"print(1)"}))
    _store(platform, place[1], "data/train.csv", b"a\n1\n")
    job = _admit(platform, place, source="src/job.tar.gz", inputs={"train": "data/train.csv"})
    with platform.db.read() as s:
        stored = platform.jobs.get(s, place[1].id, "train")
    assert (stored.id, stored.status, stored.created_by) == (job.id, "Pending", "alice")
    assert "Pending" in stored.phase_times
    # pinned: a later upload to the same paths does not change what the job runs on
    assert stored.spec["inputs"] == {"train": "artifact:data/train.csv@1"}
    assert stored.spec["source_version"] == 1
    with pytest.raises(Conflict):
        _admit(platform, place, source="src/job.tar.gz")


@pytest.mark.parametrize(
    ("spec", "error", "field"),
    [
        ({"instance_type": "gpu.huge"}, ValidationFailed, "instance_type"),
        ({"instance_count": 5}, PermissionDenied, "instance_count"),
        ({"entry_point": "missing.py"}, ValidationFailed, "entry_point"),
        ({"entry_point": "pkg.train"}, ValidationFailed, "entry_point"),
        ({"requirements": "requirements.txt"}, ValidationFailed, "requirements"),
        ({"inputs": {"train": "data/none.csv"}}, ValidationFailed, "inputs.train"),
        ({"inputs": {"train": "dataset:nothing:1"}}, ValidationFailed, "inputs.train"),
        ({"source": "src/none.tar.gz"}, ValidationFailed, "source"),
        ({"source": "src/not-a-tar"}, ValidationFailed, "source"),
    ],
)
def test_a_bad_spec_is_refused_naming_the_field_and_nothing_is_stored(
    platform: Platform,
    place: tuple[Team, Project],
    spec: dict[str, Any],
    error: type[Exception],
    field: str,
) -> None:
    _store(platform, place[1], "src/job.tar.gz", pack({"train.py": b"", "pkg/other.py": b""}))
    _store(platform, place[1], "src/not-a-tar", b"just text")
    with pytest.raises(error) as caught:
        _admit(platform, place, **{"source": "src/job.tar.gz", **spec})
    assert getattr(caught.value, "field", None) == field
    with platform.db.read() as s:
        assert list(platform.jobs.listing(s, place[1].id)) == []


def test_the_quota_error_names_the_quota(platform: Platform, place: tuple[Team, Project]) -> None:
    _store(platform, place[1], "src/job.tar.gz", pack({"train.py": b""}))
    with pytest.raises(PermissionDenied) as caught:
        _admit(platform, place, source="src/job.tar.gz", instance_count=8)
    assert "max_instance_count=4" in caught.value.message
