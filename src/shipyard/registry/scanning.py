"""Model artifact scanning: find unsafe pickle content without ever unpickling it.

A registered model version is scanned before anyone may approve it (DESIGN §5): loading a
pickle runs whatever callables it names, so the only safe way to judge one is to read its
opcodes. Nothing here calls ``pickle.load``, imports a module a pickle names, or extracts a
member to a path taken from the archive: containers and compressed streams are read as
streams, and a member that needs random access is copied into an anonymous spool.

Why picklescan, plus our own opcode walker
------------------------------------------
Both candidates were run on the test corpus (``tests/unit/registry/test_scanning.py``):
``os.system`` / ``posix.system`` / ``eval`` / ``builtins.exec`` / ``subprocess.Popen``
payloads as raw pickles, in joblib dumps (plain and compressed), in a ``model.tar.gz``, in a
torch-style zip and in a tar inside a tar; and benign joblib dumps of scikit-learn models,
a pickle of numpy arrays and a ``torch.save`` of a ``state_dict``.

- fickling 0.1.12 rates every payload unsafe, and every benign artifact too: any non-stdlib
  import (``sklearn.*``, ``numpy._core.multiarray._reconstruct``,
  ``torch._utils._rebuild_tensor_v2``) is "likely unsafe", any joblib dump with arrays is
  "likely overtly malicious" (the array bytes joblib writes between opcodes read as invalid
  opcodes; that is also the only reason it flags the joblib payloads), and protocol-5
  pickles fail with ``NotImplementedError`` (``BYTEARRAY8``). It cannot gate approvals.
- picklescan 1.0.5 (chosen) names every payload in a plain pickle stream and raises no
  false alarm on the benign set, from a maintained deny-list of dangerous globals; but it
  stops at the first array of a joblib dump (a parse error it does not count as dangerous),
  so it misses every payload placed after an array in a ``.joblib`` file.

So the deny-list comes from picklescan and the parsing is ours. ``_Walker`` simulates the
unpickler's stack over ``pickletools.genops`` (never executing anything) and so

- resolves ``STACK_GLOBAL`` operands through the memo exactly as the unpickler would, and
  reports a global whose name is computed at load time as dangerous;
- knows joblib's layout: after the ``BUILD`` of a ``NumpyArrayWrapper`` it skips the array
  bytes (alignment padding, then ``prod(shape) * itemsize``) or walks the nested pickle of an
  object array, and goes on with the opcodes after it. A file with such arrays is also walked
  a second time the way ``pickle.load`` would read it, so a payload hidden in the "array
  bytes" of a fake wrapper is still seen;
- checks every global it resolved against picklescan's deny-list (through picklescan's public
  ``scan_pickle_bytes``, fed one synthetic pickle naming them), against a small deny-list of
  our own (primitives picklescan lets through, e.g. ``builtins.__import__``, ``marshal``,
  ``importlib``, nested loaders such as ``joblib.load``), and against an allow-list of what
  scikit-learn, numpy, scipy, joblib and torch models need.

Where picklescan can parse a stream itself (no joblib arrays in it) it also scans the raw
bytes, as an independent second reading.

Severities: a denied or load-time-computed global is ``dangerous`` (the version is Blocked),
and so is a member the scanner itself failed on, so that no artifact crafted to break the
scan is approved unscanned. A global on neither list (a custom class, say), a file that does
not parse as the pickle it claims to be, an unsafe member path, or anything not fully scanned
because a bound was reached is ``suspicious``: a reviewer should look. ``info`` is a note.

Example::

    report = scan_file(Path("model.tar.gz"))
    if report.dangerous:
        ...  # the version is Blocked
    for f in report.findings:
        print(f.severity, f.path, f.kind, f.detail)  # dangerous model.tar.gz!/model.joblib ...
"""

from __future__ import annotations

import _compat_pickle
import bz2
import gzip
import io
import lzma
import math
import pickletools
import re
import shutil
import struct
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import IO, Any, Literal, cast

import numpy as np
from picklescan.scanner import SafetyLevel, scan_pickle_bytes

__all__ = ["Finding", "ScanLimits", "ScanReport", "Severity", "scan_bytes", "scan_file"]

Severity = Literal["dangerous", "suspicious", "info"]

#: Bumped whenever the allow/deny lists or the walker change, so a stored report says which
#: rules produced it.
RULES_VERSION = 1

_GiB = 1024**3


@dataclass
class Finding:
    """One thing a reviewer must know about; ``path`` names the member (``a.tar.gz!/b.pkl``)."""

    path: str
    severity: Severity
    kind: str
    detail: str


@dataclass
class ScanReport:
    """All findings of one artifact; ``dangerous`` decides whether the version is Blocked."""

    findings: list[Finding]
    scanned_files: int
    scanner: str

    @property
    def dangerous(self) -> bool:
        return any(f.severity == "dangerous" for f in self.findings)


@dataclass(frozen=True)
class ScanLimits:
    """Bounds that keep a hostile artifact (a zip bomb, a billion tiny opcodes) from taking
    the server down; reaching one is a ``suspicious`` "not fully scanned" finding."""

    #: Input bytes plus every byte any decompression layer produced.
    max_total_bytes: int = 4 * _GiB
    #: Archives and compressed streams each add one level: ``model.tar.gz`` holding a
    #: zlib-compressed ``model.joblib`` puts the pickle 3 levels deep.
    max_depth: int = 8
    #: Archive members, over all archives.
    max_members: int = 100_000
    #: Pickle opcodes, over all streams (the walker reads about a million a second).
    max_opcodes: int = 30_000_000
    #: A member that needs random access stays in memory up to this size, then spills to an
    #: anonymous temporary file.
    spool_in_memory: int = 64 * 1024**2


def scan_bytes(name: str, data: bytes, *, limits: ScanLimits | None = None) -> ScanReport:
    """Scan an artifact held in memory; ``name`` is its file name (extensions matter)."""
    scan = _Scan(limits or ScanLimits())
    return scan.run(name, io.BytesIO(data), len(data))


def scan_file(
    path: Path, name: str | None = None, *, limits: ScanLimits | None = None
) -> ScanReport:
    """Scan an artifact on disk; ``name`` (default: the file's own) is how findings call it."""
    scan = _Scan(limits or ScanLimits())
    with path.open("rb") as fh:
        return scan.run(name or path.name, fh, path.stat().st_size)


