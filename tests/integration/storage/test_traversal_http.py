"""Path traversal through raw HTTP: every payload gets a 4xx and nothing outside the store moves.

Requests are sent with ``http.client`` so the request line reaches the server exactly as
written (an HTTP library would normalise ``..`` segments before sending).
"""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import Tenant
from tests.support.servers import RunningServer

# Payloads from MLflow's artifact-path advisories and their bypasses, as raw URL suffixes.
KNOWN_PAYLOADS = [
    "../../../../canary.txt",
    "..%2f..%2f..%2f..%2fcanary.txt",
    "..%252f..%252f..%252fcanary.txt",
    "%2e%2e/%2e%2e/%2e%2e/canary.txt",
    "%252e%252e/%252e%252e/canary.txt",
    "a/../../../../canary.txt",
    "..\\..\\..\\canary.txt",
    "..%5c..%5c..%5ccanary.txt",
    "%2fetc%2fpasswd",
    "/etc/passwd",
    "C:%5cWindows%5cwin.ini",
    "file:%2f%2f%2fetc%2fpasswd",
    "x%00.txt",
    "x%3b.txt",
    "x%23frag",
    "x%3fq=1",
    "%c0%ae%c0%ae/canary.txt",
    "%ef%bc%8e%ef%bc%8e/canary.txt",
    "./x",
    "a//b",
]


def _raw(
    server: RunningServer, method: str, target: str, token: str, body: bytes = b""
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        headers = {"Authorization": f"Bearer {token}", "Content-Length": str(len(body))}
        conn.request(method, target, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Size and modification time of every file: a write changes them, and reading them costs
    nothing (``root`` holds every earlier test's files, some of them large)."""
    return {
        str(p): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
        and "store" not in p.relative_to(root).parts
        and not p.name.endswith((".db", ".db-wal", ".db-shm", ".log"))
    }


@pytest.fixture
def canary(server: RunningServer) -> Path:
    path = server.home.parent / "canary.txt"
    path.write_text("canary: must never be read or written")
    return path


def test_known_payloads_are_refused(server: RunningServer, tenant: Tenant, canary: Path) -> None:
    before = _snapshot(server.home.parent)
    base = f"/api/v1/projects/{tenant.team}/{tenant.project}/artifacts/"
    token = tenant.keys["admin"]
    for payload in KNOWN_PAYLOADS:
        for method, body in (("PUT", b"evil"), ("GET", b""), ("DELETE", b"")):
            status, _ = _raw(server, method, base + payload, token, body)
            assert 400 <= status < 500, f"{method} {payload} -> {status}"
    assert canary.read_text() == "canary: must never be read or written"
    assert _snapshot(server.home.parent) == before


_pieces = st.sampled_from(
    [
        "..",
        "%2e%2e",
        "%252e%252e",
        "%2f",
        "%5c",
        "\\",
        "/",
        ".",
        "%00",
        "%c0%ae",
        "canary.txt",
        "%2e",
        "%u002e",
        "etc",
        "passwd",
        "%3f",
        "%23",
        ";",
        "~",
    ]
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(_pieces, min_size=2, max_size=8).map("".join))
def test_generated_traversal_never_escapes(
    server: RunningServer, tenant: Tenant, canary: Path, payload: str
) -> None:
    base = f"/api/v1/projects/{tenant.team}/{tenant.project}/artifacts/"
    status, body = _raw(server, "PUT", base + payload, tenant.keys["admin"], b"evil")
    if status == 201:
        # Accepted only as a plain logical path: no dot segments, nothing absolute.
        recorded = json.loads(body)["path"]
        assert not recorded.startswith("/")
        assert not {".", "..", ""} & set(recorded.split("/")), recorded
        assert "\\" not in recorded and "%" not in recorded
    else:
        assert 400 <= status < 500, f"PUT {payload} -> {status}"
    assert canary.read_text() == "canary: must never be read or written"
