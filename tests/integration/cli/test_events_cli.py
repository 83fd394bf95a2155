"""``shipyard events`` and ``shipyard webhooks`` as a user runs them, against a real server and
a real receiver.

Every command is a subprocess (tests/support/cli.py), about half a second each, so the tests
run only the commands whose output they check, run independent ones side by side
(``Users.cli_all``), and set up or poll through the SDK. One tenant and one receiver per
module.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import Tenant, make_tenant
from tests.integration.events.helpers import RECEIVERS
from tests.support.cli import cli_env, error_line, ok_json, run_cli
from tests.support.receiver import Receiver
from tests.support.servers import RunningServer

import shipyard

Result = subprocess.CompletedProcess[str]


@dataclass
class Users:
    tenant: Tenant
    envs: dict[str, dict[str, str]]  # lead, viewer and the platform admin
    sessions: dict[str, shipyard.Session]  # the same people through the SDK
    receiver: Receiver

    def cli(self, role: str, *args: str) -> Result:
        return run_cli(self.envs[role], *args)

    def cli_all(self, *commands: tuple[str, ...]) -> list[Result]:
        """Independent commands ``(role, *args)`` at the same time, results in order."""
        with ThreadPoolExecutor(len(commands)) as pool:
            return list(pool.map(lambda command: self.cli(*command), commands))

    def events(self, role: str = "lead") -> shipyard.Events:
        return self.sessions[role].events(f"{self.tenant.team}/{self.tenant.project}")


@pytest.fixture(scope="module")
def users(hook_server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Users]:
    tenant = make_tenant(hook_server, ("lead", "viewer"))
    work: Path = tmp_path_factory.mktemp("events-cli")
    keys = {**tenant.keys, "admin": hook_server.admin_key}
    envs = {
        role: cli_env(
            work / role,
            SHIPYARD_URL=hook_server.url,
            SHIPYARD_API_KEY=key,
            SHIPYARD_PROJECT=f"{tenant.team}/{tenant.project}",
        )
        for role, key in keys.items()
    }
    sessions = {role: shipyard.Session(url=hook_server.url, api_key=k) for role, k in keys.items()}
    try:
        with Receiver() as receiver:
            yield Users(tenant, envs, sessions, receiver)
    finally:
        for session in sessions.values():
            session.close()


def cells(table: str) -> list[list[str]]:
    """A Rich table's rows (the header first) as lists of cell texts."""
    lines = [line for line in table.splitlines() if "━" not in line]
    return [[cell.strip() for cell in re.split("[│┃]", line)] for line in lines]


def wait_done(events: shipyard.Events, hook_id: str, delivery_id: str) -> dict[str, Any]:
    """The delivery once it is no longer Pending."""
    deadline = time.monotonic() + 30
    while True:
        found = next(d for d in events.deliveries(hook_id) if d["id"] == delivery_id)
        if found["state"] != "Pending" or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_create_list_ping_deliveries_and_remove(users: Users) -> None:
    made = users.cli(
        "lead",
        *("webhooks", "create", users.receiver.url, "--description", "[bold]cli[/] hook"),
        *("--event-type", "webhook.*", "-t", "model.version.*"),
    )
    assert made.returncode == 0, made.stderr
    shown = dict(line.split(": ", 1) for line in made.stdout.splitlines())
    hook_id, secret = shown["id"], shown["secret"]
    assert shown["event_types"] == "webhook.*, model.version.*" and secret
    assert shown["description"] == "[bold]cli[/] hook"  # text, never Rich markup
    assert "not shown again" in made.stderr

    listed, show, pinged = users.cli_all(
        ("lead", "webhooks", "ls", "--json"),
        ("lead", "webhooks", "show", hook_id),
        ("lead", "webhooks", "ping", hook_id, "--json"),
    )
    assert [h["id"] for h in ok_json(listed)] == [hook_id] and "secret" not in listed.stdout
    assert f"url: {users.receiver.url}" in show.stdout and "secret" not in show.stdout
    sent = ok_json(pinged)
    (request,) = users.receiver.wait_for(
        lambda rs: any(r.header("X-Shipyard-Delivery") == sent["delivery_id"] for r in rs)
    )
    assert shipyard.verify_signature(
        secret,
        request.header("X-Shipyard-Timestamp"),
        request.body,
        request.header("X-Shipyard-Signature"),
    )
    assert wait_done(users.events(), hook_id, sent["delivery_id"])["state"] == "Delivered"

    table, pings, jobs = users.cli_all(
        ("lead", "webhooks", "deliveries", hook_id),
        ("viewer", "events", "ls", "--type", "webhook.*", "--json"),
        ("viewer", "events", "ls", "--type", "job.*"),
    )
    assert table.returncode == 0, table.stderr
    header, row = cells(table.stdout)
    assert header == ["id", "event type", "state", "attempts", "last status", "last error"]
    assert row == [sent["delivery_id"], "webhook.ping", "Delivered", "1", "200", "-"]
    (event,) = ok_json(pings)
    assert (event["id"], event["type"]) == (sent["event_id"], "webhook.ping")
    assert event["actor"] == users.tenant.users["lead"]
    assert jobs.returncode == 0 and "webhook.ping" not in jobs.stdout

    removed = users.cli("lead", "webhooks", "rm", hook_id)
    assert removed.returncode == 0 and f"Deleted webhook {hook_id}" in removed.stderr
    line = error_line(users.cli("lead", "webhooks", "ping", hook_id), 1)
    assert "404" in line and hook_id in line


