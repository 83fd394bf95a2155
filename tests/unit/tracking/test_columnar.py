"""History as arrays: the block store must answer exactly what the row store would."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from shipyard.tracking import columnar

Point = tuple[int, int, float]
points = st.lists(
    st.tuples(
        st.integers(-5, 50),
        st.integers(0, 20),
        st.floats(allow_nan=True, allow_infinity=True, width=64),
    ),
    min_size=1,
    max_size=200,
)


def _blocks(batches: list[list[Point]]) -> list[tuple[bytes, bytes, bytes]]:
    return [columnar.pack(*zip(*batch, strict=True)) for batch in batches if batch]  # type: ignore[arg-type]


def _same(a: float | str, b: float) -> bool:
    if isinstance(a, str):
        return a == {math.inf: "Infinity", -math.inf: "-Infinity"}.get(b, "NaN" if b != b else "")
    return a == b


@given(points, st.integers(1, 5))
def test_unpack_orders_like_the_row_store(pts: list[Point], cuts: int) -> None:
    size = max(1, len(pts) // cuts)
    batches = [pts[i : i + size] for i in range(0, len(pts), size)]
    got = columnar.columns(columnar.unpack(_blocks(batches)))
    # The row store orders by (step, timestamp, arrival).
    expected = sorted(enumerate(pts), key=lambda e: (e[1][0], e[1][1], e[0]))
    assert got["steps"] == [p[0] for _, p in expected]
    assert got["timestamps"] == [p[1] for _, p in expected]
    assert all(_same(a, p[2]) for a, (_, p) in zip(got["values"], expected, strict=True))


@given(points, st.integers(2, 30))
def test_downsample_accounts_for_every_point(pts: list[Point], max_points: int) -> None:
    history = columnar.unpack(_blocks([pts]))
    out = columnar.downsample(history, max_points)
    assert len(out["steps"]) <= max_points
    assert sum(out["counts"]) == len(pts)
    assert out["steps"] == sorted(out["steps"])
    real = [p[2] for p in pts if not math.isnan(p[2])]
    lows = [v for v in out["min"] if not isinstance(v, str)]
    if real and all(math.isfinite(v) for v in real):
        assert min(lows) == min(real)


def test_downsample_keeps_spikes_and_averages_the_rest() -> None:
    steps = list(range(1000))
    values = [1.0] * 1000
    values[517] = 250.0
    values[3] = math.nan
    history = columnar.unpack([columnar.pack(steps, [0] * 1000, values)])
    out = columnar.downsample(history, 10)
    assert out["counts"] == [100] * 10
    assert out["max"][5] == 250.0 and out["min"][5] == 1.0
    assert out["values"][0] == 1.0  # the NaN is counted, not averaged
    assert out["values"][5] == (99 + 250) / 100
    assert out["steps"][:3] == [0, 100, 200]


def test_one_step_logged_over_time_buckets_by_time() -> None:
    stamps = list(range(0, 10_000, 10))
    history = columnar.unpack([columnar.pack([0] * 1000, stamps, [float(i) for i in range(1000)])])
    out = columnar.downsample(history, 4)
    assert out["counts"] == [250] * 4
    assert out["timestamps"] == [2490, 4990, 7490, 9990]


def test_non_finite_values_are_spelled_for_json() -> None:
    history = columnar.unpack([columnar.pack([0, 1, 2], [0, 0, 0], [math.nan, math.inf, -1.0])])
    assert columnar.columns(history)["values"] == ["NaN", "Infinity", -1.0]
