"""The request-path cache: entries die by TTL, by their own deadline, or all at once."""

from __future__ import annotations

import gc
import time

from shipyard.kit.gcpause import paused_gc
from shipyard.kit.ttlcache import TTLCache


def test_an_entry_lives_for_the_ttl_then_is_gone() -> None:
    cache: TTLCache[str, int] = TTLCache(0.05)
    cache.put("a", 1)
    assert cache.get("a") == 1
    time.sleep(0.06)
    assert cache.get("a") is None


def test_a_deadline_sooner_than_the_ttl_wins_and_a_past_one_stores_nothing() -> None:
    cache: TTLCache[str, int] = TTLCache(60)
    cache.put("soon", 1, until_unix=time.time() + 0.05)
    cache.put("past", 2, until_unix=time.time() - 1)
    assert cache.get("soon") == 1 and cache.get("past") is None
    time.sleep(0.06)
    assert cache.get("soon") is None


def test_clear_forgets_everything_and_zero_ttl_disables() -> None:
    cache: TTLCache[str, int] = TTLCache(60)
    cache.put("a", 1)
    cache.clear()
    assert cache.get("a") is None
    off: TTLCache[str, int] = TTLCache(0)
    off.put("a", 1)
    assert off.get("a") is None


def test_a_full_cache_starts_over_instead_of_growing() -> None:
    cache: TTLCache[int, int] = TTLCache(60, max_entries=3)
    for i in range(4):
        cache.put(i, i)
    assert cache.get(3) == 3 and cache.get(0) is None


def test_paused_gc_nests_and_restores_collection() -> None:
    assert gc.isenabled()
    with paused_gc():
        assert not gc.isenabled()
        with paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
