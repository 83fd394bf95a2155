"""Two API processes on one database: each delivery is made once, by one of them."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from tests.conftest import make_tenant
from tests.integration.events.helpers import (
    RECEIVERS,
    allow,
    create_hook,
    ping,
    wait_delivery,
)
from tests.support.receiver import Receiver
from tests.support.servers import start_server

PINGS = 24


def test_two_dispatchers_never_make_the_same_attempt(fresh_db_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = start_server(home, db_url=fresh_db_url)
    second = None
    try:
        second = start_server(home, db_url=fresh_db_url)  # same master key, same database
        tenant = make_tenant(first, ("lead",))
        with first.admin() as admin:
            allow(admin, RECEIVERS)
        with (
            Receiver() as receiver,
            first.client(tenant.keys["lead"]) as one,
            second.client(tenant.keys["lead"]) as two,
        ):
            hook = create_hook(one, tenant, receiver.url)
            sent = [ping(one if i % 2 else two, tenant, hook["id"]) for i in range(PINGS)]
            receiver.wait_for(lambda rs: len(rs) >= PINGS)
            # A dispatcher records the outcome after the receiver has answered: wait for it.
            listed = [wait_delivery(one, tenant, hook["id"], s["delivery_id"]) for s in sent]
        ids = Counter(r.header("X-Shipyard-Delivery") for r in receiver.requests)
        assert set(ids) == {s["delivery_id"] for s in sent}
        assert set(ids.values()) == {1}, ids.most_common(3)
        assert {(d["state"], d["attempts"]) for d in listed} == {("Delivered", 1)}
    finally:
        if second is not None:
            second.stop()
        first.stop()