def scanner_name() -> str:
    """What produced a report: picklescan's version and our rules' version."""
    return f"picklescan {metadata.version('picklescan')} + shipyard-rules {RULES_VERSION}"


# --- file kinds ------------------------------------------------------------------------------

_PICKLE_EXTS = (".pkl", ".pickle", ".joblib", ".pt", ".pth", ".bin", ".ckpt")
_COMPRESSED_EXTS = {".gz": "", ".tgz": ".tar", ".bz2": "", ".xz": "", ".lzma": "", ".z": ""}
_PICKLE_HEADERS = tuple(bytes([0x80, p]) for p in range(2, 6))
_HEAD = 512
_COMPRESSIONS = frozenset({"gzip", "bz2", "xz", "zlib", "lzma", "lz4", "joblib-zfile"})
_LAYERS = _COMPRESSIONS | {"zip", "tar"}


def _sniff(name: str, head: bytes) -> str:
    """What a stream is, by its first bytes as loaders decide it; by extension where the
    magic is too weak to trust on its own (zlib is one byte, 'x')."""
    lower = name.lower()
    pickle_ext = lower.endswith(_PICKLE_EXTS)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head[257:262] == b"ustar" or (lower.endswith(".tar") and len(head) >= _HEAD):
        return "tar"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"BZh") and head[3:4].isdigit():
        return "bz2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if pickle_ext or lower.endswith((".z", ".lzma")):
        weak = _weak_compression(head)
        if weak:
            return weak
    if _pickle_like(name, head):
        return "pickle"
    return "other"


def _pickle_like(name: str, head: bytes) -> bool:
    return name.lower().endswith(_PICKLE_EXTS) or head.startswith(_PICKLE_HEADERS)


def _weak_compression(head: bytes) -> str:
    if len(head) >= 2 and head[0] == 0x78 and (head[0] << 8 | head[1]) % 31 == 0:
        return "zlib"
    if head.startswith(b"]\x00\x00"):
        return "lzma"
    if head.startswith(b"\x04\x22\x4d\x18"):
        return "lz4"
    if head.startswith(b"ZF"):
        return "joblib-zfile"
    return ""


def _inner_name(name: str) -> str:
    """``model.tar.gz`` decompresses to ``model.tar``; ``model.joblib`` stays itself."""
    for ext, replacement in _COMPRESSED_EXTS.items():
        if name.lower().endswith(ext):
            return name[: -len(ext)] + replacement
    return name


def _unsafe_member_name(name: str) -> bool:
    """A name an extracting loader could be tricked by; we never extract, but the model
    server might, so the reviewer should know."""
    parts = name.replace("\\", "/").split("/")
    return name.startswith(("/", "\\")) or ".." in parts or "\x00" in name or ":" in parts[0]


# --- budget and streams ----------------------------------------------------------------------


class _LimitReached(Exception):
    """A global bound was reached; the scan stops and says where."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.path: str | None = None


class _Malformed(Exception):
    """The bytes are not the pickle (or archive) they claim to be."""


class _Unsupported(Exception):
    """A format the scanner cannot open here; that member is not scanned."""


class _Budget:
    def __init__(self, limits: ScanLimits) -> None:
        self.limits = limits
        self.bytes_left = limits.max_total_bytes
        self.members_left = limits.max_members
        self.opcodes_left = limits.max_opcodes

    def take_bytes(self, n: int) -> None:
        self.bytes_left -= n
        if self.bytes_left < 0:
            raise _LimitReached(
                f"more than {self.limits.max_total_bytes} uncompressed bytes (max_total_bytes)"
            )

    def take_member(self) -> None:
        self.members_left -= 1
        if self.members_left < 0:
            raise _LimitReached(f"more than {self.limits.max_members} archive members")

    def take_opcodes(self, n: int) -> None:
        self.opcodes_left -= n
        if self.opcodes_left < 0:
            raise _LimitReached(f"more than {self.limits.max_opcodes} pickle opcodes")


class _Metered(io.RawIOBase):
    """Counts what a decompressor produces, refusing to read past the budget, so a bomb is
    stopped after ``max_total_bytes`` rather than after it has filled the memory."""

    def __init__(self, inner: IO[bytes], budget: _Budget) -> None:
        self._inner = inner
        self._budget = budget

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        want = max(0, min(len(view), self._budget.bytes_left + 1))
        data = self._inner.read(want) if want else b""
        self._budget.take_bytes(len(data))
        view[: len(data)] = data
        return len(data)


class _Prefixed(io.RawIOBase):
    """A non-seekable stream whose first bytes were already read for sniffing."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._head:
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(view))
        view[: len(data)] = data
        return len(data)


