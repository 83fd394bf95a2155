"""Helpers of the events suite: webhooks and deliveries through the public API."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
from tests.conftest import Tenant
from tests.support.receiver import RECEIVER_HOST

ALLOWLIST = "/api/v1/admin/webhook-allowlist"
RECEIVERS = f"{RECEIVER_HOST}/32"


def base(tenant: Tenant) -> str:
    return f"/api/v1/projects/{tenant.team}/{tenant.project}"


def create_hook(
    client: httpx.Client, tenant: Tenant, url: str, event_types: list[str] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"url": url}
    if event_types is not None:
        body["event_types"] = event_types
    r = client.post(f"{base(tenant)}/webhooks", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def deliveries(client: httpx.Client, tenant: Tenant, hook_id: str) -> list[dict[str, Any]]:
    r = client.get(f"{base(tenant)}/webhooks/{hook_id}/deliveries")
    assert r.status_code == 200, r.text
    return list(r.json())


def ping(client: httpx.Client, tenant: Tenant, hook_id: str) -> dict[str, Any]:
    r = client.post(f"{base(tenant)}/webhooks/{hook_id}/ping")
    assert r.status_code == 202, r.text
    return dict(r.json())


def wait_delivery(
    client: httpx.Client,
    tenant: Tenant,
    hook_id: str,
    delivery_id: str,
    done: Callable[[dict[str, Any]], bool] = lambda d: d["state"] != "Pending",
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Poll the deliveries API until ``done`` holds for this delivery."""
    deadline = time.monotonic() + timeout
    found: dict[str, Any] = {}
    while time.monotonic() < deadline:
        found = next(d for d in deliveries(client, tenant, hook_id) if d["id"] == delivery_id)
        if done(found):
            return found
        time.sleep(0.05)
    raise AssertionError(f"delivery {delivery_id} still {found} after {timeout}s")


def allow(admin: httpx.Client, *entries: str) -> list[str]:
    """Add entries to the allow-list (keeping what other tests put there)."""
    current = admin.get(ALLOWLIST).json()["entries"]
    r = admin.put(ALLOWLIST, json={"entries": sorted(set(current) | set(entries))})
    assert r.status_code == 200, r.text
    return list(r.json()["entries"])


def disallow(admin: httpx.Client, *entries: str) -> None:
    current = admin.get(ALLOWLIST).json()["entries"]
    r = admin.put(ALLOWLIST, json={"entries": [e for e in current if e not in entries]})
    assert r.status_code == 200, r.text
