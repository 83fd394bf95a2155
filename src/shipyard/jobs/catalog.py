"""Instance types: the sizes a job may ask for, what each gives, and what it costs.

The catalog is configuration (``SHIPYARD_INSTANCE_TYPES``: a JSON list, inline or in a file),
so an operator describes their machines once; jobs name a type and the backend enforces its
CPUs (affinity) and memory (limits), and metering prices it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from shipyard.errors import ValidationFailed

_NAME = re.compile(r"^[a-z][a-z0-9]*(\.[a-z0-9]+)+$")


@dataclass(frozen=True)
class InstanceType:
    name: str
    cpus: int
    memory_mib: int
    price_per_hour: float
    gpus: int = 0

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"instance type name {self.name!r} must look like 'cpu.small'")
        if self.cpus < 1 or self.memory_mib < 64 or self.price_per_hour < 0 or self.gpus < 0:
            raise ValueError(
                f"instance type {self.name!r} needs cpus >= 1, memory_mib >= 64, "
                "price_per_hour >= 0 and gpus >= 0"
            )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


DEFAULT_TYPES = (
    InstanceType("cpu.small", cpus=1, memory_mib=2048, price_per_hour=0.05),
    InstanceType("cpu.medium", cpus=2, memory_mib=4096, price_per_hour=0.10),
    InstanceType("cpu.large", cpus=4, memory_mib=8192, price_per_hour=0.20),
    InstanceType("cpu.xlarge", cpus=8, memory_mib=16384, price_per_hour=0.40),
)


class Catalog:
    def __init__(self, types: Iterable[InstanceType]) -> None:
        self._types: dict[str, InstanceType] = {}
        for kind in types:
            if kind.name in self._types:
                raise ValueError(f"instance type {kind.name!r} is listed twice")
            self._types[kind.name] = kind
        if not self._types:
            raise ValueError("the instance catalog is empty")

    def __iter__(self) -> Iterator[InstanceType]:
        return iter(self._types.values())

    @property
    def names(self) -> list[str]:
        return list(self._types)

    def get(self, name: str) -> InstanceType:
        """The type, or a 422 on ``instance_type`` that lists the valid names."""
        found = self._types.get(name)
        if found is None:
            valid = ", ".join(self.names)
            raise ValidationFailed(
                f"unknown instance type {name!r}; valid types: {valid}",
                field="instance_type",
                valid=self.names,
            )
        return found

    @classmethod
    def from_config(cls, value: str | None) -> Catalog:
        """``None``: the defaults. Otherwise a JSON list of types, or a path to a file of one."""
        if not value:
            return cls(DEFAULT_TYPES)
        text = value if value.lstrip().startswith("[") else Path(value).read_text()
        try:
            entries = json.loads(text)
            return cls(InstanceType(**entry) for entry in entries)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"SHIPYARD_INSTANCE_TYPES is not a valid catalog: {exc}") from exc
