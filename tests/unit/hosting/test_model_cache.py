"""Safe extraction of model archives: nothing may land outside the model directory."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from shipyard.hosting.modelcache import UnsafeArchive, safe_extract, unpack


def _archive(path: Path, *members: tarfile.TarInfo, data: bytes = b"x") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for member in members:
            if member.isfile():
                member.size = len(data)
                tar.addfile(member, io.BytesIO(data))
            else:
                tar.addfile(member)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = 0o644
    return info


def test_a_plain_archive_is_extracted(tmp_path: Path) -> None:
    archive = _archive(
        tmp_path / "ok.tar.gz",
        _member("model.joblib"),
        _member("code", tarfile.DIRTYPE),
        _member("code/inference.py"),
        _member("code/alias.py", tarfile.SYMTYPE, "inference.py"),
    )
    safe_extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "model.joblib").read_bytes() == b"x"
    assert (tmp_path / "out" / "code" / "alias.py").is_symlink()


@pytest.mark.parametrize(
    ("member", "says"),
    [
        (_member("/etc/evil"), "absolute"),
        (_member("../evil"), "'..'"),
        (_member("a/../../evil"), "'..'"),
        (_member("link", tarfile.SYMTYPE, "/etc/passwd"), "leaves"),
        (_member("sub/link", tarfile.SYMTYPE, "../../etc"), "leaves"),
        (_member("hard", tarfile.LNKTYPE, "../outside"), "leaves"),
        (_member("dev", tarfile.CHRTYPE), "device"),
        (_member("fifo", tarfile.FIFOTYPE), "FIFO"),
    ],
)
def test_unsafe_members_are_refused(tmp_path: Path, member: tarfile.TarInfo, says: str) -> None:
    archive = _archive(tmp_path / "bad.tar.gz", _member("model.joblib"), member)
    with pytest.raises(UnsafeArchive, match=says):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "evil").exists() and not (tmp_path.parent / "evil").exists()


def test_a_single_file_artifact_is_placed_by_its_name(tmp_path: Path) -> None:
    artifact = tmp_path / "artifact"
    artifact.write_bytes(b"not a tar")
    unpack(artifact, "models/model.joblib", tmp_path / "out")
    assert (tmp_path / "out" / "model.joblib").read_bytes() == b"not a tar"
