"""An analysis as one self-contained HTML page: inline CSS and SVG, nothing fetched at view time.

The page has the verdict and counts, a bar chart of each feature's PSI against its threshold,
the violations, and per feature the baseline's distribution overlaid with the traffic's:
numbers on 30 equal-width bins over the baseline's range (re-binned from the ~1000-point
sketch, so both sides come from counts already in the analysis), strings as the shares of
the baseline's most frequent values plus "other". Every string that comes from data or users
(feature names, categories, titles) is escaped.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from typing import Any, Final

import numpy as np

from shipyard.monitoring.drift import Analysis, FeatureDrift
from shipyard.monitoring.statistics import FeatureStatistics, Statistics

PLOT_BINS: Final = 30
CATEGORIES_SHOWN: Final = 15
WIDTH: Final = 640
HEIGHT: Final = 170
BASE_COLOR: Final = "#9aa5b1"
CURRENT_COLOR: Final = "#1f6feb"
DRIFT_COLOR: Final = "#d1242f"

_CSS: Final = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;
max-width:60rem;color:#1f2328;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}h3{font-size:1rem;margin:1.5rem 0 .3rem}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #d0d7de;padding:.25rem .5rem;
text-align:left;vertical-align:top}th{background:#f6f8fa}
.badge{display:inline-block;padding:.1rem .5rem;border-radius:1rem;color:#fff;font-weight:600}
.ok{background:#1a7f37}.bad{background:#d1242f}.warn{background:#9a6700}
.muted{color:#656d76}code{font-size:12px;white-space:pre-wrap}svg{display:block}
"""


def html_report(analysis: Analysis, baseline: Statistics, *, title: str) -> str:
    """The analysis as an HTML page (UTF-8 text, no external resources)."""
    sections = [
        _summary(analysis),
        "<h2>Drift per feature (PSI)</h2>",
        _drift_chart(analysis.features),
        "<h2>Data-quality violations</h2>",
        _violations(analysis),
        "<h2>Distributions: baseline vs current</h2>",
        *(_feature_section(f, baseline.feature(f.name)) for f in analysis.features),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>"
        f"<body><h1>{_e(title)}</h1>{''.join(sections)}</body></html>\n"
    )


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


# --- summary and tables ----------------------------------------------------------------------


def _summary(analysis: Analysis) -> str:
    style = {"ok": "ok", "no_data": "warn"}.get(analysis.verdict, "bad")
    counts = analysis.counts
    window = f"{analysis.start or '…'} → {analysis.end or '…'}"
    rows = [
        ("verdict", f'<span class="badge {style}">{_e(analysis.verdict)}</span>'),
        ("window", _e(window)),
        ("records", f"{counts.records:,}"),
        ("rows", f"{counts.rows:,}"),
        ("not captured / unreadable", f"{counts.no_input:,} / {counts.unreadable:,}"),
        ("drifted features", _e(", ".join(analysis.drifted) or "none")),
    ]
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _violations(analysis: Analysis) -> str:
    if not analysis.violations:
        return '<p class="muted">None.</p>'
    head = "<tr><th>feature</th><th>kind</th><th>observed</th><th>expected</th><th>rows</th></tr>"
    rows = "".join(
        f"<tr><td>{_e(v.feature)}</td><td>{_e(v.kind)}</td>"
        f"<td><code>{_e(json.dumps(v.observed, default=str))}</code></td>"
        f"<td><code>{_e(json.dumps(v.expected, default=str))}</code></td>"
        f"<td>{v.count:,}</td></tr>"
        for v in analysis.violations
    )
    return f"<table>{head}{rows}</table>"


def _metrics_line(feature: FeatureDrift) -> str:
    m = feature.metrics
    parts = [f"PSI {_fmt(m.psi)}", f"JS {_fmt(m.js)}"]
    if m.ks is not None:
        parts.append(f"KS {_fmt(m.ks)} (p {_fmt(m.ks_p_value)})")
    if m.chi2 is not None:
        parts.append(f"χ² {_fmt(m.chi2)} (p {_fmt(m.chi2_p_value)})")
    parts.append(f"{feature.values:,} values, {feature.missing:,} missing")
    return " · ".join(parts)


