"""Validation of user-supplied artifact paths.

Artifact paths are logical names, never filesystem paths (blobs live under server-made keys),
but they are still held to a strict grammar so that no traversal-looking name is stored,
echoed into a URL, or handed to a future backend: defence in depth.
"""

from __future__ import annotations

import re
import unicodedata

from shipyard.errors import InvalidPath

MAX_PATH = 1024
_FORBIDDEN = {
    "\\": "backslashes",
    ";": "';'",
    "#": "'#'",
    "?": "'?'",
    "%": "'%' (percent-encoding)",
    ":": "':' (drive letters and URL schemes)",
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _fail(message: str) -> InvalidPath:
    return InvalidPath(f"invalid artifact path: {message}", field="path")


def validate_artifact_path(raw: str) -> str:
    """Return ``raw`` if it is a clean relative path (``a/b/c.ext``), else raise InvalidPath."""
    if not raw:
        raise _fail("it is empty")
    if len(raw) > MAX_PATH:
        raise _fail(f"it is longer than {MAX_PATH} characters")
    if "\ufffd" in raw:
        raise _fail("it is not valid UTF-8 (overlong or broken encodings are refused)")
    if _CONTROL.search(raw):
        raise _fail("it contains a control character (NUL, newline, …)")
    for char, name in _FORBIDDEN.items():
        if char in raw:
            raise _fail(f"it contains {name}")
    if unicodedata.normalize("NFKC", raw) != raw:
        raise _fail("it contains characters that normalise to others (look-alike dots or slashes)")
    if raw.startswith("/"):
        raise _fail("it is absolute; use a relative path like 'models/model.pkl'")
    for segment in raw.split("/"):
        if segment in ("", ".", ".."):
            raise _fail(f"it has an empty, '.' or '..' segment ({raw!r})")
        if segment == "~":
            raise _fail("it has a '~' segment")
    return raw
