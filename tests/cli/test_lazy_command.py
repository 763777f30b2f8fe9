"""LazyCommand: a provider command listed by ``--help`` before its module is imported."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cachehub.cli.app import CacheHubGroup, LazyCommand
from cachehub.errors import ConfigError

_MODULE = '''
import click

@click.command("hello")
@click.option("--name", default="world", help="Whom to greet.")
def hello(name):
    """Greet NAME."""
    click.echo(f"hello {name}")

not_a_command = 42
'''

_EXPLODING = """
raise SystemExit("x" * 100_000)
"""


@pytest.fixture
def group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> click.Group:
    (tmp_path / "lazy_cmd_demo.py").write_text(_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "lazy_cmd_exits.py").write_text(_EXPLODING)
    monkeypatch.delitem(sys.modules, "lazy_cmd_demo", raising=False)

    @click.group(cls=CacheHubGroup)
    def root() -> None:
        """Root."""

    root.add_command(LazyCommand("hello", "lazy_cmd_demo:hello", "Greet someone."))
    root.add_command(LazyCommand("broken", "lazy_cmd_demo:not_a_command", "Broken."))
    root.add_command(LazyCommand("gone", "no_such_module_xyz:cmd", "Gone."))
    root.add_command(LazyCommand("exits", "lazy_cmd_exits:cmd", "Exits when imported."))
    return root


def test_listing_imports_nothing_and_running_loads_the_real_command(group: click.Group) -> None:
    listed = CliRunner().invoke(group, ["--help"])
    assert listed.exit_code == 0, listed.output
    assert re.search(r"^  hello +Greet someone\.$", listed.output, re.MULTILINE)
    assert "lazy_cmd_demo" not in sys.modules
    helped = CliRunner().invoke(group, ["hello", "--help"])
    assert "--name TEXT  Whom to greet." in helped.output  # the real command's own help
    ran = CliRunner().invoke(group, ["hello", "--name", "lucee"])
    assert (ran.exit_code, ran.output) == (0, "hello lucee\n")
    bad = CliRunner().invoke(group, ["hello", "--nope"])
    assert bad.exit_code == 2
    assert "No such option '--nope'" in bad.output


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("broken", "lazy_cmd_demo:not_a_command is a int, not a click command"),
        ("gone", "cannot be loaded from no_such_module_xyz:cmd: ModuleNotFoundError"),
        ("exits", "cannot be loaded from lazy_cmd_exits:cmd: SystemExit: xxx"),
    ],
)
def test_a_broken_target_is_one_error_line(group: click.Group, name: str, expected: str) -> None:
    result = CliRunner().invoke(group, [name])
    assert result.exit_code == 1
    assert expected in result.output
    assert "Fix:" in result.output
    assert "Traceback" not in result.output
    assert len(result.output) < 1000  # a huge exception message is cut


@pytest.mark.parametrize("target", ["no_colon", ":cmd", "module:", ""])
def test_a_malformed_target_is_refused_when_declared(target: str) -> None:
    with pytest.raises(ConfigError, match="is not 'module:attribute'"):
        LazyCommand("x", target, "X.")
