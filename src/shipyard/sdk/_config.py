"""Where the SDK finds its server and credentials.

Resolution order, first hit wins: arguments to ``Session(...)``; ``SHIPYARD_URL`` with
``SHIPYARD_API_KEY``; the profile written by ``shipyard login`` (``SHIPYARD_PROFILE`` names
it, default ``default``) in ``$SHIPYARD_CONFIG`` or ``~/.config/shipyard/profiles.json``.
The file is written with mode 0600 because it holds secrets.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from shipyard.sdk._exceptions import ConfigurationError

DEFAULT_PROFILE = "default"


@dataclass
class Profile:
    """One saved login: an API key, or an access/refresh token pair from a password login."""

    url: str
    api_key: str | None = None
    access_token: str | None = None
    refresh_token: str | None = None
    username: str | None = None

    @property
    def bearer(self) -> str | None:
        return self.api_key or self.access_token


def config_path() -> Path:
    explicit = os.environ.get("SHIPYARD_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "shipyard" / "profiles.json"


def profile_name(name: str | None = None) -> str:
    return name or os.environ.get("SHIPYARD_PROFILE") or DEFAULT_PROFILE


def _read_all(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read the profile file {path}: {exc}") from exc
    return data if isinstance(data, dict) else {}


def load_profile(name: str | None = None) -> Profile | None:
    """The saved profile ``name`` (or the current one), or None when there is none."""
    entry = _read_all(config_path()).get(profile_name(name))
    if not isinstance(entry, dict) or not entry.get("url"):
        return None

    def text(key: str) -> str | None:
        value = entry.get(key)
        return str(value) if value is not None else None

    return Profile(
        url=str(entry["url"]),
        api_key=text("api_key"),
        access_token=text("access_token"),
        refresh_token=text("refresh_token"),
        username=text("username"),
    )


def save_profile(profile: Profile, name: str | None = None) -> Path:
    """Write ``profile`` under ``name`` atomically, readable by the owner only."""
    path = config_path()
    everything = _read_all(path)
    everything[profile_name(name)] = {k: v for k, v in asdict(profile).items() if v is not None}
    _write_all(path, everything)
    return path


def delete_profile(name: str | None = None) -> bool:
    """Forget profile ``name``; False when there was none."""
    path = config_path()
    everything = _read_all(path)
    if everything.pop(profile_name(name), None) is None:
        return False
    _write_all(path, everything)
    return True


def _write_all(path: Path, everything: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".profiles.")
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(everything, out, indent=2)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def resolve(url: str | None, api_key: str | None, profile: str | None) -> Profile:
    """Pick the server and credentials by the documented order; raise when there is no URL."""
    url = url or os.environ.get("SHIPYARD_URL")
    if url:  # given or from the environment: the saved profile is not consulted
        return Profile(url=url, api_key=api_key or os.environ.get("SHIPYARD_API_KEY"))
    saved = load_profile(profile)
    if saved is None and api_key:
        raise ConfigurationError("no server URL: pass url=... or set SHIPYARD_URL")
    if saved is None:
        raise ConfigurationError(
            "no Shipyard server configured: run 'shipyard login --url URL ...', "
            "or set SHIPYARD_URL and SHIPYARD_API_KEY"
        )
    # A key passed without a URL goes to the saved profile's server.
    return Profile(url=saved.url, api_key=api_key) if api_key else saved
