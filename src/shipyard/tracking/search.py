"""Compiles parsed filters and orderings (``filters``) into one SQL query over runs.

Every condition is an indexed ``EXISTS`` on the latest-value, param or tag table, so a
search never reads metric history, and ordering by a metric joins one latest-value row
per run. Runs without the key sort last in both directions, as in MLflow.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, func, not_, select
from sqlalchemy.orm import aliased

from shipyard.errors import BadRequest
from shipyard.tracking.filters import Comparison, OrderKey
from shipyard.tracking.models import (
    Dataset,
    DatasetVersion,
    MetricSeries,
    Run,
    RunInput,
    RunParam,
    RunTag,
)

ATTRIBUTE_COLUMNS: dict[str, Any] = {
    "run_id": Run.id,
    "run_name": Run.name,
    "status": Run.status,
    "start_time": Run.start_time,
    "end_time": Run.end_time,
    "user_id": Run.user_id,
    "artifact_uri": Run.artifact_root,
    "lifecycle_stage": Run.lifecycle_stage,
    "experiment_id": Run.experiment_id,
}
# MLflow keeps these as tags; Shipyard keeps them as columns and answers both spellings.
TAG_COLUMNS: dict[str, Any] = {"mlflow.runName": Run.name, "mlflow.user": Run.user_id}


def _compare(column: Any, op: str, value: Any) -> ColumnElement[bool]:
    match op:
        case "=":
            return column == value  # type: ignore[no-any-return]
        case "!=":
            return column != value  # type: ignore[no-any-return]
        case "<":
            return column < value  # type: ignore[no-any-return]
        case "<=":
            return column <= value  # type: ignore[no-any-return]
        case ">":
            return column > value  # type: ignore[no-any-return]
        case ">=":
            return column >= value  # type: ignore[no-any-return]
        case "LIKE":
            return column.like(value)  # type: ignore[no-any-return]
        case "ILIKE":
            return func.lower(column).like(func.lower(value))
        case "IN":
            return column.in_(list(value))  # type: ignore[no-any-return]
        case "NOT IN":
            return column.not_in(list(value))  # type: ignore[no-any-return]
    raise BadRequest(f"operator {op} is not supported here", field="filter")


def _metric(c: Comparison) -> ColumnElement[bool]:
    found = exists().where(MetricSeries.run_id == Run.id, MetricSeries.key == c.key)
    if c.op == "IS NULL":
        return not_(found)
    if c.op == "IS NOT NULL":
        return found
    return found.where(
        MetricSeries.latest_is_nan.is_(False), _compare(MetricSeries.latest_value, c.op, c.value)
    )


def _key_value(table: type[RunParam] | type[RunTag], c: Comparison) -> ColumnElement[bool]:
    found = exists().where(table.run_id == Run.id, table.key == c.key)
    if c.op == "IS NULL":
        return not_(found)
    if c.op == "IS NOT NULL":
        return found
    return found.where(_compare(table.value, c.op, c.value))


def _tag(c: Comparison) -> ColumnElement[bool]:
    column = TAG_COLUMNS.get(c.key)
    if column is None:
        return _key_value(RunTag, c)
    if c.op in ("IS NULL", "IS NOT NULL"):
        return (column == "") if c.op == "IS NULL" else (column != "")  # type: ignore[no-any-return]
    return _compare(column, c.op, c.value)


def _dataset(c: Comparison) -> ColumnElement[bool]:
    columns = {"name": Dataset.name, "digest": DatasetVersion.digest, "context": RunInput.context}
    column = columns.get(c.key)
    if column is None:
        raise BadRequest(f"datasets.{c.key} is not searchable; use name, digest or context")
    return (
        exists()
        .where(RunInput.run_id == Run.id)
        .where(DatasetVersion.id == RunInput.dataset_version_id)
        .where(Dataset.id == DatasetVersion.dataset_id)
        .where(_compare(column, c.op, c.value))
    )


def condition(c: Comparison) -> ColumnElement[bool]:
    if c.entity == "metric":
        return _metric(c)
    if c.entity == "param":
        return _key_value(RunParam, c)
    if c.entity == "tag":
        return _tag(c)
    if c.entity == "dataset":
        return _dataset(c)
    column = ATTRIBUTE_COLUMNS[c.key]
    if c.op in ("IS NULL", "IS NOT NULL"):
        return column.is_(None) if c.op == "IS NULL" else column.is_not(None)  # type: ignore[no-any-return]
    return _compare(column, c.op, c.value)


def _order_column(query: Select[Any], key: OrderKey) -> tuple[Select[Any], Any]:
    if key.entity == "attribute":
        return query, ATTRIBUTE_COLUMNS[key.key]
    if key.entity == "tag" and key.key in TAG_COLUMNS:
        return query, TAG_COLUMNS[key.key]
    if key.entity == "metric":
        series = aliased(MetricSeries)
        on = and_(series.run_id == Run.id, series.key == key.key, series.latest_is_nan.is_(False))
        return query.outerjoin(series, on), series.latest_value
    if key.entity in ("param", "tag"):
        table: Any = aliased(RunParam if key.entity == "param" else RunTag)
        on = and_(table.run_id == Run.id, table.key == key.key)
        return query.outerjoin(table, on), table.value
    raise BadRequest(f"cannot order by {key.entity}s", field="order_by")


def build_query(
    project_id: str,
    experiment_ids: Sequence[str] | None,
    comparisons: Sequence[Comparison],
    order: Sequence[OrderKey],
    stages: Sequence[str],
) -> Select[Any]:
    """Run ids matching everything, in the requested order (start time desc by default)."""
    query = select(Run.id).where(Run.project_id == project_id, Run.lifecycle_stage.in_(stages))
    if experiment_ids is not None:
        query = query.where(Run.experiment_id.in_(list(experiment_ids)))
    for c in comparisons:
        query = query.where(condition(c))
    for key in order:
        query, column = _order_column(query, key)
        direction = column.asc() if key.ascending else column.desc()
        query = query.order_by(direction.nulls_last())
    if not any(k.entity == "attribute" and k.key == "start_time" for k in order):
        query = query.order_by(Run.start_time.desc())
    return query.order_by(Run.id)