class _ZlibReader(io.RawIOBase):
    """joblib's zlib format is one bare zlib stream; the stdlib has no file object for it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._z = zlib.decompressobj()
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while not self._pending:
            if self._z.eof:
                return 0
            data = self._z.unconsumed_tail or self._raw.read(64 * 1024)
            if not data:
                raise _Malformed("zlib stream ended early")
            self._pending = self._z.decompress(data, max(len(view), 64 * 1024))
        n = min(len(view), len(self._pending))
        view[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def _decompressor(kind: str, raw: IO[bytes]) -> IO[bytes]:
    """A streaming reader of one compressed layer; raises ``_Malformed`` where unsupported."""
    if kind == "gzip":
        return cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb"))
    if kind == "bz2":
        return cast(IO[bytes], bz2.BZ2File(raw, mode="rb"))
    if kind in ("xz", "lzma"):
        fmt = lzma.FORMAT_XZ if kind == "xz" else lzma.FORMAT_ALONE
        return cast(IO[bytes], lzma.LZMAFile(raw, mode="rb", format=fmt))
    if kind == "zlib":
        return io.BufferedReader(_ZlibReader(raw))
    if kind == "joblib-zfile":  # joblib < 0.10: b"ZF", the length in hex (21 bytes), zlib
        raw.read(21)
        after = raw.read(1)  # an optional space
        rest = raw if after == b" " else io.BufferedReader(_Prefixed(after, raw))
        return io.BufferedReader(_ZlibReader(rest))
    if kind == "lz4":
        try:
            import lz4.frame  # optional: joblib's lz4 format needs it
        except ImportError:
            raise _Unsupported("lz4-compressed, and the lz4 package is not installed") from None
        return lz4.frame.LZ4FrameFile(raw, mode="rb")  # type: ignore[no-any-return]
    raise _Unsupported(f"unknown compression {kind}")


@dataclass
class _Node:
    """One stream being scanned: where it is (for findings), what it is called, and whether
    seeking in it is cheap (a file, memory, a spool) or would mean re-decompressing."""

    path: str
    name: str
    fh: IO[bytes]
    seekable: bool
    depth: int


# --- the scan --------------------------------------------------------------------------------


class _Scan:
    """One artifact's scan: walks containers depth-first and collects findings."""

    def __init__(self, limits: ScanLimits) -> None:
        self.limits = limits
        self.budget = _Budget(limits)
        self.findings: list[Finding] = []
        self._seen: set[tuple[str, str, str]] = set()
        self.scanned_files = 0

    def run(self, name: str, fh: IO[bytes], size: int) -> ScanReport:
        node = _Node(name, name, fh, seekable=True, depth=0)
        try:
            self.budget.take_bytes(size)
            self._scan(node)
        except _LimitReached as exc:
            detail = f"not fully scanned: the scan stopped here, {exc}"
            self.add(exc.path or node.path, "suspicious", "not-fully-scanned", detail)
        return ScanReport(self.findings, self.scanned_files, scanner_name())

    def add(self, path: str, severity: Severity, kind: str, detail: str) -> None:
        key = (path, kind, detail)
        if key not in self._seen:
            self._seen.add(key)
            self.findings.append(Finding(path, severity, kind, detail))

    def _scan(self, node: _Node) -> None:
        """Dispatch one stream on what it is. Unreadable bytes are suspicious; a failure of
        the scanner itself is dangerous, so that an artifact crafted to break the scan can
        never be approved unscanned."""
        try:
            head, node = _peek(node)
            kind = _sniff(node.name, head)
            if kind in _LAYERS and node.depth >= self.limits.max_depth:
                detail = f"not fully scanned: nested deeper than {self.limits.max_depth} levels"
                self.add(node.path, "suspicious", "not-fully-scanned", detail)
                return
            self._dispatch(kind, node, head)
        except _LimitReached as exc:
            exc.path = exc.path or node.path
            raise
        except _UNREADABLE as exc:
            self.add(node.path, "suspicious", "malformed", f"could not be read: {exc}")
        except _Unsupported as exc:
            self.add(node.path, "suspicious", "not-fully-scanned", f"not scanned: {exc}")
        except Exception as exc:
            detail = f"the scanner failed on it ({type(exc).__name__}: {exc}); not scanned"
            self.add(node.path, "dangerous", "scan-error", detail)

    def _dispatch(self, kind: str, node: _Node, head: bytes) -> None:
        if kind == "zip":
            with self._random_access(node) as seekable:
                self._scan_zip(seekable)
        elif kind == "tar" and _pickle_like(node.name, head):
            # A pickle may carry "ustar" at byte 257 and pickle.load does not care: read both.
            with self._random_access(node) as seekable:
                self._scan_tar(seekable)
                seekable.fh.seek(0)
                self.scanned_files += 1
                self._scan_pickle(seekable)
        elif kind == "tar":
            self._scan_tar(node)
        elif kind in _COMPRESSIONS:
            inner = _Metered(_decompressor(kind, node.fh), self.budget)
            stream = io.BufferedReader(inner, buffer_size=256 * 1024)
            self._scan(_Node(node.path, _inner_name(node.name), stream, False, node.depth + 1))
        elif kind in ("npy", "pickle"):
            self.scanned_files += 1
            with self._random_access(node) as seekable:
                (self._scan_npy if kind == "npy" else self._scan_pickle)(seekable)
        else:
            self.scanned_files += 1

    @contextmanager
    def _random_access(self, node: _Node) -> Iterator[_Node]:
        """The pickle walker seeks (to skip joblib arrays, to re-read a stream the way
        ``pickle.load`` would), and so does zipfile; a stream that cannot seek cheaply is
        copied to an anonymous spool first, in memory while it is small."""
        if node.seekable:
            yield node
            return
        with tempfile.SpooledTemporaryFile(max_size=self.limits.spool_in_memory) as spool:
            shutil.copyfileobj(node.fh, spool, 1024 * 1024)
            spool.seek(0)
            yield _Node(node.path, node.name, cast(IO[bytes], spool), True, node.depth)

    # --- containers ---

    def _member(self, parent: _Node, name: str) -> str:
        self.budget.take_member()
        path = f"{parent.path}!/{name}"
        if _unsafe_member_name(name):
            self.add(
                path,
                "suspicious",
                "unsafe-member-path",
                f"member name {name!r} would escape the directory it is extracted to",
            )
        return path

    def _scan_tar(self, node: _Node) -> None:
        try:
            with tarfile.open(fileobj=node.fh, mode="r:" if node.seekable else "r|") as tar:
                for member in tar:
                    self._scan_tar_member(node, tar, member)
        except tarfile.TarError as exc:
            self.add(node.path, "suspicious", "malformed", f"not a readable tar archive: {exc}")

    def _scan_tar_member(self, node: _Node, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        path = self._member(node, member.name)
        if member.issym() or member.islnk():
            self.add(
                path,
                "suspicious",
                "link-member",
                f"a link to {member.linkname!r}; model archives should hold plain files",
            )
            return
        if not member.isreg():
            return
        fh = tar.extractfile(member)
        if fh is not None:
            self._scan(_Node(path, member.name, fh, node.seekable, node.depth + 1))

    def _scan_zip(self, node: _Node) -> None:
        try:
            with zipfile.ZipFile(node.fh) as archive:
                storages = _torch_storage_prefixes(archive.namelist())
                for info in archive.infolist():
                    self._scan_zip_member(node, archive, info, storages)
        except _ZIP_ERRORS as exc:
            self.add(node.path, "suspicious", "malformed", f"not a readable zip archive: {exc}")

    def _scan_zip_member(
        self, node: _Node, archive: zipfile.ZipFile, info: zipfile.ZipInfo, storages: set[str]
    ) -> None:
        path = self._member(node, info.filename)
        if info.is_dir() or info.filename.startswith(tuple(storages)):
            return  # a torch tensor storage: raw numbers torch never unpickles
        if info.flag_bits & 0x1:
            self.add(path, "suspicious", "not-fully-scanned", "encrypted member; not scanned")
            return
        try:
            with archive.open(info) as member:
                stream: IO[bytes] = member
                if info.compress_type != zipfile.ZIP_STORED:
                    stream = io.BufferedReader(_Metered(member, self.budget), 256 * 1024)
                self._scan(_Node(path, info.filename, stream, False, node.depth + 1))
        except (*_ZIP_ERRORS, NotImplementedError, RuntimeError) as exc:
            self.add(path, "suspicious", "malformed", f"could not be read: {exc}")

    # --- leaves ---

    def _scan_npy(self, node: _Node) -> None:
        """A ``.npy`` is raw numbers unless its dtype holds objects: then a pickle follows."""
        fh = node.fh
        try:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                _, _, dtype = np.lib.format.read_array_header_1_0(fh)
            else:
                _, _, dtype = np.lib.format.read_array_header_2_0(fh)
        except (ValueError, SyntaxError, TypeError) as exc:
            self.add(node.path, "suspicious", "malformed", f"not a readable .npy file: {exc}")
            return
        if dtype.hasobject:  # numpy writes the array with pickle.dump after the header
            self._scan_pickle(node)

    def _scan_pickle(self, node: _Node) -> None:
        """Walk the stream the way joblib reads it and, where it holds joblib arrays, again
        the way ``pickle.load`` reads it; classify every global either walk resolved."""
        start = node.fh.tell()
        first = _Walker(node.fh, self.budget, joblib_layout=True).walk()
        walks = [first]
        if first.skipped_arrays:
            node.fh.seek(start)
            walks.append(_Walker(node.fh, self.budget, joblib_layout=False).walk())
        refs = [ref for w in walks for ref in w.globals if not ref.unresolved]
        names = {r.pair for r in refs} | {r.spelt for r in refs if r.spelt}
        denied = _picklescan_denied(names, node.path)
        if not first.skipped_arrays:
            node.fh.seek(start)
            denied |= _picklescan_raw(node.fh, node.path)
        self._classify(node.path, walks, denied)
        if first.error:
            self.add(
                node.path,
                "suspicious",
                "malformed-pickle",
                f"does not parse as a pickle: {first.error}",
            )
        for note in first.notes:
            self.add(node.path, "info", "note", note)
        for inner in first.nested:
            self._scan_nested(node, inner)

    def _scan_nested(self, node: _Node, inner: bytes | _Blob) -> None:
        """A tensor pickled with plain pickle carries ``torch.save`` output as bytes that
        ``torch.storage._load_from_bytes`` loads in turn: scan those bytes as an artifact."""
        if isinstance(inner, _Blob):
            node.fh.seek(inner.offset)
            data, offset = node.fh.read(inner.length), inner.offset
        else:
            data, offset = inner, -1
        where = f"{node.path}!/<bytes at {offset}>" if offset >= 0 else f"{node.path}!/<bytes>"
        self._scan(_Node(where, "storage.pt", io.BytesIO(data), True, node.depth + 1))

    def _classify(self, path: str, walks: list[_WalkResult], denied: set[tuple[str, str]]) -> None:
        """Denied or computed globals are dangerous, unlisted ones suspicious. Globals only the
        ``pickle.load`` reading finds come from reading joblib's array bytes as opcodes: a
        denied or computed one there is still an attack, an unlisted one is noise (an object
        array's nested pickle read with the outer memo), so it is only noted."""
        plain_only = {r.pair for r in walks[-1].globals} - {r.pair for r in walks[0].globals}
        for ref in (r for w in walks for r in w.globals):
            plain = ref.pair in plain_only
            how = " (if read with pickle.load instead of joblib.load)" if plain else ""
            names = [ref.pair, *([ref.spelt] if ref.spelt else [])]
            reasons = [_deny_reason(*n) for n in names if n in denied or _denied(*n)]
            if ref.unresolved:
                detail = f"a global whose name is computed while loading{how}: {ref.dotted}"
                self.add(path, "dangerous", "unresolved-global", detail)
            elif reasons:
                why = next((r for r in reasons if r), "on picklescan's list of dangerous globals")
                self.add(path, "dangerous", "unsafe-global", f"{ref.dotted}{how}: {why}")
            elif not _allowed(*ref.pair):
                detail = f"{ref.dotted}{how}: not on the allow-list; loading runs its code"
                self.add(path, "info" if plain else "suspicious", "unknown-global", detail)
        for w in walks:
            for code in w.extension_codes:
                self.add(
                    path,
                    "suspicious",
                    "unknown-global",
                    f"copyreg extension code {code}: resolved by the loading process",
                )


#: zipfile reports a corrupt directory as ValueError ("negative seek value"), OverflowError
#: or IndexError, a bad name as UnicodeDecodeError, a bad header as struct.error.
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    ValueError,
    OverflowError,
    IndexError,
    struct.error,
)
_UNREADABLE = (
    _Malformed,
    OSError,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    tarfile.TarError,
    zipfile.BadZipFile,
    NotImplementedError,
)


