"""Data capture: sampled request/response records, written as JSONL batches to the store.

The request path only appends a tuple to a bounded in-memory queue (it never waits: when
the queue is full the record is dropped and counted). A writer thread turns records into
JSON lines and writes one artifact per (endpoint, variant, hour) group through
``ArtifactService`` into the endpoint's project, at::

    <route.capture.prefix>/<variant>/<yyyy>/<mm>/<dd>/<hh>/<batch id>.jsonl

It writes when ``batch_records`` have gathered, or every ``interval_s``, and on shutdown
it drains the queue before the process exits, so every record whose response was sent is
stored after a clean stop. A failing store (full disk, S3 down) drops the batch, counts
it per variant (``reason="store"``) and logs one line per outage, never touching requests.

One line (``input``/``output`` are null when the route does not capture that side)::

    {"event_id": "...", "time": "2026-11-24T10:00:00.123456Z", "endpoint": "churn",
     "variant": "AllTraffic", "model_version": "v23",
     "input": {"content_type": "application/json", "encoding": "text", "data": "{...}"},
     "output": {"content_type": "application/json", "encoding": "text", "data": "{...}"},
     "latencies": {"model_ms": 0.41, "overhead_ms": 0.12}, "custom_attributes": null}

Bodies that are not UTF-8 text (``application/x-npy``, say) are stored base64-encoded with
``"encoding": "base64"``.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import NamedTuple

import orjson

from shipyard.hosting.gateway.table import LiveEndpoint, LiveVariant

log = logging.getLogger("shipyard.gateway")

_TEXT_TYPES = ("application/json", "text/", "application/jsonlines", "application/x-ndjson")


class CaptureRecord(NamedTuple):
    event_id: str
    at: float  # epoch seconds
    endpoint: LiveEndpoint
    variant: LiveVariant
    input: bytes
    input_type: bytes | None
    output: bytes
    output_type: bytes | None
    model_s: float
    overhead_s: float
    attributes: bytes | None


# (project id, artifact path, JSONL bytes) -> None; raises when the store fails
WriteBatch = Callable[[str, str, bytes], None]


class CaptureWriter:
    def __init__(
        self, *, write: WriteBatch, max_records: int, batch_records: int, interval_s: float
    ) -> None:
        self._write = write
        self._max = max_records
        self._batch = batch_records
        self._interval = interval_s
        self._queue: deque[CaptureRecord] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gateway-capture", daemon=True)
        self._failing = False
        self._batch_ids = _BatchIds()

    def offer(self, record: CaptureRecord) -> bool:
        """On the request path: queue the record, or drop it (False) when the queue is full."""
        queue = self._queue
        if len(queue) >= self._max:
            return False
        queue.append(record)
        if len(queue) >= self._batch and not self._wake.is_set():
            self._wake.set()
        return True

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout_s: float = 30.0) -> None:
        """Write everything queued, then stop (called at shutdown, after the last request)."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.error("capture: %d records not written at shutdown", len(self._queue))

    def _run(self) -> None:
        """Full batches as soon as they fill; the rest when the interval is up (or at stop).

        Never "whatever is there" in a loop: under steady traffic that writes a stream of tiny
        batches, each paying a whole upload (two transactions, a data key, a file).
        """
        due = time.monotonic() + self._interval
        while True:
            self._wake.wait(max(0.0, due - time.monotonic()))
            self._wake.clear()
            stopping = self._stop.is_set()
            while len(self._queue) >= self._batch:
                self._write_some(self._batch)
            if stopping or time.monotonic() >= due:
                # what is queued now, not "until empty": traffic keeps adding to the queue
                left = len(self._queue)
                while left > 0:
                    left -= self._write_some(min(left, self._batch))
                due = time.monotonic() + self._interval
            if stopping:
                while self._queue:  # requests that finished while the last batch was written
                    self._write_some(self._batch)
                return

    def _write_some(self, count: int) -> int:
        """Write up to ``count`` records from the head of the queue; how many were taken."""
        records: list[CaptureRecord] = []
        queue = self._queue
        while queue and len(records) < count:
            records.append(queue.popleft())
        groups: dict[tuple[str, str], list[CaptureRecord]] = {}
        for record in records:
            groups.setdefault(_group_key(record), []).append(record)
        for (project_id, directory), group in groups.items():
            self._store(project_id, f"{directory}/{self._batch_ids.next()}.jsonl", group)
        return len(records)

    def _store(self, project_id: str, path: str, group: list[CaptureRecord]) -> None:
        stats = group[0].variant.stats
        try:
            data = b"".join(orjson.dumps(_document(r)) + b"\n" for r in group)
            self._write(project_id, path, data)
        except Exception as exc:
            stats.capture_dropped_store += len(group)
            if not self._failing:
                log.error("capture: cannot write to the store, dropping captures: %s", exc)
                self._failing = True
            return
        stats.capture_written += len(group)
        if self._failing:
            log.info("capture: writing to the store again")
            self._failing = False


def _group_key(record: CaptureRecord) -> tuple[str, str]:
    endpoint = record.endpoint
    hour = time.strftime("%Y/%m/%d/%H", time.gmtime(record.at))
    prefix = endpoint.capture.prefix.strip("/")
    return endpoint.project_id, f"{prefix}/{record.variant.name}/{hour}"


def _document(r: CaptureRecord) -> dict[str, object]:
    capture = r.endpoint.capture
    return {
        "event_id": r.event_id,
        "time": datetime.fromtimestamp(r.at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "endpoint": r.endpoint.name,
        "variant": r.variant.name,
        "model_version": r.variant.model_version,
        "input": _payload(r.input, r.input_type) if capture.capture_input else None,
        "output": _payload(r.output, r.output_type) if capture.capture_output else None,
        "latencies": {
            "model_ms": round(r.model_s * 1e3, 3),
            "overhead_ms": round(r.overhead_s * 1e3, 3),
        },
        "custom_attributes": r.attributes.decode("latin-1") if r.attributes else None,
    }


def _payload(data: bytes, content_type: bytes | None) -> dict[str, str]:
    kind = (content_type or b"application/json").decode("latin-1")
    if kind.split(";", 1)[0].strip().lower().startswith(_TEXT_TYPES):
        try:
            return {"content_type": kind, "encoding": "text", "data": data.decode("utf-8")}
        except UnicodeDecodeError:
            pass
    encoded = base64.b64encode(data).decode("ascii")
    return {"content_type": kind, "encoding": "base64", "data": encoded}


class _BatchIds:
    """Batch ids that sort by time and never collide across gateways: ms, process, counter."""

    def __init__(self) -> None:
        self._tag = os.urandom(4).hex()
        self._count = 0

    def next(self) -> str:
        self._count += 1
        return f"{int(time.time() * 1000):013d}-{self._tag}-{self._count:06d}"


class EventIds:
    """Capture event ids for the request path: a random per-process prefix and a counter
    (unique across gateways and restarts, and ~10x cheaper than a uuid4 each)."""

    def __init__(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._count = 0

    def next(self) -> str:
        self._count += 1
        return f"{self._prefix}-{self._count:010x}"
