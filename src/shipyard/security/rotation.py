"""Master-key rotation across domains: every wrapped value is re-wrapped, no data re-encrypted.

Domains that wrap things under the master key register a ``Rewrapper``; the rotation runs
them all in one transaction between ``begin_rotation`` and ``finish_rotation`` (see
``MasterKey`` for why that order survives a crash).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy.orm import Session

from shipyard.db.engine import Database
from shipyard.security.keyring import MasterKey

# (session, old master key, new master key) -> number of values re-wrapped
Rewrapper = Callable[[Session, bytes, bytes], int]


def rotate_master_key(
    db: Database, master: MasterKey, rewrappers: Sequence[tuple[str, Rewrapper]]
) -> dict[str, int]:
    old, new = master.key, master.begin_rotation()
    try:
        with db.transaction() as s:
            counts = {name: rewrap(s, old, new) for name, rewrap in rewrappers}
    except BaseException:
        master.abort_rotation()
        raise
    master.finish_rotation(new)
    return counts
