"""Unpacking model archives without letting any member land outside the target directory.

Shared by the hosting tier's model cache and the batch-transform runner, which both turn a
registry version's artifact (a ``model.tar.gz`` or a single model file) into a model
directory. It imports no domain, so a job process can use it without the server's stack.
"""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path, PurePosixPath

from shipyard.kit.files import ensure_private_dir


class UnsafeArchive(Exception):
    """The model archive holds a member that would land outside its directory."""


def _check_member(member: tarfile.TarInfo) -> None:
    name = member.name
    path = PurePosixPath(name)
    if not name or "\x00" in name or "\\" in name:
        raise UnsafeArchive(f"member {name!r}: not a plain relative name")
    if path.is_absolute() or ".." in path.parts:
        raise UnsafeArchive(f"member {name!r}: absolute paths and '..' are refused")
    if member.ischr() or member.isblk() or member.isfifo() or member.isdev():
        raise UnsafeArchive(f"member {name!r}: device and FIFO members are refused")
    if member.issym() or member.islnk():
        link = PurePosixPath(member.linkname)
        # a symlink is relative to its own directory, a hard link to the archive's root
        resolved = (path.parent / link) if member.issym() else link
        if link.is_absolute() or _escapes(resolved):
            raise UnsafeArchive(
                f"member {name!r}: its link to {member.linkname!r} leaves the model directory"
            )
    elif not (member.isfile() or member.isdir()):
        raise UnsafeArchive(f"member {name!r}: unsupported member type")


def _escapes(path: PurePosixPath) -> bool:
    depth = 0
    for part in path.parts:
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


def safe_extract(archive: Path, target: Path) -> None:
    """Unpack ``archive`` into ``target``, refusing anything that could land outside it."""
    ensure_private_dir(target)
    with tarfile.open(archive, mode="r:*") as tar:
        members = tar.getmembers()
        for member in members:
            _check_member(member)
        # the "data" filter repeats the checks and drops set-uid bits: defence in depth
        tar.extractall(target, members=members, filter="data")


def unpack(artifact: Path, name: str, target: Path) -> None:
    """A tar archive is extracted; a single file (``model.joblib``) is placed as it is."""
    if tarfile.is_tarfile(artifact):
        safe_extract(artifact, target)
        return
    ensure_private_dir(target)
    plain = PurePosixPath(name).name
    if not plain or plain in (".", ".."):
        raise UnsafeArchive(f"artifact name {name!r} is not a file name")
    shutil.copyfile(artifact, target / plain)
