"""A team's tag policy: projects must carry the required tag keys, with values."""

from __future__ import annotations

import pytest
from tests.conftest import unique
from tests.integration.security.helpers import error_of
from tests.support.servers import RunningServer

V1 = "/api/v1"
REQUIRED = ["Environment", "Owner", "CostCenter"]
ALL = {"Environment": "dev", "Owner": "ana", "CostCenter": "cc-42"}


@pytest.fixture(scope="module")
def tagged_team(server: RunningServer) -> str:
    name = unique("tagged-")
    with server.admin() as admin:
        r = admin.post(V1 + "/teams", json={"name": name, "required_tags": REQUIRED})
    assert r.status_code == 201
    assert r.json()["required_tags"] == REQUIRED
    return name


@pytest.mark.parametrize(
    ("tags", "missing"),
    [
        ({}, REQUIRED),
        ({"Environment": "dev"}, ["Owner", "CostCenter"]),
        ({"Owner": "ana", "CostCenter": "cc"}, ["Environment"]),
        ({**ALL, "CostCenter": ""}, ["CostCenter"]),  # an empty value is no value
        ({"environment": "dev", "owner": "ana", "costcenter": "x"}, REQUIRED),  # keys are exact
    ],
)
def test_a_project_without_required_tags_is_refused(
    server: RunningServer, tagged_team: str, tags: dict[str, str], missing: list[str]
) -> None:
    name = unique("p-")
    with server.admin() as admin:
        r = admin.post(f"{V1}/teams/{tagged_team}/projects", json={"name": name, "tags": tags})
        assert r.status_code == 422
        error = error_of(r)
        assert error["code"] == "validation_failed"
        assert error["details"]["missing"] == missing
        for key in REQUIRED:
            assert (key in error["message"]) == (key in missing)
        assert admin.get(f"{V1}/projects/{tagged_team}/{name}").status_code == 404


def test_a_project_with_every_required_tag_is_created(
    server: RunningServer, tagged_team: str
) -> None:
    with server.admin() as admin:
        r = admin.post(
            f"{V1}/teams/{tagged_team}/projects",
            json={"name": unique("p-"), "tags": {**ALL, "Extra": "fine"}},
        )
    assert r.status_code == 201, r.text
    assert r.json()["tags"] == {**ALL, "Extra": "fine"}
