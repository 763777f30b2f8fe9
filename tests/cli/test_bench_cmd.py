"""``cachehub bench`` is a development command: it runs only a checkout's own suite."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from cachehub.cli import bench as bench_module
from cachehub.cli import cli

REPO = Path(__file__).resolve().parents[2]


def _checkout(root: Path, name: str = "cachehub", suite: bool = True) -> Path:
    root.mkdir(parents=True)
    (root / "pyproject.toml").write_text(f'[project]\nname = "{name}"\n', encoding="utf-8")
    if suite:
        (root / "benchmarks").mkdir()
        (root / "benchmarks" / "__main__.py").write_text("", encoding="utf-8")
    return root


def test_this_repository_is_the_checkout_of_the_editable_install(tmp_path: Path) -> None:
    # From anywhere: the tests run on an editable install that lives in this checkout.
    assert bench_module.find_checkout(tmp_path) == REPO


def test_a_checkout_is_found_at_or_above_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench_module, "__file__", str(tmp_path / "site" / "cachehub" / "x.py"))
    root = _checkout(tmp_path / "clone")
    nested = root / "docs" / "deep"
    nested.mkdir(parents=True)
    assert bench_module.find_checkout(nested) == root
    assert bench_module.find_checkout(root) == root


@pytest.mark.parametrize(
    "content",
    [
        '[project]\nname = "not-cachehub"\n',  # another project's suite
        "[project\nname = ",  # broken TOML
        "[project]\nname = 42\n",  # a name of the wrong type
        '"just a string" = 1\n',  # no [project] table
        "\udcff",  # not UTF-8 once written with surrogateescape
    ],
)
def test_other_projects_and_broken_pyproject_files_are_not_checkouts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str
) -> None:
    monkeypatch.setattr(bench_module, "__file__", str(tmp_path / "site" / "cachehub" / "x.py"))
    root = _checkout(tmp_path / "other")
    (root / "pyproject.toml").write_bytes(content.encode("utf-8", "surrogateescape"))
    assert bench_module.find_checkout(root) is None


def test_a_checkout_without_its_benchmarks_is_not_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench_module, "__file__", str(tmp_path / "site" / "cachehub" / "x.py"))
    root = _checkout(tmp_path / "sdist", suite=False)
    assert bench_module.find_checkout(root) is None


def test_outside_a_checkout_bench_says_it_is_a_development_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bench_module, "find_checkout", lambda cwd=None: None)
    result = CliRunner().invoke(cli, ["bench", "--quick"])
    assert result.exit_code == 2
    assert "development command" in result.output
    assert "nox -s bench" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_foreign_benchmarks_package_is_never_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[list[str]] = []
    stranger = types.ModuleType("benchmarks.__main__")
    stranger.__file__ = str(tmp_path / "elsewhere" / "benchmarks" / "__main__.py")
    stranger.main = ran.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "benchmarks.__main__", stranger)
    result = CliRunner().invoke(cli, ["bench", "--quick"])
    assert result.exit_code == 2
    assert "is not the suite of the checkout" in result.output
    assert ran == []
