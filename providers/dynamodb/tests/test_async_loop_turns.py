"""The async DynamoDB shell hands the event loop back inside its big steps, with no extra
request: between encoding stretches of a batch write and decoding stretches of a batch
read (:data:`cachehub.provider.LOOP_STRETCH`), and between botocore's parse of a
page (``Scan``, ``Query``, ``BatchGetItem``) and the flow's use of it. Counted, not timed:
loop turns taken by another task, yields, and requests on the wire against the sync shell.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from cachehub_dynamodb import DynamoDBCache
from cachehub_dynamodb import cache as dynamo_cache

from cachehub import provider
from cachehub.api import Expiry
from cachehub.filters import compile_filter
from cachehub.testing.support import count_loop_yields

from .conftest import RequestCounter
from .test_async import async_counter, in_loop, shut


@pytest.fixture
def endpoint(process_endpoint: str) -> str:
    """moto in its own process, as for the other async tests (see ``process_endpoint``)."""
    return process_endpoint


@pytest.mark.parametrize("size", [1, 2, 260])
def test_a_batch_write_yields_between_encoding_stretches_and_sends_what_sync_sends(
    make: Callable[..., DynamoDBCache], monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    # Stretches are LOOP_STRETCH seconds of work: at 0, every item is one (counted, not timed).
    monkeypatch.setattr(provider, "LOOP_STRETCH", 0.0)
    yields = count_loop_yields(monkeypatch, DynamoDBCache)
    sync_cache = make(namespace="SYNC")
    sync_cache.connect()
    counter = RequestCounter(sync_cache.client)
    items = {sync_cache._sk(f"k{i}"): {"i": i, "pad": "x" * 100} for i in range(size)}
    sync_cache._set_many(items, Expiry(), sync_cache._clock())
    sent_sync = list(counter.calls)
    assert yields == {"sync": size - 1, "async": 0}

    async_cache = make(namespace="ASYNC")

    async def main() -> tuple[list[str], dict[str, Any]]:
        counted = await async_counter(async_cache)
        mine = {async_cache._sk(f"k{i}"): {"i": i, "pad": "x" * 100} for i in range(size)}
        await async_cache._aset_many(mine, Expiry(), async_cache._clock())
        sent = list(counted.calls)
        assert yields["async"] == size - 1  # between the items encoded, none after the last
        got = await async_cache._aget_many(list(mine), async_cache._clock())
        await shut(async_cache)
        return sent, got

    sent_async, got = in_loop(main)
    assert sent_async == sent_sync  # the same requests: the yields cost none
    assert got == {async_cache._sk(f"k{i}"): {"i": i, "pad": "x" * 100} for i in range(size)}
    # The batch read decodes its items one stretch each, too.
    assert yields["async"] == 2 * (size - 1)


def test_a_batch_under_one_stretch_takes_no_turn(
    make: Callable[..., DynamoDBCache], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(provider, "LOOP_STRETCH", 3600.0)  # no stretch ever ends
    yields = count_loop_yields(monkeypatch, DynamoDBCache)
    cache = make()
    items = {cache._sk(f"k{i}"): i for i in range(300)}

    async def main() -> None:
        await cache._aset_many(items, Expiry(), cache._clock())
        assert await cache._aget_many(list(items), cache._clock()) == items
        await shut(cache)

    in_loop(main)
    assert yields == {"sync": 0, "async": 0}


def test_a_page_is_parsed_and_used_in_two_callbacks(
    make: Callable[..., DynamoDBCache], monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = make()
    keys = [cache._sk(f"k{i}") for i in range(120)]
    cache._set_many(dict.fromkeys(keys, "v"), Expiry(), cache._clock())
    turns: list[tuple[str, int, int]] = []  # operation, ticks at its reply, at its return
    ticks = [0]
    real = DynamoDBCache._arequest

    async def watched(self: DynamoDBCache, operation: str, params: Any, *more: Any) -> Any:
        client = await self._aconnection()
        method = getattr(client, dynamo_cache.xform_name(operation))
        at_reply = [-1]

        async def replied(**call: Any) -> Any:
            reply = await method(**call)
            at_reply[0] = ticks[0]
            return reply

        monkeypatch.setattr(client, dynamo_cache.xform_name(operation), replied)
        try:
            return await real(self, operation, params, *more)
        finally:
            monkeypatch.delattr(client, dynamo_cache.xform_name(operation))
            turns.append((operation, at_reply[0], ticks[0]))

    monkeypatch.setattr(DynamoDBCache, "_arequest", watched)

    async def main() -> None:
        running = True

        async def ticker() -> None:
            while running:
                ticks[0] += 1
                await asyncio.sleep(0)

        task = asyncio.ensure_future(ticker())
        try:
            now = cache._clock()
            assert await cache._aget(keys[0], now) == "v"
            assert len(await cache._aget_many(keys, now)) == len(keys)
            assert await cache._acount(compile_filter(None, cache.namespace), now) == len(keys)
        finally:
            running = False
            await task
            await shut(cache)

    in_loop(main)
    by_operation: dict[str, list[bool]] = {}
    for operation, at_reply, at_return in turns:
        assert at_reply >= 0
        by_operation.setdefault(operation, []).append(at_return > at_reply)
    # A page gives the loop a turn between its parse and its use; a single item does not.
    assert by_operation["GetItem"] == [False]
    assert set(by_operation["BatchGetItem"]) == {True}
    assert set(by_operation["Scan"]) == {True}
