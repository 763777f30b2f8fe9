"""Fast in-process tests: argument errors, exit codes, --json, config discovery."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cachehub.cli import cli, main
from cachehub.cli.app import State
from cachehub.registry import Caches

from .conftest import SECRET_KEY


def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    code = exit_info.value.code
    return (code if isinstance(code, int) else 1), out, err


@pytest.fixture
def memory_config(tmp_path: Path) -> Path:
    path = tmp_path / "cachehub.json"
    path.write_text(
        json.dumps({"main": {"class": "memory", "default": True}, "other": {"class": "memory"}})
    )
    return path


def with_caches(caches: Caches) -> State:
    """A State whose registry the test prepared (memory caches live in this process)."""
    state = State()
    state._caches = caches
    return state


@pytest.mark.parametrize(
    "args",
    [
        ["bogus"],
        ["get"],
        ["put", "k", "v", "--ttl", "-1"],
        ["put", "k", "v", "--ttl", "abc"],
        ["put", "k", "{bad", "--json-value"],
        ["put", "k", "[" * 100_000 + "]" * 100_000, "--json-value"],  # not a RecursionError
        # Over Python's 4,300-digit int conversion limit: json.loads raises a bare
        # ValueError, which left as "unexpected ValueError ... report it" with exit 1.
        ["put", "k", "[" + "7" * 5_000 + "]", "--json-value"],
        # Not JSON values: NaN and Infinity, and a literal past a float's range (read as
        # inf). On main each stored a float (exit 0).
        ["put", "k", "NaN", "--json-value"],
        ["put", "k", '{"a": -Infinity}', "--json-value"],
        ["put", "k", "[1e400]", "--json-value"],
        # On main a number FloatRange let through, refused later by the cache: exit 1.
        ["put", "k", "v", "--ttl", "nan"],
        ["put", "k", "v", "--ttl", "inf"],
        ["put", "k", "v", "--ttl", "1e400"],
        ["put", "k", "v", "--ttl", "1e12"],  # past 1,000 years
        ["migrate", "a"],
        ["migrate", "a", "b", "--batch", "0"],
        ["local-dynamodb", "--port", "70000"],
        ["ls", "--limit", "0"],
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_main(args, capsys)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("Error: ")


def test_clear_without_yes_exits_2_and_deletes_nothing(
    memory_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_main(["--config", str(memory_config), "clear", "user_*"], capsys)
    assert code == 2
    assert "--yes" in err


def test_missing_config_file_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CACHEHUB_CONFIG", raising=False)
    code, _, err = run_main(["ls"], capsys)
    assert code == 1
    assert "no cache configuration found" in err
    assert "local-dynamodb" in err  # the fix names the way out


def test_a_folder_named_like_the_default_config_is_named_as_such(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # On main ./cachehub.json being a folder was reported as "no cache configuration found".
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CACHEHUB_CONFIG", raising=False)
    (tmp_path / "cachehub.json").mkdir()
    code, _, err = run_main(["ls"], capsys)
    assert code == 1
    assert "cachehub.json" in err
    assert "not a folder" in err


def test_config_errors_exit_1_with_the_typed_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"c": {"class": "memory", "custom": {"maxsiz": 3}}}')
    code, _, err = run_main(["--config", str(bad), "count"], capsys)
    assert code == 1
    assert "unknown setting 'maxsiz'" in err
    assert "Did you mean 'maxsize'" in err
    assert "Traceback" not in err

    broken = tmp_path / "broken.json"
    broken.write_text('{"c": {"class": "memory",}}')
    code, _, err = run_main(["--config", str(broken), "count"], capsys)
    assert code == 1
    assert "not valid JSON" in err


def test_unknown_cache_name_suggests_the_closest(
    memory_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_main(["--config", str(memory_config), "--cache", "mian", "count"], capsys)
    assert code == 1
    assert "Did you mean 'main'" in err


def test_config_found_through_the_environment_and_cwd(
    memory_config: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("CACHEHUB_CONFIG", str(memory_config))
    code, out, _ = run_main(["--json", "count"], capsys)
    assert (code, json.loads(out)) == (0, {"filter": None, "count": 0})
    monkeypatch.delenv("CACHEHUB_CONFIG")
    monkeypatch.chdir(tmp_path)  # ./cachehub.json
    code, out, _ = run_main(["count", "--json"], capsys)
    assert (code, json.loads(out)["count"]) == (0, 0)


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for name in cli.commands:
        code, out, _ = run_main([name, "--help"], capsys)
        assert code == 0
        assert f"Usage: cachehub {name}" in out


def test_admin_commands_with_json_output(memory_config: Path) -> None:
    caches = Caches.from_file(memory_config)
    runner = CliRunner()

    def invoke(*args: str) -> Any:
        result = runner.invoke(cli, ["--json", *args], obj=with_caches(caches))
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    assert invoke("put", "user_1", "hello", "--ttl", "60") == {
        "key": "user_1",
        "stored": True,
        "ttl": 60.0,
    }
    invoke("put", "--json-value", "user_2", '{"a": [1, 2.5, true, null]}')
    invoke("put", "admin_1", "x")
    assert invoke("get", "user_2")["value"] == {"a": [1, 2.5, True, None]}
    assert invoke("ls", "user_*") == ["user_1", "user_2"]
    assert invoke("count")["count"] == 3
    meta = invoke("meta", "user_1")
    assert 0 < meta["timeToLive"] <= 60
    assert meta["idleTime"] is None
    assert invoke("meta", "admin_1")["timeToLive"] is None
    assert invoke("clear", "user_*", "--yes") == {"filter": "user_*", "removed": 2}
    assert invoke("delete", "admin_1") == {"key": "admin_1", "deleted": True}
    assert invoke("count")["count"] == 0
    # The other cache is untouched and reachable with --cache after the command.
    assert (
        runner.invoke(cli, ["count", "--cache", "other"], obj=with_caches(caches)).stdout == "0\n"
    )


def test_get_and_delete_of_a_missing_key_exit_1(memory_config: Path) -> None:
    caches = Caches.from_file(memory_config)
    runner = CliRunner()
    result = runner.invoke(cli, ["--json", "get", "nope"], obj=with_caches(caches))
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {"key": "nope", "found": False}
    assert "no entry for key 'nope'" in result.stderr
    result = runner.invoke(cli, ["delete", "nope"], obj=with_caches(caches))
    assert result.exit_code == 1


def test_caches_lists_entries_with_secrets_masked(tmp_path: Path) -> None:
    config = tmp_path / "c.json"
    config.write_text(
        json.dumps(
            {
                "caches": {
                    "local": {"class": "memory", "default": True, "readOnly": True},
                    "signed": {
                        "class": "memory",
                        "custom": {"codec": "pickle", "signingKey": SECRET_KEY},
                    },
                }
            }
        )
    )
    result = CliRunner().invoke(cli, ["--config", str(config), "caches", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["local"]["readOnly"] is True
    assert rows["local"]["provider"] == "cachehub_memory.cache:MemoryCache"
    assert rows["signed"]["status"] == "ok"
    assert SECRET_KEY not in result.output
    assert rows["signed"]["custom"]["signingKey"] != SECRET_KEY
    human = CliRunner().invoke(cli, ["--config", str(config), "caches"])
    assert "local" in human.stdout
    assert SECRET_KEY not in human.output


def test_conformance_refuses_an_in_process_cache(
    memory_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_main(["--config", str(memory_config), "conformance", "main"], capsys)
    assert code == 1
    assert "inside one process" in err


def test_bench_delegates_to_the_benchmark_suite(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["bench", "--only", "nope"])
    assert result.exit_code == 2  # argparse's usage error from the suite itself
    result = CliRunner().invoke(
        cli, ["bench", "--quick", "--only", "codec", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert "encode+decode" in (tmp_path / "benchmarks.md").read_text()


def test_an_error_quoting_input_is_one_printable_line(
    memory_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Messages quote cache names, keys and values; printed as they were, a BEL, a line
    # break or U+202E in them reached the terminal (click strips only ANSI styles, and
    # only when stderr is no terminal).
    args = ["--config", str(memory_config), "--cache", "x\a\u202e\ny", "ls"]
    code, _, err = run_main(args, capsys)
    assert code == 1
    assert "\a" not in err
    assert "\u202e" not in err
    assert err.count("\n") == 1
    assert "x\\x07\\u202e\\ny" in err
