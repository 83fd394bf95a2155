"""API shapes of lineage: a graph of entities (nodes) and how they came from each other (edges).

An entity is named ``KIND:KEY…``: ``dataset:NAME:VERSION``, ``job:NAME``, ``run:RUN_ID``,
``model:GROUP:VERSION`` (and whatever kinds other domains add, e.g. ``endpoint:NAME``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Schema(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LineageNode(Schema):
    id: str = Field(description="the entity, e.g. model:churn:3")
    kind: str = Field(description="dataset, job, run, model, …")
    label: str
    attributes: dict[str, Any] = Field(
        default_factory=dict, description="status, created_at and other facts of the entity"
    )


class LineageEdge(Schema):
    source: str = Field(description="the entity that came first")
    target: str = Field(description="the entity made from it")
    relation: str = Field(description="input, tracked as, registered as, produced, …")


class LineageGraph(Schema):
    """Every ancestor and descendant of ``root`` (not their other relatives)."""

    root: str
    nodes: list[LineageNode]
    edges: list[LineageEdge]
    truncated: bool = Field(
        default=False, description="true when the walk stopped at the node limit"
    )
