"""All SQL of hosting (the gateway's own reads and writes are in ``gateway_repository.py``).

Controllers write an endpoint only while they hold its lease (``lease_owner``): every such
update names the owner in its WHERE clause, so a controller that lost the endpoint (it stalled
past its lease and another adopted it) changes nothing. Users' changes (a new config, scaling,
delete) are single conditional updates, so they never race a controller's write into a
stale-row error, and each bumps ``row_version``: the gateway reloads the routes of a row whose
version changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, func, or_, select, update
from sqlalchemy.orm import Session

from shipyard.db.leases import takeable_first
from shipyard.hosting.models import (
    Endpoint,
    EndpointConfig,
    EndpointTraffic,
    HostedModel,
    Promotion,
    Replica,
)


def _unheld(now: datetime) -> ColumnElement[bool]:
    return or_(Endpoint.lease_owner.is_(None), Endpoint.lease_until < now)


class HostingRepository:
    # --- models and configs ----------------------------------------------------------------

    def model(self, s: Session, project_id: str, name: str) -> HostedModel | None:
        return s.scalar(
            select(HostedModel).where(
                HostedModel.project_id == project_id, HostedModel.name == name
            )
        )

    def models(self, s: Session, project_id: str) -> Sequence[HostedModel]:
        query = select(HostedModel).where(HostedModel.project_id == project_id)
        return s.scalars(query.order_by(HostedModel.name)).all()

    def models_named(self, s: Session, project_id: str, names: Sequence[str]) -> list[HostedModel]:
        if not names:
            return []
        query = select(HostedModel).where(
            HostedModel.project_id == project_id, HostedModel.name.in_(names)
        )
        return list(s.scalars(query))

    def config(self, s: Session, project_id: str, name: str) -> EndpointConfig | None:
        return s.scalar(
            select(EndpointConfig).where(
                EndpointConfig.project_id == project_id, EndpointConfig.name == name
            )
        )

    def configs(self, s: Session, project_id: str) -> Sequence[EndpointConfig]:
        query = select(EndpointConfig).where(EndpointConfig.project_id == project_id)
        return s.scalars(query.order_by(EndpointConfig.name)).all()

    def configs_named(
        self, s: Session, project_id: str, names: Sequence[str]
    ) -> list[EndpointConfig]:
        if not names:
            return []
        query = select(EndpointConfig).where(
            EndpointConfig.project_id == project_id, EndpointConfig.name.in_(names)
        )
        return list(s.scalars(query))

    def add(self, s: Session, row: HostedModel | EndpointConfig | Endpoint | Promotion) -> None:
        s.add(row)
        s.flush()

    def remove(self, s: Session, row: HostedModel | EndpointConfig) -> None:
        s.delete(row)
        s.flush()

    # --- endpoints -------------------------------------------------------------------------

    def endpoint(self, s: Session, name: str) -> Endpoint | None:
        """By name: names are unique on the platform."""
        return s.scalar(select(Endpoint).where(Endpoint.name == name))

    def endpoint_by_id(self, s: Session, endpoint_id: str) -> Endpoint | None:
        return s.get(Endpoint, endpoint_id)

    def endpoints(self, s: Session, project_id: str) -> Sequence[Endpoint]:
        query = select(Endpoint).where(Endpoint.project_id == project_id)
        return s.scalars(query.order_by(Endpoint.name)).all()

    def claimable(
        self, s: Session, now: datetime, limit: int
    ) -> list[tuple[str, str | None, bool]]:
        """(id, lease owner, lease lapsed) of every endpoint, unheld ones first: each is driven
        for as long as it exists, so none is ever finished; the caller skips those held by
        live owners."""
        lapsed = or_(Endpoint.lease_until.is_(None), Endpoint.lease_until < now)
        query = select(Endpoint.id, Endpoint.lease_owner, lapsed).order_by(
            takeable_first(_unheld(now)), Endpoint.created_at
        )
        return [(row[0], row[1], bool(row[2])) for row in s.execute(query.limit(limit))]

    def claim(
        self,
        s: Session,
        endpoint_id: str,
        owner: str,
        until: datetime,
        now: datetime,
        *,
        steal: str | None,
    ) -> bool:
        """Take the lease if it is free, lapsed, or held by ``steal`` (a dead owner)."""
        free = _unheld(now)
        if steal is not None:
            free = or_(free, Endpoint.lease_owner == steal)
        result = s.execute(
            update(Endpoint)
            .where(Endpoint.id == endpoint_id, free)
            .values(lease_owner=owner, lease_until=until)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1  # type: ignore[attr-defined,no-any-return]

    def renew(self, s: Session, owner: str, ids: Sequence[str], until: datetime) -> set[str]:
        """Extend the leases still held; the ids of those that were."""
        if not ids:
            return set()
        s.execute(
            update(Endpoint)
            .where(Endpoint.id.in_(ids), Endpoint.lease_owner == owner)
            .values(lease_until=until)
            .execution_options(synchronize_session=False)
        )
        held = select(Endpoint.id).where(Endpoint.id.in_(ids), Endpoint.lease_owner == owner)
        return set(s.scalars(held))

    def write_held(
        self,
        s: Session,
        endpoint_id: str,
        owner: str,
        values: dict[str, Any],
        *conditions: ColumnElement[bool],
    ) -> bool:
        """Change an endpoint this owner holds (and that meets ``conditions``)."""
        result = s.execute(
            update(Endpoint)
            .where(Endpoint.id == endpoint_id, Endpoint.lease_owner == owner, *conditions)
            .values(row_version=Endpoint.row_version + 1, **values)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1  # type: ignore[attr-defined,no-any-return]

    def delete_held(self, s: Session, endpoint_id: str, owner: str) -> bool:
        result = s.execute(
            delete(Endpoint)
            .where(Endpoint.id == endpoint_id, Endpoint.lease_owner == owner)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1  # type: ignore[attr-defined,no-any-return]

    def change(
        self,
        s: Session,
        endpoint_id: str,
        values: dict[str, Any],
        *,
        statuses: Sequence[str] | None = None,
    ) -> bool:
        """A user's change, applied only while the endpoint is in one of ``statuses``."""
        query = update(Endpoint).where(Endpoint.id == endpoint_id, Endpoint.request.is_(None))
        if statuses is not None:
            query = query.where(Endpoint.status.in_(statuses))
        result = s.execute(
            query.values(row_version=Endpoint.row_version + 1, **values).execution_options(
                synchronize_session=False
            )
        )
        return result.rowcount == 1  # type: ignore[attr-defined,no-any-return]

    def endpoints_using_configs(
        self, s: Session, project_id: str, configs: Sequence[str]
    ) -> list[str]:
        query = select(Endpoint.name).where(
            Endpoint.project_id == project_id,
            or_(Endpoint.config_name.in_(configs), Endpoint.current_config.in_(configs)),
        )
        return list(s.scalars(query))

    # --- replicas --------------------------------------------------------------------------

    def replicas(self, s: Session, endpoint_id: str) -> list[Replica]:
        query = select(Replica).where(Replica.endpoint_id == endpoint_id)
        return list(s.scalars(query.order_by(Replica.started_at, Replica.id)))

    def replicas_of(self, s: Session, endpoint_ids: Sequence[str]) -> list[Replica]:
        if not endpoint_ids:
            return []
        query = select(Replica).where(Replica.endpoint_id.in_(endpoint_ids))
        return list(s.scalars(query.order_by(Replica.started_at, Replica.id)))

    def add_replica(self, s: Session, row: Replica) -> None:
        s.add(row)
        s.flush()

    def update_replica(self, s: Session, replica_id: str, values: dict[str, Any]) -> None:
        s.execute(
            update(Replica)
            .where(Replica.id == replica_id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )

    def delete_replicas(self, s: Session, replica_ids: Sequence[str]) -> None:
        if replica_ids:
            s.execute(
                delete(Replica)
                .where(Replica.id.in_(replica_ids))
                .execution_options(synchronize_session=False)
            )

    # --- traffic ---------------------------------------------------------------------------

    def traffic(self, s: Session, endpoint_id: str) -> dict[str, tuple[int, int, int]]:
        """Per variant, (invocations, 4xx, 5xx) summed over every gateway."""
        query = (
            select(
                EndpointTraffic.variant,
                func.sum(EndpointTraffic.invocations),
                func.sum(EndpointTraffic.errors_4xx),
                func.sum(EndpointTraffic.errors_5xx),
            )
            .where(EndpointTraffic.endpoint_id == endpoint_id)
            .group_by(EndpointTraffic.variant)
        )
        return {
            str(row[0]): (int(row[1] or 0), int(row[2] or 0), int(row[3] or 0))
            for row in s.execute(query)
        }

    def wanted(self, s: Session, endpoint_id: str) -> dict[str, datetime]:
        """Variants a gateway holds a request for (scaled to zero), with the earliest mark."""
        query = (
            select(EndpointTraffic.variant, func.min(EndpointTraffic.wanted_at))
            .where(
                EndpointTraffic.endpoint_id == endpoint_id, EndpointTraffic.wanted_at.is_not(None)
            )
            .group_by(EndpointTraffic.variant)
        )
        return {str(row[0]): row[1] for row in s.execute(query) if row[1] is not None}

    def clear_wanted(self, s: Session, endpoint_id: str, variant: str, upto: datetime) -> None:
        """Forget the marks made up to ``upto``; a later mark (a new cold start) stays."""
        s.execute(
            update(EndpointTraffic)
            .where(
                EndpointTraffic.endpoint_id == endpoint_id,
                EndpointTraffic.variant == variant,
                EndpointTraffic.wanted_at <= upto,
            )
            .values(wanted_at=None)
            .execution_options(synchronize_session=False)
        )

    # --- promotions ------------------------------------------------------------------------

    def promotion(self, s: Session, project_id: str, promotion_id: str) -> Promotion | None:
        return s.scalar(
            select(Promotion).where(
                Promotion.project_id == project_id, Promotion.id == promotion_id
            )
        )

    def promotion_by_id(self, s: Session, promotion_id: str) -> Promotion | None:
        return s.get(Promotion, promotion_id)

    def promotions(
        self,
        s: Session,
        project_id: str,
        *,
        group: str | None = None,
        version: int | None = None,
        limit: int = 100,
    ) -> Sequence[Promotion]:
        query = select(Promotion).where(Promotion.project_id == project_id)
        if group is not None:
            query = query.where(Promotion.group_name == group)
        if version is not None:
            query = query.where(Promotion.version == version)
        return s.scalars(query.order_by(Promotion.created_at.desc()).limit(limit)).all()

    def succeeded_promotion(
        self, s: Session, project_id: str, group: str, version: int, environment: str
    ) -> Promotion | None:
        query = select(Promotion).where(
            Promotion.project_id == project_id,
            Promotion.group_name == group,
            Promotion.version == version,
            Promotion.environment == environment,
            Promotion.status == "Succeeded",
        )
        return s.scalar(query.limit(1))

    def running_promotion(self, s: Session, endpoint_name: str) -> Promotion | None:
        query = select(Promotion).where(
            Promotion.endpoint_name == endpoint_name, Promotion.status == "Running"
        )
        return s.scalar(query.limit(1))

    def stale_promotions(self, s: Session, before: datetime) -> Sequence[Promotion]:
        """Running promotions whose runner stopped beating (it died with its process)."""
        query = select(Promotion).where(
            Promotion.status == "Running", Promotion.updated_at < before
        )
        return s.scalars(query).all()

    def update_promotion(
        self, s: Session, promotion_id: str, values: dict[str, Any], *, running: bool = True
    ) -> bool:
        query = update(Promotion).where(Promotion.id == promotion_id)
        if running:
            query = query.where(Promotion.status == "Running")
        result = s.execute(query.values(**values).execution_options(synchronize_session=False))
        return result.rowcount == 1  # type: ignore[attr-defined,no-any-return]


hosting_repository = HostingRepository()
