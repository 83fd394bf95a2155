"""Access tokens, refresh tokens, API keys and the login throttle, as a client sees them."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from tests.conftest import Tenant, unique
from tests.integration.security.helpers import error_of, login, server_db
from tests.support.servers import RunningServer

from shipyard.security.keyring import MasterKey

V1 = "/api/v1"
PASSWORD = "correct horse battery"


def _user(server: RunningServer, team: str | None = None, role: str = "viewer") -> str:
    username = unique("tk-")
    with server.admin() as admin:
        r = admin.post(V1 + "/users", json={"username": username, "password": PASSWORD})
        assert r.status_code == 201, r.text
        if team:
            r = admin.post(f"{V1}/teams/{team}/members", json={"username": username, "role": role})
            assert r.status_code == 201, r.text
    return username


def _whoami(server: RunningServer, token: str) -> httpx.Response:
    with server.client(token) as client:
        return client.get(V1 + "/auth/whoami")


def _assert_401(response: httpx.Response, *words: str) -> None:
    assert response.status_code == 401, response.text
    error = error_of(response)
    assert error["code"] == "unauthenticated"
    assert response.headers["www-authenticate"] == "Bearer"
    for word in words:
        assert word in error["message"]


# --- access and refresh tokens ---------------------------------------------------------


def test_login_gives_an_access_and_a_refresh_token(server: RunningServer) -> None:
    username = _user(server)
    r = login(server, username, PASSWORD)
    assert r.status_code == 200
    pair = r.json()
    assert pair["token_type"] == "bearer"
    assert pair["expires_in"] == 3600
    assert pair["access_token"] != pair["refresh_token"]
    assert _whoami(server, pair["access_token"]).json()["username"] == username
    _assert_401(_whoami(server, pair["refresh_token"]))  # a refresh token is no bearer token


def test_wrong_password_and_unknown_user_look_the_same(server: RunningServer) -> None:
    username = _user(server)
    wrong = login(server, username, "not the password")
    unknown = login(server, unique("ghost-"), "not the password")
    _assert_401(wrong)
    _assert_401(unknown)
    assert error_of(wrong)["message"] == error_of(unknown)["message"]


def test_a_refresh_token_works_once(server: RunningServer) -> None:
    first = login(server, _user(server), PASSWORD).json()
    with server.client() as anon:
        second = anon.post(V1 + "/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert second.status_code == 200
        assert _whoami(server, second.json()["access_token"]).status_code == 200
        replay = anon.post(V1 + "/auth/refresh", json={"refresh_token": first["refresh_token"]})
        _assert_401(replay)
        third = anon.post(
            V1 + "/auth/refresh", json={"refresh_token": second.json()["refresh_token"]}
        )
        assert third.status_code == 200
        _assert_401(anon.post(V1 + "/auth/refresh", json={"refresh_token": "made-up"}))


def test_a_refresh_token_replayed_concurrently_works_once(server: RunningServer) -> None:
    """16 clients spend one refresh token at the same instant: exactly one gets a new pair."""
    clients = [server.client() for _ in range(16)]
    start = threading.Barrier(len(clients))
    try:
        for _ in range(3):
            refresh = login(server, _user(server), PASSWORD).json()["refresh_token"]

            def spend(client: httpx.Client, token: str = refresh) -> int:
                start.wait()
                return client.post(V1 + "/auth/refresh", json={"refresh_token": token}).status_code

            with ThreadPoolExecutor(len(clients)) as pool:
                codes = sorted(pool.map(spend, clients))
            assert codes == [200] + [401] * (len(clients) - 1)
    finally:
        for client in clients:
            client.close()


def test_an_expired_access_token_is_refused(tuned_server: RunningServer) -> None:
    creds = tuned_server.credentials
    pair = login(tuned_server, creds["username"], creds["password"]).json()
    assert pair["expires_in"] == 1
    time.sleep(2.1)
    _assert_401(_whoami(tuned_server, pair["access_token"]), "expired")
    with tuned_server.client() as anon:  # the refresh token still gets a new pair
        fresh = anon.post(V1 + "/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert fresh.status_code == 200
    assert fresh.json()["access_token"] != pair["access_token"]


# --- forged and malformed tokens -------------------------------------------------------


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _signing_key(server: RunningServer) -> bytes:
    """The server's token key, derived from its master key as the server does."""
    return MasterKey(server.home / "master.key").derive("access-tokens")


