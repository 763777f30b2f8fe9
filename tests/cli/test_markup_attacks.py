"""Text from configuration and backends is printed as text, never as rich markup.

Cache names come from files other people write and keys from processes sharing the
backend. A name such as ``[/bold]`` made rich raise ``MarkupError`` (``unexpected
MarkupError``, exit 1) and ``[link=...]`` turned a cache name into a hyperlink.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .conftest import RunCli

HOSTILE = "[/bold]x"
LINK = "[link=https://evil.example]click[/link]"


def _config(write_config: Any) -> Path:
    path: Path = write_config(
        {
            HOSTILE: {"class": "memory", "default": True, "custom": {"namespace": "a:"}},
            LINK: {"class": "memory", "custom": {"namespace": "b:"}},
        }
    )
    return path


def test_caches_lists_hostile_names_literally(run_cli: RunCli, write_config: Any) -> None:
    result = run_cli("--config", str(_config(write_config)), "caches", "--no-probe")
    assert result.code == 0, result.output
    assert HOSTILE in result.stdout
    assert "[link=https://evil.example]" in result.stdout.replace("\n", "").replace("│", "")


def test_caches_probe_statuses_are_printed_literally(run_cli: RunCli, write_config: Any) -> None:
    result = run_cli("--config", str(_config(write_config)), "caches")
    assert result.code == 0, result.output
    assert HOSTILE in result.stdout


def test_doctor_and_info_print_hostile_names_literally(run_cli: RunCli, write_config: Any) -> None:
    config = str(_config(write_config))
    doctor = run_cli("--config", config, "doctor")
    assert doctor.code == 0, doctor.output
    assert f"cache '{HOSTILE}'" in doctor.stdout
    info = run_cli("--config", config, "info", HOSTILE)
    assert info.code == 0, info.output
    assert HOSTILE in info.stdout


def test_meta_and_clear_print_hostile_keys_and_names_literally(
    run_cli: RunCli, write_config: Any, redis_url: str, namespace: str
) -> None:
    entry = {"class": "redis", "custom": {"url": redis_url, "namespace": namespace}}
    config = str(write_config({HOSTILE: {**entry, "default": True}}))
    key = "[/red]planted by another process"
    assert run_cli("--config", config, "put", key, "v").code == 0
    meta = run_cli("--config", config, "meta", key)
    assert meta.code == 0, meta.output
    assert "[/red]planted" in meta.stdout
    cleared = run_cli("--config", config, "clear", "--yes")
    assert cleared.code == 0, cleared.output
    assert f"from cache '{HOSTILE}'" in cleared.stdout