# --- charts ----------------------------------------------------------------------------------


def _drift_chart(features: Sequence[FeatureDrift]) -> str:
    """Horizontal bars of PSI, the threshold as a dashed line, drifted features in red."""
    row, left, right = 22, 170, 60
    height = row * len(features) + 30
    scores = [f.metrics.psi or 0.0 for f in features]
    thresholds = [f.thresholds.psi for f in features if f.thresholds.psi is not None]
    top = max([*scores, *thresholds, 0.05]) * 1.1
    scale = (WIDTH - left - right) / top
    parts = []
    for i, (feature, score) in enumerate(zip(features, scores, strict=True)):
        y = 10 + i * row
        color = DRIFT_COLOR if feature.drifted else CURRENT_COLOR
        parts.append(
            f'<text x="{left - 6}" y="{y + 14}" text-anchor="end" font-size="12">'
            f"{_e(_short(feature.name))}</text>"
            f'<rect x="{left}" y="{y + 3}" width="{score * scale:.1f}" height="{row - 7}" '
            f'fill="{color}"><title>{_e(feature.name)}: PSI {_fmt(score)}</title></rect>'
            f'<text x="{left + score * scale + 4:.1f}" y="{y + 14}" font-size="11">'
            f"{_fmt(score)}</text>"
        )
    for threshold in sorted(set(thresholds)):
        x = left + threshold * scale
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="5" y2="{height - 20}" stroke="{DRIFT_COLOR}" '
            f'stroke-dasharray="4 3"/><text x="{x:.1f}" y="{height - 6}" font-size="11" '
            f'text-anchor="middle">threshold {_fmt(threshold)}</text>'
        )
    return _svg(height, "".join(parts), "PSI per feature")


def _feature_section(feature: FeatureDrift, stats: FeatureStatistics) -> str:
    badge = '<span class="badge bad">drifted</span>' if feature.drifted else ""
    chart = _overlay(feature, stats)
    return (
        f"<h3>{_e(feature.name)} <span class='muted'>({_e(feature.kind)})</span> {badge}</h3>"
        f'<div class="muted">{_e(_metrics_line(feature))}</div>{chart}'
    )


def _overlay(feature: FeatureDrift, stats: FeatureStatistics) -> str:
    labels: list[str]
    if stats.numeric is not None and feature.numeric is not None and feature.numeric.sketch_counts:
        base, current, labels = _numeric_shares(stats, feature.numeric.sketch_counts)
    elif stats.categorical is not None and feature.categorical is not None:
        base, current, labels = _categorical_shares(stats, feature)
    else:
        return _svg(40, '<text x="10" y="24" font-size="12">no values to compare</text>', "")
    return _bars(base, current, labels, feature.name)


def _numeric_shares(
    stats: FeatureStatistics, sketch_counts: Sequence[int]
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], list[str]]:
    """Both sides' sketch counts summed into equal-width bins over the baseline's range; each
    sketch bin goes where its upper edge falls (values above the max: a last "> max" bin)."""
    assert stats.numeric is not None
    sketch = stats.numeric.sketch
    low, high = stats.numeric.min, stats.numeric.max
    width = (high - low) / PLOT_BINS or 1.0
    uppers = np.asarray(sketch.edges, dtype=np.float64)
    target = np.clip(np.ceil((uppers - low) / width) - 1, 0, PLOT_BINS - 1).astype(np.int64)
    target = np.append(target, PLOT_BINS)  # the (max, inf) bin
    base = np.bincount(
        target, weights=np.asarray(sketch.counts, np.float64), minlength=PLOT_BINS + 1
    )
    current = np.bincount(
        target, weights=np.asarray(sketch_counts, np.float64), minlength=PLOT_BINS + 1
    )
    labels = [f"{low + k * width:.4g} to {low + (k + 1) * width:.4g}" for k in range(PLOT_BINS)]
    return _shares(base), _shares(current), [*labels, f"> {high:.4g}"]


