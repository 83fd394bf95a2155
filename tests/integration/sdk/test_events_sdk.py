"""Events and webhooks through the SDK, against a real server and a real receiver.

One tenant, one receiver and one webhook per module; a receiver checks what it got with
``shipyard.verify_signature``, the function the SDK gives receivers written in Python.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from tests.conftest import Tenant, make_tenant
from tests.integration.events.helpers import RECEIVERS
from tests.support.receiver import Received, Receiver
from tests.support.servers import RunningServer

import shipyard


@dataclass
class Setup:
    tenant: Tenant
    project: str
    sessions: dict[str, shipyard.Session]
    receiver: Receiver
    hook: dict[str, Any]  # made by the lead, with its secret

    def events(self, role: str = "lead") -> shipyard.Events:
        return self.sessions[role].events(self.project)

    def delivered(self, delivery_id: str) -> Received:
        """The request that carried this delivery, once the receiver has it."""
        seen = self.receiver.wait_for(
            lambda rs: any(r.header("X-Shipyard-Delivery") == delivery_id for r in rs)
        )
        return next(r for r in seen if r.header("X-Shipyard-Delivery") == delivery_id)


@pytest.fixture(scope="module")
def setup(hook_server: RunningServer) -> Iterator[Setup]:
    tenant = make_tenant(hook_server, ("lead", "viewer"))
    project = f"{tenant.team}/{tenant.project}"
    sessions = {
        role: shipyard.Session(url=hook_server.url, api_key=key)
        for role, key in tenant.keys.items()
    }
    sessions["platform-admin"] = shipyard.Session(
        url=hook_server.url, api_key=hook_server.admin_key
    )
    try:
        with Receiver() as receiver:
            hook = (
                sessions["lead"]
                .events(project)
                .create_webhook(
                    receiver.url, event_types="nothing.yet", description="the SDK's receiver"
                )
            )
            yield Setup(tenant, project, sessions, receiver, hook)
    finally:
        for session in sessions.values():
            session.close()


def test_a_webhook_is_created_listed_and_shown_without_its_secret(setup: Setup) -> None:
    hook, events = setup.hook, setup.events()
    assert hook["secret"] and hook["url"] == setup.receiver.url
    assert hook["event_types"] == ["nothing.yet"]  # one pattern, not its characters
    assert hook["description"] == "the SDK's receiver" and hook["active"] is True
    assert hook["created_by"] == setup.tenant.users["lead"]
    without_secret = {k: v for k, v in hook.items() if k != "secret"}
    assert events.webhook(hook["id"]) == without_secret
    assert [h["id"] for h in events.webhooks()] == [hook["id"]]
    assert all("secret" not in h for h in events.webhooks())


def test_a_ping_arrives_signed_and_verify_signature_checks_it(setup: Setup) -> None:
    events, secret = setup.events(), setup.hook["secret"]
    sent = events.ping(setup.hook["id"])
    request = setup.delivered(sent["delivery_id"])
    timestamp = request.header("X-Shipyard-Timestamp")
    signature = request.header("X-Shipyard-Signature")
    assert request.header("X-Shipyard-Event") == "webhook.ping"
    assert request.json["id"] == sent["event_id"] and request.json["type"] == "webhook.ping"

    assert shipyard.verify_signature(secret, timestamp, request.body, signature)
    tampered = request.body.replace(b"webhook.ping", b"webhook.pong")
    assert tampered != request.body
    assert not shipyard.verify_signature(secret, timestamp, tampered, signature)
    assert not shipyard.verify_signature("not-the-secret", timestamp, request.body, signature)
    assert not shipyard.verify_signature(secret, str(int(timestamp) + 1), request.body, signature)
    # The same delivery replayed ten minutes later is refused, unless the receiver allows that.
    later = int(timestamp) + 600
    assert not shipyard.verify_signature(secret, timestamp, request.body, signature, now=later)
    assert shipyard.verify_signature(
        secret, timestamp, request.body, signature, now=later, tolerance_s=900
    )

    deadline = time.monotonic() + 30
    while (found := _delivery(events, setup.hook["id"], sent["delivery_id"]))["state"] == "Pending":
        assert time.monotonic() < deadline, found
        time.sleep(0.05)
    assert found["state"] == "Delivered" and found["last_status_code"] == 200
    assert found["event_type"] == "webhook.ping" and found["attempts"] == 1
    assert [a["status_code"] for a in found["history"]] == [200]


def _delivery(events: shipyard.Events, hook_id: str, delivery_id: str) -> dict[str, Any]:
    return next(d for d in events.deliveries(hook_id) if d["id"] == delivery_id)


def test_iterate_walks_every_page_with_after(setup: Setup) -> None:
    lead, viewer = setup.events(), setup.events("viewer")
    pinged = [lead.ping(setup.hook["id"])["event_id"] for _ in range(5)]
    everything = viewer.list(limit=1000)
    assert set(pinged) <= {e["id"] for e in everything}

    pages: list[int] = []  # how many events each GET …/events request returned

    def count(response: httpx.Response) -> None:
        if response.request.url.path.endswith("/events"):
            response.read()
            pages.append(len(response.json()))

    viewer_http = setup.sessions["viewer"].http
    viewer_http.event_hooks["response"].append(count)
    try:
        walked = [e["id"] for e in viewer.iterate(page_size=2)]
    finally:
        viewer_http.event_hooks["response"].remove(count)
    assert walked == [e["id"] for e in everything]  # oldest first, none skipped or repeated
    assert len(pages) == len(everything) // 2 + 1 and all(n <= 2 for n in pages)

    pings = [e["id"] for e in viewer.iterate(type="webhook.*", page_size=3)]
    assert pings == [e["id"] for e in everything if e["type"] == "webhook.ping"]
    assert pings[-5:] == pinged
    assert [e["id"] for e in viewer.iterate(after=pinged[1], page_size=2)] == pinged[2:]
    assert viewer.list(type="job.*") == []


def test_refusals_name_what_was_wrong(setup: Setup) -> None:
    lead, viewer = setup.events(), setup.events("viewer")
    with pytest.raises(shipyard.PermissionDenied):  # viewers read events, not webhooks
        viewer.create_webhook(setup.receiver.url)
    with pytest.raises(shipyard.PermissionDenied):
        viewer.webhooks()
    for url in ("http://169.254.169.254/latest/meta-data/", "http://127.0.0.1:9/hook"):
        with pytest.raises(shipyard.ValidationFailed) as refused:
            lead.create_webhook(url)
        assert refused.value.field == "url", refused.value
    with pytest.raises(shipyard.ValidationFailed) as bad_after:
        viewer.list(after="0" * 32)
    assert bad_after.value.field == "after"
    with pytest.raises(ValueError, match="page_size"):
        next(viewer.iterate(page_size=0))

    doomed = lead.create_webhook(setup.receiver.url)
    lead.delete_webhook(doomed["id"])
    with pytest.raises(shipyard.NotFound):
        lead.webhook(doomed["id"])
    with pytest.raises(shipyard.NotFound):
        lead.ping(doomed["id"])
    assert doomed["id"] not in [h["id"] for h in lead.webhooks()]


def test_the_allow_list_is_the_platform_admins(setup: Setup) -> None:
    admin = setup.sessions["platform-admin"]
    before = admin.webhook_allowlist()
    assert RECEIVERS in before
    try:
        stored = admin.set_webhook_allowlist([*before, "hooks.internal.example", "10.20.0.0/16"])
        assert set(stored) == {*before, "hooks.internal.example", "10.20.0.0/16"}
        assert admin.webhook_allowlist() == stored
        with pytest.raises(shipyard.ValidationFailed) as bad:
            admin.set_webhook_allowlist([*before, "*.example.com"])
        assert (bad.value.field or "").startswith("entries")
    finally:
        assert sorted(admin.set_webhook_allowlist(before)) == sorted(before)
    for role in ("lead", "viewer"):  # a team's lead is not a platform admin
        with pytest.raises(shipyard.PermissionDenied):
            setup.sessions[role].webhook_allowlist()
        with pytest.raises(shipyard.PermissionDenied):
            setup.sessions[role].set_webhook_allowlist([])
    assert admin.webhook_allowlist() == before
