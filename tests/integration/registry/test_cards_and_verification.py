"""Model cards, deletes, verification of stored bytes and the dashboard, through the server.

The tampering tests play an insider: one with the database (repointing a version's row at
other, validly encrypted bytes of the project) and one with the store's disk (flipping a
byte). Neither may get changed bytes past verification.
"""

from __future__ import annotations

import pickle
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from tests.conftest import Tenant, make_tenant
from tests.support.jobs import base, pack, upload
from tests.support.servers import RunningServer


def _model(coef: float) -> bytes:
    return pack(
        {
            "model.pkl": pickle.dumps({"coef": [coef, 0.2], "intercept": 0.3}),
            "inference.py": "def model_fn(model_dir):\n    return None\n",
        }
    )


def _register(client: httpx.Client, tenant: Tenant, group: str, path: str) -> dict[str, Any]:
    if client.get(f"{base(tenant)}/models/{group}").status_code == 404:
        assert client.post(f"{base(tenant)}/models", json={"name": group}).status_code == 201
    r = client.post(
        f"{base(tenant)}/models/{group}/versions", json={"artifact_path": path, "flavor": "custom"}
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


@pytest.fixture
def roles(server: RunningServer) -> Any:
    tenant = make_tenant(server, ("scientist", "lead", "viewer"))
    clients = {role: server.client(key) for role, key in tenant.keys.items()}
    yield tenant, clients
    for client in clients.values():
        client.close()


def test_a_card_is_versioned_while_pending_and_frozen_once_approved(
    server: RunningServer, roles: Any
) -> None:
    tenant, c = roles
    upload(c["scientist"], tenant, "models/card.tar.gz", _model(0.1))
    _register(c["scientist"], tenant, "carded", "models/card.tar.gz")
    url = f"{base(tenant)}/models/carded/versions/1/card"

    first = c["viewer"].get(url).json()
    assert first["revision"] == 1 and first["frozen"] is False
    assert first["risk_rating"] == "unknown"

    edit = {"base_revision": 1, "intended_use": "Rank churn risk", "risk_rating": "medium"}
    r = c["scientist"].patch(url, json=edit)
    assert r.status_code == 200, r.text
    assert r.json()["revision"] == 2 and r.json()["intended_use"] == "Rank churn risk"
    r = c["scientist"].patch(url, json={"base_revision": 1, "caveats": "a stale edit"})
    assert r.status_code == 409 and r.json()["error"]["field"] == "base_revision"
    r = c["scientist"].patch(url, json={"caveats": "Not for credit decisions."})
    assert r.json()["revision"] == 3
    assert r.json()["intended_use"] == "Rank churn risk"  # an edit keeps what it leaves out
    r = c["viewer"].patch(url, json={"caveats": "viewers cannot edit"})
    assert r.status_code == 403
    r = c["scientist"].patch(url, json={"risk_rating": "catastrophic"})
    assert r.status_code == 422 and "risk_rating" in r.json()["error"]["field"]

    history = c["viewer"].get(f"{url}/revisions").json()
    assert [h["revision"] for h in history] == [1, 2, 3]
    assert c["viewer"].get(url, params={"revision": 2}).json()["caveats"] == ""

    approve = f"{base(tenant)}/models/carded/versions/1/approve"
    assert c["lead"].post(approve, json={"comment": "card reviewed"}).status_code == 200
    r = c["scientist"].patch(url, json={"caveats": "after the fact"})
    assert r.status_code == 409 and "frozen" in r.json()["error"]["message"]
    card = c["viewer"].get(url).json()
    assert card["frozen"] is True and card["revision"] == 3


def test_no_card_revision_lands_after_the_decision(server: RunningServer, roles: Any) -> None:
    """Edits racing an approval: each either lands before the decision or is refused, so
    the card a lead approved is the card forever."""
    tenant, c = roles
    upload(c["scientist"], tenant, "models/race.tar.gz", _model(0.2))
    _register(c["scientist"], tenant, "racing", "models/race.tar.gz")
    url = f"{base(tenant)}/models/racing/versions/1"

    def edit(i: int) -> int:
        with server.client(tenant.keys["scientist"]) as own:
            r = own.patch(f"{url}/card", json={"caveats": f"edit {i}"})
            assert r.status_code in (200, 409), r.text
            return r.status_code

    def approve() -> int:
        with server.client(tenant.keys["lead"]) as lead:
            return lead.post(f"{url}/approve", json={"comment": "ok"}).status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        edits = [pool.submit(edit, i) for i in range(10)]
        decision = pool.submit(approve)
        codes = [f.result() for f in edits]
    version = c["viewer"].get(url).json()
    if decision.result() == 200:
        assert version["status"] == "Approved"
    else:  # the approval itself lost to an edit committed after the lead's read
        assert decision.result() == 409 and version["status"] == "PendingManualApproval"
    revisions = c["viewer"].get(f"{url}/card/revisions").json()
    assert len(revisions) == 1 + codes.count(200)
    if version["decided_at"]:
        assert all(r["created_at"] <= version["decided_at"] for r in revisions)


def test_cards_render_as_markdown_and_safe_html(server: RunningServer, roles: Any) -> None:
    tenant, c = roles
    upload(c["scientist"], tenant, "models/html.tar.gz", _model(0.3))
    _register(c["scientist"], tenant, "rendered", "models/html.tar.gz")
    url = f"{base(tenant)}/models/rendered/versions/1/card"
    c["scientist"].patch(
        url,
        json={
            "intended_use": "Churn *ranking* <script>alert('x')</script>",
            "caveats": "[docs](javascript:alert(1))",
        },
    )
    md = c["viewer"].get(f"{url}.md")
    assert md.status_code == 200 and md.headers["content-type"].startswith("text/markdown")
    assert "# Model card: rendered v1" in md.text
    assert "## Intended use" in md.text and "Churn *ranking*" in md.text
    assert "PendingManualApproval" in md.text

    page = c["viewer"].get(f"{url}.html")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<em>ranking</em>" in page.text
    assert "<script>" not in page.text and "&lt;script&gt;" in page.text
    assert 'href="javascript:' not in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]


