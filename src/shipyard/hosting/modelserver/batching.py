"""Adaptive micro-batching: concurrent one-row requests stacked into one predict call.

Off unless ``--batch-max N`` (N > 1). A one-row request's predict joins the pending batch;
the batch runs when it holds N rows, or ``--batch-wait-ms`` after its first row came. With
no wait (the default) it runs on the event loop's next turn, so it holds exactly the requests
that were already read when the first one got there: no added latency when alone, one predict
for all of them under load (a one-row scikit-learn predict costs about what sixteen rows do).

If the stacked predict fails (rows of different widths, one bad value), each row is predicted
on its own, so every request gets its own answer or its own error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np


class MicroBatcher:
    def __init__(self, predict: Callable[[Any], Any], *, max_rows: int, wait_s: float) -> None:
        self._predict = predict
        self._max_rows = max_rows
        self._wait_s = wait_s
        self._rows: list[np.ndarray[Any, Any]] = []
        self._waiters: list[asyncio.Future[Any]] = []
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None

    def submit(self, row: np.ndarray[Any, Any]) -> asyncio.Future[Any]:
        """The prediction for ``row`` (shape ``(1, n)``), as an output of one row."""
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._rows.append(row)
        self._waiters.append(waiter)
        if len(self._rows) >= self._max_rows:
            self._flush()
        elif self._timer is None:
            self._timer = (
                loop.call_later(self._wait_s, self._flush)
                if self._wait_s > 0
                else loop.call_soon(self._flush)
            )
        return waiter

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        rows, waiters = self._rows, self._waiters
        self._rows, self._waiters = [], []
        if not rows:
            return
        outcomes = self._together(rows) if len(rows) > 1 else None
        if outcomes is None:
            outcomes = [self._alone(row) for row in rows]
        for waiter, (result, error) in zip(waiters, outcomes, strict=True):
            if waiter.done():  # the request was cancelled (client gone)
                continue
            if error is None:
                waiter.set_result(result)
            else:
                waiter.set_exception(error)

    def _together(
        self, rows: list[np.ndarray[Any, Any]]
    ) -> list[tuple[Any, Exception | None]] | None:
        try:
            output = np.asarray(self._predict(np.concatenate(rows)))
        except Exception:
            return None
        if output.ndim == 0 or len(output) != len(rows):
            return None
        return [(output[i : i + 1], None) for i in range(len(rows))]

    def _alone(self, row: np.ndarray[Any, Any]) -> tuple[Any, Exception | None]:
        try:
            return self._predict(row), None
        except Exception as exc:
            return None, exc