def _claims(user_id: str, **changes: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": user_id,
        "typ": "access",
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "iss": "shipyard",
        "jti": os.urandom(8).hex(),
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


@pytest.fixture
def admin_user_id(server: RunningServer) -> str:
    with server.admin() as admin:
        users = admin.get(V1 + "/users").json()
    return str(next(u["id"] for u in users if u["username"] == "admin"))


def test_a_token_signed_like_the_server_is_accepted(
    server: RunningServer, admin_user_id: str
) -> None:
    """The control for the forgeries below: only the one thing each changes is wrong."""
    token = jwt.encode(_claims(admin_user_id), _signing_key(server), algorithm="HS256")
    assert _whoami(server, token).json()["username"] == "admin"


def _hs512(claims: dict[str, Any], key: bytes) -> str:
    with warnings.catch_warnings():  # PyJWT warns the key is short for HS512: that is the point
        warnings.simplefilter("ignore")
        return jwt.encode(claims, key, algorithm="HS512")


def _forgeries(server: RunningServer, user_id: str) -> dict[str, str]:
    key = _signing_key(server)
    now = int(time.time())
    plain = {"sub": user_id, "typ": "access", "iat": now, "exp": now + 300, "iss": "shipyard"}
    return {
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(plain)}.",
        "alg None, with a signature": f"{_b64({'alg': 'None'})}.{_b64(plain)}.c2ln",
        "wrong key": jwt.encode(_claims(user_id), os.urandom(32), algorithm="HS256"),
        "HS512 with the right key": _hs512(_claims(user_id), key),
        "typ refresh": jwt.encode(_claims(user_id, typ="refresh"), key, algorithm="HS256"),
        "no typ": jwt.encode(_claims(user_id, typ=None), key, algorithm="HS256"),
        "no exp": jwt.encode(_claims(user_id, exp=None), key, algorithm="HS256"),
        "expired": jwt.encode(
            _claims(user_id, exp=datetime.now(UTC) - timedelta(seconds=5)), key, algorithm="HS256"
        ),
        "other issuer": jwt.encode(_claims(user_id, iss="evil"), key, algorithm="HS256"),
        "unknown user": jwt.encode(_claims("0" * 32), key, algorithm="HS256"),
        "payload edited": ".".join(
            [
                (parts := jwt.encode(_claims("0" * 32), key, algorithm="HS256").split("."))[0],
                _b64({**plain, "sub": user_id}),
                parts[2],
            ]
        ),
        "malformed": "a.b.c",
        "not base64": "!!!.@@@.###",
        "json list payload": f"{_b64({'alg': 'HS256'})}.WzFd.x",  # payload: [1]
        "truncated": jwt.encode(_claims(user_id), key, algorithm="HS256")[:-10],
        "not a token at all": "hello",
        "api key prefix, no secret": "shpk_SHKABC",
    }


def test_forged_and_malformed_tokens_are_refused(server: RunningServer, admin_user_id: str) -> None:
    failures = []
    for name, token in _forgeries(server, admin_user_id).items():
        r = _whoami(server, token)
        if r.status_code != 401 or error_of(r)["code"] != "unauthenticated":
            failures.append(f"{name}: {r.status_code} {r.text[:200]}")
    assert not failures, "\n".join(failures)


def test_other_authorization_schemes_are_refused(server: RunningServer) -> None:
    for header in (f"Basic {server.admin_key}", server.admin_key, "Bearer", "Token abc"):
        with httpx.Client(base_url=server.url, headers={"Authorization": header}) as client:
            _assert_401(client.get(V1 + "/auth/whoami"))


# --- API keys --------------------------------------------------------------------------


