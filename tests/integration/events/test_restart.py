"""Nothing acknowledged is lost: deliveries pending when the server stops are made after it
starts again (same database and home), once the receiver is back."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import make_tenant
from tests.integration.events.helpers import RECEIVERS, allow, create_hook, ping, wait_delivery
from tests.support.receiver import RECEIVER_HOST, Receiver
from tests.support.servers import free_port, start_server

# Many attempts, at most 0.5 s apart: the delivery outlives the restart still Pending.
PATIENT = {"SHIPYARD_WEBHOOK_MAX_ATTEMPTS": "1000", "SHIPYARD_WEBHOOK_BACKOFF_MAX_S": "0.5"}


def free_receiver_port() -> int:
    with Receiver() as probe:  # bound then closed: nothing listens there now
        return probe.port


def test_pending_deliveries_survive_a_restart(fresh_db_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    port = free_receiver_port()
    url = f"http://{RECEIVER_HOST}:{port}/hook"
    server = start_server(home, db_url=fresh_db_url, extra_env=PATIENT)
    try:
        tenant = make_tenant(server, ("lead",))
        with server.admin() as admin:
            allow(admin, RECEIVERS)
        with server.client(tenant.keys["lead"]) as lead:
            hook = create_hook(lead, tenant, url)
            sent = ping(lead, tenant, hook["id"])
            tried = wait_delivery(
                lead, tenant, hook["id"], sent["delivery_id"], lambda d: d["attempts"] >= 2
            )
        assert tried["state"] == "Pending"
        assert "could not connect" in tried["history"][0]["error"]
    finally:
        assert server.stop() == 0, server.log()

    with Receiver(port=port) as receiver:
        server = start_server(home, db_url=fresh_db_url, extra_env=PATIENT, port=free_port())
        try:
            with server.client(tenant.keys["lead"]) as lead:
                done = wait_delivery(lead, tenant, hook["id"], sent["delivery_id"])
            assert done["state"] == "Delivered", done
            assert done["history"][-1]["status_code"] == 200
            assert done["attempts"] == len(done["history"]) > tried["attempts"]
            (request,) = receiver.requests
            assert request.header("X-Shipyard-Delivery") == sent["delivery_id"]
            assert request.json["id"] == sent["event_id"]
        finally:
            server.stop()
