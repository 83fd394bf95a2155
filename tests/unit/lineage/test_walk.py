"""The lineage walk on its own, with in-memory providers: parsing entities, direction,
no siblings, missing neighbours, the node limit, and adding a kind (the extension point)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from shipyard.errors import NotFound, ValidationFailed
from shipyard.lineage.service import Entity, LineageService, Link, Node

S: Any = None  # the walk passes the session through; these providers need none


class Table:
    """Entities of some kinds, and edges between them, from plain data."""

    def __init__(
        self,
        kinds: Mapping[str, tuple[str, ...]],
        known: Iterable[str],
        edges: Iterable[tuple[str, str, str]],
    ) -> None:
        self.kinds = kinds
        self.known = set(known)
        self.edges = list(edges)

    def describe(self, s: Any, project_id: str, entity: Entity) -> Node:
        if entity.id not in self.known:
            raise NotFound(f"{entity.id} not found")
        return Node(entity, entity.id.upper(), {"status": "ok"})

    def upstream(self, s: Any, project_id: str, node: Node) -> Iterable[Link]:
        return [_link(src, rel) for src, dst, rel in self.edges if dst == node.id]

    def downstream(self, s: Any, project_id: str, node: Node) -> Iterable[Link]:
        return [_link(dst, rel) for src, dst, rel in self.edges if src == node.id]


def _link(entity: str, relation: str) -> Link:
    kind, *key = entity.split(":")
    return Link(Entity(kind, tuple(key)), relation)


KINDS = {"dataset": ("name", "version"), "job": ("name",), "model": ("group", "version")}
EDGES = [
    ("dataset:d:1", "job:a", "input"),
    ("dataset:d:1", "job:b", "input"),  # a sibling of job:a
    ("job:a", "model:m:1", "produced"),
    ("job:b", "model:m:2", "produced"),
]


def _service(edges: list[tuple[str, str, str]] = EDGES, **kw: Any) -> LineageService:
    known = {e for edge in edges for e in edge[:2]}
    return LineageService([Table(KINDS, known, edges)], **kw)


def test_walks_up_and_down_but_never_to_siblings() -> None:
    graph = _service().graph(S, "p", "job:a")
    assert [n.id for n in graph.nodes] == ["job:a", "dataset:d:1", "model:m:1"]
    assert {(e.source, e.target, e.relation) for e in graph.edges} == {
        ("dataset:d:1", "job:a", "input"),
        ("job:a", "model:m:1", "produced"),
    }


def test_a_neighbour_that_is_gone_is_shown_as_missing_and_not_walked() -> None:
    edges = [*EDGES, ("job:a", "model:gone:1", "produced"), ("model:gone:1", "model:x:1", "z")]
    service = LineageService([Table(KINDS, {"job:a", "dataset:d:1", "model:m:1"}, edges)])
    nodes = {n.id: n for n in service.graph(S, "p", "job:a").nodes}
    assert nodes["model:gone:1"].attributes == {"missing": True}
    assert "model:x:1" not in nodes


def test_the_walk_stops_at_the_node_limit_and_says_so() -> None:
    fan = [("dataset:d:1", f"job:j{i}", "input") for i in range(20)]
    graph = _service(fan, max_nodes=5).graph(S, "p", "dataset:d:1")
    assert len(graph.nodes) == 5 and graph.truncated is True
    assert len(graph.edges) == 4
    assert _service(fan).graph(S, "p", "dataset:d:1").truncated is False


@pytest.mark.parametrize(
    "text", ["", "model", "model:m", "model:m:one", "model:m:0", "model:m:1:2", "x:1", "job:"]
)
def test_malformed_entities_name_the_field(text: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        _service().parse(text)
    assert caught.value.field == "entity"


def test_versions_are_read_as_numbers() -> None:
    assert _service().parse("model:m:007") == Entity("model", ("m", "7"))


def test_the_root_must_exist() -> None:
    with pytest.raises(NotFound):
        _service().graph(S, "p", "job:nosuch")


def test_another_domain_adds_a_kind_and_neighbours_of_existing_ones() -> None:
    service = _service()
    endpoints = Table(
        {"endpoint": ("name",)}, {"endpoint:e"}, [("model:m:1", "endpoint:e", "deployed as")]
    )
    service.add(endpoints)
    graph = service.graph(S, "p", "endpoint:e")
    assert [n.id for n in graph.nodes] == ["endpoint:e", "model:m:1", "job:a", "dataset:d:1"]
    downstream = service.graph(S, "p", "job:a")
    assert "endpoint:e" in {n.id for n in downstream.nodes}
    with pytest.raises(ValueError, match="already has a provider"):
        service.add(Table({"job": ("name",)}, (), ()))