def test_an_api_key_is_shown_once(server: RunningServer, tenant: Tenant) -> None:
    with server.client(tenant.keys["engineer"]) as engineer:
        created = engineer.post(V1 + "/keys", json={"team": tenant.team, "role": "viewer"})
        assert created.status_code == 201
        body = created.json()
        secret = body["secret_access_key"]
        assert body["api_key"] == f"shpk_{body['key_id']}_{secret}"
        assert body["access_key_id"] == body["key_id"]
        listed = engineer.get(V1 + "/keys")
    assert listed.status_code == 200
    row = next(k for k in listed.json() if k["key_id"] == body["key_id"])
    assert not {"api_key", "secret_access_key", "secret"} & set(row)
    assert secret not in listed.text
    with server.admin() as admin:  # not even the platform admin sees it again
        assert secret not in admin.get(V1 + "/keys").text
    assert _whoami(server, body["api_key"]).status_code == 200


def test_a_revoked_key_is_refused_at_once(server: RunningServer, tenant: Tenant) -> None:
    with server.client(tenant.keys["scientist"]) as scientist:
        created = scientist.post(V1 + "/keys", json={"team": tenant.team, "role": "scientist"})
        key = created.json()["api_key"]
        assert _whoami(server, key).status_code == 200
        revoked = scientist.delete(f"{V1}/keys/{created.json()['key_id']}")
        assert revoked.status_code == 200
        assert revoked.json()["revoked_at"] is not None
    _assert_401(_whoami(server, key), "revoked")
    with server.client(key) as dead:
        _assert_401(dead.get(f"{V1}/projects/{tenant.team}/{tenant.project}/artifacts"))


def test_an_expired_key_is_refused(server: RunningServer, tenant: Tenant) -> None:
    with server.client(tenant.keys["lead"]) as lead:
        created = lead.post(V1 + "/keys", json={"team": tenant.team, "role": "viewer"}).json()
    assert _whoami(server, created["api_key"]).status_code == 200
    with server_db(server) as db:
        db.expire_key(created["key_id"], datetime.now(UTC) - timedelta(seconds=1))
    # Changed behind the server's back: it shows once the principal cache (1 s in tests,
    # SHIPYARD_AUTH_CACHE_TTL_S) lets go. Changes made through the API show at once.
    deadline = time.monotonic() + 5
    while _whoami(server, created["api_key"]).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    _assert_401(_whoami(server, created["api_key"]), "expired")


def test_a_key_with_a_wrong_secret_is_refused(server: RunningServer) -> None:
    key_id = server.admin_key.split("_")[1]
    _assert_401(_whoami(server, f"shpk_{key_id}_{'A' * 40}"))
    _assert_401(_whoami(server, server.admin_key[:-1]))


@pytest.mark.parametrize(
    ("maker", "role"),
    [("viewer", "engineer"), ("engineer", "lead"), ("lead", "admin"), ("scientist", "lead")],
)
def test_a_key_may_not_carry_a_role_above_its_creators(
    server: RunningServer, tenant: Tenant, maker: str, role: str
) -> None:
    with server.client(tenant.keys[maker]) as client:
        r = client.post(V1 + "/keys", json={"team": tenant.team, "role": role})
    assert r.status_code == 403
    assert error_of(r)["code"] == "permission_denied"
    assert f"'{role}'" in error_of(r)["message"]


def test_a_key_is_bounded_by_the_key_that_made_it(server: RunningServer, tenant: Tenant) -> None:
    """A lead's viewer key may not mint a lead key, though the lead could."""
    with server.client(tenant.keys["lead"]) as lead:
        viewer_key = lead.post(V1 + "/keys", json={"team": tenant.team, "role": "viewer"})
    with server.client(viewer_key.json()["api_key"]) as weak:
        r = weak.post(V1 + "/keys", json={"team": tenant.team, "role": "lead"})
        assert r.status_code == 403
        assert "'lead'" in error_of(r)["message"]
        r = weak.post(V1 + "/keys", json={"role": "viewer"})  # no scope: platform keys
        assert r.status_code == 422


def test_a_human_may_not_mint_a_key_above_their_role(server: RunningServer, tenant: Tenant) -> None:
    token = login(server, _user(server, tenant.team, "engineer"), PASSWORD).json()["access_token"]
    with server.client(token) as human:
        r = human.post(V1 + "/keys", json={"team": tenant.team, "role": "lead"})
        assert r.status_code == 403
        assert "'lead'" in error_of(r)["message"]
        assert human.post(V1 + "/keys", json={"team": tenant.team, "role": "engineer"}).is_success