def _peek(node: _Node) -> tuple[bytes, _Node]:
    head = node.fh.read(_HEAD)
    if node.seekable:
        node.fh.seek(-len(head), io.SEEK_CUR)
        return head, node
    stream = io.BufferedReader(_Prefixed(head, node.fh), buffer_size=256 * 1024)
    return head, _Node(node.path, node.name, stream, False, node.depth)


def _torch_storage_prefixes(names: list[str]) -> set[str]:
    """``archive/data/<n>`` beside ``archive/data.pkl`` are tensor bytes, not pickles; left
    to sniffing, one that happens to start with b"\\x80\\x02" would read as a broken pickle."""
    return {n[: -len("data.pkl")] + "data/" for n in names if n.rsplit("/", 1)[-1] == "data.pkl"}


# --- the opcode walker -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Global:
    module: str
    name: str


@dataclass(eq=False)
class _Obj:
    """What a ``REDUCE``/``NEWOBJ``/``INST``/``OBJ`` would have built; never built."""

    factory: Any
    args: Any
    state: Any = None


class _Unknown:
    """A value only the real load could know (a persistent id, an out-of-band buffer)."""


class _NotStr:
    """A value that is certainly not a ``str`` (a big bytes blob, a set)."""


@dataclass(frozen=True)
class _Blob:
    """A bytes constant too big to keep: where its data sits in the stream."""

    offset: int
    length: int


