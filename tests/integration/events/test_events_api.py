"""The event log over the API: oldest first, ``after`` paging, the type filter, who reads it."""

from __future__ import annotations

from typing import Any

import httpx
from tests.conftest import Tenant, make_tenant
from tests.integration.events.helpers import base, create_hook, ping
from tests.integration.security.helpers import error_of
from tests.support.jobs import submit, wait_for
from tests.support.receiver import Receiver
from tests.support.servers import RunningServer


def events(client: httpx.Client, tenant: Tenant, **params: Any) -> list[dict[str, Any]]:
    r = client.get(f"{base(tenant)}/events", params=params)
    assert r.status_code == 200, r.text
    return list(r.json())


def test_events_page_with_after_and_filter_by_type(
    hook_server: RunningServer, receiver: Receiver
) -> None:
    tenant = make_tenant(hook_server, ("lead", "scientist", "viewer", "invoker"))
    with (
        hook_server.client(tenant.keys["lead"]) as lead,
        hook_server.client(tenant.keys["scientist"]) as scientist,
        hook_server.client(tenant.keys["viewer"]) as viewer,
    ):
        assert events(viewer, tenant) == []
        hook = create_hook(lead, tenant, receiver.url, ["nothing.at.all"])
        pinged = [ping(lead, tenant, hook["id"])["event_id"] for _ in range(3)]
        submit(scientist, tenant, name="listed-1", entry_point="this")
        assert wait_for(scientist, tenant, "listed-1")["status"] == "Completed"
        pinged += [ping(lead, tenant, hook["id"])["event_id"] for _ in range(2)]

        everything = events(viewer, tenant)
        types = [e["type"] for e in everything]
        assert (
            types
            == ["webhook.ping"] * 3 + ["job.submitted", "job.completed"] + ["webhook.ping"] * 2
        )
        pings = [e["id"] for e in everything if e["type"] == "webhook.ping"]
        assert pings == pinged  # oldest first, in the order they happened

        pages, after = [], None
        while True:
            params: dict[str, Any] = {"limit": 2} | ({"after": after} if after else {})
            page = events(viewer, tenant, **params)
            if not page:
                break
            pages.append(page)
            after = page[-1]["id"]
        walked = [e["id"] for page in pages for e in page]
        assert walked == [e["id"] for e in everything] and len(set(walked)) == len(walked)
        assert all(len(page) <= 2 for page in pages)

        assert [e["id"] for e in events(viewer, tenant, type="webhook.ping")] == pinged
        assert [e["id"] for e in events(viewer, tenant, type="webhook.*")] == pinged
        jobs = events(viewer, tenant, type="job.*")
        assert [e["type"] for e in jobs] == ["job.submitted", "job.completed"]
        assert events(viewer, tenant, type="job.completed") == jobs[1:]
        assert events(viewer, tenant, type="model.*") == []
        assert events(viewer, tenant, type="webhook.ping", after=pinged[2]) == [
            e for e in everything if e["id"] in pinged[3:]
        ]

        first = everything[0]
        assert first["project"] == f"{tenant.team}/{tenant.project}"
        assert first["actor"] == tenant.users["lead"]
        assert (
            first["subject"] == f"webhook:{hook['id']}" and first["data"]["webhook"] == hook["id"]
        )

        r = viewer.get(f"{base(tenant)}/events", params={"after": "0" * 32})
        assert r.status_code == 422 and error_of(r)["field"] == "after"
        r = viewer.get(f"{base(tenant)}/events", params={"type": "Not A Type"})
        assert r.status_code == 422 and error_of(r)["field"] == "type"
    with hook_server.client(tenant.keys["invoker"]) as invoker:
        assert invoker.get(f"{base(tenant)}/events").status_code == 403


def test_events_of_another_team_stay_hidden(hook_server: RunningServer) -> None:
    mine = make_tenant(hook_server, ("viewer",))
    theirs = make_tenant(hook_server, ("scientist",))
    with hook_server.client(theirs.keys["scientist"]) as scientist:
        submit(scientist, theirs, name="secret-job", entry_point="this")
    with hook_server.client(mine.keys["viewer"]) as viewer:
        assert viewer.get(f"{base(theirs)}/events").status_code == 404
        assert events(viewer, mine) == []
