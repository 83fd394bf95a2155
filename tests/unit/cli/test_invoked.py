"""A call builds only the group it names; anything else gets the whole command line."""

from __future__ import annotations

from typing import Any

from shipyard.cli.main import app, invoked


def _names(target: Any) -> set[str]:
    groups = {g.name for g in target.registered_groups}
    commands = {c.name or c.callback.__name__ for c in target.registered_commands}
    return {name for name in groups | commands if name}


def test_a_group_name_builds_that_group_alone() -> None:
    narrow = invoked(["models", "ls", "-p", "ml/churn"])
    assert _names(narrow) == {"models"}
    assert narrow.registered_callback is app.registered_callback  # --version still works


def test_a_top_level_command_builds_that_command_alone() -> None:
    assert _names(invoked(["whoami"])) == {"whoami"}


def test_no_name_an_option_first_or_an_unknown_name_get_everything() -> None:
    for argv in ([], ["--help"], ["--version"], ["modles", "ls"]):
        assert invoked(argv) is app, argv