_UNKNOWN = _Unknown()
_NOT_STR = _NotStr()


@dataclass(frozen=True)
class _Ref:
    """A global the load would import: ``module.name`` as the unpickler resolves it, and the
    spelling in the pickle where that differs (protocols 0-2 map Python 2 names)."""

    module: str
    name: str
    unresolved: bool = False
    spelt: tuple[str, str] | None = None

    @property
    def pair(self) -> tuple[str, str]:
        return (self.module, self.name)

    @property
    def dotted(self) -> str:
        if self.spelt:
            return f"{self.module}.{self.name} (spelt {self.spelt[0]}.{self.spelt[1]})"
        return f"{self.module}.{self.name}"


@dataclass
class _WalkResult:
    globals: list[_Ref] = field(default_factory=list)
    extension_codes: list[int] = field(default_factory=list)
    skipped_arrays: bool = False
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    #: Serialized artifacts inside the pickle that loading it would load in turn.
    nested: list[bytes | _Blob] = field(default_factory=list)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_CONSTANTS = _words(
    "INT BININT BININT1 BININT2 LONG LONG1 LONG4 FLOAT BINFLOAT STRING BINSTRING "
    "SHORT_BINSTRING UNICODE SHORT_BINUNICODE BINUNICODE BINUNICODE8"
)
#: Bytes opcodes and the size of their length prefix, to find the data again later.
_BYTES = {"SHORT_BINBYTES": 1, "BINBYTES": 4, "BINBYTES8": 8, "BYTEARRAY8": 8}
_PUTS = _words("PUT BINPUT LONG_BINPUT")
_GETS = _words("GET BINGET LONG_BINGET")
_FIXED = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False, "EMPTY_TUPLE": ()}
_IGNORED = _words("FRAME READONLY_BUFFER")


