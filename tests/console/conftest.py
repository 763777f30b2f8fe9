"""Fixtures of the console tests: a console per provider, behind Starlette's test client.

Every console is configured from a JSON file whose secrets are ``${VAR}`` references to
environment variables holding :data:`SECRET_MARK` values, so any test can check that no
resolved secret ever reaches a page or a log record. The Redis and DynamoDB servers are
the reliability suite's (one password-protected redis-server, moto's DynamoDB server).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest
from reliability.conftest import (  # noqa: F401 - fixtures used by the tests here
    AWS_ACCESS_KEY_ID,
    AWS_SECRET_KEY,
    REDIS_PASSWORD,
    SECRET_MARK,
    local_dynamodb,
    redis_server,
    require_redis,
)
from starlette.testclient import TestClient

from cachehub.api import BaseCache
from cachehub.console.app import Console, create_app
from cachehub.plugins import plugin_manager

PROVIDERS: Final = ("memory", "redis", "dynamodb")
TOKEN: Final = "console-test-token-0123456789"
BASE_URL: Final = "http://127.0.0.1"
CONSOLE_TABLE: Final = "cachehub_console_tests"
ENV: Final = {
    "CONSOLE_REDIS_PASSWORD": REDIS_PASSWORD,
    "CONSOLE_AWS_SECRET": AWS_SECRET_KEY,
    "CONSOLE_SIGNING_KEY": f"{SECRET_MARK}-console-signing",
}


def entry_for(provider: str, request: pytest.FixtureRequest, namespace: str) -> dict[str, Any]:
    """A configuration entry for ``provider`` whose secrets are ``${VAR}`` references."""
    if provider == "memory":
        return {"class": "memory", "custom": {"namespace": namespace}}
    if provider == "redis":
        server = request.getfixturevalue("redis_server")
        return {
            "class": "redis",
            "custom": {
                "host": server.host,
                "port": server.port,
                "password": "${CONSOLE_REDIS_PASSWORD}",
                "signingKey": "${CONSOLE_SIGNING_KEY}",
                "namespace": namespace,
                "socketTimeout": 2.0,
            },
        }
    local = request.getfixturevalue("local_dynamodb")
    return {
        "class": "dynamodb",
        "custom": {
            "tableName": CONSOLE_TABLE,
            "host": local.endpoint,
            "accessKeyId": AWS_ACCESS_KEY_ID,
            "secretkey": "${CONSOLE_AWS_SECRET}",
            "signingKey": "${CONSOLE_SIGNING_KEY}",
            "namespace": namespace,
        },
    }


@dataclass
class Env:
    """One console under test."""

    client: TestClient
    console: Console
    path: Path
    name: str
    provider: str

    @property
    def cache(self) -> BaseCache:
        """The cache the console shows (the same object its pages use)."""
        return self.console.cache(self.name)

    @property
    def csrf(self) -> str:
        return self.console.csrf

    def post(self, url: str, **data: str) -> Any:
        """POST a form with the CSRF token, as the pages' forms do."""
        return self.client.post(url, data={"csrf": self.csrf, **data}, follow_redirects=False)


MakeConsole = Callable[..., Env]


@pytest.fixture(autouse=True)
def no_console_left_observing() -> Iterator[None]:
    """Every console a test opens is closed: its statistics collector is unregistered, so
    later tests (which expect no operation listener at all) see the process as it was."""
    yield
    left = [
        name
        for name, _ in plugin_manager().list_name_plugin()
        if name.startswith("cachehub.console.stats.")
    ]
    assert left == [], "a console was not closed"


@pytest.fixture
def console_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment variables the test configurations reference."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def make_console(
    tmp_path: Path, request: pytest.FixtureRequest, console_env: None
) -> Iterator[MakeConsole]:
    """Build a logged-in console on ``provider`` (more caches with ``extra=``)."""
    made: list[Env] = []

    def build(
        provider: str = "memory",
        *,
        read_only: bool = False,
        name: str = "main",
        extra: dict[str, Any] | None = None,
        login: bool = True,
    ) -> Env:
        namespace = f"con{uuid.uuid4().hex[:10]}:"
        path = tmp_path / f"cachehub-{len(made)}.json"
        caches = {name: entry_for(provider, request, namespace), **(extra or {})}
        path.write_text(json.dumps({"caches": caches, "other": {"kept": True}}, indent=2))
        app = create_app(path, read_only=read_only, token=TOKEN)
        client = TestClient(app, base_url=BASE_URL)
        client.__enter__()
        env = Env(client, app.state.console, path, name, provider)
        made.append(env)
        if login:
            assert client.get(f"/?token={TOKEN}").status_code == 200
        return env

    yield build
    for env in made:
        env.client.__exit__(None, None, None)


@pytest.fixture(params=PROVIDERS)
def provider(request: pytest.FixtureRequest) -> str:
    """Each provider in turn."""
    return str(request.param)
