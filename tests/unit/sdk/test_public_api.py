"""The SDK's public surface: a curated ``__all__``, and no server-side imports."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

import shipyard
import shipyard.sdk as sdk


def test_all_lists_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(sdk).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(sdk.__all__) == public
    assert sorted(sdk.__all__) == sdk.__all__, "keep __all__ sorted"


def test_every_exported_object_comes_from_a_private_module() -> None:
    aliases = {"Progress"}  # a typing alias: Callable[[int, int], None]
    for name in set(sdk.__all__) - aliases:
        module = getattr(getattr(sdk, name), "__module__", "shipyard.sdk._")
        assert module.startswith("shipyard.sdk._"), (name, module)


def test_top_level_package_reexports_the_sdk() -> None:
    assert shipyard.Session is sdk.Session
    assert shipyard.__all__ == ["__version__", *sdk.__all__]
    assert set(sdk.__all__) <= set(dir(shipyard))


def test_import_shipyard_leaves_the_sdk_until_a_name_of_it_is_used() -> None:
    """Every platform process imports ``shipyard``; only those that use the SDK pay for it."""
    code = (
        "import sys, shipyard\n"
        "print('httpx' in sys.modules, 'shipyard.sdk' in sys.modules)\n"
        "shipyard.Session\n"
        "print('shipyard.sdk' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["False", "False", "True"]


def test_an_unknown_top_level_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = shipyard.no_such_name  # type: ignore[attr-defined]


def test_import_shipyard_pulls_in_nothing_server_side() -> None:
    code = (
        "import sys, shipyard\n"
        "heavy = {'sqlalchemy', 'fastapi', 'starlette', 'uvicorn', 'alembic', 'psycopg'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_import_shipyard_does_not_import_scikit_learn() -> None:
    """``shipyard.autolog`` imports scikit-learn when called, so the SDK does not need it."""
    code = "import sys, shipyard\nprint('sklearn' in sys.modules)\n"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
