"""A small in-process cache for facts that are read on every request and rarely change.

Entries die after a TTL, at their own deadline (an expiring key), or all at once when the
owner calls ``clear()`` because the facts changed. The TTL bounds how long another process
may act on what this one has since changed.
"""

from __future__ import annotations

import threading
import time
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    def __init__(self, ttl_s: float, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self._max = max_entries
        self._entries: dict[K, tuple[float, V]] = {}
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            self._entries.pop(key, None)
            return None
        return entry[1]

    def put(self, key: K, value: V, *, until_unix: float | None = None) -> None:
        """Keep ``value`` for the TTL, or until ``until_unix`` (epoch seconds) if sooner."""
        if self.ttl_s <= 0:
            return
        lifetime = self.ttl_s
        if until_unix is not None:
            lifetime = min(lifetime, until_unix - time.time())
        if lifetime <= 0:
            return
        with self._lock:
            if len(self._entries) >= self._max:
                self._entries.clear()
            self._entries[key] = (time.monotonic() + lifetime, value)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
