"""Shipyard: a self-hosted ML platform.

``import shipyard`` gives the SDK (``shipyard.Session``, …) and imports nothing server-side,
so it works in a notebook without SQLAlchemy or FastAPI.
"""

__version__ = "0.1.0"
