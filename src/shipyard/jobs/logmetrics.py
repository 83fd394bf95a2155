"""Metrics scraped from a training job's log, the way SageMaker's ``MetricDefinitions`` work.

A script that prints ``epoch 3 auc=0.913`` gets an ``auc`` metric without importing anything:
each definition is a name and a regular expression whose first capture group is the value.
The same definitions a user gave SageMaker work here unchanged.

Definitions are user input run against every log line on the controller, so they are
checked up front (size, count, a capture group) and only the first ``MAX_LINE_CHARS`` of a
line are searched: Python's ``re`` has no timeout, and bounding the subject bounds the cost
of a badly backtracking pattern.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

MAX_DEFINITIONS = 20
MAX_REGEX_CHARS = 500
MAX_LINE_CHARS = 4096

_METRIC_NAME = re.compile(r"^[A-Za-z0-9_.:/ -]{1,250}$")


@dataclass(frozen=True)
class MetricDefinition:
    """One user definition, as SageMaker's ``{"Name": ..., "Regex": ...}``."""

    name: str
    regex: str


@dataclass(frozen=True)
class CompiledMetric:
    name: str
    pattern: re.Pattern[str]


class MetricPoint(NamedTuple):
    """One value found in a line; ``step`` counts the values of that metric from 0."""

    name: str
    value: float
    step: int


def _field(definition: Mapping[str, str] | MetricDefinition, key: str) -> object:
    """SageMaker spells the keys ``Name``/``Regex``; lower case is accepted too."""
    if isinstance(definition, MetricDefinition):
        return getattr(definition, key)
    if not isinstance(definition, Mapping):
        raise TypeError
    return definition.get(key.capitalize(), definition.get(key))


def _compile_one(index: int, definition: Mapping[str, str] | MetricDefinition) -> CompiledMetric:
    where = f"metric_definitions[{index}]"
    try:
        name, regex = _field(definition, "name"), _field(definition, "regex")
    except TypeError:
        raise ValueError(f"{where}: must be an object with 'Name' and 'Regex'") from None
    if not isinstance(name, str) or not _METRIC_NAME.fullmatch(name):
        raise ValueError(
            f"{where}.name: must be 1-250 letters, digits, spaces or '_', '.', ':', '/', '-'"
        )
    if not isinstance(regex, str) or not 1 <= len(regex) <= MAX_REGEX_CHARS:
        raise ValueError(f"{where}.regex: must be 1-{MAX_REGEX_CHARS} characters")
    try:
        pattern = re.compile(regex)
    except re.error as exc:
        raise ValueError(f"{where}.regex: does not compile: {exc}") from None
    if pattern.groups < 1:
        raise ValueError(f"{where}.regex: missing a capture group")
    return CompiledMetric(name=name, pattern=pattern)


def compile_definitions(
    defs: Sequence[Mapping[str, str] | MetricDefinition],
) -> list[CompiledMetric]:
    """Validate and compile; ``ValueError`` names the index and field of the first problem.

    Duplicate names are refused: two patterns feeding one metric would interleave their
    values under one step counter.
    """
    if len(defs) > MAX_DEFINITIONS:
        raise ValueError(f"metric_definitions: at most {MAX_DEFINITIONS}, got {len(defs)}")
    compiled: list[CompiledMetric] = []
    seen: set[str] = set()
    for index, definition in enumerate(defs):
        metric = _compile_one(index, definition)
        if metric.name in seen:
            raise ValueError(f"metric_definitions[{index}].name: duplicate {metric.name!r}")
        seen.add(metric.name)
        compiled.append(metric)
    return compiled


def _parse(text: str | None) -> float | None:
    """``float()`` of the capture, or ``None`` when it is absent or not a number.

    ``nan`` and ``inf`` are kept: a loss that became NaN is exactly what a user needs to see.
    """
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return None


class LogMetricExtractor:
    """Turns log lines into metric values, numbering each metric's values 0, 1, 2, …

    Not thread-safe: feed one job's lines from one reader, in order.
    """

    def __init__(
        self, metrics: Sequence[CompiledMetric], start: Mapping[str, int] | None = None
    ) -> None:
        """``start`` continues numbering (a resumed job's metrics follow its earlier ones)."""
        self._metrics = tuple(metrics)
        self._steps: dict[str, int] = {m.name: (start or {}).get(m.name, 0) for m in self._metrics}

    @property
    def steps(self) -> dict[str, int]:
        """The next step of each metric (so also how many values each has produced)."""
        return dict(self._steps)

    def feed(self, line: str) -> list[MetricPoint]:
        """Every value the definitions find in ``line``, in definition then position order.

        Like ``re.findall``, every non-overlapping match counts (``loss=0.1 loss=0.2`` gives
        two values); the first capture group is the value and matches that do not parse as
        a float are skipped without using up a step.
        """
        subject = line[:MAX_LINE_CHARS].rstrip("\r\n")
        points: list[MetricPoint] = []
        for metric in self._metrics:
            for match in metric.pattern.finditer(subject):
                value = _parse(match.group(1))
                if value is None:
                    continue
                step = self._steps[metric.name]
                self._steps[metric.name] = step + 1
                points.append(MetricPoint(metric.name, value, step))
        return points
