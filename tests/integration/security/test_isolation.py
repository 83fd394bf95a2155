"""Teams isolate: what another team owns is invisible (404, never 403) to a team's keys."""

from __future__ import annotations

import httpx
import pytest
from tests.conftest import Tenant, unique
from tests.integration.security.helpers import error_of, login
from tests.support.servers import RunningServer

V1 = "/api/v1"


def _paths_of(t: Tenant) -> list[tuple[str, str]]:
    project = f"{V1}/projects/{t.team}/{t.project}"
    return [
        ("GET", f"{V1}/teams/{t.team}"),
        ("PATCH", f"{V1}/teams/{t.team}"),
        ("GET", f"{V1}/teams/{t.team}/projects"),
        ("POST", f"{V1}/teams/{t.team}/projects"),
        ("GET", f"{V1}/teams/{t.team}/members"),
        ("POST", f"{V1}/teams/{t.team}/members"),
        ("GET", project),
        ("GET", f"{project}/artifacts"),
        ("PUT", f"{project}/artifacts/m/x.bin"),
        ("GET", f"{project}/artifacts/m/x.bin"),
        ("DELETE", f"{project}/artifacts/m/x.bin"),
        ("GET", f"{project}/artifact-versions/m/x.bin"),
        ("POST", f"{project}/artifact-presign/m/x.bin"),
    ]


_BODIES: dict[str, object] = {
    "PATCH": {"description": "taken over"},
    "POST": {"name": "intruder", "username": "nobody", "role": "viewer"},
}


def _call(client: httpx.Client, method: str, url: str) -> httpx.Response:
    if method == "PUT":
        return client.put(url, content=b"intruder")
    if url.endswith("/projects") and method == "POST":
        return client.post(url, json={"name": "intruder"})
    if url.endswith("/members") and method == "POST":
        return client.post(url, json={"username": "nobody", "role": "viewer"})
    if "artifact-presign" in url:
        return client.post(url, json={})
    return client.request(method, url, json=_BODIES.get(method))


@pytest.mark.parametrize("role", ["admin", "lead", "engineer", "viewer"])
def test_a_key_of_team_a_gets_404_for_everything_of_team_b(
    server: RunningServer, tenant: Tenant, tenant_b: Tenant, role: str
) -> None:
    with server.admin() as admin:
        r = admin.put(f"{V1}/projects/{tenant_b.team}/{tenant_b.project}/artifacts/m/x.bin")
        assert r.status_code == 201
    with server.client(tenant.keys[role]) as a:
        for method, url in _paths_of(tenant_b):
            r = _call(a, method, url)
            assert r.status_code == 404, f"{method} {url}: {r.status_code} {r.text}"
            assert error_of(r)["code"] == "not_found"
            assert tenant_b.team in error_of(r)["message"]  # says what, not that it exists
        listed = [t["name"] for t in a.get(f"{V1}/teams").json()]
        assert tenant.team in listed and tenant_b.team not in listed
        r = a.post(f"{V1}/keys", json={"team": tenant_b.team, "role": "viewer"})
        assert r.status_code == 404
    with server.admin() as admin:  # nothing of B changed
        team = admin.get(f"{V1}/teams/{tenant_b.team}").json()
        assert team["description"] != "taken over"
        projects = admin.get(f"{V1}/teams/{tenant_b.team}/projects").json()
        assert [p["name"] for p in projects] == [tenant_b.project]
        url = f"{V1}/projects/{tenant_b.team}/{tenant_b.project}/artifact-versions/m/x.bin"
        versions = admin.get(url).json()
        assert versions and not any(v["deleted"] for v in versions)


def test_an_unknown_team_and_a_hidden_team_look_the_same(
    server: RunningServer, tenant: Tenant, tenant_b: Tenant
) -> None:
    with server.client(tenant.keys["lead"]) as a:
        hidden = a.get(f"{V1}/teams/{tenant_b.team}")
        missing = a.get(f"{V1}/teams/no-such-team-anywhere")
    assert hidden.status_code == missing.status_code == 404
    assert error_of(hidden)["message"].replace(tenant_b.team, "X") == error_of(missing)[
        "message"
    ].replace("no-such-team-anywhere", "X")


def test_a_key_scoped_to_team_a_hides_team_b_even_from_a_member_of_both(
    server: RunningServer, tenant: Tenant, tenant_b: Tenant
) -> None:
    username, password = unique("both-"), "password-of-both"
    with server.admin() as admin:
        admin.post(f"{V1}/users", json={"username": username, "password": password})
        for t in (tenant, tenant_b):
            r = admin.post(
                f"{V1}/teams/{t.team}/members", json={"username": username, "role": "lead"}
            )
            assert r.status_code == 201
    token = login(server, username, password).json()["access_token"]
    with server.client(token) as human:
        key_b = human.post(f"{V1}/keys", json={"team": tenant_b.team, "role": "viewer"})
        assert key_b.status_code == 201
        key_a = human.post(f"{V1}/keys", json={"team": tenant.team, "role": "lead"})
        assert key_a.status_code == 201
        # the human session sees both teams
        assert {tenant.team, tenant_b.team} <= {t["name"] for t in human.get(V1 + "/teams").json()}
    with server.client(key_a.json()["api_key"]) as scoped:
        assert scoped.get(f"{V1}/teams/{tenant_b.team}").status_code == 404
        assert scoped.get(f"{V1}/projects/{tenant_b.team}/{tenant_b.project}").status_code == 404
        assert [t["name"] for t in scoped.get(V1 + "/teams").json()] == [tenant.team]
        assert list(scoped.get(V1 + "/auth/whoami").json()["teams"]) == [tenant.team]
        keys = scoped.get(V1 + "/keys")
        assert keys.status_code == 200
        assert tenant_b.team not in keys.text  # its keys in team B are out of its scope
        revoke = scoped.delete(f"{V1}/keys/{key_b.json()['key_id']}")
        assert revoke.status_code == 404
        audit = scoped.get(V1 + "/audit", params={"n": 10_000})
        assert audit.status_code == 200
        assert tenant_b.team not in audit.text


