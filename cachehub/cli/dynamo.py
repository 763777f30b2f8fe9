"""DynamoDB-only parts of the CLI: the ``DynamoDBCommand()`` demo and key discovery."""

from __future__ import annotations

from typing import Any

from ..api import BaseCache
from .results import Failure, Row, ScenarioResult, same
from .scenarios import Recorder, Step

__all__ = ["dynamodb_steps", "is_dynamodb", "partition_key"]


def is_dynamodb(cache: BaseCache) -> bool:
    """Whether ``cache`` is the DynamoDB provider (without importing it when absent)."""
    return any(cls.__module__.startswith("cachehub_dynamodb") for cls in type(cache).__mro__)


def partition_key(cache: BaseCache) -> str:
    """The table's partition-key name as the cache discovered it (Primary Key Discovery).

    Connects (describes the table) when the cache has not done so yet.
    """
    return str(getattr(cache, "key_name"))  # noqa: B009 - DynamoDBCache's own attribute


def dynamodb_steps(cache: BaseCache, name: str, prefix: str) -> ScenarioResult:
    """The spec's ``DynamoDBCommand()`` examples on ``cache``'s table.

    Items are keyed under ``prefix`` and deleted afterwards, so even a production table
    given with ``--config`` is left as it was.
    """
    rec = Recorder()
    user = f"{prefix}user_001"
    page = f"{prefix}pageviews_home"
    try:
        pk = partition_key(cache)
        command: Any = getattr(cache, "command")  # noqa: B009 - provider-specific API
        rec.step("discovered partition key", pk, pk)
        command("putItem", {pk: user, "name": "Urs", "age": 30, "active": True})
        item = command("getItem", {pk: user})
        rec.step(
            "putItem, then getItem",
            item,
            {pk: user, "name": "Urs", "age": 30, "active": True},
        )
        updated = command(
            "updateItem",
            {
                "key": {pk: user},
                "UpdateExpression": "SET age = age + :inc",
                "ExpressionAttributeValues": {":inc": 1},
                "ReturnValues": "UPDATED_NEW",
            },
        )
        rec.step("updateItem: SET age = age + :inc", updated, {"age": 31})
        for _ in range(2):
            hits = command(
                "updateItem",
                {
                    "key": {pk: page},
                    "UpdateExpression": "SET hits = if_not_exists(hits, :zero) + :inc",
                    "ExpressionAttributeValues": {":inc": 1, ":zero": 0},
                    "ReturnValues": "UPDATED_NEW",
                },
            )
        rec.step("atomic page-view counter, called twice", hits, {"hits": 2})
        found = command(
            "query",
            {
                "KeyConditionExpression": f"{pk} = :userId",
                "FilterExpression": "age > :minAge",
                "ExpressionAttributeValues": {":userId": user, ":minAge": 18},
            },
        )
        rec.step("query by key with FilterExpression", [i.get("name") for i in found], ["Urs"])
        command("deleteItem", {pk: page})
        deleted = command("deleteItem", {pk: user, "ReturnValues": "ALL_OLD"})
        rec.step("deleteItem with ReturnValues ALL_OLD", (deleted or {}).get("age"), 31)
        rec.step("getItem after delete", command("getItem", {pk: user}), None)
    except Exception as exc:  # shown as a failed row, like a failing scenario step
        rec.steps.append(Step("error", Failure(exc), None))
    rows = [
        Row(s.label, {name: s.value, "expected": s.expected}, s.expected, same(s.value, s.expected))
        for s in rec.steps
    ]
    return ScenarioResult(f"DynamoDBCommand() on '{name}'", "DynamoDBCommand() Reference", rows)