class _Walker:
    """Simulates the unpickler's stack and memo over the opcodes, building nothing.

    Only what the scan needs is tracked: constants (to resolve ``STACK_GLOBAL`` operands),
    containers (joblib's array metadata is a dict), and stand-ins for what a call would
    return. With ``joblib_layout`` the bytes joblib writes after a ``NumpyArrayWrapper`` are
    skipped; without it they are read as opcodes, as ``pickle.load`` would.
    """

    def __init__(self, fh: IO[bytes], budget: _Budget, *, joblib_layout: bool) -> None:
        self.fh = fh
        self.budget = budget
        self.joblib_layout = joblib_layout
        self.result = _WalkResult()
        self.end = _stream_end(fh)

    def walk(self) -> _WalkResult:
        """Every pickle in the stream, one after another (torch's legacy format stacks five),
        until the bytes stop looking like a pickle."""
        try:
            self._one_pickle()
            while self._another_pickle_follows():
                self._one_pickle()
            self._note_trailing()
        except _Malformed as exc:
            self.result.error = str(exc)
        except (ValueError, KeyError, IndexError, RecursionError, OverflowError) as exc:
            self.result.error = f"{type(exc).__name__}: {exc}"
        return self.result

    def _another_pickle_follows(self) -> bool:
        peek = self.fh.read(2)
        self.fh.seek(-len(peek), io.SEEK_CUR)
        return peek in _PICKLE_HEADERS

    def _note_trailing(self) -> None:
        left = self.end - self.fh.tell()
        if left > 0:
            self.result.notes.append(
                f"{left} bytes after the last pickle were not read as pickle data "
                "(standard loaders do not unpickle them)"
            )

    def _one_pickle(self) -> None:
        self.stack: list[Any] = []
        self.marks: list[list[Any]] = []
        self.memo: dict[int, Any] = {}
        self.proto = 0
        for opcode, arg, pos in pickletools.genops(self.fh):
            self.budget.take_opcodes(1)
            if opcode.name == "STOP":
                return
            self._step(opcode.name, arg, pos or 0)  # pos is None only for untellable streams
        raise _Malformed("the stream ended before STOP")

    # --- stack helpers ---

    def pop(self) -> Any:
        if not self.stack:
            raise _Malformed("stack underflow")
        return self.stack.pop()

    def pop_mark(self) -> list[Any]:
        if not self.marks:
            raise _Malformed("no MARK to pop to")
        items, self.stack = self.stack, self.marks.pop()
        return items

    def top(self) -> Any:
        if not self.stack:
            raise _Malformed("stack underflow")
        return self.stack[-1]

    # --- opcodes ---

    def _step(self, name: str, arg: Any, pos: int) -> None:
        if name in _CONSTANTS:
            self.stack.append(arg)
        elif name in _BYTES:
            blob = _Blob(pos + 1 + _BYTES[name], len(arg))
            self.stack.append(bytes(arg) if len(arg) <= 64 else blob)
        elif name in _FIXED:
            self.stack.append(_FIXED[name])
        elif name in _PUTS:
            self.memo[arg] = self.top()
        elif name == "MEMOIZE":
            self.memo[len(self.memo)] = self.top()
        elif name in _GETS:
            if arg not in self.memo:
                raise _Malformed(f"memo key {arg} was never stored")
            self.stack.append(self.memo[arg])
        elif name not in _IGNORED:
            self._structural(name, arg)

    def _structural(self, name: str, arg: Any) -> None:
        handler = getattr(self, f"_op_{name.lower()}", None)
        if handler is None:
            raise _Malformed(f"unsupported opcode {name}")
        handler(arg)

    def _op_proto(self, arg: Any) -> None:
        self.proto = int(arg)

    def _op_mark(self, _: Any) -> None:
        self.marks.append(self.stack)
        self.stack = []

    def _op_pop(self, _: Any) -> None:
        if self.stack:
            self.stack.pop()
        else:
            self.pop_mark()

    def _op_pop_mark(self, _: Any) -> None:
        self.pop_mark()

    def _op_dup(self, _: Any) -> None:
        self.stack.append(self.top())

    # Each pop_mark() swaps ``self.stack``: pop first, then append to the restored stack.

    def _op_tuple(self, _: Any) -> None:
        items = tuple(self.pop_mark())
        self.stack.append(items)

    def _op_tuple1(self, _: Any) -> None:
        self.stack.append((self.pop(),))

    def _op_tuple2(self, _: Any) -> None:
        b, a = self.pop(), self.pop()
        self.stack.append((a, b))

    def _op_tuple3(self, _: Any) -> None:
        c, b, a = self.pop(), self.pop(), self.pop()
        self.stack.append((a, b, c))

    def _op_empty_list(self, _: Any) -> None:
        self.stack.append([])

    def _op_list(self, _: Any) -> None:
        items = self.pop_mark()
        self.stack.append(items)

    def _op_append(self, _: Any) -> None:
        value = self.pop()
        target = self.top()
        if isinstance(target, list):
            target.append(value)

    def _op_appends(self, _: Any) -> None:
        items = self.pop_mark()
        target = self.top()
        if isinstance(target, list):
            target.extend(items)

    def _op_empty_dict(self, _: Any) -> None:
        self.stack.append({})

    def _op_dict(self, _: Any) -> None:
        items = self.pop_mark()
        self.stack.append(_pairs_into({}, items))

    def _op_setitem(self, _: Any) -> None:
        value, key = self.pop(), self.pop()
        target = self.top()
        if isinstance(target, dict):
            _pairs_into(target, [key, value])

    def _op_setitems(self, _: Any) -> None:
        items = self.pop_mark()
        target = self.top()
        if isinstance(target, dict):
            _pairs_into(target, items)

    def _op_empty_set(self, _: Any) -> None:
        self.stack.append(_NOT_STR)

    def _op_additems(self, _: Any) -> None:
        self.pop_mark()
        self.top()

    def _op_frozenset(self, _: Any) -> None:
        self.pop_mark()
        self.stack.append(_NOT_STR)

    def _op_global(self, arg: Any) -> None:
        module, _, name = str(arg).partition(" ")
        self.stack.append(self._found(module, name))

    def _op_inst(self, arg: Any) -> None:
        module, _, name = str(arg).partition(" ")
        args = tuple(self.pop_mark())
        self.stack.append(_Obj(self._found(module, name), args))

    def _op_stack_global(self, _: Any) -> None:
        name, module = self.pop(), self.pop()
        if isinstance(module, str) and isinstance(name, str):
            self.stack.append(self._found(module, name))
        elif _may_be_str(module) and _may_be_str(name):
            self.result.globals.append(_Ref(_describe(module), _describe(name), unresolved=True))
            self.stack.append(_UNKNOWN)
        else:
            raise _Malformed("STACK_GLOBAL operands are not strings; the load would fail here")

    def _op_obj(self, _: Any) -> None:
        items = self.pop_mark()
        if not items:
            raise _Malformed("OBJ without a class")
        self.stack.append(_Obj(items[0], tuple(items[1:])))

    def _op_newobj(self, _: Any) -> None:
        args, cls = self.pop(), self.pop()
        self.stack.append(_Obj(cls, args))

    def _op_newobj_ex(self, _: Any) -> None:
        _kwargs, args, cls = self.pop(), self.pop(), self.pop()
        self.stack.append(_Obj(cls, args))

    def _op_reduce(self, _: Any) -> None:
        args, func = self.pop(), self.pop()
        self.stack.append(_Obj(func, args))
        loads_bytes = func == _TORCH_LOAD_FROM_BYTES and isinstance(args, tuple) and args
        if loads_bytes and isinstance(args[0], bytes | _Blob):
            self.result.nested.append(args[0])

    def _op_build(self, _: Any) -> None:
        state = self.pop()
        obj = self.top()
        if isinstance(obj, _Obj):
            obj.state = state
            if self.joblib_layout and _is_array_wrapper(obj):
                self._skip_joblib_array(state)

    def _op_persid(self, _: Any) -> None:
        self.stack.append(_UNKNOWN)

    def _op_binpersid(self, _: Any) -> None:
        self.pop()
        self.stack.append(_UNKNOWN)

    def _op_next_buffer(self, _: Any) -> None:
        self.stack.append(_UNKNOWN)

    def _op_ext1(self, arg: Any) -> None:
        self.result.extension_codes.append(int(arg))
        self.stack.append(_UNKNOWN)

    _op_ext2 = _op_ext1
    _op_ext4 = _op_ext1

    def _found(self, module: str, name: str) -> _Global:
        """Record a global under the name the unpickler resolves (``find_class`` maps Python 2
        names, ``__builtin__`` or ``commands``, for protocols below 3)."""
        spelt = (module, name)
        if self.proto < 3:
            if spelt in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[spelt]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        ref = _Ref(module, name, spelt=None if spelt == (module, name) else spelt)
        self.result.globals.append(ref)
        return _Global(module, name)

    # --- joblib ---

    def _skip_joblib_array(self, state: Any) -> None:
        """Step over what ``NumpyArrayWrapper.read_array`` reads after the wrapper: the
        nested pickle of an object array, or alignment padding and the raw array bytes."""
        if not isinstance(state, dict):
            raise _Malformed("joblib array metadata is not a dict")
        itemsize, has_objects = _dtype_layout(state.get("dtype"))
        if has_objects:
            nested = _Walker(self.fh, self.budget, joblib_layout=False)
            nested._one_pickle()
            self.result.globals.extend(nested.result.globals)
            self.result.extension_codes.extend(nested.result.extension_codes)
        else:
            if state.get("numpy_array_alignment_bytes") is not None:
                pad = self.fh.read(1)
                self._skip(pad[0] if pad else 0)
            self._skip(_element_count(state.get("shape")) * itemsize)
        self.result.skipped_arrays = True

    def _skip(self, n: int) -> None:
        target = self.fh.tell() + n
        if target > self.end:
            raise _Malformed("joblib array data runs past the end of the stream")
        self.fh.seek(target)


