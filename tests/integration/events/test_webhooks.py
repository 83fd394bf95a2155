"""Webhook deliveries to a real receiver: signed job events, retries with backoff, giving up,
redirects refused, timeouts, the event-type filter, secrets shown once."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

from tests.conftest import make_tenant
from tests.integration.events.helpers import (
    base,
    create_hook,
    deliveries,
    ping,
    wait_delivery,
)
from tests.support.jobs import submit, wait_for
from tests.support.receiver import Received, Receiver
from tests.support.servers import RunningServer
from tests.unit.events.test_signing import documented_verifier

MAX_ATTEMPTS = 6  # the server's default


def check_signed(request: Received, secret: str) -> None:
    """What a receiver does, with the function docs/events.md gives it."""
    verify = documented_verifier()
    assert verify(
        secret,
        request.header("X-Shipyard-Timestamp"),
        request.body,
        request.header("X-Shipyard-Signature"),
    )
    assert not verify(
        "not-the-secret",
        request.header("X-Shipyard-Timestamp"),
        request.body,
        request.header("X-Shipyard-Signature"),
    )


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_job_events_arrive_signed_and_shaped(
    hook_server: RunningServer, receiver: Receiver
) -> None:
    tenant = make_tenant(hook_server, ("lead", "scientist"))
    with (
        hook_server.client(tenant.keys["lead"]) as lead,
        hook_server.client(tenant.keys["scientist"]) as scientist,
    ):
        hook = create_hook(lead, tenant, receiver.url, ["job.*"])
        assert hook["event_types"] == ["job.*"] and hook["active"] is True
        secret = hook["secret"]
        submit(scientist, tenant, name="evented", entry_point="this")
        assert wait_for(scientist, tenant, "evented")["status"] == "Completed"
        seen = receiver.wait_for(lambda rs: len(rs) >= 2)
        assert [r.header("X-Shipyard-Event") for r in seen] == ["job.submitted", "job.completed"]
        listed = {d["id"]: d for d in deliveries(lead, tenant, hook["id"])}
    for request in seen:
        check_signed(request, secret)
        assert request.path == "/hook"
        assert request.header("Content-Type") == "application/json"
        body = request.json
        assert set(body) == {
            "id",
            "type",
            "subject",
            "project",
            "actor",
            "created_at",
            "data",
            "text",
        }
        assert body["text"] == f"[{body['project']}] {body['type']}: job:evented"  # Slack's field
        assert body["type"] == request.header("X-Shipyard-Event")
        assert body["subject"] == "job:evented"
        assert body["project"] == f"{tenant.team}/{tenant.project}"
        assert body["created_at"].endswith("Z")
        delivery = listed[request.header("X-Shipyard-Delivery")]
        assert delivery["event_id"] == body["id"] and delivery["event_type"] == body["type"]
    submitted, completed = (r.json for r in seen)
    assert submitted["actor"] == tenant.users["scientist"]
    assert submitted["data"]["name"] == "evented" and submitted["data"]["status"] == "Pending"
    assert completed["actor"] == "system"
    data = completed["data"]
    assert data["status"] == "Completed" and data["reason"] == "" and data["run_id"]
    assert data["model_artifact"] == "jobs/evented/model.tar.gz@1"


def test_a_failing_receiver_is_retried_until_delivered(
    hook_server: RunningServer, receiver: Receiver
) -> None:
    tenant = make_tenant(hook_server, ("lead",))
    receiver.fail_next = 2
    with hook_server.client(tenant.keys["lead"]) as lead:
        hook = create_hook(lead, tenant, receiver.url)
        sent = ping(lead, tenant, hook["id"])
        done = wait_delivery(lead, tenant, hook["id"], sent["delivery_id"])
    assert done["state"] == "Delivered", done
    assert done["attempts"] == 3 and done["last_status_code"] == 200
    history = done["history"]
    assert [a["number"] for a in history] == [1, 2, 3]
    assert [a["status_code"] for a in history] == [500, 500, 200]
    assert [a["error"] for a in history] == ["HTTP 500", "HTTP 500", ""]
    assert history[2]["next_attempt_at"] is None and done["next_attempt_at"] is None
    # each retry waited for its backoff: 0.2 s doubling, with jitter between half and all
    for number, (failed, retry) in enumerate(itertools.pairwise(history), start=1):
        due = at(failed["next_attempt_at"])
        assert at(retry["started_at"]) >= due
        assert (due - at(failed["started_at"])).total_seconds() >= 0.2 * 2 ** (number - 1) / 2
    # one delivery: the same id on every attempt, each attempt signed afresh
    assert len(receiver.requests) == 3
    assert {r.header("X-Shipyard-Delivery") for r in receiver.requests} == {done["id"]}
    assert len({r.body for r in receiver.requests}) == 1
    for request in receiver.requests:
        check_signed(request, hook["secret"])


def test_a_receiver_that_always_fails_ends_failed_after_max_attempts(
    hook_server: RunningServer, receiver: Receiver
) -> None:
    tenant = make_tenant(hook_server, ("lead",))
    receiver.always_status = 503
    with hook_server.client(tenant.keys["lead"]) as lead:
        hook = create_hook(lead, tenant, receiver.url)
        sent = ping(lead, tenant, hook["id"])
        done = wait_delivery(lead, tenant, hook["id"], sent["delivery_id"], timeout=60)
    assert done["state"] == "Failed", done
    assert done["attempts"] == MAX_ATTEMPTS == len(done["history"]) == len(receiver.requests)
    assert done["last_status_code"] == 503
    assert f"gave up after {MAX_ATTEMPTS} attempts" in done["last_error"]
    assert all(a["next_attempt_at"] for a in done["history"][:-1])
    assert done["history"][-1]["next_attempt_at"] is None and done["finished_at"]


def test_a_redirect_is_refused_not_followed_and_not_retried(
    hook_server: RunningServer, receiver: Receiver
) -> None:
    tenant = make_tenant(hook_server, ("lead",))
    with Receiver() as elsewhere, hook_server.client(tenant.keys["lead"]) as lead:
        receiver.redirect_to = elsewhere.url
        hook = create_hook(lead, tenant, receiver.url)
        sent = ping(lead, tenant, hook["id"])
        done = wait_delivery(lead, tenant, hook["id"], sent["delivery_id"])
        assert done["state"] == "Failed" and done["attempts"] == 1, done
        assert done["last_status_code"] == 301
        assert "redirect refused" in done["last_error"]
        assert elsewhere.requests == [] and len(receiver.requests) == 1


def test_a_hanging_receiver_times_out_and_is_retried(
    hook_server: RunningServer, receiver: Receiver
) -> None:
    tenant = make_tenant(hook_server, ("lead",))
    receiver.hang_next, receiver.hang_s = 1, 4.0  # the test servers time out after 2 s
    with hook_server.client(tenant.keys["lead"]) as lead:
        hook = create_hook(lead, tenant, receiver.url)
        sent = ping(lead, tenant, hook["id"])
        done = wait_delivery(lead, tenant, hook["id"], sent["delivery_id"])
    assert done["state"] == "Delivered" and done["attempts"] == 2, done
    first = done["history"][0]
    assert "Timeout" in first["error"] and first["status_code"] is None
    assert 1500 <= first["duration_ms"] < 4000


def test_the_filter_keeps_other_events_out(hook_server: RunningServer) -> None:
    tenant = make_tenant(hook_server, ("lead", "scientist"))
    with (
        Receiver() as models_only,
        Receiver() as jobs_only,
        Receiver() as everything,
        hook_server.client(tenant.keys["lead"]) as lead,
        hook_server.client(tenant.keys["scientist"]) as scientist,
    ):
        models = create_hook(lead, tenant, models_only.url, ["model.*"])
        jobs = create_hook(lead, tenant, jobs_only.url, ["job.submitted"])
        create_hook(lead, tenant, everything.url)
        submit(scientist, tenant, name="filtered", entry_point="this")
        # deliveries are stored with the event, in the submit's own transaction
        assert deliveries(lead, tenant, models["id"]) == []
        (job_delivery,) = deliveries(lead, tenant, jobs["id"])
        assert job_delivery["event_type"] == "job.submitted"
        wait_for(scientist, tenant, "filtered")
        everything.wait_for(lambda rs: len(rs) >= 2)
        jobs_only.wait_for(lambda rs: len(rs) >= 1)
        assert [r.header("X-Shipyard-Event") for r in jobs_only.requests] == ["job.submitted"]
        assert models_only.requests == []
        assert deliveries(lead, tenant, models["id"]) == []


def test_the_secret_is_shown_once_and_a_deleted_hook_stops(
    hook_server: RunningServer, receiver: Receiver
) -> None:
    tenant = make_tenant(hook_server, ("lead", "scientist", "viewer"))
    with hook_server.client(tenant.keys["lead"]) as lead:
        hook = create_hook(lead, tenant, receiver.url, ["job.*"])
        assert len(hook["secret"]) >= 40
        shown: list[dict[str, Any]] = [lead.get(f"{base(tenant)}/webhooks/{hook['id']}").json()]
        shown += lead.get(f"{base(tenant)}/webhooks").json()
        for body in shown:
            assert "secret" not in body and hook["secret"] not in str(body)
        assert lead.delete(f"{base(tenant)}/webhooks/{hook['id']}").status_code == 204
        assert lead.get(f"{base(tenant)}/webhooks/{hook['id']}").status_code == 404
        assert lead.get(f"{base(tenant)}/webhooks").json() == []
        assert lead.post(f"{base(tenant)}/webhooks/{hook['id']}/ping").status_code == 404
    for role in ("scientist", "viewer"):  # webhooks are the leads' (their URLs may hold tokens)
        with hook_server.client(tenant.keys[role]) as client:
            assert client.get(f"{base(tenant)}/webhooks").status_code == 403
            r = client.post(f"{base(tenant)}/webhooks", json={"url": receiver.url})
            assert r.status_code == 403
    assert receiver.requests == []


def test_secrets_survive_a_master_key_rotation(
    hook_server: RunningServer, receiver: Receiver
) -> None:
    tenant = make_tenant(hook_server, ("lead",))
    with hook_server.client(tenant.keys["lead"]) as lead, hook_server.admin() as admin:
        hook = create_hook(lead, tenant, receiver.url)
        assert admin.post("/api/v1/admin/master-key/rotate").status_code == 200
        sent = ping(lead, tenant, hook["id"])
        done = wait_delivery(lead, tenant, hook["id"], sent["delivery_id"])
    assert done["state"] == "Delivered", done
    check_signed(receiver.requests[0], hook["secret"])
