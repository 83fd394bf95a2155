"""Instance types come from configuration; an unknown one is a 422 that lists the valid ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shipyard.errors import ValidationFailed
from shipyard.jobs.catalog import DEFAULT_TYPES, Catalog, InstanceType


def test_the_defaults_when_nothing_is_configured() -> None:
    catalog = Catalog.from_config(None)
    assert catalog.names == [t.name for t in DEFAULT_TYPES]
    small = catalog.get("cpu.small")
    assert (small.cpus, small.memory_mib, small.price_per_hour) == (1, 2048, 0.05)


def test_an_unknown_type_names_the_field_and_every_valid_type() -> None:
    with pytest.raises(ValidationFailed) as caught:
        Catalog.from_config(None).get("gpu.huge")
    assert caught.value.field == "instance_type"
    assert "gpu.huge" in caught.value.message
    assert all(name in caught.value.message for name in ("cpu.small", "cpu.xlarge"))


def test_a_catalog_inline_or_in_a_file(tmp_path: Path) -> None:
    entries = [{"name": "cpu.tiny", "cpus": 1, "memory_mib": 512, "price_per_hour": 0.01}]
    inline = Catalog.from_config(json.dumps(entries))
    file = tmp_path / "types.json"
    file.write_text(json.dumps(entries))
    assert inline.names == Catalog.from_config(str(file)).names == ["cpu.tiny"]


@pytest.mark.parametrize(
    "entries",
    [
        [{"name": "Big Box", "cpus": 1, "memory_mib": 512, "price_per_hour": 0}],
        [{"name": "cpu.x", "cpus": 0, "memory_mib": 512, "price_per_hour": 0}],
        [{"name": "cpu.x", "cpus": 1, "memory_mib": 512}],
        [{"name": "cpu.x", "cpus": 1, "memory_mib": 512, "price_per_hour": 0}] * 2,
        [],
    ],
)
def test_a_bad_catalog_is_refused_with_a_reason(entries: list[dict[str, object]]) -> None:
    with pytest.raises(ValueError, match=r"catalog|instance type|cpus"):
        Catalog.from_config(json.dumps(entries))


def test_types_describe_themselves() -> None:
    assert InstanceType("cpu.a1", 2, 1024, 0.5).as_dict() == {
        "name": "cpu.a1",
        "cpus": 2,
        "memory_mib": 1024,
        "price_per_hour": 0.5,
        "gpus": 0,
    }
