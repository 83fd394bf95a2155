"""No secret is ever logged: passwords, API keys, access and refresh tokens stay out of the log.

Runs on both the shared server (log level warning) and the tuned one (log level debug), after
driving every path that handles a secret, including the failing ones.
"""

from __future__ import annotations

import time

from tests.conftest import Tenant, unique
from tests.integration.security.helpers import login
from tests.support.servers import RunningServer

V1 = "/api/v1"


def _exercise(server: RunningServer, secrets: list[str], *, wrong_logins: int) -> None:
    """Use secrets the way clients do, including in ways that fail; remember them all."""
    creds = server.credentials
    secrets += [creds["password"], creds["api_key"], _secret_of(creds["api_key"])]
    username, password = unique("log-"), "a password worth stealing"
    secrets.append(password)
    with server.admin() as admin:
        admin.post(V1 + "/users", json={"username": username, "password": password})
        team = unique("logteam-")
        admin.post(V1 + "/teams", json={"name": team})
        admin.post(f"{V1}/teams/{team}/members", json={"username": username, "role": "lead"})
    with server.client() as anon:
        for i in range(wrong_logins):
            attempt = f"typo-of-the-real-password-{i}"
            secrets.append(attempt)
            anon.post(V1 + "/auth/token", json={"username": username, "password": attempt})
        long_password = "L" * 2000  # refused by validation: must not be echoed into the log
        secrets.append(long_password)
        anon.post(V1 + "/auth/token", json={"username": username, "password": long_password})
        pair = login(server, username, password).json()
        secrets += [pair["access_token"], pair["refresh_token"]]
        refreshed = anon.post(V1 + "/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        secrets += [refreshed.json()["access_token"], refreshed.json()["refresh_token"]]
        anon.post(V1 + "/auth/refresh", json={"refresh_token": pair["refresh_token"]})  # replay
    for token in (pair["access_token"], refreshed.json()["access_token"]):
        with server.client(token) as human:
            human.get(V1 + "/auth/whoami")
    with server.admin() as admin:
        key = admin.post(V1 + "/keys", json={"team": team, "role": "viewer"}).json()
        secrets += [key["api_key"], key["secret_access_key"]]
        admin.delete(f"{V1}/keys/{key['key_id']}")
    with server.client(key["api_key"]) as revoked:  # a refused key
        revoked.get(V1 + "/auth/whoami")
    forged = pair["access_token"][:-4] + "AAAA"
    secrets.append(forged)
    with server.client(forged) as bad:
        bad.get(V1 + "/auth/whoami")


def _secret_of(api_key: str) -> str:
    """The secret part of ``shpk_<key id>_<secret>`` (the id is public; the secret may hold _)."""
    return api_key.removeprefix("shpk_").split("_", 1)[1]


def _leaks(log: str, secrets: list[str]) -> list[str]:
    assert all(len(s) >= 16 for s in secrets)  # short strings would match by chance
    return [s[:6] + "..." for s in secrets if s in log]


def test_no_secret_in_the_shared_servers_log(server: RunningServer, tenant: Tenant) -> None:
    secrets: list[str] = []
    _exercise(server, secrets, wrong_logins=1)  # the shared server throttles at 10
    secrets += list(tenant.keys.values())
    secrets += [_secret_of(k) for k in tenant.keys.values()]
    time.sleep(0.2)  # let the server flush what it writes
    assert not _leaks(server.log(), secrets)


def test_no_secret_in_a_debug_log(tuned_server: RunningServer) -> None:
    secrets: list[str] = []
    _exercise(tuned_server, secrets, wrong_logins=2)
    time.sleep(3.2)  # leave the tuned server's login throttle as it was
    log = tuned_server.log()
    assert "Application startup complete" in log  # INFO and below reached the log
    assert not _leaks(log, secrets)
