"""Where a Session finds its server: arguments, then env, then the saved profile."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from shipyard.sdk import ConfigurationError, Profile, Session, delete_profile, save_profile


@pytest.fixture(autouse=True)
def config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    path = tmp_path / "cfg" / "profiles.json"
    monkeypatch.setenv("SHIPYARD_CONFIG", str(path))
    for name in ("SHIPYARD_URL", "SHIPYARD_API_KEY", "SHIPYARD_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    return path


def test_nothing_configured_says_how_to_fix_it() -> None:
    with pytest.raises(ConfigurationError, match="shipyard login"):
        Session()


def test_profile_is_private_and_used(config_file: Path) -> None:
    save_profile(Profile(url="http://saved:1", api_key="k-saved"))
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
    with Session() as session:
        assert (session.url, session.profile.api_key) == ("http://saved:1", "k-saved")


def test_env_beats_profile_and_arguments_beat_env(monkeypatch: pytest.MonkeyPatch) -> None:
    save_profile(Profile(url="http://saved:1", api_key="k-saved"))
    monkeypatch.setenv("SHIPYARD_URL", "http://env:2")
    monkeypatch.setenv("SHIPYARD_API_KEY", "k-env")
    with Session() as session:
        assert (session.url, session.profile.api_key) == ("http://env:2", "k-env")
    with Session(url="http://arg:3", api_key="k-arg") as session:
        assert (session.url, session.profile.api_key) == ("http://arg:3", "k-arg")


def test_named_profiles_and_delete(monkeypatch: pytest.MonkeyPatch) -> None:
    save_profile(Profile(url="http://a:1", api_key="ka"), "a")
    save_profile(Profile(url="http://b:1", api_key="kb"), "b")
    monkeypatch.setenv("SHIPYARD_PROFILE", "b")
    with Session() as session:
        assert session.url == "http://b:1"
    with Session(profile="a") as session:
        assert session.url == "http://a:1"
    assert delete_profile("b") is True
    assert delete_profile("b") is False
    with pytest.raises(ConfigurationError):
        Session()
