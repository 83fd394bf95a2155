"""Test data for the monitoring library: CSV baselines and gateway-style capture files."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(["" if v is None else v for v in row] for row in rows)
    return path


def body(
    data: str | None, content_type: str = "application/json", encoding: str = "text"
) -> dict[str, str] | None:
    if data is None:
        return None
    return {"content_type": content_type, "encoding": encoding, "data": data}


def record(
    event_id: str,
    input: dict[str, str] | None,
    output: dict[str, str] | None = None,
    *,
    at: datetime = T0,
    variant: str = "AllTraffic",
    model_version: str = "v23",
) -> dict[str, Any]:
    """One line as the gateway writes it (see shipyard.hosting.gateway.capture)."""
    return {
        "event_id": event_id,
        "time": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "endpoint": "churn",
        "variant": variant,
        "model_version": model_version,
        "input": input,
        "output": output,
        "latencies": {"model_ms": 0.41, "overhead_ms": 0.12},
        "custom_attributes": None,
    }


def feature_record(i: int, features: Sequence[Any], prediction: float = 0.5) -> dict[str, Any]:
    """A one-row request ``{"features": [...]}`` answered ``{"prediction": x}``, 1 s apart."""
    request = orjson.dumps({"features": list(features)}).decode()
    answer = orjson.dumps({"prediction": prediction, "model_version": "v23"}).decode()
    return record(f"ev-{i}", body(request), body(answer), at=T0 + timedelta(seconds=i))


def write_capture(path: Path, records: Iterable[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return path
