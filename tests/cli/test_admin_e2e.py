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


def test_meta_of_a_planted_hit_count_is_an_error_naming_it(
    run_cli: RunCli, write_config: Any, namespace: str, dynamodb_endpoint: str
) -> None:
    """Another program set an item's hitCount to 38 nines: ``meta`` showed it rounded
    through a float (99999999999999997748809823456034029568); now an error naming the
    attribute and the fix, no traceback."""
    import boto3

    custom = dynamo_entry(dynamodb_endpoint, "cli_hits", namespace=namespace)["custom"]
    del custom["primaryKey"]
    config = write_config({"main": {"class": "dynamodb", "custom": custom, "default": True}})
    cli = ["--config", str(config)]
    assert run_cli(*cli, "put", "k", "v").code == 0
    planter = boto3.client(
        "dynamodb",
        endpoint_url=dynamodb_endpoint,
        region_name="us-east-1",
        aws_access_key_id="planted",
        aws_secret_access_key="planted",
    )
    planter.update_item(
        TableName="cli_hits",
        Key={"cacheKey": {"S": namespace + "k"}},
        UpdateExpression="SET hitCount = :h",
        ExpressionAttributeValues={":h": {"N": "9" * 38}},
    )
    for args in (("meta", "k"), ("meta", "k", "--json")):
        shown = run_cli(*cli, *args)
        assert shown.code != 0, args
        output = shown.stdout + shown.stderr
        assert "hitCount" in output
        assert "9" * 38 in output  # as stored, not rounded
        assert "REMOVE hitCount" in output
        assert "99999999999999997748809823456034029568" not in output
        assert "Traceback" not in output


def test_planted_keys_cannot_drive_the_operators_terminal(run_cli: RunCli, config: Any) -> None:
    # On main `ls` printed stored keys as they are: a key written by anyone with access
    # to the backend could clear the screen, retitle the window or set the clipboard
    # (OSC 52) of whoever listed the cache. --json keeps them exact.
    cli = ["--config", str(config)]
    evil = "job\x1b[2J\x1b]52;c;cm0gLXJmIH4=\x07\u202eexe.txt"
    assert run_cli(*cli, "put", evil, "x").code == 0
    listed = run_cli(*cli, "ls")
    assert "\x1b" not in listed.stdout
    assert "\x07" not in listed.stdout
    assert "\u202e" not in listed.stdout
    assert "job\\x1b[2J\\x1b]52;c;cm0gLXJmIH4=\\x07\\u202eexe.txt" in listed.stdout
    assert run_cli(*cli, "--json", "ls").json() == [evil]
    for command in (["get", evil], ["meta", evil], ["delete", evil]):
        shown = run_cli(*cli, *command)
        assert "\x1b" not in shown.stdout + shown.stderr, command
