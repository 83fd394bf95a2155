"""The HTML report: self-contained, one chart per feature, every user string escaped."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from tests.unit.monitoring.helpers import feature_record, write_capture, write_csv

from shipyard.monitoring.drift import analyze
from shipyard.monitoring.report import html_report
from shipyard.monitoring.statistics import Constraints, baseline_from_file

NAMES = ["<script>alert(1)</script>", "amount", "plan"]


def test_report(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    base = [
        [int(a), float(b), str(c)]
        for a, b, c in zip(
            rng.integers(0, 50, 2_000),
            rng.normal(5, 1, 2_000).round(3),
            rng.choice(["<b>basic</b>", "premium"], 2_000),
            strict=True,
        )
    ]
    stats = baseline_from_file(write_csv(tmp_path / "b.csv", NAMES, base))
    current = [[a + 30, b, "new & shiny" if i % 10 == 0 else c] for i, (a, b, c) in enumerate(base)]
    capture = write_capture(
        tmp_path / "c.jsonl", (feature_record(i, r) for i, r in enumerate(current))
    )
    analysis = analyze(stats, Constraints.suggest(stats), [capture])

    page = html_report(analysis, stats, title="churn <v23> & friends")

    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page.lower()  # the feature name is text, never markup
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;basic&lt;/b&gt;" in page and "<b>basic" not in page
    assert "new &amp; shiny" in page
    assert "<title>churn &lt;v23&gt; &amp; friends</title>" in page
    assert page.count("<svg") == 1 + len(NAMES)  # the drift chart, then one per feature
    assert not re.search(r"(src|href)=\"?(https?:)?//", page)  # nothing fetched when viewed
    assert "drift_and_violations" in page
    # the shifted number, and the categories where one value in ten is new
    assert analysis.drifted == [NAMES[0], "plan"]
    assert page.count('class="badge bad">drifted') == 2
    assert "new_category" in page and "range" in page
