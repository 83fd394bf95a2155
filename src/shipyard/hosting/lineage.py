"""Lineage of endpoints: ``model:GROUP:VERSION ──deployed as──▶ endpoint:NAME``.

Upstream of an endpoint are the registry versions it serves (and, during an update, the ones
it is being updated to); downstream of a model version are the endpoints serving it.
Artifact-based (dev) models have no registry version, so nothing links them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy.orm import Session

from shipyard.hosting.service import HostingService
from shipyard.lineage.service import Entity, Link, Node

DEPLOYED_AS = "deployed as"


class EndpointLinks:
    kinds: Mapping[str, tuple[str, ...]] = {"endpoint": ("name",)}

    def __init__(self, hosting: HostingService) -> None:
        self.hosting = hosting

    def describe(self, s: Session, project_id: str, entity: Entity) -> Node:
        row = self.hosting.endpoint(s, project_id, entity.key[0])
        attributes = {
            "environment": row.environment,
            "status": row.status,
            "config_name": row.config_name,
            "current_config": row.current_config,
            "created_by": row.created_by,
            "created_at": row.created_at,
        }
        return Node(entity, row.name, attributes)

    def upstream(self, s: Session, project_id: str, node: Node) -> Iterable[Link]:
        if node.kind != "endpoint":
            return []
        return [
            Link(Entity("model", (group, str(version))), DEPLOYED_AS)
            for endpoint, group, version in self.hosting.served_versions(s, project_id)
            if endpoint.name == node.entity.key[0]
        ]

    def downstream(self, s: Session, project_id: str, node: Node) -> Iterable[Link]:
        if node.kind != "model":
            return []
        group, version = node.entity.key[0], int(node.entity.key[1])
        return [
            Link(Entity("endpoint", (endpoint.name,)), DEPLOYED_AS)
            for endpoint, g, v in self.hosting.served_versions(s, project_id)
            if (g, v) == (group, version)
        ]
