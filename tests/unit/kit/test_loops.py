"""The background loop's thread: it runs passes, wakes early, outlives a failing pass, and
stops within its timeout even when it meant to sleep far longer."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import pytest

from shipyard.kit.loops import BackgroundLoop

LONG_S = 60.0  # a sleep no test waits out: only wake() or stop() ends it
WITHIN_S = 5.0  # generous: the machine may be busy with other runs


class Counting(BackgroundLoop):
    """Counts its passes; raises on the passes listed in ``fail_on`` (1-based)."""

    def __init__(self, *, wait_s: float = LONG_S, fail_on: tuple[int, ...] = ()) -> None:
        super().__init__("test loop", log=logging.getLogger("tests.loops"), poll_s=0.01)
        self.wait_s = wait_s
        self.fail_on = fail_on
        self.passes = 0
        self.passed = threading.Condition()

    def run_once(self) -> float:
        with self.passed:
            self.passes += 1
            self.passed.notify_all()
            number = self.passes
        if number in self.fail_on:
            raise RuntimeError(f"pass {number} failed")
        return self.wait_s

    def wait_for(self, passes: int) -> bool:
        with self.passed:
            return self.passed.wait_for(lambda: self.passes >= passes, WITHIN_S)


@pytest.fixture
def loops() -> Iterator[list[Counting]]:
    """Loops a test started, stopped even when it fails."""
    started: list[Counting] = []
    yield started
    for loop in started:
        loop.stop(WITHIN_S)


def test_start_runs_a_first_pass_on_a_daemon_thread_named_after_the_loop(
    loops: list[Counting],
) -> None:
    loop = Counting()
    loops.append(loop)
    loop.start()
    assert loop.wait_for(1)
    names = {t.name: t.daemon for t in threading.enumerate()}
    assert names.get("test-loop") is True


def test_wake_runs_the_next_pass_long_before_the_sleep_ends(loops: list[Counting]) -> None:
    loop = Counting()
    loops.append(loop)
    loop.start()
    assert loop.wait_for(1)
    started = time.monotonic()
    loop.wake()
    assert loop.wait_for(2)
    assert time.monotonic() - started < WITHIN_S
    assert loop.passes == 2  # one wake, one pass: the loop went back to sleep


def test_a_pass_that_raises_is_logged_and_the_next_comes_after_poll_s(
    loops: list[Counting], caplog: pytest.LogCaptureFixture
) -> None:
    loop = Counting(fail_on=(1, 2))
    loops.append(loop)
    with caplog.at_level(logging.ERROR, logger="tests.loops"):
        loop.start()
        assert loop.wait_for(3)  # no wake(): poll_s (0.01) followed each failure
    failures = [r for r in caplog.records if r.getMessage() == "test loop: a pass failed"]
    assert len(failures) == 2
    assert all(r.exc_info is not None for r in failures)


def test_stop_ends_a_long_sleep_at_once_and_no_pass_follows() -> None:
    loop = Counting()
    loop.start()
    assert loop.wait_for(1)
    started = time.monotonic()
    loop.stop(timeout_s=WITHIN_S)
    assert time.monotonic() - started < WITHIN_S
    assert loop._thread is not None and not loop._thread.is_alive()
    passes = loop.passes
    loop.wake()
    time.sleep(0.05)
    assert loop.passes == passes


def test_stop_before_start_is_harmless() -> None:
    Counting().stop(timeout_s=0.1)