def test_an_invoker_key_cannot_see_or_revoke_its_owners_keys(
    server: RunningServer, tenant: Tenant
) -> None:
    """The tenant's invoker key belongs to the admin user: it must not touch the admin key."""
    admin_key_id = server.admin_key.split("_")[1]
    with server.client(tenant.keys["invoker"]) as invoker:
        listed = invoker.get(V1 + "/keys")
        assert listed.status_code == 403
        assert "key:manage" in error_of(listed)["message"]
        revoke = invoker.delete(f"{V1}/keys/{admin_key_id}")
        assert revoke.status_code in (403, 404)
        assert (
            invoker.post(V1 + "/keys", json={"team": tenant.team, "role": "invoker"}).status_code
            == 403
        )
    assert _whoami(server, server.admin_key).status_code == 200


def test_a_user_may_not_revoke_someone_elses_key(server: RunningServer, tenant: Tenant) -> None:
    with server.client(tenant.keys["viewer"]) as viewer:
        mine = viewer.post(V1 + "/keys", json={"team": tenant.team, "role": "viewer"}).json()
    with server.client(tenant.keys["lead"]) as lead:
        r = lead.delete(f"{V1}/keys/{mine['key_id']}")
        assert r.status_code == 404
        assert mine["key_id"] not in lead.get(V1 + "/keys").text
    assert _whoami(server, mine["api_key"]).status_code == 200


# --- memberships -----------------------------------------------------------------------


def test_a_lead_may_not_grant_admin(server: RunningServer, tenant: Tenant) -> None:
    username = _user(server)
    url = f"{V1}/teams/{tenant.team}/members"
    with server.client(tenant.keys["lead"]) as lead:
        r = lead.post(url, json={"username": username, "role": "admin"})
        assert r.status_code == 403
        assert "'admin'" in error_of(r)["message"]
        assert lead.post(url, json={"username": username, "role": "lead"}).status_code == 201
    with server.client(tenant.keys["admin"]) as team_admin:  # the control: an admin may
        assert team_admin.post(url, json={"username": username, "role": "admin"}).status_code == 201
    with server.client(tenant.keys["lead"]) as lead:
        # ...and a lead may not demote or remove someone above them
        r = lead.post(url, json={"username": username, "role": "viewer"})
        assert r.status_code == 403
        r = lead.delete(f"{url}/{username}")
        assert r.status_code == 403
    with server.admin() as admin:
        members = {m["username"]: m["role"] for m in admin.get(url).json()}
    assert members[username] == "admin"


def test_a_lead_key_of_a_team_admin_grants_no_more_than_lead(
    server: RunningServer, tenant: Tenant
) -> None:
    with server.client(tenant.keys["admin"]) as team_admin:
        lead_key = team_admin.post(V1 + "/keys", json={"team": tenant.team, "role": "lead"})
    url = f"{V1}/teams/{tenant.team}/members"
    with server.client(lead_key.json()["api_key"]) as limited:
        r = limited.post(url, json={"username": _user(server), "role": "admin"})
    assert r.status_code == 403
    assert "'admin'" in error_of(r)["message"]


# --- the login throttle ----------------------------------------------------------------


def test_failed_logins_are_throttled(tuned_server: RunningServer) -> None:
    """3 attempts per 3 s on the tuned server; while throttled even the right password waits."""
    username = _user(tuned_server)
    for _ in range(3):
        _assert_401(login(tuned_server, username, "guess"))
    throttled = login(tuned_server, username, "guess")
    assert throttled.status_code == 429
    assert error_of(throttled)["code"] == "rate_limited"
    wait = int(throttled.headers["retry-after"])
    assert 1 <= wait <= 3
    right = login(tuned_server, username, PASSWORD)
    assert right.status_code == 429
    assert "access_token" not in right.text
    time.sleep(wait + 0.2)
    assert login(tuned_server, username, PASSWORD).status_code == 200
