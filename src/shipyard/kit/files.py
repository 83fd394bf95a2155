"""Small filesystem helpers for secrets that must never be world-readable."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO


def ensure_private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)


def open_private_append(path: Path) -> BinaryIO:
    """Open for appending, creating the file 0600 (and its directory 0700) if needed."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    return os.fdopen(fd, "ab")


def write_private(path: Path, data: bytes) -> None:
    """Write atomically with mode 0600: the file never exists with looser permissions."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
