"""Metric definitions: validated like SageMaker's, applied line by line to a job's log."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shipyard.jobs.logmetrics import (
    MAX_LINE_CHARS,
    LogMetricExtractor,
    MetricDefinition,
    MetricPoint,
    compile_definitions,
)


def _extractor(*pairs: tuple[str, str]) -> LogMetricExtractor:
    return LogMetricExtractor(compile_definitions([{"Name": n, "Regex": r} for n, r in pairs]))


# --- validation -------------------------------------------------------------------------------


def test_valid_definitions_compile_in_order() -> None:
    compiled = compile_definitions(
        [
            {"Name": "train:loss", "Regex": r"loss: ([0-9.]+)"},
            {"name": "validation auc/epoch-1", "regex": r"auc=(\S+)"},
            MetricDefinition(name="lr", regex=r"lr=(\S+)"),
        ]
    )
    assert [m.name for m in compiled] == ["train:loss", "validation auc/epoch-1", "lr"]
    assert compiled[0].pattern.pattern == r"loss: ([0-9.]+)"


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        ({"Name": "loss", "Regex": r"loss: [0-9.]+"}, "metric_definitions[1].regex: missing a"),
        ({"Name": "loss", "Regex": r"loss: ([0-9.]+"}, "metric_definitions[1].regex: does not"),
        ({"Name": "loss", "Regex": ""}, "metric_definitions[1].regex: must be 1-500"),
        ({"Name": "loss", "Regex": "(" + "a" * 500 + ")"}, "metric_definitions[1].regex:"),
        ({"Name": "loss"}, "metric_definitions[1].regex:"),
        ({"Name": "", "Regex": "(x)"}, "metric_definitions[1].name:"),
        ({"Name": "bad*name", "Regex": "(x)"}, "metric_definitions[1].name:"),
        ({"Name": "n" * 251, "Regex": "(x)"}, "metric_definitions[1].name:"),
        ({"Regex": "(x)"}, "metric_definitions[1].name:"),
        ({"Name": "auc", "Regex": "(x)"}, "metric_definitions[1].name: duplicate 'auc'"),
        ("auc", "metric_definitions[1]: must be an object"),
    ],
)
def test_errors_name_the_index_and_field(definition: object, message: str) -> None:
    defs = [{"Name": "auc", "Regex": r"auc=(\S+)"}, definition]
    with pytest.raises(ValueError, match=re.escape(message)):
        compile_definitions(defs)  # type: ignore[arg-type]


def test_at_most_twenty_definitions() -> None:
    defs = [{"Name": f"m{i}", "Regex": rf"m{i}=(\S+)"} for i in range(21)]
    assert len(compile_definitions(defs[:20])) == 20
    with pytest.raises(ValueError, match=r"metric_definitions: at most 20, got 21"):
        compile_definitions(defs)


# --- extraction -------------------------------------------------------------------------------


def test_realistic_line_yields_each_metric() -> None:
    extractor = _extractor(
        ("auc", r"auc=([-+0-9.eE]+)"),
        ("loss", r"loss: ([-+0-9.eE]+)"),
        ("epoch", r"epoch (\d+)"),
    )
    assert extractor.feed("epoch 3 auc=0.913 loss: 0.2\n") == [
        MetricPoint("auc", 0.913, 0),
        MetricPoint("loss", 0.2, 0),
        MetricPoint("epoch", 3.0, 0),
    ]
    assert extractor.feed("INFO nothing to see") == []
    assert extractor.feed("epoch 4 auc=0.92 loss: 0.15") == [
        ("auc", 0.92, 1),
        ("loss", 0.15, 1),
        ("epoch", 4.0, 1),
    ]
    assert extractor.steps == {"auc": 2, "loss": 2, "epoch": 2}


def test_every_match_in_a_line_counts_as_a_step() -> None:
    extractor = _extractor(("loss", r"loss=(\S+)"))
    assert extractor.feed("loss=0.1 loss=0.2 loss=0.3") == [
        ("loss", 0.1, 0),
        ("loss", 0.2, 1),
        ("loss", 0.3, 2),
    ]


def test_a_non_numeric_capture_is_skipped_without_using_a_step() -> None:
    extractor = _extractor(("loss", r"loss=(\S+)"))
    assert extractor.feed("loss=abc loss=0.5 loss=1.2.3") == [("loss", 0.5, 0)]
    assert extractor.steps == {"loss": 1}


def test_an_optional_group_that_did_not_take_part_is_skipped() -> None:
    extractor = _extractor(("acc", r"acc(?:=(\d+\.\d+))?"))
    assert extractor.feed("acc acc=0.75") == [("acc", 0.75, 0)]


def test_the_first_group_is_the_value() -> None:
    extractor = _extractor(("val", r"(\d+\.\d+) \((\w+)\)"))
    assert extractor.feed("0.5 (val)") == [("val", 0.5, 0)]


def test_nan_is_kept_because_a_diverged_loss_matters() -> None:
    (point,) = _extractor(("loss", r"loss=(\S+)")).feed("loss=nan")
    assert math.isnan(point.value)


def test_only_the_head_of_a_long_line_is_searched() -> None:
    extractor = _extractor(("auc", r"auc=([0-9.]+)"))
    head = "auc=0.5 " + "x" * (MAX_LINE_CHARS - 8)
    assert extractor.feed(head + "auc=0.9") == [("auc", 0.5, 0)]


def test_a_huge_line_yields_only_the_matches_in_its_head() -> None:
    extractor = _extractor(("x", r"x=(\d+)"))
    points = extractor.feed("x=1 " * 5000)
    assert len(points) == MAX_LINE_CHARS // 4
    assert points[-1] == ("x", 1.0, MAX_LINE_CHARS // 4 - 1)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_any_printed_float_is_recovered_exactly(value: float) -> None:
    extractor = _extractor(("auc", r"auc=([-+0-9.eE]+)"))
    (point,) = extractor.feed(f"epoch 3 auc={value!r} loss: 0.2")
    assert point.value == value
    assert math.copysign(1.0, point.value) == math.copysign(1.0, value)