def test_events_ls_pages_with_after_and_says_when_more_may_follow(users: Users) -> None:
    hook = users.events().create_webhook(users.receiver.url, event_types="nothing.at.all")
    for _ in range(2):
        users.events().ping(hook["id"])
    everything = users.events("viewer").list(limit=1000)
    oldest = everything[0]["id"]
    first, rest, bad = users.cli_all(
        ("viewer", "events", "ls", "--limit", "1"),
        ("viewer", "events", "ls", "--after", oldest, "--json"),
        ("viewer", "events", "ls", "--type", "Not A Type"),
    )
    assert first.returncode == 0, first.stderr
    header, row = cells(first.stdout)
    assert header == ["id", "type", "subject", "actor", "created_at"]
    assert row[:2] == [oldest, everything[0]["type"]]
    assert f"more may follow: --after {oldest}" in first.stderr
    assert ok_json(rest) == everything[1:]
    line = error_line(bad, 1)
    assert "422" in line and "[field: type]" in line


def test_a_webhook_to_an_internal_address_is_refused_naming_the_url(users: Users) -> None:
    line = error_line(users.cli("lead", "webhooks", "create", "http://169.254.169.254/"), 1)
    assert "[field: url]" in line and "422 validation_failed" in line


def test_the_allow_list_is_set_by_a_platform_admin_only(users: Users) -> None:
    before = users.sessions["admin"].webhook_allowlist()
    assert RECEIVERS in before
    try:
        added, refused, usage = users.cli_all(
            ("admin", "webhooks", "allowlist", "set", *before, "hooks.internal", "--json"),
            ("lead", "webhooks", "allowlist", "set", "10.0.0.0/8"),
            ("admin", "webhooks", "allowlist", "set"),  # neither entries nor --clear
        )
        stored = ok_json(added)["entries"]
        assert set(stored) == {*before, "hooks.internal"}
        line = error_line(refused, 1)
        lead = users.tenant.users["lead"]
        assert f"{lead} lacks platform:admin" in line and "403 permission_denied" in line
        assert usage.returncode == 2 and "--clear" in usage.stderr

        shown, listed = users.cli_all(
            ("admin", "webhooks", "allowlist"), ("admin", "webhooks", "allowlist", "--json")
        )
        assert shown.stdout.splitlines() == stored and ok_json(listed) == {"entries": stored}
        cleared = users.cli("admin", "webhooks", "allowlist", "set", "--clear")
        assert cleared.returncode == 0 and cleared.stdout == "", cleared.stderr
        assert "empty" in cleared.stderr and users.sessions["admin"].webhook_allowlist() == []
    finally:
        users.sessions["admin"].set_webhook_allowlist(before)
