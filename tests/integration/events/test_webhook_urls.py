"""Webhook URLs over the API: internal targets are refused (422 on ``url``) in every spelling;
an admin's allow-list opens a target, re-checked before every delivery; only admins edit it."""

from __future__ import annotations

import pytest
from tests.conftest import make_tenant
from tests.integration.events.helpers import (
    ALLOWLIST,
    allow,
    base,
    create_hook,
    disallow,
    ping,
    wait_delivery,
)
from tests.integration.security.helpers import error_of
from tests.support.receiver import Receiver
from tests.support.servers import RunningServer

REFUSED = [
    # the bypass spellings of 127.0.0.1 and localhost
    "http://2130706433/",
    "http://0x7f.1/",
    "http://127.1/",
    "http://017700000001/",
    "http://[::ffff:127.0.0.1]/",
    "http://localhost./",
    "http://LOCALHOST/",
    "http://127.0.0.1:8080/hook",
    # other internal targets
    "http://127.0.0.2/",
    "http://[::1]/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1]/",
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://192.168.0.1/",
    "http://100.64.0.1/",
    "http://0.0.0.0/",
    "http://[::]/",
    "http://224.0.0.1/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://[2002:7f00:1::]/",
    # not http(s), credentials
    "ftp://93.184.215.14/",
    "file:///etc/passwd",
    "http://user:pw@93.184.215.14/",
]


def test_internal_targets_are_refused_naming_url_and_the_reason(hook_server: RunningServer) -> None:
    tenant = make_tenant(hook_server, ("lead",))
    problems = []
    with hook_server.client(tenant.keys["lead"]) as lead:
        for url in REFUSED:
            r = lead.post(f"{base(tenant)}/webhooks", json={"url": url})
            if r.status_code != 422:
                problems.append(f"{url}: {r.status_code} {r.text[:200]}")
                continue
            error = error_of(r)
            if error["field"] != "url" or "refused" not in error["message"]:
                problems.append(f"{url}: {error}")
            if not error["details"]["reason"]:
                problems.append(f"{url}: no reason in {error}")
        assert lead.get(f"{base(tenant)}/webhooks").json() == []
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://2130706433/", "127.0.0.1 is a loopback address"),
        ("http://[::ffff:127.0.0.1]/", "IPv4-mapped form of 127.0.0.1, a loopback address"),
        ("http://LOCALHOST/", "'localhost' is a loopback name"),
        ("http://169.254.169.254/", "the cloud metadata address"),
        ("http://10.0.0.1/", "a private address"),
    ],
)
def test_the_reason_says_what_the_target_is(
    hook_server: RunningServer, url: str, reason: str
) -> None:
    tenant = make_tenant(hook_server, ("lead",))
    with hook_server.client(tenant.keys["lead"]) as lead:
        r = lead.post(f"{base(tenant)}/webhooks", json={"url": url})
    assert r.status_code == 422
    assert reason in error_of(r)["details"]["reason"]


def test_only_platform_admins_read_or_change_the_allow_list(hook_server: RunningServer) -> None:
    tenant = make_tenant(hook_server, ("admin", "lead"))
    for role in ("admin", "lead"):  # a team's admin is no platform admin
        with hook_server.client(tenant.keys[role]) as client:
            assert client.get(ALLOWLIST).status_code == 403
            r = client.put(ALLOWLIST, json={"entries": ["0.0.0.0/0"]})
            assert r.status_code == 403, r.text
            assert error_of(r)["code"] == "permission_denied"
    with hook_server.admin() as admin:
        assert "0.0.0.0/0" not in admin.get(ALLOWLIST).json()["entries"]
        r = admin.put(ALLOWLIST, json={"entries": ["not a host!"]})
        assert r.status_code == 422 and error_of(r)["field"] == "entries.0"


def test_an_allow_listed_target_is_accepted_and_rechecked_at_delivery(
    hook_server: RunningServer,
) -> None:
    tenant = make_tenant(hook_server, ("lead",))
    with (
        Receiver(host="127.0.0.7") as receiver,
        hook_server.client(tenant.keys["lead"]) as lead,
        hook_server.admin() as admin,
    ):
        r = lead.post(f"{base(tenant)}/webhooks", json={"url": receiver.url})
        assert r.status_code == 422 and "loopback" in error_of(r)["message"]
        try:
            assert "127.0.0.7/32" in allow(admin, "127.0.0.7")  # stored in canonical form
            hook = create_hook(lead, tenant, receiver.url)
            sent = ping(lead, tenant, hook["id"])
            done = wait_delivery(lead, tenant, hook["id"], sent["delivery_id"])
            assert done["state"] == "Delivered", done
            assert receiver.requests[0].header("X-Shipyard-Event") == "webhook.ping"
        finally:
            disallow(admin, "127.0.0.7/32")
        # taken off the list: the next delivery is refused before any connection is made
        sent = ping(lead, tenant, hook["id"])
        refused = wait_delivery(
            lead, tenant, hook["id"], sent["delivery_id"], lambda d: d["attempts"] >= 1
        )
        assert "refused: 127.0.0.7 is a loopback address" in refused["history"][0]["error"]
        assert refused["history"][0]["status_code"] is None
        assert len(receiver.requests) == 1
        assert lead.delete(f"{base(tenant)}/webhooks/{hook['id']}").status_code == 204


def test_a_name_is_delivered_to_the_address_checked_with_its_own_host_header(
    hook_server: RunningServer,
) -> None:
    """An allow-listed name: the server connects to the address it resolved and checked, and
    says which host it meant in the Host header."""
    tenant = make_tenant(hook_server, ("lead",))
    with (
        Receiver(host="127.0.0.1") as receiver,
        hook_server.client(tenant.keys["lead"]) as lead,
        hook_server.admin() as admin,
    ):
        url = f"http://LocalHost.:{receiver.port}/in?source=shipyard"
        try:
            allow(admin, "localhost")
            hook = create_hook(lead, tenant, url)
            sent = ping(lead, tenant, hook["id"])
            done = wait_delivery(lead, tenant, hook["id"], sent["delivery_id"])
        finally:
            disallow(admin, "localhost")
        assert done["state"] == "Delivered", done
        (request,) = receiver.requests
        assert request.header("Host") == f"localhost:{receiver.port}"
        assert request.path == "/in?source=shipyard"
        r = lead.post(f"{base(tenant)}/webhooks", json={"url": url})
        assert r.status_code == 422 and "loopback name" in error_of(r)["message"]