def test_deleted_numbers_are_never_handed_out_again(server: RunningServer, roles: Any) -> None:
    tenant, c = roles
    upload(c["scientist"], tenant, "models/del.tar.gz", _model(0.4))
    for _ in range(2):
        _register(c["scientist"], tenant, "deleting", "models/del.tar.gz")
    url = f"{base(tenant)}/models/deleting/versions"
    assert c["viewer"].delete(f"{url}/2").status_code == 403
    assert c["scientist"].delete(f"{url}/2").status_code == 204
    assert c["scientist"].get(f"{url}/2").status_code == 404
    assert _register(c["scientist"], tenant, "deleting", "models/del.tar.gz")["version"] == 3
    assert [v["version"] for v in c["viewer"].get(url).json()] == [3, 1]

    assert c["lead"].post(f"{url}/1/approve", json={"comment": "ok"}).status_code == 200
    r = c["scientist"].delete(f"{url}/1")
    assert r.status_code == 403 and "Approved" in r.json()["error"]["message"]
    assert c["lead"].delete(f"{url}/1").status_code == 204


def _artifact_row(conn: Any, project_id: str, path: str, version: int) -> Any:
    return conn.execute(
        text(
            "SELECT blob_key, sha256, size FROM artifact_versions "
            "WHERE project_id = :p AND path = :path AND version = :v"
        ),
        {"p": project_id, "path": path, "v": version},
    ).one()


def _project_id(conn: Any, tenant: Tenant) -> str:
    return str(
        conn.execute(
            text(
                "SELECT p.id FROM projects p JOIN teams t ON p.team_id = t.id "
                "WHERE t.name = :team AND p.name = :project"
            ),
            {"team": tenant.team, "project": tenant.project},
        ).scalar_one()
    )


