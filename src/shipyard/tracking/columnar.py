"""Metric history as arrays: packing batches into blocks, reading, ordering, downsampling.

A block is one batch of one series as three little-endian arrays (int64 steps, int64 epoch
ms timestamps, float64 values). Reading a history concatenates its blocks and orders the
points by (step, timestamp), keeping arrival order among equals: the order of the row store's
``(step, timestamp, id)``. Everything here is NumPy, never a Python loop per point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

STEP = np.dtype("<i8")
VALUE = np.dtype("<f8")


@dataclass
class History:
    steps: npt.NDArray[np.int64]
    timestamps: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.steps.size)

    def between(self, start: int, end: int) -> History:
        return History(self.steps[start:end], self.timestamps[start:end], self.values[start:end])


def _first_at_or_after(history: History, step: int, ts: int) -> int:
    """Index of the first point ordered at or after (step, ts): binary searches only."""
    low = int(np.searchsorted(history.steps, step, side="left"))
    high = int(np.searchsorted(history.steps, step, side="right"))
    return low + int(np.searchsorted(history.timestamps[low:high], ts, side="left"))


def position_of(history: History, end: int) -> tuple[int, int, int]:
    """Where a page that ends before index ``end`` stopped: the last point's step and time,
    and how many points of that step and time it has sent. Unlike an offset, this stays
    right when points with earlier steps arrive between two pages."""
    step, ts = int(history.steps[end - 1]), int(history.timestamps[end - 1])
    return step, ts, end - _first_at_or_after(history, step, ts)


def resume_at(history: History, position: tuple[int, int, int] | None) -> int:
    if position is None:
        return 0
    step, ts, sent = position
    return _first_at_or_after(history, step, ts) + sent


def pack(
    steps: npt.ArrayLike, timestamps: npt.ArrayLike, values: npt.ArrayLike
) -> tuple[bytes, bytes, bytes]:
    return (
        np.asarray(steps, dtype=STEP).tobytes(),
        np.asarray(timestamps, dtype=STEP).tobytes(),
        np.asarray(values, dtype=VALUE).tobytes(),
    )


def concat(
    blocks: Sequence[tuple[bytes, bytes, bytes]],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Blocks joined in arrival order (no reordering: the result is stored again)."""
    return (
        np.concatenate([np.frombuffer(b[0], dtype=STEP) for b in blocks]),
        np.concatenate([np.frombuffer(b[1], dtype=STEP) for b in blocks]),
        np.concatenate([np.frombuffer(b[2], dtype=VALUE) for b in blocks]),
    )


def unpack(blocks: Sequence[tuple[bytes, bytes, bytes]]) -> History:
    """Concatenate blocks (in arrival order) and order the points by (step, timestamp)."""
    if not blocks:
        empty = np.empty(0, dtype=STEP)
        return History(empty, empty.copy(), np.empty(0, dtype=VALUE))
    steps, stamps, values = concat(blocks)
    if not _ordered(steps, stamps):
        order = np.lexsort((stamps, steps))  # stable: equal keys keep arrival order
        steps, stamps, values = steps[order], stamps[order], values[order]
    return History(steps, stamps, values)


def _ordered(steps: npt.NDArray[np.int64], stamps: npt.NDArray[np.int64]) -> bool:
    step_up = steps[1:] >= steps[:-1]
    if not bool(step_up.all()):
        return False
    ties = steps[1:] == steps[:-1]
    return bool((stamps[1:][ties] >= stamps[:-1][ties]).all())


def json_values(values: npt.NDArray[np.float64]) -> list[Any]:
    """Floats for JSON; NaN and infinities as protobuf JSON spells them, only if present."""
    out: list[Any] = values.tolist()
    if bool(np.isfinite(values).all()):
        return out
    return [finite_or_text(v) for v in out]


def finite_or_text(value: float) -> float | str:
    """JSON has no NaN or infinity; send them as protobuf JSON (and MLflow) does."""
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def columns(history: History) -> dict[str, list[Any]]:
    return {
        "steps": history.steps.tolist(),
        "values": json_values(history.values),
        "timestamps": history.timestamps.tolist(),
    }


def downsample(history: History, max_points: int) -> dict[str, list[Any]]:
    """At most ``max_points`` buckets of equal step width (time width when every point has
    the same step). Per bucket: first step, last timestamp, mean/min/max of the finite
    values (NaN when none), and the point count, so spikes survive in min/max."""
    by_time = history.steps[0] == history.steps[-1]
    axis = history.timestamps if by_time else history.steps
    low, high = int(axis.min()), int(axis.max())
    width = max(1, math.ceil((high - low + 1) / max_points))
    # Points are ordered by (step, timestamp): by the axis either way (one step means the
    # order is by time), so every bucket is one contiguous run.
    buckets = (axis - low) // width
    starts = np.flatnonzero(np.r_[True, buckets[1:] != buckets[:-1]])
    return _reduce(history, starts)


def _reduce(history: History, starts: npt.NDArray[np.intp]) -> dict[str, list[Any]]:
    values = history.values
    present = ~np.isnan(values)  # NaN points are counted but not averaged
    counts = np.diff(np.r_[starts, values.size])
    kept = np.add.reduceat(present.astype(np.int64), starts)
    # Sums of huge finite values may overflow to infinity: that is the honest mean then.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        sums = np.add.reduceat(np.where(present, values, 0.0), starts)
        means = np.where(kept > 0, sums / np.maximum(kept, 1), np.nan)
    lows = np.fmin.reduceat(values, starts)
    highs = np.fmax.reduceat(values, starts)
    return {
        "steps": history.steps[starts].tolist(),
        "values": json_values(means),
        "timestamps": np.maximum.reduceat(history.timestamps, starts).tolist(),
        "min": json_values(lows),
        "max": json_values(highs),
        "counts": counts.tolist(),
    }
