"""A lease loop's bookkeeping: it claims on every pass, renews on the first and then every
third of a lease (again at once after a renewal that failed), warns of leases it lost, and
never sleeps past its renewal cadence. Owner ids tell a dead local process from a live one."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from datetime import datetime

import pytest

from shipyard.kit.leases import LeaseLoop, new_owner_id, owner_is_dead

log = logging.getLogger("tests.leases")


class Recording(LeaseLoop):
    """Holds ``held``; the database keeps only ``kept`` of them; records what it was asked."""

    def __init__(self, *, lease_s: float, poll_s: float = 1.0, owner: str | None = None) -> None:
        super().__init__(
            "test controller", log=log, kind="row", lease_s=lease_s, poll_s=poll_s, owner=owner
        )
        self.claims = 0
        self.renewals: list[list[str]] = []
        self.held = ["a", "b"]
        self.kept = {"a", "b"}
        self.renew_fails = False

    def _claim(self) -> None:
        self.claims += 1

    def _held(self) -> list[str]:
        return list(self.held)

    def _renew_leases(self, ids: list[str], until: datetime) -> set[str]:
        if self.renew_fails:
            raise ConnectionError("the database is away")
        self.renewals.append(ids)
        return self.kept & set(ids)


def test_claims_every_pass_and_renews_on_the_first_then_each_third_of_a_lease() -> None:
    loop = Recording(lease_s=300)
    assert loop.run_once() == 1.0
    assert loop.run_once() == 1.0
    assert loop.claims == 2
    assert loop.renewals == [["a", "b"]]  # the second pass came long before 100 s
    loop._last_renew -= 100
    loop.run_once()
    assert len(loop.renewals) == 2


def test_the_sleep_is_capped_by_the_renewal_cadence_with_a_floor() -> None:
    assert Recording(lease_s=0.9).poll_s == pytest.approx(0.3)
    assert Recording(lease_s=0.03).poll_s == 0.2  # a tiny lease is not renewed in a busy loop


def test_a_renewal_that_fails_is_retried_on_the_next_pass() -> None:
    loop = Recording(lease_s=300)
    loop.renew_fails = True
    with pytest.raises(ConnectionError):
        loop.run_once()  # the loop logs it and sleeps poll_s
    loop.renew_fails = False
    loop.run_once()
    assert loop.renewals == [["a", "b"]]


def test_nothing_held_means_no_renewal_and_a_lost_lease_is_warned_of(
    caplog: pytest.LogCaptureFixture,
) -> None:
    idle = Recording(lease_s=300)
    idle.held = []
    idle.run_once()
    assert idle.renewals == []

    loop = Recording(lease_s=300)
    loop.kept = {"a"}
    with caplog.at_level(logging.WARNING, logger="tests.leases"):
        loop.run_once()
    assert [r.getMessage() for r in caplog.records] == ["test controller: lost the lease of row b"]


def test_owner_ids_name_this_process_and_only_a_gone_local_one_is_dead() -> None:
    mine = new_owner_id()
    assert mine.split(":")[1] == str(os.getpid())
    assert mine != new_owner_id()
    assert not owner_is_dead(mine)
    assert not owner_is_dead(None)
    assert not owner_is_dead("another-host:1:abcd")
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    host = mine.split(":")[0]
    assert owner_is_dead(f"{host}:{gone.stdout.strip()}:abcd")


def test_an_owner_given_is_kept_and_none_gets_a_fresh_one() -> None:
    assert Recording(lease_s=1, owner="me").owner == "me"
    assert Recording(lease_s=1).owner.split(":")[1] == str(os.getpid())
