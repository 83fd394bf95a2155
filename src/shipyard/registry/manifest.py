"""What a model version is made of, file by file: the SHA-256 of every file in its artifact.

Approval binds to the digest of this manifest, and verification recomputes it from the stored
bytes, so a change to any file — even one re-encrypted with valid keys and a matching
whole-artifact checksum — is caught and named.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path
from typing import Any

CHUNK = 1 << 20


def _sha256_stream(read: Any) -> str:
    digest = hashlib.sha256()
    while chunk := read(CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def manifest_of(path: Path, name: str) -> dict[str, Any]:
    """``{"files": {member: sha256}, "artifact_sha256": ...}``: a tar's members, or the file."""
    with path.open("rb") as f:
        whole = _sha256_stream(f.read)
    files: dict[str, str] = {}
    if tarfile.is_tarfile(path):
        with tarfile.open(path, mode="r:*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                extracted = tar.extractfile(member)
                if extracted is not None:
                    files[member.name.removeprefix("./")] = _sha256_stream(extracted.read)
    else:
        files[name] = whole
    return {"files": dict(sorted(files.items())), "artifact_sha256": whole}


def manifest_digest(manifest: dict[str, Any]) -> str:
    canonical = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(canonical).hexdigest()


def changed_files(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """Files whose digest differs, appeared or disappeared (sorted)."""
    before, after = expected.get("files", {}), actual.get("files", {})
    return sorted(n for n in set(before) | set(after) if before.get(n) != after.get(n))
