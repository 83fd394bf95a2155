"""Lineage: walk from one entity to everything it came from and everything made from it.

The graph is not stored: it is read, at request time, from the records the other domains
already keep (a run's dataset inputs, a job's run, a model version's run and job). Each kind
of entity is known to a **neighbour provider**: it describes an entity of its kinds and
names the entities next to any node, upstream (what it was made from) and downstream (what
was made from it). The walk itself knows no kind.

Extension point: a domain adds a kind by adding a provider — e.g. hosting, for
``endpoint:NAME``, a provider whose ``kinds`` is ``{"endpoint": ("name",)}``, whose
``downstream`` of a ``model`` node names the endpoints serving that version ("deployed as")
and whose ``upstream`` of an ``endpoint`` node names the versions it serves::

    lineage.add(EndpointLinks(hosting))

Providers return nothing for nodes they have nothing to say about, so several may contribute
neighbours to one node. The walk goes upstream from the root through ancestors only, then
downstream through descendants only (never to siblings), and stops at ``max_nodes``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.orm import Session

from shipyard.errors import NotFound, ValidationFailed
from shipyard.lineage import schemas

MAX_NODES = 500
MAX_PART = 256  # characters in one part of an entity (a name, a run id)


@dataclass(frozen=True)
class Entity:
    """``kind`` and its key parts, e.g. ``Entity("model", ("churn", "3"))``."""

    kind: str
    key: tuple[str, ...]

    @property
    def id(self) -> str:
        return ":".join((self.kind, *self.key))


@dataclass
class Node:
    """A described entity. ``facts`` are what providers need to find its neighbours (the
    run a job ran as, the inputs of a run); they are not part of the answer."""

    entity: Entity
    label: str
    attributes: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.entity.id

    @property
    def kind(self) -> str:
        return self.entity.kind


@dataclass(frozen=True)
class Link:
    """A neighbour of a node, and how the two relate ("input", "registered as", …)."""

    entity: Entity
    relation: str


class NeighbourProvider(Protocol):
    """Knows some kinds of entity, and the neighbours of any node it has something to say
    about (an empty iterable for the others)."""

    @property
    def kinds(self) -> Mapping[str, tuple[str, ...]]:
        """Each kind it describes, with the names of its key parts (``("group",
        "version")``); a part called ``version`` must be a positive integer."""
        ...

    def describe(self, s: Session, project_id: str, entity: Entity) -> Node:
        """The entity as a node; ``NotFound`` when the project has no such entity."""
        ...

    def upstream(self, s: Session, project_id: str, node: Node) -> Iterable[Link]: ...

    def downstream(self, s: Session, project_id: str, node: Node) -> Iterable[Link]: ...


@dataclass
class _Graph:
    root: Node
    limit: int
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: dict[tuple[str, str, str], None] = field(default_factory=dict)  # ordered set
    truncated: bool = False

    def __post_init__(self) -> None:
        self.nodes[self.root.id] = self.root

    def out(self) -> schemas.LineageGraph:
        return schemas.LineageGraph(
            root=self.root.id,
            nodes=[
                schemas.LineageNode(id=n.id, kind=n.kind, label=n.label, attributes=n.attributes)
                for n in self.nodes.values()
            ],
            edges=[
                schemas.LineageEdge(source=source, target=target, relation=relation)
                for source, target, relation in self.edges
            ],
            truncated=self.truncated,
        )


class LineageService:
    def __init__(
        self, providers: Iterable[NeighbourProvider] = (), *, max_nodes: int = MAX_NODES
    ) -> None:
        self.max_nodes = max_nodes
        self._providers: list[NeighbourProvider] = []
        self._kinds: dict[str, tuple[NeighbourProvider, tuple[str, ...]]] = {}
        for provider in providers:
            self.add(provider)

    def add(self, provider: NeighbourProvider) -> None:
        """Teach the walk new kinds and neighbours (the extension point; see the module)."""
        for kind, parts in provider.kinds.items():
            if kind in self._kinds:
                raise ValueError(f"lineage kind {kind!r} already has a provider")
            self._kinds[kind] = (provider, tuple(parts))
        self._providers.append(provider)

    @property
    def kinds(self) -> list[str]:
        return sorted(self._kinds)

    def parse(self, text: str) -> Entity:
        """``KIND:KEY…`` as an entity; 422 on ``entity`` naming the expected form."""
        kind, _, rest = text.partition(":")
        known = self._kinds.get(kind)
        if known is None:
            forms = ", ".join(self._form(k) for k in self.kinds)
            raise ValidationFailed(
                f"entity {text!r} is not one of {forms}", field="entity", kinds=self.kinds
            )
        names = known[1]
        parts = rest.split(":") if rest else []
        if len(parts) != len(names) or not all(map(_part_ok, names, parts)):
            raise ValidationFailed(
                f"entity {text!r} is not of the form {self._form(kind)}", field="entity"
            )
        key = tuple(str(int(p)) if n == "version" else p for n, p in zip(names, parts, strict=True))
        return Entity(kind, key)

    def _form(self, kind: str) -> str:
        return ":".join((kind, *(name.upper() for name in self._kinds[kind][1])))

    def graph(self, s: Session, project_id: str, entity: str) -> schemas.LineageGraph:
        """The root's ancestors and descendants with the edges between them."""
        root = self.describe(s, project_id, self.parse(entity))
        graph = _Graph(root, self.max_nodes)
        self._walk(s, project_id, graph, upstream=True)
        self._walk(s, project_id, graph, upstream=False)
        return graph.out()

    def describe(self, s: Session, project_id: str, entity: Entity) -> Node:
        provider = self._kinds[entity.kind][0]
        return provider.describe(s, project_id, entity)

    def _walk(self, s: Session, project_id: str, graph: _Graph, *, upstream: bool) -> None:
        """Breadth first from the root, in one direction only."""
        queue, queued = deque([graph.root]), {graph.root.id}
        while queue:
            node = queue.popleft()
            for link in self._neighbours(s, project_id, node, upstream=upstream):
                found = self._visit(s, project_id, graph, link.entity)
                if found is None:
                    continue
                ends = (found.id, node.id) if upstream else (node.id, found.id)
                graph.edges[(*ends, link.relation)] = None
                if found.id not in queued:
                    queued.add(found.id)
                    queue.append(found)

    def _visit(self, s: Session, project_id: str, graph: _Graph, entity: Entity) -> Node | None:
        """The node of ``entity``, described once; None when the graph is full."""
        known = graph.nodes.get(entity.id)
        if known is not None:
            return known
        if len(graph.nodes) >= graph.limit:
            graph.truncated = True
            return None
        try:
            node = self.describe(s, project_id, entity)
        except NotFound:  # a record still names it, but it is gone: show that, walk no further
            node = Node(entity, entity.id, {"missing": True})
        graph.nodes[entity.id] = node
        return node

    def _neighbours(
        self, s: Session, project_id: str, node: Node, *, upstream: bool
    ) -> Iterable[Link]:
        if node.attributes.get("missing"):
            return
        for provider in self._providers:
            if upstream:
                yield from provider.upstream(s, project_id, node)
            else:
                yield from provider.downstream(s, project_id, node)


def _part_ok(name: str, part: str) -> bool:
    if name == "version":
        return part.isdigit() and part.isascii() and 1 <= int(part) < 2**31
    return 0 < len(part) <= MAX_PART and part.isprintable()
