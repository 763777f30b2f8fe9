""".ci/bare_path.py: the PATH it builds hides every redis-* binary and nothing else."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "bare_path.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bare_path", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bare_path = _load()


def _tool(directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def system(tmp_path: Path) -> Path:
    """A fake /usr/bin with a system Redis and an ordinary tool."""
    usr_bin = tmp_path / "usr-bin"
    for name in ("redis-server", "redis-cli", "redis-sentinel", "tool"):
        _tool(usr_bin, name)
    return usr_bin


def test_the_mirror_hides_redis_and_keeps_everything_else(tmp_path: Path, system: Path) -> None:
    mirrors = tmp_path / "mirrors"
    mirrors.mkdir()
    path = bare_path.bare_path(os.pathsep.join([str(system), "", str(tmp_path / "gone")]), mirrors)
    [mirror] = path.split(os.pathsep)  # the empty and the missing entries are dropped
    assert sorted(p.name for p in Path(mirror).iterdir()) == ["tool"]
    assert (Path(mirror) / "tool").resolve() == (system / "tool").resolve()
    assert (system / "redis-server").exists()  # the original is untouched


def test_a_directory_without_redis_is_kept_as_it_is(tmp_path: Path, system: Path) -> None:
    # A venv links to its interpreter by the path it was found at: found through a mirror
    # (pyenv's version directory comes first), the venv broke when the mirror was removed
    # and CI's `nox -R -s tests` after the README command reinstalled everything.
    interpreter_dir = tmp_path / "pyenv-version-bin"
    _tool(interpreter_dir, "python3")
    mirrors = tmp_path / "mirrors"
    mirrors.mkdir()
    path = bare_path.bare_path(os.pathsep.join([str(interpreter_dir), str(system)]), mirrors)
    kept, mirror = path.split(os.pathsep)
    assert kept == str(interpreter_dir)
    assert Path(mirror).parent == mirrors  # the one holding redis-* is still mirrored
    assert sorted(p.name for p in mirrors.iterdir()) == [Path(mirror).name]


def test_the_command_runs_without_redis_on_path_and_its_exit_code_is_returned(
    system: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(system))
    probe = "import shutil, sys; sys.exit(7 if shutil.which('redis-server') else 3)"
    assert bare_path.main([sys.executable, "-c", probe]) == 3
    assert bare_path.main([]) == 2  # usage


def test_it_refuses_when_a_redis_server_stays_reachable(
    system: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(system))
    monkeypatch.setattr(bare_path, "HIDDEN_PREFIX", "no-such-prefix-")
    assert bare_path.main([sys.executable, "-c", "raise SystemExit(0)"]) == 1
    assert "redis-server is still on PATH" in capsys.readouterr().err
