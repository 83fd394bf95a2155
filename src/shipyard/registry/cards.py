"""Model cards: what a card holds, its first revision, and its Markdown and HTML forms.

The HTML is rendered from the Markdown with raw HTML disabled and the link validator on, so
text a registrant typed (``<script>``, ``javascript:`` links) is shown, never run, by a
reviewer's browser.
"""

from __future__ import annotations

import html
from typing import Any

from markdown_it import MarkdownIt

from shipyard.registry import schemas
from shipyard.registry.models import ModelCard, ModelVersion

EDITABLE = (
    "intended_use",
    "risk_rating",
    "training_data",
    "evaluation_notes",
    "ethical_considerations",
    "caveats",
)
_SECTIONS = (
    ("Intended use", "intended_use"),
    ("Training data", "training_data"),
    ("Evaluation notes", "evaluation_notes"),
    ("Ethical considerations", "ethical_considerations"),
    ("Caveats and recommendations", "caveats"),
)
_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")


def first_content(version: ModelVersion) -> dict[str, Any]:
    """Revision 1, written at registration: the training data is filled in from lineage."""
    return {
        "intended_use": "",
        "risk_rating": schemas.RiskRating.UNKNOWN.value,
        "training_data": _training_data(version.dataset_versions),
        "evaluation_notes": "",
        "ethical_considerations": "",
        "caveats": "",
    }


def _training_data(datasets: list[dict[str, Any]]) -> str:
    if not datasets:
        return ""
    lines = [f"- dataset `{d['dataset']}` version {d['version']}" for d in datasets]
    return "\n".join(lines)


def edited(current: dict[str, Any], update: schemas.ModelCardUpdate) -> dict[str, Any]:
    changes = update.model_dump(include=set(EDITABLE), exclude_none=True, mode="json")
    return {**current, **changes}


def card_out(group: str, version: ModelVersion, card: ModelCard) -> schemas.ModelCardOut:
    return schemas.ModelCardOut(
        group=group,
        version=version.version,
        revision=card.revision,
        frozen=is_frozen(version),
        evaluation_results=dict(version.metrics),
        updated_by=card.updated_by,
        created_at=card.created_at,
        **{field: card.content.get(field, "") for field in EDITABLE},
    )


def is_frozen(version: ModelVersion) -> bool:
    return version.status != schemas.VersionStatus.PENDING.value


def to_markdown(card: schemas.ModelCardOut, version: ModelVersion) -> str:
    """The card as one Markdown document: facts from the registry, then the authored text."""
    lines = [
        f"# Model card: {card.group} v{card.version}",
        "",
        f"- **Status:** {version.status}",
        f"- **Risk rating:** {card.risk_rating.value}",
        f"- **Flavor:** {version.flavor}",
        f"- **Registered by:** {version.registered_by} on {version.created_at:%Y-%m-%d}",
        f"- **Manifest digest:** `{version.manifest_digest}`",
        f"- **Card revision:** {card.revision}",
    ]
    if version.decided_by:
        lines.append(f"- **Decided by:** {version.decided_by}")
    lines += _lineage_lines(version)
    lines += _evaluation_lines(card.evaluation_results)
    for title, field in _SECTIONS:
        text = str(getattr(card, field)).strip()
        lines += ["", f"## {title}", "", text or "_Not stated._"]
    return "\n".join(lines) + "\n"


def _lineage_lines(version: ModelVersion) -> list[str]:
    lines = []
    if version.job_name:
        lines.append(f"- **Training job:** `{version.job_name}`")
    if version.run_id:
        lines.append(f"- **Run:** `{version.run_id}`")
    return lines


def _evaluation_lines(results: dict[str, float]) -> list[str]:
    if not results:
        return ["", "## Evaluation results", "", "_No metrics were recorded by the run._"]
    rows = [f"| {name} | {value:.6g} |" for name, value in sorted(results.items())]
    return ["", "## Evaluation results", "", "| metric | value |", "| --- | --- |", *rows]


def to_html(markdown: str, title: str) -> str:
    body = _MARKDOWN.render(markdown)
    safe_title = html.escape(title)
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{safe_title}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;"
        "padding:0 1rem;line-height:1.5}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.25rem .6rem}code{background:#f4f4f4}</style>"
        f"</head><body>\n{body}</body></html>\n"
    )
