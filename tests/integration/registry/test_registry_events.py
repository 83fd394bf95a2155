"""Every registry transition leaves an audit entry and a delivered, signed webhook.

A lead subscribes a receiver to ``model.version.*``; a scientist registers a clean and a
malicious version, a lead approves one, rejects another, and deletes a third. The receiver
must get each event exactly as signed, and the audit trail must hold each call.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import pickle
from pathlib import Path
from typing import Any

import httpx
from tests.conftest import make_tenant
from tests.integration.events.helpers import RECEIVERS, allow, create_hook
from tests.support.jobs import base, pack, upload
from tests.support.receiver import Received, Receiver
from tests.support.servers import RunningServer


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _signed_by(received: Received, secret: str) -> bool:
    """What a receiver does (docs/events.md): HMAC-SHA256 over "<timestamp>.<body>"."""
    timestamp = received.header("X-Shipyard-Timestamp")
    expected = hmac.new(
        secret.encode(), f"{timestamp}.".encode() + received.body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(received.header("X-Shipyard-Signature"), f"sha256={expected}")


def _audited(admin: httpx.Client, request_ids: list[str]) -> dict[str, dict[str, Any]]:
    entries = admin.get("/api/v1/audit", params={"n": 2000}).json()
    return {e["request_id"]: e for e in entries if e["request_id"] in request_ids}


def test_every_transition_is_audited_and_delivered(server: RunningServer, tmp_path: Path) -> None:
    tenant = make_tenant(server, ("scientist", "lead"))
    marker = tmp_path / "never"
    with server.admin() as admin:
        allow(admin, RECEIVERS)
    with (
        Receiver() as receiver,
        server.client(tenant.keys["scientist"]) as scientist,
        server.client(tenant.keys["lead"]) as lead,
        server.admin() as admin,
    ):
        hook = create_hook(lead, tenant, receiver.url, ["model.version.*"])
        upload(scientist, tenant, "models/good.tar.gz", pack({"model.pkl": pickle.dumps([1])}))
        evil = pack({"model.pkl": pickle.dumps(_Payload(marker))})
        upload(scientist, tenant, "models/evil.tar.gz", evil)
        assert scientist.post(f"{base(tenant)}/models", json={"name": "evented"}).is_success
        versions = f"{base(tenant)}/models/evented/versions"

        calls = [scientist.post(versions, json={"artifact_path": "models/good.tar.gz"})]
        calls.append(scientist.post(versions, json={"artifact_path": "models/good.tar.gz"}))
        calls.append(scientist.post(versions, json={"artifact_path": "models/good.tar.gz"}))
        calls.append(scientist.post(versions, json={"artifact_path": "models/evil.tar.gz"}))
        assert [c.json()["status"] for c in calls] == ["PendingManualApproval"] * 3 + ["Blocked"]
        calls.append(lead.post(f"{versions}/1/approve", json={"comment": "good"}))
        calls.append(lead.post(f"{versions}/2/reject", json={"comment": "worse than v1"}))
        calls.append(lead.delete(f"{versions}/3"))
        assert all(c.is_success for c in calls), [c.text for c in calls]

        expected = [
            ("model.version.registered", 1),
            ("model.version.registered", 2),
            ("model.version.registered", 3),
            ("model.version.registered", 4),
            ("model.version.blocked", 4),
            ("model.version.approved", 1),
            ("model.version.rejected", 2),
            ("model.version.deleted", 3),
        ]
        seen = receiver.wait_for(lambda got: len(got) >= len(expected))
        got = sorted((r.json["type"], r.json["data"]["version"]) for r in seen)
        assert got == sorted(expected)
        assert all(_signed_by(r, hook["secret"]) for r in seen)
        approved = next(r.json for r in seen if r.json["type"] == "model.version.approved")
        assert approved["subject"] == "model:evented:1"
        assert approved["actor"] == tenant.users["lead"]
        assert approved["data"]["decided_by"] == tenant.users["lead"]
        rejected = next(r.json for r in seen if r.json["type"] == "model.version.rejected")
        assert rejected["data"]["comment"] == "worse than v1"

        request_ids = [c.headers["x-request-id"] for c in calls]
        audited = _audited(admin, request_ids)
        assert set(audited) == set(request_ids)
        assert audited[calls[4].headers["x-request-id"]]["action"].endswith("/approve")
        assert audited[calls[4].headers["x-request-id"]]["actor"].startswith(tenant.users["lead"])
        assert audited[calls[5].headers["x-request-id"]]["action"].endswith("/reject")

        listed = lead.get(f"{base(tenant)}/events", params={"type": "model.version.blocked"})
        assert [e["subject"] for e in listed.json()] == ["model:evented:4"]
    assert not marker.exists()
