"""Keep the cyclic garbage collector out of bulk work.

Building 100,000 small tuples (a metric history page, a 10,000-point batch) triggers many
collections, and each full one walks the whole server heap; that more than doubled the cost
of a history read. Those tuples hold no cycles, so collecting during the burst finds nothing.
``freeze_startup_heap`` moves the objects made at start-up out of the collector's sight for
good; ``paused_gc`` holds collection off for one burst (nesting and threads counted).
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_holders = 0


@contextmanager
def paused_gc() -> Iterator[None]:
    global _holders
    with _lock:
        _holders += 1
        if _holders == 1:
            gc.disable()
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0:
                gc.enable()


def freeze_startup_heap() -> None:
    gc.collect()
    gc.freeze()
