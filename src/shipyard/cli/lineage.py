"""``shipyard lineage``: where a model, run, job or dataset version came from, and what was
made from it, as two trees."""

from __future__ import annotations

from collections import defaultdict
from typing import Annotated, Any

import typer
from rich.text import Text
from rich.tree import Tree

from shipyard.cli._common import JsonOption, out, print_json, session
from shipyard.cli.jobs import ProjectOption

lineage = typer.Typer(
    help="Lineage: dataset version → job → run → model version, both ways.",
    no_args_is_help=True,
)
Links = dict[str, list[tuple[str, str]]]  # node → [(neighbour, relation)]


def _describe(node: dict[str, Any]) -> str:
    """``model:churn:3 · churn v3 · PendingManualApproval``: the id, a label that adds
    something, the status."""
    parts = [node["id"]]
    if node["label"] and node["label"] not in node["id"]:
        parts.append(node["label"])
    attributes = node.get("attributes") or {}
    if attributes.get("missing"):
        parts.append("(no longer exists)")
    elif attributes.get("status"):
        parts.append(str(attributes["status"]))
    return " · ".join(parts)


def _grow(
    branch: Tree, start: str, links: Links, nodes: dict[str, dict[str, Any]], arrow: str
) -> None:
    """Add ``start``'s neighbours under ``branch``, depth first, never looping."""
    stack = [(branch, start, frozenset({start}))]
    while stack:
        parent, current, path = stack.pop()
        for neighbour, relation in reversed(links.get(current, [])):
            label = Text(f"{arrow} {_describe(nodes[neighbour])}")
            label.append(f"  [{relation}]", style="dim")
            child = parent.add(label)
            if neighbour not in path:
                stack.append((child, neighbour, path | {neighbour}))


def render(graph: dict[str, Any]) -> list[Tree]:
    """The graph as an upstream tree (what the root was made from) and a downstream one."""
    nodes = {n["id"]: n for n in graph["nodes"]}
    parents: Links = defaultdict(list)
    children: Links = defaultdict(list)
    for edge in graph["edges"]:
        parents[edge["target"]].append((edge["source"], edge["relation"]))
        children[edge["source"]].append((edge["target"], edge["relation"]))
    root = graph["root"]
    trees = []
    for title, links, arrow in (("upstream", parents, "←"), ("downstream", children, "→")):
        tree = Tree(Text(f"{title} of {_describe(nodes[root])}", style="bold"))
        _grow(tree, root, links, nodes, arrow)
        if not links.get(root):
            tree.add(Text("(nothing)", style="dim"))
        trees.append(tree)
    return trees


@lineage.command("show")
def show(
    entity: Annotated[
        str,
        typer.Argument(help="dataset:NAME:VERSION, job:NAME, run:RUN_ID or model:GROUP:VERSION"),
    ],
    project: ProjectOption,
    as_json: JsonOption = False,
) -> None:
    """Show what ENTITY was made from (upstream) and what was made from it (downstream).

    Example: shipyard lineage show model:churn:1 -p ml/churn
    """
    with session() as client:
        graph = client.lineage(project, entity)
    if as_json:
        print_json(graph)
        return
    for tree in render(graph):
        out.print(tree, highlight=False)
    if graph.get("truncated"):
        out.print(Text("(truncated: the graph has more nodes than one answer holds)", "dim"))


def register(app: typer.Typer) -> None:
    app.add_typer(lineage, name="lineage")
