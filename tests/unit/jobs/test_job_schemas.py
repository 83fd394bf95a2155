"""A job spec is checked field by field before anything is stored or started."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from pydantic import ValidationError

from shipyard.jobs.schemas import (
    TERMINAL,
    InputChannel,
    JobCreate,
    JobStatus,
    may_move,
)


def _spec(**over: Any) -> JobCreate:
    return JobCreate.model_validate({"name": "train-churn", "entry_point": "train.py", **over})


def _field_of(error: ValidationError) -> str:
    return ".".join(str(p) for p in error.errors()[0]["loc"])


def test_a_minimal_spec_gets_the_documented_defaults() -> None:
    spec = _spec()
    assert (spec.kind, spec.instance_type, spec.instance_count) == ("training", "cpu.small", 1)
    assert (spec.max_retries, spec.spot, spec.checkpointing, spec.requirements) == (
        0,
        False,
        False,
        None,
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("dataset:marketing:3", ("dataset", "marketing", 3)),
        ("artifact:data/train.csv@2", ("artifact", "data/train.csv", 2)),
        ("data/train.csv", ("artifact", "data/train.csv", None)),
    ],
)
def test_input_channels_parse(text: str, expected: tuple[str, str, int | None]) -> None:
    channel = InputChannel.parse(text)
    assert (channel.source, channel.name, channel.version) == expected


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"entry_point": "../escape.py"}, "entry_point"),
        ({"entry_point": "/etc/passwd.py"}, "entry_point"),
        ({"entry_point": "not a module"}, "entry_point"),
        ({"name": "Has Spaces"}, "name"),
        ({"inputs": {"train": "dataset:marketing"}}, "inputs"),
        ({"inputs": {"train": "artifact:../secret"}}, "inputs"),
        ({"inputs": {"../x": "data/a.csv"}}, "inputs.../x.[key]"),
        ({"instance_count": 0}, "instance_count"),
        ({"max_retries": 11}, "max_retries"),
        (
            {"metric_definitions": [{"name": "auc", "regex": "auc=[0-9.]+"}]},
            "metric_definitions",
        ),
        (
            {"metric_definitions": [{"name": "auc", "regex": "auc=(["}]},
            "metric_definitions",
        ),
        ({"source": "/abs/src.tar.gz"}, "source"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_specs_name_the_field(over: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        _spec(**over)
    assert _field_of(caught.value) == field


def test_a_module_entry_point_and_channels_are_accepted() -> None:
    spec = _spec(entry_point="trainer.main", inputs={"train": "dataset:m:1", "eval": "e.csv@4"})
    assert spec.channels["eval"] == InputChannel(source="artifact", name="e.csv", version=4)


def test_status_moves_only_forward_and_ends_in_a_terminal_state() -> None:
    path = ["Pending", "Starting", "Downloading", "Running", "Uploading", "Completed"]
    for current, target in itertools.pairwise(path):
        assert may_move(JobStatus(current), JobStatus(target))
    assert may_move(JobStatus.RUNNING, JobStatus.INTERRUPTED)
    assert may_move(JobStatus.INTERRUPTED, JobStatus.RESUMING)
    assert may_move(JobStatus.RESUMING, JobStatus.STARTING)
    assert not may_move(JobStatus.PENDING, JobStatus.INTERRUPTED)
    assert not may_move(JobStatus.RUNNING, JobStatus.PENDING)
    for done in TERMINAL:
        assert not any(may_move(done, target) for target in JobStatus)
    assert all(may_move(s, JobStatus.FAILED) for s in set(JobStatus) - TERMINAL)
