"""``cachehub tour``: the README's main job, end to end through the real entry point."""

from __future__ import annotations

from typing import Any

from cachehub.cli.results import Failure, compare
from cachehub.cli.scenarios import Recorder
from cachehub.config import SECRET_MASK

from .conftest import RunCli, dynamo_entry

SCENARIO_TITLES = (
    "Data types round trip",
    "Expiry (timeSpan, touch)",
    "Filters: keys / count / clear",
    "Metadata",
    "Atomic counters",
    "Distributed lock",
    "API rate limiting",
    "Query result caching",
    "DynamoDBCommand()",
    "Migration story",
)


def test_tour_without_config_runs_every_scenario_on_every_provider(
    run_cli: RunCli, redis_url: str
) -> None:
    # redis_url makes sure redis-server is installed (or CI fails): the tour starts its own.
    result = run_cli("tour")
    assert result.code == 0, result.output
    for title in SCENARIO_TITLES:
        assert title in result.stdout
    header = next(
        line for line in result.stdout.splitlines() if "dynamo" in line and "agree" in line
    )
    assert "memory" in header
    assert "redis" in header
    assert "✗" not in result.stdout
    assert "steps agree across dynamo, memory, redis" in result.stdout
    assert "local DynamoDB endpoint (moto)" in result.stderr


def test_tour_json_on_configured_caches(
    run_cli: RunCli, write_config: Any, dynamodb_endpoint: str, redis_url: str, namespace: str
) -> None:
    config = write_config(
        {
            "dynamo": {**dynamo_entry(dynamodb_endpoint, "cli_tour", namespace=namespace)},
            "redis": {"class": "redis", "custom": {"url": redis_url, "namespace": namespace}},
            "frozen": {"class": "memory", "readOnly": True},
        }
    )
    result = run_cli("--config", str(config), "tour", "--json")
    assert result.code == 0, result.output
    doc = result.json()
    assert doc["ok"] is True
    assert doc["providers"] == ["dynamo", "redis"]
    assert "skipped: it is read-only" in result.stderr
    titles = [s["title"] for s in doc["scenarios"]]
    assert "DynamoDBCommand() on 'dynamo'" in titles
    types = next(s for s in doc["scenarios"] if s["title"] == "Data types round trip")
    assert {row["step"] for row in types["rows"]} >= {"put/get Decimal", "put/get query"}
    assert doc["configs"]["dynamo"]["custom"]["secretkey"] == SECRET_MASK
    # The tour cleaned up after itself: nothing left in the configured namespaces.
    from cachehub.registry import Caches

    caches = Caches(server_config=config)
    assert caches["dynamo"].count() == 0
    assert caches["redis"].count() == 0


def test_compare_flags_disagreement_and_errors() -> None:
    a, b, c = Recorder(), Recorder(), Recorder()
    a.step("int", 1, 1)
    b.step("int", 1.0, 1)  # equal by ==, but not the same type: a real difference
    a.step("only a", True)
    c.step("int", 1, 1)
    c.steps.append(type(c.steps[0])("boom", Failure(RuntimeError("x"))))
    rows = {row.label: row for row in compare({"a": a, "b": b})}
    assert rows["int"].agree is False
    assert rows["only a"].agree is False
    rows = {row.label: row for row in compare({"a": a, "c": c})}
    assert rows["int"].agree is True
    assert rows["boom"].agree is False
