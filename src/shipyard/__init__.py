"""Shipyard: a self-hosted ML platform.

``import shipyard`` gives the SDK (``shipyard.Session``, …) and imports nothing server-side,
so it works in a notebook without SQLAlchemy or FastAPI.

The SDK itself is imported on first use of one of its names, not by ``import shipyard``:
every process of the platform (the API server, each model server replica, each job, each CLI
call) imports some ``shipyard.*`` module, and most of them never touch the SDK or httpx.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from shipyard.sdk import *  # noqa: F403


def _sdk() -> ModuleType:
    return importlib.import_module("shipyard.sdk")


def __getattr__(name: str) -> Any:
    """``__all__`` and the SDK's names, from the SDK. A subpackage's name is not looked up
    there: ``from shipyard import hosting`` asks for the attribute before it imports it."""
    if name == "__all__":
        return ["__version__", *_sdk().__all__]
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is None:
        sdk = _sdk()
        if name in sdk.__all__:
            return getattr(sdk, name)
    raise AttributeError(f"module 'shipyard' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__getattr__("__all__")})
