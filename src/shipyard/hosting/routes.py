"""The routing table: what the endpoint controller publishes and the gateway serves from.

The gateway never reads the metadata DB on the request path (DESIGN §2). The endpoint
controller writes each endpoint's ``EndpointRoute`` as JSON into the endpoint's row (column
``routes``, with ``row_version`` bumped); each gateway polls for rows whose version changed,
off the request path, and swaps its in-memory table in one assignment. A request therefore
sees one consistent table: the replicas, weights, shadow and capture settings of one
published generation.

Traffic goes the other way through ``endpoint_traffic``: each gateway adds its per-variant
counters there every few seconds, and the autoscaler reads rates from them; a request for a
variant scaled to zero marks the variant as *wanted*, and the gateway holds the request until
a replica appears in the table (bounded), then answers 503.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ReplicaRoute:
    """One ready model-server process."""

    id: str
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class VariantRoute:
    """A production (or shadow) variant: a model version behind a fleet of replicas."""

    name: str
    weight: float  # relative; the gateway normalises over the variants with replicas
    model: str  # the hosted model's name
    model_version: str  # what clients see, e.g. "v23" (registry) or "dev" (artifact)
    replicas: tuple[ReplicaRoute, ...]
    # Serverless variants scale to zero: the gateway may hold a request while one starts.
    serverless: bool = False
    max_concurrency: int = 0  # per replica; 0 is unlimited (serverless only)


@dataclass(frozen=True, slots=True)
class CaptureRoute:
    """Data capture (DESIGN §1, issue "hosting" §4): what to record and where to write it."""

    enabled: bool = False
    sampling_percent: float = 0.0
    capture_input: bool = True
    capture_output: bool = True
    # Artifact path prefix inside the endpoint's project, e.g. "capture/customer-churn-v23";
    # the writer adds "<variant>/<yyyy>/<mm>/<dd>/<hh>/<batch id>.jsonl".
    prefix: str = ""


@dataclass(frozen=True, slots=True)
class EndpointRoute:
    name: str
    team_id: str
    project_id: str
    environment: str  # dev | staging | prod
    status: str  # the gateway serves InService, Updating and RollingBack endpoints
    variants: tuple[VariantRoute, ...]
    shadow: VariantRoute | None = None
    shadow_percent: float = 100.0  # of production requests mirrored to the shadow
    capture: CaptureRoute = field(default_factory=CaptureRoute)
    generation: int = 0  # bumped by every publication

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EndpointRoute:
        shadow = data.get("shadow")
        return cls(
            name=data["name"],
            team_id=data["team_id"],
            project_id=data["project_id"],
            environment=data["environment"],
            status=data["status"],
            variants=tuple(_variant(v) for v in data.get("variants", ())),
            shadow=_variant(shadow) if shadow else None,
            shadow_percent=float(data.get("shadow_percent", 100.0)),
            capture=CaptureRoute(**data.get("capture", {})),
            generation=int(data.get("generation", 0)),
        )


def _variant(data: Mapping[str, Any]) -> VariantRoute:
    return VariantRoute(
        name=data["name"],
        weight=float(data["weight"]),
        model=data["model"],
        model_version=data["model_version"],
        replicas=tuple(ReplicaRoute(**r) for r in data.get("replicas", ())),
        serverless=bool(data.get("serverless", False)),
        max_concurrency=int(data.get("max_concurrency", 0)),
    )