def _stream_end(fh: IO[bytes]) -> int:
    here = fh.tell()
    end = fh.seek(0, io.SEEK_END)
    fh.seek(here)
    return end


def _pairs_into(target: dict[Any, Any], items: list[Any]) -> dict[Any, Any]:
    if len(items) % 2:
        raise _Malformed("odd number of items for a dict")
    for key, value in zip(items[::2], items[1::2], strict=True):
        try:
            target[key] = value
        except TypeError:  # unhashable here: a stand-in the real load would have built
            continue
    return target


#: Allowed callables that can return an exact ``str`` (``_codecs.encode("bf", "rot13")`` is
#: "os"; ``copyreg.__newobj__(str, "os")`` too). Every other allowed global is a class or
#: function that returns something else, so it cannot feed a module name to STACK_GLOBAL.
_STR_MAKERS = {("builtins", "str"), ("_codecs", "encode")}
_TORCH_LOAD_FROM_BYTES = _Global("torch.storage", "_load_from_bytes")


def _may_be_str(value: Any) -> bool:
    """Could the real load see an exact ``str`` here (STACK_GLOBAL rejects anything else)?
    A global on no list (``os.sep`` is one), a call of one, or a persistent id could."""
    if isinstance(value, str | _Unknown):
        return True
    if isinstance(value, _Global):
        return not _allowed(value.module, value.name)
    if isinstance(value, _Obj):
        factory = value.factory
        if isinstance(factory, _Global) and factory.module in ("copyreg", "copy_reg"):
            args = value.args if isinstance(value.args, tuple) else ()
            factory = args[0] if args else _UNKNOWN
        if isinstance(factory, _Global):
            pair = (factory.module, factory.name)
            return pair in _STR_MAKERS or not _allowed(*pair)
        return True
    return False


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, _Global):
        return f"<value of {value.module}.{value.name}>"
    if isinstance(value, _Obj) and isinstance(value.factory, _Global):
        return f"<result of {value.factory.module}.{value.factory.name}(...)>"
    return "<unknown>"


def _is_array_wrapper(obj: _Obj) -> bool:
    """A ``joblib.numpy_pickle.NumpyArrayWrapper``, however the pickle spelt its creation."""
    factory = obj.factory
    if isinstance(factory, _Global) and factory.module.startswith("copyreg"):
        factory = obj.args[0] if isinstance(obj.args, tuple) and obj.args else None
    return (
        isinstance(factory, _Global)
        and factory.module.split(".")[0] == "joblib"
        and factory.name.rsplit(".", 1)[-1] == "NumpyArrayWrapper"
    )


_DTYPE_CODE = re.compile(r"[<>|=]?[a-zA-Z]\d{0,4}")


def _dtype_layout(dtype: Any) -> tuple[int, bool]:
    """Item size and whether it holds objects, from a pickled ``numpy.dtype``: its reduce
    arguments give the type code, its ``BUILD`` state the size of flexible types and the
    flags. ``numpy.dtype`` is only asked to parse a short type code, never to unpickle."""
    if not (isinstance(dtype, _Obj) and isinstance(dtype.args, tuple) and dtype.args):
        raise _Malformed("joblib array dtype is not a pickled numpy.dtype")
    code = dtype.args[0]
    state = dtype.state if isinstance(dtype.state, tuple) else ()
    elsize = state[5] if len(state) > 5 and isinstance(state[5], int) else -1
    flags = state[7] if len(state) > 7 and isinstance(state[7], int) else 0
    if not isinstance(code, str) or not _DTYPE_CODE.fullmatch(code):
        raise _Malformed(f"joblib array dtype {code!r} is not a plain type code")
    has_objects = code.lstrip("<>|=").startswith("O") or bool(flags & 0x1)
    if elsize > 0:
        return elsize, has_objects
    try:
        return np.dtype(code).itemsize, has_objects
    except TypeError as exc:
        raise _Malformed(f"joblib array dtype {code!r}: {exc}") from None


def _element_count(shape: Any) -> int:
    if not (isinstance(shape, tuple) and all(isinstance(d, int) and d >= 0 for d in shape)):
        raise _Malformed("joblib array shape is not a tuple of sizes")
    return math.prod(shape)


# --- picklescan ------------------------------------------------------------------------------


def _picklescan_denied(pairs: set[tuple[str, str]], path: str) -> set[tuple[str, str]]:
    """Which of these globals picklescan's deny-list names, asked through its public API:
    one synthetic pickle that imports each of them and then stops, never loaded."""
    if not pairs:
        return set()
    body = bytearray(b"\x80\x04")
    for module, name in sorted(pairs):
        body += _binunicode(module) + _binunicode(name) + b"\x930"  # STACK_GLOBAL, POP
    body += b"N."
    result = scan_pickle_bytes(io.BytesIO(bytes(body)), path, multiple_pickles=False)
    return {(g.module, g.name) for g in result.globals if g.safety == SafetyLevel.Dangerous}


def _picklescan_raw(fh: IO[bytes], path: str) -> set[tuple[str, str]]:
    """picklescan's own parse of the raw stream: a second, independent reading."""
    try:
        result = scan_pickle_bytes(fh, path)
    except (ValueError, OSError, RecursionError):
        return set()
    return {(g.module, g.name) for g in result.globals if g.safety == SafetyLevel.Dangerous}


def _binunicode(text: str) -> bytes:
    data = text.encode("utf-8", "surrogatepass")
    return b"X" + len(data).to_bytes(4, "little") + data


# --- allow and deny lists --------------------------------------------------------------------

#: Builtins that only build plain values. Any other builtin (``getattr``, ``__import__``,
#: ``setattr``, ``globals``, ``eval``...) is a primitive of every known pickle exploit.
_SAFE_BUILTINS = _words(
    "bool bytearray bytes complex dict float frozenset int list object range set slice str "
    "tuple Ellipsis NotImplemented"
)

