"""The gateway as a child of ``shipyard up``: started, restarted if it dies, stopped cleanly.

It is a process of its own (DESIGN §4) so invocations never queue behind control-plane
work. The child runs in its own process group: a Ctrl-C in the terminal reaches ``up``
only, which then sends the child SIGTERM and waits for it to drain its requests and write
out its capture queue. On Linux the child also gets SIGTERM if ``up`` dies without
stopping it. A child that exits on its own is restarted after a pause that doubles, from
0.5 s up to 10 s, and starts over once a child has lived a minute.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import signal
import subprocess
import sys
import threading
import time

from shipyard.config import Settings

log = logging.getLogger("shipyard.gateway")

_FIRST_PAUSE_S = 0.5
_MAX_PAUSE_S = 10.0
_HEALTHY_AFTER_S = 60.0


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class GatewaySupervisor:
    def __init__(self, settings: Settings) -> None:
        self._command = [
            sys.executable,
            "-m",
            "shipyard.cli.main",
            "gateway",
            "--home",
            str(settings.home),
            "--host",
            settings.host,
            "--port",
            str(settings.resolved_gateway_port),
        ]
        self.url = settings.gateway_url
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="gateway-supervisor", daemon=True)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        self._spawn()
        self._watcher.start()

    def stop(self, timeout_s: float = 40.0) -> int | None:
        """SIGTERM, wait for the drain and the capture flush, SIGKILL past ``timeout_s``."""
        with self._lock:
            self._stopping.set()
            proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.error("the gateway did not stop within %.0f s; killing it", timeout_s)
                proc.kill()
        return proc.wait()

    def _spawn(self) -> None:
        with self._lock:
            if self._stopping.is_set():
                return
            self._proc = subprocess.Popen(
                self._command, process_group=0, preexec_fn=_die_with_parent
            )

    def _watch(self) -> None:
        pause = _FIRST_PAUSE_S
        while True:
            proc = self._proc
            assert proc is not None
            started = time.monotonic()
            code = proc.wait()
            if self._stopping.is_set():
                return
            if time.monotonic() - started > _HEALTHY_AFTER_S:
                pause = _FIRST_PAUSE_S
            log.error("the gateway exited (code %s); restarting it in %.1f s", code, pause)
            if self._stopping.wait(pause):
                return
            pause = min(pause * 2, _MAX_PAUSE_S)
            self._spawn()
