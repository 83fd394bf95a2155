"""Python environments for training jobs: the platform's own interpreter, or a cached venv.

A job without ``requirements`` runs on the platform's interpreter ("inherit"): nothing to build,
so it starts at once. A job with a requirements file runs in a virtual environment that ``uv``
builds once per distinct file and keeps in a cache, so the second job with the same file starts
as fast as the first one that inherits.

Layout under ``root`` (the platform's home holds everything, uv's own download cache included)::

    root/
      .uv-cache/                 UV_CACHE_DIR: wheels and sources shared by every build
      <key32>.lock               flock'ed while one process builds (or checks) that key
      <key32>/                   a finished env; ``.ready`` inside it says so
      .build-<key32>-<random>/   an env being built; renamed to ``<key32>/`` when complete

The rename is the commit: an env directory only ever appears complete, with its ``.ready``
marker, so a crash mid-build leaves at worst a ``.build-*`` directory that the next build of
that key sweeps away. The venv is made ``--relocatable`` so the rename does not break the
shebangs of the scripts installed into it.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from uv import find_uv_bin

from shipyard.errors import ShipyardError
from shipyard.kit.files import ensure_private_dir

__all__ = ["EnvironmentBuildError", "EnvironmentCache"]

#: Bumped whenever what goes into an env changes (the fallback file, the uv flags), so envs
#: built the old way are never mistaken for new ones.
_LAYOUT_VERSION = 1
_READY = ".ready"
_REQUIREMENTS_COPY = "shipyard-requirements.txt"
#: Sorted after anything a package is likely to install, so the platform's directories land
#: after every path the env's own ``.pth`` files add (``site`` processes them in name order).
_FALLBACK_PTH = "zz-shipyard-platform-fallback.pth"
#: How much of uv's output a failed build reports back as the job's failure reason.
_TAIL_LINES = 30
#: pip's own rule for comments: ``#`` at the start or after whitespace (``url#egg=`` is kept).
_COMMENT = re.compile(rb"(^|\s+)#.*$")


class EnvironmentBuildError(ShipyardError):
    """uv could not build the job's environment; the message ends with uv's last lines."""

    code = "environment_build_failed"


def _ignore(line: str) -> None:
    """The default log sink: callers that do not stream the build still get it built."""


class EnvironmentCache:
    """Hands out the interpreter a job runs with, building and caching venvs as needed.

    Safe to share between threads, and between processes that share ``root``: a key is built
    by whoever first takes its file lock, everyone else waits and then finds it ready.

    >>> cache = EnvironmentCache(Path("/var/lib/shipyard/envs"), uv_args=["--offline"])
    >>> python = cache.python_for(b"six==1.16.0\\n", log=print)  # doctest: +SKIP
    """

    def __init__(
        self,
        root: Path,
        *,
        uv_bin: str | None = None,
        build_timeout_s: float = 900,
        uv_args: Sequence[str] = (),
    ) -> None:
        self.root = Path(root)
        self.uv_bin = uv_bin or find_uv_bin()
        self.build_timeout_s = build_timeout_s
        # Extra flags for ``uv pip install`` only (``--offline``, ``--index-url ...``): they
        # change where packages come from, not what the env is, so they are not in the key.
        self.uv_args = tuple(uv_args)
        self._builds = 0
        self._builds_lock = threading.Lock()

    @property
    def builds(self) -> int:
        """How many environments this instance has built (rather than found ready)."""
        return self._builds

    def python_for(self, requirements: bytes | None, log: Callable[[str], None] = _ignore) -> Path:
        """The interpreter for a job with these requirements; builds the env if not cached.

        ``log`` receives uv's output line by line, so the job's own log shows the build.
        Raises :class:`EnvironmentBuildError` when uv fails or exceeds ``build_timeout_s``.
        """
        if requirements is None:
            return Path(sys.executable)
        key = environment_key(requirements)
        env_dir = self.root / key[:32]
        if not (env_dir / _READY).exists():
            ensure_private_dir(self.root)
            with _file_lock(self.root / f"{key[:32]}.lock"):
                # Whoever held the lock before us may have just built it.
                if not (env_dir / _READY).exists():
                    self._build(requirements, env_dir, log)
        return _env_python(env_dir)

    def _build(self, requirements: bytes, env_dir: Path, log: Callable[[str], None]) -> None:
        """Build into a fresh sibling directory and rename it into place; the lock is held."""
        with self._builds_lock:
            self._builds += 1
        for stale in self.root.glob(f".build-{env_dir.name}-*"):
            shutil.rmtree(stale, ignore_errors=True)  # left by a build that crashed
        staging = Path(tempfile.mkdtemp(prefix=f".build-{env_dir.name}-", dir=self.root))
        try:
            log(f"environment: building {env_dir.name} with uv")
            self._populate(staging, requirements, log)
            _commit(staging, env_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            _private_tree(self.root)
        log(f"environment: ready at {env_dir}")

    def _populate(self, staging: Path, requirements: bytes, log: Callable[[str], None]) -> None:
        """Create the venv, install the requirements, add the fallback; ``.ready`` goes last."""
        deadline = time.monotonic() + self.build_timeout_s
        self._run_uv(
            ["venv", "--python", sys.executable, "--relocatable", "--no-project", str(staging)],
            deadline,
            log,
        )
        req_file = staging / _REQUIREMENTS_COPY
        req_file.write_bytes(requirements)
        python = _env_python(staging)
        self._run_uv(
            ["pip", "install", "--python", str(python), *self.uv_args, "-r", str(req_file)],
            deadline,
            log,
        )
        write_platform_fallback(_site_packages(staging))
        _write_synced(staging / _READY, b"")

    def _run_uv(self, args: list[str], deadline: float, log: Callable[[str], None]) -> None:
        """Run uv, streaming its merged output to ``log``; any failure becomes a build error."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise EnvironmentBuildError(f"environment build failed: {self._timeout_message()}")
        proc = subprocess.Popen(
            [self.uv_bin, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            encoding="utf-8",
            errors="replace",
            cwd=self.root,  # config is found from here upwards, never from the server's cwd
            env=self._uv_env(),
            start_new_session=True,  # so a timeout kills uv and the builds it spawned
            umask=0o077,  # the platform's home is private, its environments too
        )
        timed_out = threading.Event()

        def expire() -> None:
            timed_out.set()
            _kill_group(proc)

        timer = threading.Timer(remaining, expire)
        timer.start()
        try:
            tail = _stream(proc, log)
        finally:
            timer.cancel()
            _kill_group(proc)  # only does anything if ``log`` raised mid-stream
            returncode = proc.wait()
        if returncode != 0:
            why = (
                self._timeout_message()
                if timed_out.is_set()
                else f"`uv {args[0]}` exited with {returncode}"
            )
            raise EnvironmentBuildError(
                f"environment build failed: {why}\n" + "\n".join(tail), returncode=returncode
            )

    def _timeout_message(self) -> str:
        return f"timed out after {self.build_timeout_s:g}s"

    def _uv_env(self) -> dict[str, str]:
        """uv's environment: its cache under our root, plain output, no Python downloads."""
        env = dict(os.environ)
        env.pop("VIRTUAL_ENV", None)  # the target is always given with --python
        env.update(
            UV_CACHE_DIR=str(self.root / ".uv-cache"),
            UV_PYTHON_DOWNLOADS="never",  # the env must be the platform's own Python
            UV_NO_PROGRESS="1",
            NO_COLOR="1",
        )
        return env


def environment_key(requirements: bytes) -> str:
    """sha256 of the normalised requirements plus everything the built env depends on.

    Normalising (line endings, blank lines, comments, surrounding space) lets cosmetic edits
    hit the cache. The interpreter's version, ABI and platform decide which wheels fit; its
    prefix decides which directories the fallback ``.pth`` points at, and the base interpreter
    the venv links to: two platform installs sharing a root must not share envs.
    """
    lines = requirements.removeprefix(b"\xef\xbb\xbf").splitlines()
    kept = [_COMMENT.sub(b"", line).strip() for line in lines]
    normalised = b"\n".join(line for line in kept if line)
    context = {
        "layout": _LAYOUT_VERSION,
        "python": sys.version,
        "cache_tag": sys.implementation.cache_tag,
        "platform": sysconfig.get_platform(),
        "prefix": sys.prefix,
        "executable": os.path.realpath(sys.executable),
    }
    digest = hashlib.sha256(normalised)
    digest.update(b"\0" + json.dumps(context, sort_keys=True).encode())
    return digest.hexdigest()


def write_platform_fallback(env_site_packages: Path) -> Path:
    """Make the platform's installed packages importable in the env, after the env's own.

    A job in its own env still needs ``shipyard`` (to log metrics) and would otherwise have to
    pin it and everything under it. ``site`` processes this ``.pth`` after the env's
    site-packages is already on ``sys.path``, and ``site.addsitedir`` appends, so an import
    looks in the env first: the requirements' pins always win, and only what they do not
    provide falls through to the platform. ``addsitedir`` (rather than a bare path line) also
    runs the platform's own ``.pth`` files, which is how an editable install of shipyard (a
    development checkout) becomes importable. The directories are the running interpreter's
    ``purelib`` and ``platlib``, so the env uses the same Python (same ABI) to load them.
    """
    paths = sysconfig.get_paths()
    platform_dirs = dict.fromkeys([paths["purelib"], paths["platlib"]])  # ordered, de-duplicated
    lines = [f"import site; site.addsitedir({directory!r})\n" for directory in platform_dirs]
    pth = env_site_packages / _FALLBACK_PTH
    pth.write_text("".join(lines), encoding="utf-8")
    return pth


def _env_python(env_dir: Path) -> Path:
    return env_dir / "bin" / "python"


def _site_packages(env_dir: Path) -> Path:
    """The env's site-packages: the "venv" scheme of the same interpreter that built it."""
    base = str(env_dir)
    return Path(sysconfig.get_path("purelib", scheme="venv", vars={"base": base}))


def _commit(staging: Path, env_dir: Path) -> None:
    """Atomically publish the staged env; an unready leftover at the target is replaced."""
    if env_dir.exists():
        shutil.rmtree(env_dir)  # not ready (we hold the lock and checked): never handed out
    os.rename(staging, env_dir)
    _fsync_dir(env_dir.parent)


def _write_synced(path: Path, data: bytes) -> None:
    """Write and fsync, so the marker is on disk before the rename that publishes it."""
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _private_tree(root: Path) -> None:
    """Take group and other permissions off everything under ``root``: uv creates some files
    (its lock files) with fixed modes whatever the umask, and the platform's home is private.
    Symlinks are skipped (their targets, the platform's interpreter, are not ours)."""
    for path in [root, *root.rglob("*")]:
        try:
            mode = path.lstat().st_mode
            if not stat.S_ISLNK(mode) and stat.S_IMODE(mode) & 0o077:
                path.chmod(stat.S_IMODE(mode) & 0o700)
        except FileNotFoundError:
            continue


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock``; each call opens the file anew, so it also excludes threads.

    The lock file is never deleted: removing it while another process waits on the old inode
    would let two builders in at once.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """Kill uv and its children; a no-op once it has exited (and been reaped)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def _stream(proc: subprocess.Popen[str], log: Callable[[str], None]) -> list[str]:
    """Pass each output line to ``log`` as it comes; return the last few for the error."""
    assert proc.stdout is not None
    tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
    for raw in proc.stdout:
        line = raw.rstrip("\n")
        tail.append(line)
        log(line)
    return list(tail)
