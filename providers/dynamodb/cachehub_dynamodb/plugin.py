"""Registers the DynamoDB provider with cachehub through the ``cachehub`` entry-point group."""

from __future__ import annotations

from cachehub.hookspecs import hookimpl


@hookimpl
def cachehub_providers() -> dict[str, str]:
    """``dynamodb`` plus the Lucee class name an existing .CFConfig.json carries."""
    target = "cachehub_dynamodb:DynamoDBCache"
    return {
        "dynamodb": target,
        "org.lucee.extension.aws.dynamodb.DynamoDBCache": target,
    }
