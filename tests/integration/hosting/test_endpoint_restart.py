"""The controller's promise for endpoints: a server killed with -9 leaves its replicas serving
and the next server adopts them — the same processes, no second fleet; a clean stop ends
them (unless told to keep them) and the next server starts the fleet again."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import pytest
from tests.conftest import make_tenant, unique
from tests.support.endpoints import (
    FAST_HOSTING,
    approve,
    deploy,
    gone,
    in_service,
    invoke_replica,
    light_model,
    register,
    replica_processes,
    replicas,
    routed_replica_ids,
)
from tests.support.servers import RunningServer, start_server


@pytest.mark.parametrize("how", ["sigkill", "sigterm", "sigterm-keep"])
def test_a_restarted_server_adopts_the_fleet_or_starts_it_again(
    how: str, fresh_db_url: str, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    env = dict(FAST_HOSTING)
    if how == "sigterm-keep":
        env["SHIPYARD_HOSTING_KEEP_REPLICAS_ON_STOP"] = "true"
    first: RunningServer = start_server(home, db_url=fresh_db_url, extra_env=env, gateway=True)
    second: RunningServer | None = None
    try:
        tenant = make_tenant(first, ("lead", "scientist"))
        name = unique("survivor-")
        with first.client(tenant.keys["scientist"]) as scientist:
            version = register(scientist, tenant, "churn", light_model())
            with first.client(tenant.keys["lead"]) as lead:
                approve(lead, tenant, "churn", version)
            source = {"group": "churn", "version": version}
            assert deploy(scientist, tenant, name, "churn-m", count=2, source=source).is_success
            before = replicas(in_service(scientist, tenant, name))
        pids = sorted(r["pid"] for r in before)
        assert replica_processes(home) == pids

        first.stop(signal.SIGKILL if how == "sigkill" else signal.SIGTERM)
        if how == "sigterm":
            assert all(gone(pid) for pid in pids), "a clean stop ends the replicas"
            assert routed_replica_ids(first, name) == set(), "and takes them out of the routes"
        else:
            assert not any(gone(pid) for pid in pids), "the replicas outlive the server"
            for replica in before:  # and go on answering meanwhile
                assert invoke_replica(replica).status_code == 200

        second = start_server(home, db_url=fresh_db_url, extra_env=env, gateway=True)
        with second.client(tenant.keys["scientist"]) as scientist:
            after = replicas(in_service(scientist, tenant, name, timeout=60))
        assert len(after) == 2
        if how == "sigterm":
            assert not {r["pid"] for r in after} & set(pids), "a new fleet"
        else:
            assert sorted(r["pid"] for r in after) == pids, "the same processes, adopted"
            assert {r["id"] for r in after} == {r["id"] for r in before}
        assert replica_processes(home) == sorted(r["pid"] for r in after), "no second fleet"
        assert routed_replica_ids(second, name) == {r["id"] for r in after}
        for replica in after:
            assert invoke_replica(replica).status_code == 200
    finally:
        first.stop(signal.SIGKILL)
        if second is not None:
            second.stop()
        for pid in replica_processes(home):  # what a failed test might leave behind
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