def test_a_project_scoped_key_sees_only_its_project(server: RunningServer, tenant: Tenant) -> None:
    other = unique("other-")
    with server.admin() as admin:
        r = admin.post(f"{V1}/teams/{tenant.team}/projects", json={"name": other})
        assert r.status_code == 201
        r = admin.put(f"{V1}/projects/{tenant.team}/{other}/artifacts/secret.bin", content=b"s")
        assert r.status_code == 201
    with server.client(tenant.keys["lead"]) as lead:
        r = lead.post(
            V1 + "/keys", json={"project": f"{tenant.team}/{tenant.project}", "role": "lead"}
        )
        assert r.status_code == 201, r.text
        assert r.json()["scope"] == f"project:{tenant.team}/{tenant.project}"
    with server.client(r.json()["api_key"]) as scoped:
        mine = f"{V1}/projects/{tenant.team}/{tenant.project}"
        theirs = f"{V1}/projects/{tenant.team}/{other}"
        assert scoped.get(mine).status_code == 200
        assert scoped.put(f"{mine}/artifacts/p/ok.bin", content=b"ok").status_code == 201
        for method, url in [
            ("GET", theirs),
            ("GET", f"{theirs}/artifacts"),
            ("GET", f"{theirs}/artifacts/secret.bin"),
            ("PUT", f"{theirs}/artifacts/secret.bin"),
        ]:
            r = scoped.request(method, url, content=b"x" if method == "PUT" else None)
            assert r.status_code == 404, f"{method} {url}: {r.status_code}"
        listed = scoped.get(f"{V1}/teams/{tenant.team}/projects").json()
        assert [p["name"] for p in listed] == [tenant.project]
        # it may look at its team, never act on it
        r = scoped.post(f"{V1}/teams/{tenant.team}/projects", json={"name": unique("no-")})
        assert r.status_code == 403
        r = scoped.post(V1 + "/keys", json={"team": tenant.team, "role": "viewer"})
        assert r.status_code == 403


def test_a_project_scoped_invoker_key_cannot_read_its_team(
    server: RunningServer, tenant: Tenant
) -> None:
    with server.client(tenant.keys["scientist"]) as scientist:
        r = scientist.post(
            V1 + "/keys", json={"project": f"{tenant.team}/{tenant.project}", "role": "invoker"}
        )
        assert r.status_code == 201, r.text
    with server.client(r.json()["api_key"]) as invoker:
        for url in (
            f"{V1}/teams/{tenant.team}",
            f"{V1}/teams/{tenant.team}/projects",
            f"{V1}/teams/{tenant.team}/members",
            f"{V1}/projects/{tenant.team}/{tenant.project}",
        ):
            r = invoker.get(url)
            assert r.status_code == 403, f"{url}: {r.status_code} {r.text}"


@pytest.mark.parametrize(
    ("method", "suffix", "permission"),
    [
        ("POST", "/teams/{team}/projects", "project:create"),
        ("PUT", "/projects/{team}/{project}/artifacts/v.bin", "artifact:write"),
        ("DELETE", "/projects/{team}/{project}/artifacts/m/x.bin", "artifact:delete"),
        ("PATCH", "/teams/{team}", "team:manage"),
    ],
)
def test_a_viewer_cannot_create(
    server: RunningServer, tenant: Tenant, method: str, suffix: str, permission: str
) -> None:
    url = V1 + suffix.format(team=tenant.team, project=tenant.project)
    body = {"name": unique("v-")} if method == "POST" else {"description": "v"}
    with server.client(tenant.keys["viewer"]) as viewer:
        if method == "PUT":
            r = viewer.put(url, content=b"v")
        else:
            r = viewer.request(method, url, json=body if method != "DELETE" else None)
    assert r.status_code == 403
    error = error_of(r)
    assert error["code"] == "permission_denied"
    assert permission in error["message"]


def test_the_admin_key_can_do_everything(server: RunningServer, tenant_b: Tenant) -> None:
    team, project = tenant_b.team, tenant_b.project
    with server.admin() as admin:
        assert admin.get(f"{V1}/teams/{team}").status_code == 200
        assert admin.patch(f"{V1}/teams/{team}", json={"description": ""}).status_code == 200
        r = admin.post(f"{V1}/teams/{team}/projects", json={"name": unique("adm-")})
        assert r.status_code == 201
        base = f"{V1}/projects/{team}/{project}/artifacts/admin/a.bin"
        assert admin.put(base, content=b"a").status_code == 201
        assert admin.get(base).content == b"a"
        assert admin.delete(base).status_code == 200
        assert admin.get(f"{V1}/teams/{team}/members").status_code == 200
        r = admin.post(V1 + "/keys", json={"team": team, "role": "admin"})
        assert r.status_code == 201
        assert admin.delete(f"{V1}/keys/{r.json()['key_id']}").status_code == 200
        assert admin.get(V1 + "/audit").status_code == 200
        assert admin.get(V1 + "/audit/verify").json()["ok"] is True
        assert admin.get(V1 + "/users").status_code == 200
