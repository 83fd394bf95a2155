"""The thread of a background worker: start, wake early, stop, one pass at a time.

The job controller, the endpoint controller and the webhook dispatcher each loop over the
database: one pass, then a sleep that ends when they are woken (something was submitted, a
child finished) or when the time they asked for has passed. What a pass does and how long
to sleep after it are theirs; this class owns the thread around them, so they all start and
stop the same way and a pass that fails never ends the loop.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod


class BackgroundLoop(ABC):
    """One daemon thread that calls ``run_once()`` until ``stop()``.

    ``run_once()`` returns the seconds to sleep before the next pass and ``wake()`` cuts that
    sleep short. A pass that raises is logged and followed by a sleep of ``poll_s``: the
    usual cause, a database that is briefly unreachable, is gone a moment later.

    Subclasses extend ``start()``, ``wake()`` and ``stop()`` through ``super()`` for what
    they own (worker threads, a pool) and hand ``_stopping`` to their workers so that one
    ``stop()`` reaches them all. The loop's own thread is named ``name`` with dashes.
    """

    def __init__(self, name: str, *, log: logging.Logger, poll_s: float) -> None:
        self.name = name
        self.poll_s = poll_s
        self._log = log
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @abstractmethod
    def run_once(self) -> float:
        """Do one pass; the seconds to sleep before the next (``wake()`` ends it early)."""

    def start(self) -> None:
        thread_name = self.name.replace(" ", "-")
        self._thread = threading.Thread(target=self._loop, name=thread_name, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Run the next pass now rather than when the current sleep ends."""
        self._wake.set()

    def stop(self, timeout_s: float = 60.0) -> None:
        """End the loop: no pass starts after this; wait up to ``timeout_s`` for one under way."""
        self._stopping.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self._pass())
            self._wake.clear()

    def _pass(self) -> float:
        try:
            return self.run_once()
        except Exception:  # logged, never fatal: the next pass may well succeed
            self._log.exception("%s: a pass failed", self.name)
            return self.poll_s