def _categorical_shares(
    stats: FeatureStatistics, feature: FeatureDrift
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], list[str]]:
    assert stats.categorical is not None
    assert feature.categorical is not None
    values = list(stats.categorical.frequencies)[:CATEGORIES_SHOWN]
    base_counts = stats.categorical.frequencies
    current_counts = feature.categorical.frequencies
    base_total = sum(base_counts.values()) + stats.categorical.other
    current_total = sum(current_counts.values()) + feature.categorical.other
    base = [base_counts[v] for v in values]
    current = [current_counts.get(v, 0) for v in values]
    base.append(base_total - sum(base))
    current.append(current_total - sum(current))
    return (
        _shares(np.asarray(base, np.float64)),
        _shares(np.asarray(current, np.float64)),
        [*values, "other"],
    )


def _shares(counts: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    total = counts.sum()
    return counts / total if total > 0 else counts


def _bars(
    base: np.ndarray[Any, Any], current: np.ndarray[Any, Any], labels: list[str], name: str
) -> str:
    """Side-by-side bars per bin: baseline grey, current blue; a tooltip on each bin."""
    left, bottom = 40, 28
    n = len(labels)
    slot = (WIDTH - left - 10) / n
    top = max(float(base.max(initial=0)), float(current.max(initial=0)), 1e-9)
    plot = HEIGHT - bottom - 20
    parts = []
    for k in range(n):
        x = left + k * slot
        for j, (share, color) in enumerate(((base[k], BASE_COLOR), (current[k], CURRENT_COLOR))):
            h = plot * float(share) / top
            parts.append(
                f'<rect x="{x + j * slot * 0.45 + slot * 0.05:.1f}" y="{HEIGHT - bottom - h:.1f}" '
                f'width="{slot * 0.45:.1f}" height="{h:.1f}" fill="{color}"/>'
            )
        tip = f"{labels[k]}: baseline {float(base[k]):.2%}, current {float(current[k]):.2%}"
        parts.append(
            f'<rect x="{x:.1f}" y="20" width="{slot:.1f}" height="{plot:.1f}" fill="transparent">'
            f"<title>{_e(tip)}</title></rect>"
        )
        if n <= CATEGORIES_SHOWN + 1:
            parts.append(
                f'<text x="{x + slot / 2:.1f}" y="{HEIGHT - 12}" font-size="10" '
                f'text-anchor="middle">{_e(_short(labels[k], 12))}</text>'
            )
    if n > CATEGORIES_SHOWN + 1:  # numeric: the range's ends only
        parts.append(
            f'<text x="{left}" y="{HEIGHT - 12}" font-size="10">{_e(labels[0].split(" to ")[0])}'
            f'</text><text x="{WIDTH - 10}" y="{HEIGHT - 12}" font-size="10" '
            f'text-anchor="end">{_e(labels[-1])}</text>'
        )
    parts.append(
        f'<text x="{left}" y="12" font-size="11">max share {top:.1%}</text>'
        f'<rect x="{WIDTH - 190}" y="4" width="10" height="10" fill="{BASE_COLOR}"/>'
        f'<text x="{WIDTH - 176}" y="13" font-size="11">baseline</text>'
        f'<rect x="{WIDTH - 110}" y="4" width="10" height="10" fill="{CURRENT_COLOR}"/>'
        f'<text x="{WIDTH - 96}" y="13" font-size="11">current</text>'
    )
    return _svg(HEIGHT, "".join(parts), f"distribution of {name}")


def _svg(height: int, body: str, label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{_e(label)}">{body}</svg>'
    )


def _short(text: str, limit: int = 24) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