#: Modules (and their submodules) whose callables run code, reach the process, the files or
#: the network, or load a nested pickle: what picklescan's list does not already cover.
_DENY_MODULES = {
    "importlib": "imports any module",
    "imp": "imports any module",
    "zipimport": "imports code",
    "marshal": "turns bytes into code objects",
    "types": "builds functions and code objects",
    "code": "runs Python source",
    "codeop": "compiles Python source",
    "compileall": "compiles files",
    "multiprocessing": "starts processes",
    "_posixsubprocess": "starts processes",
    "_winapi": "starts processes",
    "signal": "signals processes",
    "tempfile": "creates files",
    "dill": "a second unpickler that rebuilds code",
    "cloudpickle": "a second unpickler that rebuilds code",
    "shelve": "a second unpickler",
}
_DENY_PAIRS = {
    ("io", "open"): "opens files",
    ("io", "FileIO"): "opens files",
    ("_io", "open"): "opens files",
    ("_io", "FileIO"): "opens files",
}
#: copyreg's reconstructors only rebuild an object of a class the pickle names (and that
#: class is checked on its own); its other functions register reducers and extension codes,
#: which would resolve globals this scan never sees.
_COPYREG_SAFE = frozenset({"_reconstructor", "__newobj__", "__newobj_ex__"})
_NESTED_LOADERS = {
    ("joblib", "load"),
    ("joblib.numpy_pickle", "load"),
    ("numpy", "load"),
    ("numpy.lib.npyio", "load"),
    ("numpy", "fromfile"),
    ("pandas", "read_pickle"),
    ("pandas.io.pickle", "read_pickle"),
    ("torch", "load"),
    ("torch.serialization", "load"),
}

_ALLOWED_PAIRS = {
    ("collections", "OrderedDict"),
    ("collections", "defaultdict"),
    ("collections", "deque"),
    ("collections", "Counter"),
    ("copyreg", "_reconstructor"),
    ("copyreg", "__newobj__"),
    ("copyreg", "__newobj_ex__"),
    ("copy_reg", "_reconstructor"),
    ("_codecs", "encode"),
    ("datetime", "datetime"),
    ("datetime", "date"),
    ("datetime", "time"),
    ("datetime", "timedelta"),
    ("datetime", "timezone"),
    ("decimal", "Decimal"),
    ("fractions", "Fraction"),
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy.ma.core", "_mareconstruct"),
    ("numpy.ma", "MaskedArray"),
    ("numpy.ma.core", "MaskedArray"),
    ("numpy.random._pickle", "__randomstate_ctor"),
    ("numpy.random._pickle", "__generator_ctor"),
    ("numpy.random._pickle", "__bit_generator_ctor"),
    ("numpy.random.mtrand", "RandomState"),
    ("numpy.random._generator", "Generator"),
    ("numpy.random._mt19937", "MT19937"),
    ("numpy.random._pcg64", "PCG64"),
    ("numpy.random._pcg64", "PCG64DXSM"),
    ("numpy.random._philox", "Philox"),
    ("numpy.random._sfc64", "SFC64"),
    ("numpy.random.bit_generator", "SeedSequence"),
    ("numpy.random.bit_generator", "__pyx_unpickle_SeedSequence"),
    ("joblib.numpy_pickle", "NumpyArrayWrapper"),
    ("torch", "Size"),
    ("torch", "device"),
    ("torch", "Tensor"),
    ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch._tensor", "_rebuild_from_type_v2"),
    # Loads torch.save bytes held in the pickle; the scan opens those bytes too.
    ("torch.storage", "_load_from_bytes"),
}
_NUMPY_SCALARS = _words(
    "bool bool_ int8 int16 int32 int64 uint8 uint16 uint32 uint64 intc uintc intp uintp "
    "longlong ulonglong float16 float32 float64 longdouble half single double complex64 "
    "complex128 clongdouble csingle cdouble str_ bytes_ void object_ datetime64 timedelta64"
)
_TORCH_DTYPES = _words(
    "float16 float32 float64 bfloat16 half float double int8 int16 int32 int64 uint8 bool "
    "long int short complex64 complex128"
)
_SCIPY_SPARSE = re.compile(r"scipy\.sparse(\.\w+)?")
_SPARSE_NAMES = re.compile(r"(csr|csc|coo|bsr|dia|dok|lil)_(matrix|array)")
#: scikit-learn classes are constructed, not called with the pickle's arguments for effect;
#: these subpackages hold the ones that touch files or the network.
_SKLEARN_EXCLUDED = ("sklearn.datasets", "sklearn.externals", "sklearn.utils._testing")
_CLASS_NAME = re.compile(r"_?[A-Z][A-Za-z0-9_]*")
#: Cython's pickle helpers rebuild an extension type of the same module.
_CYTHON_HELPER = re.compile(r"__pyx_unpickle_\w+|newObj")


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _denied(module: str, name: str) -> bool:
    return _deny_reason(module, name) is not None


def _deny_reason(module: str, name: str) -> str | None:
    """Our own deny-list, on top of picklescan's; ``None`` when it has nothing to say."""
    if module in ("builtins", "__builtin__"):
        return None if name in _SAFE_BUILTINS else "a builtin that is not a plain value type"
    if module in ("copyreg", "copy_reg"):
        return None if name in _COPYREG_SAFE else "registers reducers or extension codes"
    if (module, name) in _NESTED_LOADERS:
        return "loads a second pickle the scan cannot see"
    if (module, name) in _DENY_PAIRS:
        return _DENY_PAIRS[module, name]
    for package, why in _DENY_MODULES.items():
        if _within(module, package):
            return why
    return None


def _allowed(module: str, name: str) -> bool:
    """The allow-list: what scikit-learn, numpy, scipy, joblib and torch models need."""
    if (module, name) in _ALLOWED_PAIRS:
        return True
    if module in ("builtins", "__builtin__"):
        return name in _SAFE_BUILTINS
    if module == "numpy":
        return name in _NUMPY_SCALARS
    if module == "numpy.dtypes":
        return name.endswith("DType")
    if _SCIPY_SPARSE.fullmatch(module):
        return _SPARSE_NAMES.fullmatch(name) is not None
    if module == "torch":
        return name in _TORCH_DTYPES or name.endswith("Storage")
    if _within(module, "torch.nn"):
        return _CLASS_NAME.fullmatch(name) is not None
    if _within(module, "sklearn") and not module.startswith(_SKLEARN_EXCLUDED):
        return bool(_CLASS_NAME.fullmatch(name) or _CYTHON_HELPER.fullmatch(name))
    return False