def test_bytes_swapped_after_approval_fail_verification_naming_the_file(
    server: RunningServer, roles: Any
) -> None:
    tenant, c = roles
    path = "models/swap.tar.gz"
    upload(c["scientist"], tenant, path, _model(0.5))
    _register(c["scientist"], tenant, "swapped", path)
    url = f"{base(tenant)}/models/swapped/versions/1"
    assert c["lead"].post(f"{url}/approve", json={"comment": "ok"}).status_code == 200
    ok = c["viewer"].post(f"{url}/verify")
    assert ok.status_code == 200, ok.text
    assert ok.json()["verified"] is True and ok.json()["files"] == 2

    # The insider uploads other weights (validly encrypted for this project) and points the
    # approved version's row at them, fixing up the row's checksum and size as well.
    upload(c["scientist"], tenant, path, _model(9.9))
    engine = create_engine(server.db_url)
    try:
        with engine.begin() as conn:
            project_id = _project_id(conn, tenant)
            other = _artifact_row(conn, project_id, path, 2)
            conn.execute(
                text(
                    "UPDATE artifact_versions SET blob_key = :k, sha256 = :s, size = :n "
                    "WHERE project_id = :p AND path = :path AND version = 1"
                ),
                {
                    "k": other.blob_key,
                    "s": other.sha256,
                    "n": other.size,
                    "p": project_id,
                    "path": path,
                },
            )
    finally:
        engine.dispose()

    r = c["viewer"].post(f"{url}/verify")
    assert r.status_code == 409, r.text
    error = r.json()["error"]
    assert error["code"] == "verification_failed" or "verif" in error["code"]
    assert "model.pkl" in error["message"] and "inference.py" not in error["message"]
    assert error["details"]["files"] == ["model.pkl"]


def test_a_flipped_byte_on_the_store_disk_fails_verification(
    server: RunningServer, roles: Any
) -> None:
    tenant, c = roles
    path = "models/flip.tar.gz"
    upload(c["scientist"], tenant, path, _model(0.6))
    _register(c["scientist"], tenant, "flipped", path)
    engine = create_engine(server.db_url)
    try:
        with engine.begin() as conn:
            blob_key = _artifact_row(conn, _project_id(conn, tenant), path, 1).blob_key
    finally:
        engine.dispose()
    blob = Path(server.home / "store" / blob_key)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))

    r = c["viewer"].post(f"{base(tenant)}/models/flipped/versions/1/verify")
    assert r.status_code == 409, r.text
    assert "not the approved ones" in r.json()["error"]["message"]


def test_the_dashboard_lists_groups_with_state(server: RunningServer, roles: Any) -> None:
    tenant, c = roles
    upload(c["scientist"], tenant, "models/dash.tar.gz", _model(0.7))
    for _ in range(7):
        _register(c["scientist"], tenant, "dash-a", "models/dash.tar.gz")
    _register(c["scientist"], tenant, "dash-b", "models/dash.tar.gz")
    versions = f"{base(tenant)}/models/dash-a/versions"
    assert c["lead"].post(f"{versions}/2/approve", json={"comment": "ok"}).status_code == 200
    assert c["lead"].post(f"{versions}/3/reject", json={"comment": "no"}).status_code == 200

    board = c["viewer"].get(f"{base(tenant)}/model-dashboard")
    assert board.status_code == 200, board.text
    groups = {g["name"]: g for g in board.json()}
    assert set(groups) == {"dash-a", "dash-b"}
    a = groups["dash-a"]
    assert a["last_version"] == 7 and a["latest_approved"] == 2 and a["pending"] == 5
    assert [v["version"] for v in a["versions"]] == [7, 6, 5, 4, 3]
    assert a["versions"][-1]["status"] == "Rejected"
    assert all(v["scan"] == "clean" for v in a["versions"])
    assert a["deployments"] == []
    assert groups["dash-b"]["latest_approved"] is None
