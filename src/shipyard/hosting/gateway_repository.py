"""All SQL of the gateway: reading published routes, adding traffic, marking variants wanted.

None of it runs on a request's path: a poller thread reads route versions every ~250 ms, a
flusher thread adds traffic every ~2 s, and a cold start marks its variant from a thread
(hosting/routes.py describes the contract with the endpoint controller).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from shipyard.hosting.models import Endpoint, EndpointTraffic


@dataclass(frozen=True, slots=True)
class RouteRow:
    """What the gateway needs of an endpoint row: identity, status and the published route."""

    id: str
    name: str
    status: str
    row_version: int
    routes: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class TrafficDelta:
    """Counts one gateway saw for one variant since its last flush."""

    endpoint_id: str
    variant: str
    invocations: int
    errors_4xx: int
    errors_5xx: int
    model_latency_s: float


class GatewayRepository:
    def route_versions(self, s: Session) -> dict[str, int]:
        """Every endpoint's id and row version: one narrow query, cheap enough to poll."""
        return {row[0]: row[1] for row in s.execute(select(Endpoint.id, Endpoint.row_version))}

    def route_rows(self, s: Session, ids: Collection[str]) -> list[RouteRow]:
        if not ids:
            return []
        query = select(
            Endpoint.id, Endpoint.name, Endpoint.status, Endpoint.row_version, Endpoint.routes
        ).where(Endpoint.id.in_(list(ids)))
        return [RouteRow(*row) for row in s.execute(query)]

    def add_traffic(
        self, s: Session, gateway_id: str, deltas: Sequence[TrafficDelta], now: datetime
    ) -> int:
        """Add each delta to this gateway's row of its variant; deltas of endpoints deleted
        meanwhile are skipped (their rows went with them). Returns how many were added."""
        ids = {d.endpoint_id for d in deltas}
        alive = set(s.scalars(select(Endpoint.id).where(Endpoint.id.in_(ids)))) if ids else set()
        added = 0
        for delta in deltas:
            if delta.endpoint_id not in alive:
                continue
            values = {
                "invocations": delta.invocations,
                "errors_4xx": delta.errors_4xx,
                "errors_5xx": delta.errors_5xx,
                "model_latency_s": delta.model_latency_s,
            }
            key = {"gateway_id": gateway_id, "endpoint_id": delta.endpoint_id}
            self._upsert(
                s,
                {**key, "variant": delta.variant},
                insert=values,
                update={name: getattr(EndpointTraffic, name) + v for name, v in values.items()},
                now=now,
            )
            added += 1
        return added

    def mark_wanted(
        self, s: Session, gateway_id: str, endpoint_id: str, variant: str, now: datetime
    ) -> None:
        """A request waits for this serverless variant: the autoscaler starts a replica.

        Only set when unset, so ``wanted_at`` says how long the oldest request has waited;
        whoever starts the replica clears it.
        """
        if s.get(Endpoint, endpoint_id) is None:
            return
        self._upsert(
            s,
            {"gateway_id": gateway_id, "endpoint_id": endpoint_id, "variant": variant},
            insert={"wanted_at": now},
            update={"wanted_at": func.coalesce(EndpointTraffic.wanted_at, now)},
            now=now,
        )

    @staticmethod
    def _upsert(
        s: Session,
        key: dict[str, str],
        *,
        insert: dict[str, Any],
        update: dict[str, Any],
        now: datetime,
    ) -> None:
        dialect = s.get_bind().dialect.name
        module: Any = postgresql if dialect == "postgresql" else sqlite
        row = {
            "invocations": 0,
            "errors_4xx": 0,
            "errors_5xx": 0,
            "model_latency_s": 0.0,
            **key,
            **insert,
            "updated_at": now,
        }
        statement = module.insert(EndpointTraffic).values(**row)
        statement = statement.on_conflict_do_update(
            index_elements=["gateway_id", "endpoint_id", "variant"],
            set_={**update, "updated_at": now},
        )
        s.execute(statement)


gateway_repository = GatewayRepository()
