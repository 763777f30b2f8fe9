"""Admin commands end to end on DynamoDB (moto server) and Redis, secrets never shown."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .conftest import SECRET_KEY, RunCli, dynamo_entry


@pytest.fixture(params=["dynamo", "redis"])
def config(request: pytest.FixtureRequest, write_config: Any, namespace: str) -> Any:
    if request.param == "dynamo":
        endpoint = request.getfixturevalue("dynamodb_endpoint")
        entry = dynamo_entry(endpoint, "cli_admin", namespace=namespace)
    else:
        url = request.getfixturevalue("redis_url")
        entry = {"class": "redis", "custom": {"url": url, "namespace": namespace}}
    return write_config({"main": {**entry, "default": True}})


def test_admin_round_trip(run_cli: RunCli, config: Any) -> None:
    cli = ["--config", str(config)]
    assert run_cli(*cli, "put", "user_session_123", "active", "--ttl", "300").code == 0
    assert run_cli(*cli, "put", "--json-value", "user_profile_456", '{"theme": "dark"}').code == 0
    assert run_cli(*cli, "put", "admin_1", "root").code == 0

    assert run_cli(*cli, "ls", "user_*").stdout.split() == ["user_profile_456", "user_session_123"]
    got = run_cli(*cli, "get", "user_profile_456", "--json").json()
    assert got["value"] == {"theme": "dark"}
    assert run_cli(*cli, "get", "user_session_123").stdout.strip() == "'active'"
    assert run_cli(*cli, "--json", "count", "user_*").json()["count"] == 2

    meta = run_cli(*cli, "meta", "user_session_123", "--json").json()
    assert 0 < meta["timeToLive"] <= 300
    human = run_cli(*cli, "meta", "admin_1")
    assert "timeToLive" in human.stdout
    assert "never" in human.stdout

    refused = run_cli(*cli, "clear", "user_*")
    assert refused.code == 2
    assert run_cli(*cli, "--json", "count").json()["count"] == 3

    cleared = run_cli(*cli, "clear", "user_*", "--yes", "--json")
    assert cleared.json() == {"filter": "user_*", "removed": 2}
    assert run_cli(*cli, "delete", "admin_1").code == 0
    assert run_cli(*cli, "delete", "admin_1").code == 1
    assert run_cli(*cli, "get", "admin_1").code == 1

    listed = run_cli(*cli, "caches", "--json")
    assert listed.code == 0
    row = json.loads(listed.stdout)[0]
    assert row["status"] == "ok"
    assert row["default"] is True
    assert SECRET_KEY not in listed.stdout
