"""``cachehub console``: the missing extra, the loopback rule, the printed URL."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cachehub.cli import cli, console
from cachehub.cli.console import console_url, is_loopback


def _run(args: list[str]) -> Any:
    return CliRunner().invoke(cli, args, catch_exceptions=False)


@pytest.mark.parametrize("module", ["starlette", "jinja2", "uvicorn", "multipart"])
def test_without_the_extra_it_exits_2_and_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, module: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import now fails
    result = _run(["console"])
    assert result.exit_code == 2
    assert "pip install 'cachehub[console]'" in result.output
    assert module in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::", "example.com"])
def test_a_non_loopback_bind_is_refused_without_allow_remote(host: str, tmp_path: Path) -> None:
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"m": {"class": "memory"}}))
    result = _run(["--config", str(config), "console", "--host", host])
    assert result.exit_code == 2
    assert "--allow-remote" in result.output


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.1", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("10.0.0.1", False),
        ("localhost.evil", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_it_prints_the_url_with_the_token_and_serves_the_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"m": {"class": "memory"}}))
    served: dict[str, Any] = {}

    def fake_run(app: Any, **kwargs: Any) -> None:  # uvicorn.run would block
        served.update(kwargs, app=app)

    import uvicorn

    monkeypatch.setattr(uvicorn, "run", fake_run)
    result = _run(["--config", str(config), "console", "--port", "9999", "--read-only"])
    assert result.exit_code == 0, result.output
    token = served["app"].state.console.token
    assert f"http://127.0.0.1:9999/?token={token}" in result.output
    assert "(read-only)" in result.output
    assert served["host"] == "127.0.0.1"
    assert served["port"] == 9999
    assert served["access_log"] is False  # access lines would print the token
    assert served["app"].state.console.read_only
    assert len(token) >= 40
    assert console.DEFAULT_PORT == 8742
    served["app"].state.console.close()  # uvicorn's shutdown would have closed it


def test_console_url_brackets_ipv6() -> None:
    assert console_url("::1", 8742, "t") == "http://[::1]:8742/?token=t"
