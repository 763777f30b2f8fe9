"""BatchGetItem / BatchWriteItem in DynamoDB-sized chunks, retrying unprocessed work.

DynamoDB may return part of a batch as ``UnprocessedKeys``/``UnprocessedItems`` when it
is throttled; those are resent with exponential backoff and full jitter until done, so
nothing is lost. If they are still refused after :data:`MAX_ROUNDS`, a
:class:`CacheThrottledError` says how many were not processed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, Final

from cachehub.errors import CacheThrottledError
from cachehub.provider import chunks, pause

from .flow import Flow, request

__all__ = [
    "get_batches",
    "write_batches",
    "backoff",
    "GET_CHUNK",
    "WRITE_CHUNK",
]

GET_CHUNK: Final = 100
WRITE_CHUNK: Final = 25
MAX_ROUNDS: Final = 10
BASE_DELAY: Final = 0.05
MAX_DELAY: Final = 5.0


def backoff(attempt: int) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based): capped, full jitter."""
    return random.uniform(0, min(MAX_DELAY, BASE_DELAY * 2**attempt))


def _gave_up(what: str, count: int, table: str) -> CacheThrottledError:
    return CacheThrottledError(
        f"DynamoDB left {count} {what} unprocessed on table '{table}' after {MAX_ROUNDS} retries.",
        hint="switch the table to on-demand billing (PAY_PER_REQUEST) or raise its capacity.",
    )


def get_batches(
    table: str,
    keys: Sequence[dict[str, Any]],
    *,
    consistent: bool,
    projection: dict[str, Any] | None = None,
    checked: bool = False,
) -> Flow[list[dict[str, Any]]]:
    """The items found for ``keys``: ceil(n/100) BatchGetItem requests plus retries."""
    found: list[dict[str, Any]] = []
    for chunk in chunks(keys, GET_CHUNK):
        pending: dict[str, Any] = {
            table: {"Keys": list(chunk), "ConsistentRead": consistent, **(projection or {})}
        }
        attempt = 0
        while pending:
            response = yield request("BatchGetItem", {"RequestItems": pending}, checked=checked)
            found.extend(response.get("Responses", {}).get(table, []))
            pending = response.get("UnprocessedKeys") or {}
            if pending:
                attempt += 1
                if attempt > MAX_ROUNDS:
                    raise _gave_up("keys", len(pending.get(table, {}).get("Keys", [])), table)
                yield pause(backoff(attempt))
    return found


def write_batches(
    table: str, requests: Sequence[dict[str, Any]], *, checked: bool = False
) -> Flow[int]:
    """Send Put/DeleteRequests in batches of 25 (+ retries); returns how many were sent."""
    for chunk in chunks(requests, WRITE_CHUNK):
        pending: dict[str, Any] = {table: list(chunk)}
        attempt = 0
        while pending:
            response = yield request("BatchWriteItem", {"RequestItems": pending}, checked=checked)
            pending = response.get("UnprocessedItems") or {}
            if pending:
                attempt += 1
                if attempt > MAX_ROUNDS:
                    raise _gave_up("writes", len(pending.get(table, [])), table)
                yield pause(backoff(attempt))
    return len(requests)
