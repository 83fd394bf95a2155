"""Shipyard: a self-hosted ML platform.

``import shipyard`` gives the SDK (``shipyard.Session``, …) and imports nothing server-side,
so it works in a notebook without SQLAlchemy or FastAPI.
"""

__version__ = "0.1.0"

from shipyard.sdk import *  # noqa: F403
from shipyard.sdk import __all__ as _sdk_all

__all__ = ["__version__", *_sdk_all]
