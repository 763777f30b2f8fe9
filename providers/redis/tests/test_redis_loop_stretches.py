"""The async Redis shell cuts a big batch's CPU work into short callbacks of the event loop,
with the requests the sync shell sends (counted, never timed).

A batch is encoded and decoded in stretches of :data:`cachehub.provider.LOOP_STRETCH`
seconds, the loop running others between two; a cluster batch of many commands is sent
as pipelines of :data:`cachehub_redis.dispatch.LOOP_CLUSTER_COMMANDS` commands, one after
the other. Before, a 250-value batch was encoded, decoded or routed in one callback each
(10-21 ms of CPU under load).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
import redis.asyncio.cluster
from cachehub_redis import RedisCache
from cachehub_redis.dispatch import LOOP_CLUSTER_COMMANDS
from redis.crc import key_slot

from cachehub import provider
from cachehub.testing.support import count_loop_yields

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 60))


VALUES = {f"v{i}": bytes([i % 256]) * 2_000 for i in range(100)}


@pytest.mark.parametrize("ttl", [None, 60], ids=["MSET", "SET_MANY script"])
def test_a_big_batch_is_encoded_and_decoded_in_stretches(
    make_cache: Callable[..., RedisCache], monkeypatch: pytest.MonkeyPatch, ttl: int | None
) -> None:
    # Each stretch as short as the clock allows: the flow yields between them.
    monkeypatch.setattr(provider, "LOOP_STRETCH", 0.0)
    yields = count_loop_yields(monkeypatch, RedisCache)
    cache = make_cache()
    shell = cache.aio()

    async def scenario() -> tuple[int, int, dict[str, Any]]:
        await shell.put_many(VALUES, time_span=ttl)
        encoded = yields["async"]
        found = await shell.get_many([*VALUES, "absent"])
        await shell.close()
        return encoded, yields["async"] - encoded, found

    encoded, decoded, found = run(scenario())
    assert found == VALUES
    assert encoded == len(VALUES) // 8 - (len(VALUES) % 8 == 0)  # the clock read every 8
    assert decoded >= len(VALUES) - provider.FIRST_STRETCH  # a stretch per value after 32
    # The sync shell reads the same values; its direct MGET decodes in one go (no loop).
    sync = make_cache(namespace=cache.namespace)
    assert sync.get_many(VALUES) == VALUES
    assert yields["sync"] == 0


def test_a_small_batch_takes_no_turn_however_short_a_stretch(
    make_cache: Callable[..., RedisCache], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(provider, "LOOP_STRETCH", 0.0)
    yields = count_loop_yields(monkeypatch, RedisCache)
    shell = make_cache().aio()
    few = dict(list(VALUES.items())[:8])

    async def scenario() -> dict[str, Any]:
        await shell.put_many(few)
        found = await shell.get_many(few)
        await shell.close()
        return found

    assert run(scenario()) == few
    assert yields == {"sync": 0, "async": 0}


@pytest.mark.parametrize("size", [20, 100])
def test_a_cluster_batch_is_pipelines_of_the_loop_size(
    cluster_cache: RedisCache, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    pipelines: list[int] = []
    real = redis.asyncio.cluster.ClusterPipeline.execute
    items = {f"c{i}": i for i in range(size)}
    # The scripts loaded on every node first: a node's first EVALSHA after a start (or
    # SCRIPT FLUSH) answers NOSCRIPT and is re-sent, one more pipeline. Run alone on a
    # fresh cluster this test counted 3 instead of 2; earlier tests had hidden it.
    cluster_cache.put_many(items)
    assert cluster_cache.get_many(items) == items
    cluster_cache.clear()

    async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        pipelines.append(1)
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(redis.asyncio.cluster.ClusterPipeline, "execute", counted)
    # One MGET or MSET per hash slot: the commands of the batch.
    commands = len({key_slot(f"{cluster_cache.namespace}{key}".encode()) for key in items})
    shell = cluster_cache.aio()

    async def scenario() -> dict[str, Any]:
        await shell.put_many(items)
        found = await shell.get_many(items)
        await shell.close()
        return found

    assert run(scenario()) == items
    per_batch = -(-commands // LOOP_CLUSTER_COMMANDS)
    assert len(pipelines) == 2 * per_batch  # put_many, then get_many
    if size <= LOOP_CLUSTER_COMMANDS:
        assert per_batch == 1  # a small batch: one pipeline, one round trip per node
