"""Sending scripts: one ``EVALSHA`` per call, batches split by hash slot and pipelined.

A multi-key script needs all its keys in one hash slot in a Redis Cluster, so a batch is
split into one script call per slot (and per :data:`MAX_KEYS` keys), and the calls are
pipelined per node: one round trip per node. On a single server a batch of up to
``MAX_KEYS`` keys is one ``EVALSHA``. Scripts are run by SHA; a server that does not know
one (``NOSCRIPT``: restarted, or ``SCRIPT FLUSH``) gets it loaded and the call repeated.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Final, TypeAlias, cast

from redis import Redis
from redis import exceptions as rx
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

from .scripts import LuaScript

__all__ = [
    "MAX_KEYS",
    "AsyncClient",
    "Call",
    "Client",
    "Key",
    "aevalsha",
    "arun_calls",
    "evalsha",
    "run_calls",
    "split",
]

MAX_KEYS: Final = 500
"""Most keys per script call, so one call never holds the server for long."""

Client: TypeAlias = Redis | RedisCluster
AsyncClient: TypeAlias = AsyncRedis | AsyncRedisCluster
Key: TypeAlias = str | bytes
Call: TypeAlias = tuple[Sequence[Key], Sequence[Any]]
"""One script call: its KEYS and its ARGV."""

_CLUSTER_CONCURRENCY: Final = 8
"""Script calls of one batch in flight at once on an async cluster client."""

# Replies worth one more try through the main client: a lost script cache, or a slot
# that moved or is moving (the cluster client follows the redirect and refreshes).
_RETRYABLE: Final = (rx.NoScriptError, rx.AskError, rx.TryAgainError)


def evalsha(client: Client, script: LuaScript, keys: Sequence[Key], args: Sequence[Any]) -> Any:
    """Run ``script`` once: ``EVALSHA``, loading the script first if the server lacks it."""
    try:
        return client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)  # type: ignore[no-untyped-call]
    except rx.NoScriptError:
        # A cluster client loads it on every primary; a single client on its server.
        client.script_load(script.source)
        return client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)  # type: ignore[no-untyped-call]


async def aevalsha(
    client: AsyncClient, script: LuaScript, keys: Sequence[Key], args: Sequence[Any]
) -> Any:
    """:func:`evalsha` on a ``redis.asyncio`` client."""
    try:
        return await client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
    except rx.NoScriptError:
        await client.script_load(script.source)
        return await client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)


def split(
    client: Client | AsyncClient, keys: Sequence[Key], size: int = MAX_KEYS
) -> list[list[Key]]:
    """``keys`` cut into groups one script call may take (same slot, at most ``size``)."""
    if not isinstance(client, (RedisCluster, AsyncRedisCluster)):
        return [list(keys[i : i + size]) for i in range(0, len(keys), size)]
    slots: dict[int, list[Key]] = {}
    for key in keys:
        slot: int = cast(Any, client).keyslot(key)  # one typed, one untyped across versions
        slots.setdefault(slot, []).append(key)
    return [group[i : i + size] for group in slots.values() for i in range(0, len(group), size)]


def run_calls(client: Client, script: LuaScript, calls: Sequence[Call]) -> list[Any]:
    """Every call's reply, in order: one round trip on one server, one per node in a cluster.

    A single call is sent as it is; several are pipelined (redis-py's cluster pipeline
    refuses ``EVALSHA``, so in a cluster each node's calls go through that node's own
    client). Calls the pipeline could not complete (see :data:`_RETRYABLE`) are repeated
    one by one through the main client; any other error reply is raised.
    """
    if len(calls) == 1:
        keys, args = calls[0]
        return [evalsha(client, script, keys, args)]
    results: list[Any] = [None] * len(calls)
    if isinstance(client, RedisCluster):
        nodes: dict[str, tuple[Redis, list[int]]] = {}
        for i, (keys, _) in enumerate(calls):
            node = client.get_node_from_key(keys[0])  # type: ignore[no-untyped-call]
            nodes.setdefault(node.name, (node.redis_connection, []))[1].append(i)
        for node_client, indices in nodes.values():
            _pipeline(node_client, script, calls, indices, results)
    else:
        _pipeline(client, script, calls, range(len(calls)), results)
    retry = [i for i, result in enumerate(results) if isinstance(result, _RETRYABLE)]
    for result in results:
        if isinstance(result, Exception) and not isinstance(result, _RETRYABLE):
            raise result
    if retry and any(isinstance(results[i], rx.NoScriptError) for i in retry):
        client.script_load(script.source)  # once, not once per failed call
    for i in retry:
        keys, args = calls[i]
        results[i] = evalsha(client, script, keys, args)
    return results


def _pipeline(
    client: Redis,
    script: LuaScript,
    calls: Sequence[Call],
    indices: Sequence[int],
    results: list[Any],
) -> None:
    pipe = client.pipeline(transaction=False)
    for i in indices:
        keys, args = calls[i]
        pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)  # type: ignore[no-untyped-call]
    for i, result in zip(indices, pipe.execute(raise_on_error=False), strict=True):
        results[i] = result


async def arun_calls(client: AsyncClient, script: LuaScript, calls: Sequence[Call]) -> list[Any]:
    """:func:`run_calls` on a ``redis.asyncio`` client: one pipelined round trip on one
    server. In a cluster the calls are sent concurrently, a few at a time (the async
    cluster client has no per-node pipeline for scripts): one request per call."""
    if len(calls) == 1:
        keys, args = calls[0]
        return [await aevalsha(client, script, keys, args)]
    if isinstance(client, AsyncRedisCluster):
        # Bounded: a batch of hundreds of slots must not take a connection each.
        replies: list[Any] = []
        for i in range(0, len(calls), _CLUSTER_CONCURRENCY):
            wave = calls[i : i + _CLUSTER_CONCURRENCY]
            replies.extend(await asyncio.gather(*(aevalsha(client, script, k, a) for k, a in wave)))
        return replies
    pipe = client.pipeline(transaction=False)
    for keys, args in calls:
        pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
    results: list[Any] = list(await pipe.execute(raise_on_error=False))
    for result in results:
        if isinstance(result, Exception) and not isinstance(result, _RETRYABLE):
            raise result
    retry = [i for i, result in enumerate(results) if isinstance(result, _RETRYABLE)]
    if retry and any(isinstance(results[i], rx.NoScriptError) for i in retry):
        await client.script_load(script.source)
    for i in retry:
        keys, args = calls[i]
        results[i] = await aevalsha(client, script, keys, args)
    return results
