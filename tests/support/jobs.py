"""Helpers for job tests: pack a source directory, upload it, submit, wait for a status."""

from __future__ import annotations

import io
import tarfile
import textwrap
import time
from typing import Any

import httpx
from tests.conftest import Tenant

TERMINAL = {"Completed", "Failed", "Stopped"}


def pack(files: dict[str, str | bytes]) -> bytes:
    """A tar.gz of ``files`` (text is dedented), as the SDK packs a source directory."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, content in files.items():
            data = content if isinstance(content, bytes) else textwrap.dedent(content).encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def base(tenant: Tenant) -> str:
    return f"/api/v1/projects/{tenant.team}/{tenant.project}"


def upload(client: httpx.Client, tenant: Tenant, path: str, data: bytes) -> dict[str, Any]:
    r = client.put(f"{base(tenant)}/artifacts/{path}", content=data)
    assert r.status_code == 201, r.text
    return dict(r.json())


def submit(client: httpx.Client, tenant: Tenant, **spec: Any) -> dict[str, Any]:
    r = client.post(f"{base(tenant)}/jobs", json=spec)
    assert r.status_code == 201, r.text
    return dict(r.json())


def job(client: httpx.Client, tenant: Tenant, name: str) -> dict[str, Any]:
    r = client.get(f"{base(tenant)}/jobs/{name}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def wait_for(
    client: httpx.Client,
    tenant: Tenant,
    name: str,
    statuses: set[str] | None = None,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Poll until the job reaches one of ``statuses`` (default: any terminal one)."""
    wanted = statuses or TERMINAL
    deadline = time.monotonic() + timeout
    current: dict[str, Any] = {}
    while time.monotonic() < deadline:
        current = job(client, tenant, name)
        if current["status"] in wanted:
            return current
        if current["status"] in TERMINAL:
            raise AssertionError(f"job {name} ended {current['status']}: {current['reason']}")
        time.sleep(0.1)
    raise AssertionError(f"job {name} still {current.get('status')} after {timeout}s: {current}")


def logs(client: httpx.Client, tenant: Tenant, name: str, **params: Any) -> str:
    r = client.get(f"{base(tenant)}/jobs/{name}/logs", params=params, timeout=120)
    assert r.status_code == 200, r.text
    return r.text
