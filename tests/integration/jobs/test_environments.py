"""Job environments: real uv, real venvs, real PyPI; built once per requirements, pins win."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from shipyard.jobs.environments import EnvironmentBuildError, EnvironmentCache, environment_key

# The platform's own venv has six 1.17.0, so seeing 1.16.0 proves the env's pin takes precedence.
SIX = b"six==1.16.0\n"
MISSING = b"shipyard-no-such-package-xyz==1.0\n"


def _run(python: Path, code: str) -> str:
    out = subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return out.stdout.strip()


def test_no_requirements_inherits_the_platform_interpreter(tmp_path: Path) -> None:
    cache = EnvironmentCache(tmp_path / "envs")
    assert cache.python_for(None) == Path(sys.executable)
    assert cache.builds == 0
    assert not (tmp_path / "envs").exists()


def test_requirements_build_an_env_where_pins_win_and_the_platform_is_a_fallback(
    tmp_path: Path,
) -> None:
    lines: list[str] = []
    cache = EnvironmentCache(tmp_path / "envs")
    python = cache.python_for(SIX, log=lines.append)

    env_dir = python.parent.parent
    assert env_dir.parent == tmp_path / "envs"
    assert (env_dir / ".ready").is_file()
    version, six_file, shipyard_file = _run(
        python,
        "import six, shipyard; print(six.__version__); print(six.__file__); "
        "print(shipyard.__file__)",
    ).splitlines()
    assert version == "1.16.0"
    assert Path(six_file).is_relative_to(env_dir)
    assert not Path(shipyard_file).is_relative_to(env_dir)  # came from the platform
    assert any("six==1.16.0" in line for line in lines)  # uv's output reached the job log
    assert (tmp_path / "envs" / ".uv-cache").is_dir()


def test_the_same_requirements_reuse_the_env_without_rebuilding(tmp_path: Path) -> None:
    cache = EnvironmentCache(tmp_path / "envs")
    first = cache.python_for(SIX)
    ready = first.parent.parent / ".ready"
    built_at = ready.stat().st_mtime_ns

    again = EnvironmentCache(tmp_path / "envs")  # a fresh instance, e.g. after a restart
    cosmetic = b"# pinned for the job\r\n\r\n  six==1.16.0   # ok\r\n"
    assert again.python_for(SIX) == first
    assert again.python_for(cosmetic) == first
    assert again.builds == 0
    assert ready.stat().st_mtime_ns == built_at


def test_racing_requests_for_one_key_build_it_once(tmp_path: Path) -> None:
    # Separate instances (separate lock-file descriptors) stand in for separate processes.
    caches = [EnvironmentCache(tmp_path / "envs") for _ in range(3)]
    start = threading.Barrier(len(caches))
    results: list[Path] = []
    errors: list[BaseException] = []

    def request(cache: EnvironmentCache) -> None:
        start.wait()
        try:
            results.append(cache.python_for(SIX))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=request, args=(c,)) for c in caches]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)

    assert errors == []
    assert len(results) == 3 and len(set(results)) == 1
    assert sum(c.builds for c in caches) == 1


def test_a_failed_build_reports_uv_and_leaves_nothing_ready(tmp_path: Path) -> None:
    root = tmp_path / "envs"
    cache = EnvironmentCache(root)
    with pytest.raises(EnvironmentBuildError) as caught:
        cache.python_for(MISSING)

    message = caught.value.message
    assert "shipyard-no-such-package-xyz" in message
    assert "not found" in message  # uv's own explanation, not just an exit code
    assert not list(root.rglob(".ready"))
    assert not (root / environment_key(MISSING)[:32]).exists()
    assert not list(root.glob(".build-*"))


def test_a_build_over_its_time_limit_fails_and_is_cleaned_up(tmp_path: Path) -> None:
    root = tmp_path / "envs"
    cache = EnvironmentCache(root, build_timeout_s=0.001)
    with pytest.raises(EnvironmentBuildError, match="timed out"):
        cache.python_for(SIX)
    assert not list(root.rglob(".ready"))
    assert not list(root.glob(".build-*"))


def test_a_half_built_env_is_never_handed_out(tmp_path: Path) -> None:
    root = tmp_path / "envs"
    half = root / environment_key(SIX)[:32]
    (half / "bin").mkdir(parents=True)
    (half / "bin" / "python").write_text("not an interpreter")  # no .ready: a crashed build
    (root / f".build-{half.name}-leftover").mkdir()

    python = EnvironmentCache(root).python_for(SIX)

    assert python == half / "bin" / "python"
    assert (half / ".ready").is_file()
    assert _run(python, "import six; print(six.__version__)") == "1.16.0"
    assert not list(root.glob(".build-*"))
