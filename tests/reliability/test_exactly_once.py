"""Exactly once under lost replies: a write the server applied is never applied again.

A :class:`~cachehub.testing.faults.FaultProxy` sits between the cache and a real
redis-server / moto DynamoDB endpoint and loses the reply to exactly one request: the
server has applied it, the client sees a dropped connection. redis-py and botocore
re-send such requests on their own; the providers must make that harmless (Redis: a
request record the re-sent script finds; DynamoDB: no blind re-send, the item's
``requestId`` tells whether the write landed). Every assertion counts requests through
the proxy; nothing is timed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis as redis_py
from cachehub_dynamodb import DynamoDBCache, LocalDynamoDB
from cachehub_redis import RedisCache
from cachehub_redis import records as redis_records
from cachehub_redis import scripts as lua
from cachehub_redis.records import MARK, record_key, record_ms, request_id
from cachehub_redis.server import RedisServer

from cachehub.api import BaseCache
from cachehub.errors import CacheOutcomeUnknownError, CacheUnavailableError
from cachehub.testing.faults import FaultProxy, Matcher

from .conftest import (
    REDIS_PASSWORD,
    SECRET_MARK,
    dynamodb_settings,
    fresh_namespace,
    redis_settings,
)

UPDATE = b"DynamoDB_20120810.UpdateItem"
PUT = b"DynamoDB_20120810.PutItem"
DELETE = b"DynamoDB_20120810.DeleteItem"
GET = b"DynamoDB_20120810.GetItem"


def _port(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1].rstrip("/"))


@pytest.fixture
def redis_proxy(redis_server: RedisServer) -> Iterator[FaultProxy]:
    with FaultProxy(redis_server.host, redis_server.port) as proxy:
        yield proxy


@pytest.fixture
def dynamo_proxy(local_dynamodb: LocalDynamoDB, shared_table: str) -> Iterator[FaultProxy]:
    with FaultProxy("127.0.0.1", _port(local_dynamodb.endpoint)) as proxy:
        yield proxy


@pytest.fixture
def raw_redis(redis_server: RedisServer) -> Iterator[redis_py.Redis]:
    client = redis_py.Redis(host=redis_server.host, port=redis_server.port, password=REDIS_PASSWORD)
    yield client
    client.close()


@pytest.fixture
def made_caches() -> Iterator[list[BaseCache]]:
    caches: list[BaseCache] = []
    yield caches
    for cache in caches:
        cache.close()


@pytest.fixture
def via_redis(
    redis_server: RedisServer, redis_proxy: FaultProxy, made_caches: list[BaseCache]
) -> Callable[..., RedisCache]:
    """Build a Redis cache that talks to redis-server through the proxy."""

    def build(**overrides: Any) -> RedisCache:
        settings = redis_settings(redis_server, host="127.0.0.1", port=redis_proxy.port)
        settings.update(overrides)
        cache = RedisCache(settings, namespace=overrides.pop("namespace", fresh_namespace("x1")))
        made_caches.append(cache)
        return cache

    return build


@pytest.fixture
def via_dynamo(
    dynamo_proxy: FaultProxy, made_caches: list[BaseCache]
) -> Callable[..., DynamoDBCache]:
    """Build a DynamoDB cache that talks to moto through the proxy."""

    def build(namespace: str | None = None) -> DynamoDBCache:
        cache = DynamoDBCache(
            dynamodb_settings(dynamo_proxy.url), namespace=namespace or fresh_namespace("x1")
        )
        made_caches.append(cache)
        return cache

    return build


def _warm_redis(cache: RedisCache, proxy: FaultProxy | None = None) -> None:
    """Load every script once, so the lost reply is the script's and not a NOSCRIPT."""
    cache.incr("warm")
    cache.add("warm-add", 1)
    cache.delete("warm-add")
    cache.put("warm-dif", "x")
    cache._delete_if_equal(cache._sk("warm-dif"), "x", cache._clock())
    if proxy is not None:
        proxy.reset_counts()


def _records(raw: redis_py.Redis, cache: BaseCache) -> list[bytes]:
    return [k for k in raw.scan_iter(match=cache.namespace.encode() + b"*") if MARK in k]


# ---------------------------------------------------------------- Redis


@pytest.mark.parametrize("start", [None, 10], ids=["fresh", "existing"])
def test_redis_incr_applies_once_when_its_reply_is_lost(
    via_redis: Callable[..., RedisCache], redis_proxy: FaultProxy, start: int | None
) -> None:
    cache = via_redis()
    _warm_redis(cache, redis_proxy)
    if start is not None:
        cache.put("n", start)
    redis_proxy.drop_reply(lua.INCR.sha.encode())
    assert cache.incr("n", 5) == (start or 0) + 5
    assert cache.get("n") == (start or 0) + 5
    assert redis_proxy.dropped == 1
    # The script ran twice on the wire (original + redis-py's re-send), once in effect.
    assert redis_proxy.count(lua.INCR.sha.encode()) == 2
    assert cache.decr("n") == (start or 0) + 4  # later calls are not mistaken for re-sends


def test_redis_decr_applies_once_when_its_reply_is_lost(
    via_redis: Callable[..., RedisCache], redis_proxy: FaultProxy
) -> None:
    cache = via_redis()
    _warm_redis(cache, redis_proxy)
    cache.put("n", 7)
    redis_proxy.drop_reply(lua.INCR.sha.encode())
    assert cache.decr("n", 3) == 4
    assert cache.get("n") == 4
    assert redis_proxy.dropped == 1


def test_redis_add_answers_true_when_its_reply_is_lost(
    via_redis: Callable[..., RedisCache], redis_proxy: FaultProxy
) -> None:
    cache = via_redis()
    _warm_redis(cache, redis_proxy)
    redis_proxy.drop_reply(lua.ADD.sha.encode())
    assert cache.add("k", {"v": 1}) is True
    assert cache.get("k") == {"v": 1}
    assert redis_proxy.dropped == 1
    assert redis_proxy.count(lua.ADD.sha.encode()) == 2
    assert cache.add("k", "other") is False  # a new call is a new request: refused


def test_redis_delete_if_equal_answers_true_when_its_reply_is_lost(
    via_redis: Callable[..., RedisCache], redis_proxy: FaultProxy
) -> None:
    cache = via_redis()
    _warm_redis(cache, redis_proxy)
    cache.put("lock", "token-1")
    redis_proxy.drop_reply(lua.DELETE_IF_EQUAL.sha.encode())
    assert cache._delete_if_equal(cache._sk("lock"), "token-1", cache._clock()) is True
    assert not cache.exists("lock")
    assert redis_proxy.dropped == 1
    assert redis_proxy.count(lua.DELETE_IF_EQUAL.sha.encode()) == 2


def test_redis_delete_answers_true_when_its_reply_is_lost(
    via_redis: Callable[..., RedisCache], redis_proxy: FaultProxy
) -> None:
    cache = via_redis()
    _warm_redis(cache, redis_proxy)
    cache.put("k", 1)
    redis_proxy.drop_reply(lua.DELETE.sha.encode())
    assert cache.delete("k") is True
    assert not cache.exists("k")
    assert redis_proxy.dropped == 1


def test_redis_without_retries_nothing_is_resent_or_recorded(
    via_redis: Callable[..., RedisCache], redis_proxy: FaultProxy, raw_redis: redis_py.Redis
) -> None:
    cache = via_redis(retries=0)
    _warm_redis(cache, redis_proxy)
    cache.put("n", 1)
    redis_proxy.drop_reply(lua.INCR.sha.encode())
    with pytest.raises(CacheUnavailableError) as caught:
        cache.incr("n")
    assert SECRET_MARK not in str(caught.value)
    assert redis_proxy.count(lua.INCR.sha.encode()) == 1
    assert cache.get("n") == 2  # applied by the server, once
    assert _records(raw_redis, cache) == []


def test_redis_request_records_are_short_lived_and_invisible(
    via_redis: Callable[..., RedisCache], raw_redis: redis_py.Redis
) -> None:
    cache = via_redis()
    cache.incr("a")
    cache.add("b", 1)
    records = _records(raw_redis, cache)
    assert len(records) == 2
    limit = record_ms(cache.settings)
    assert all(0 < raw_redis.pttl(k) <= limit for k in records)
    assert sorted(cache.keys()) == ["a", "b"]
    assert cache.count() == 2
    assert cache.clear() == 2
    assert cache.count() == 0


def test_redis_garbage_at_a_record_key_is_ignored(
    via_redis: Callable[..., RedisCache],
    raw_redis: redis_py.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another program's strings (or other types) at a record's name never decide an outcome."""
    cache = via_redis()
    cache.put("n", 1)
    rid = b"0" * 32
    monkeypatch.setattr("cachehub_redis.cache.request_id", lambda: rid)
    name = record_key(cache._sk("n"), rid)
    planted: list[Callable[[], Any]] = [
        lambda: raw_redis.set(name, b"\xcb" + b"\x00" * 3),  # a record of the wrong size
        lambda: raw_redis.set(name, b"\xca" + b"\x7f" * 8),  # entry magic, not a record's
        lambda: raw_redis.set(name, b"\xcb" + b"\xff" * 8 + b"tail"),
        lambda: raw_redis.set(name, b""),
        lambda: raw_redis.rpush(name, b"\xcb" + b"\x00" * 8),  # another Redis type
        lambda: raw_redis.hset(name, "f", "v"),
    ]
    expected = 1
    for plant in planted:
        raw_redis.delete(name)
        plant()
        expected += 1
        assert cache.incr("n") == expected
        assert cache.get("n") == expected
    raw_redis.delete(name)


def test_redis_a_record_of_another_request_is_not_mistaken(
    via_redis: Callable[..., RedisCache], raw_redis: redis_py.Redis
) -> None:
    """Two clients incrementing one counter: each call has its own id, none is replayed."""
    ns = fresh_namespace("x2")
    one, two = via_redis(namespace=ns), via_redis(namespace=ns)
    for i in range(1, 21):
        assert (one if i % 2 else two).incr("shared") == i
    assert one.get("shared") == 20
    assert len(_records(raw_redis, one)) == 20


def test_every_cluster_slot_has_a_tag() -> None:
    tags = [redis_records._slot_tag(slot) for slot in range(16384)]
    assert [redis_records.key_slot(tag) for tag in tags] == list(range(16384))
    # Four printable characters, never a brace (a brace would end or move the hash tag).
    assert all(len(tag) == 4 and set(tag) <= set(b"@ABCDEFGHIJKLMNO") for tag in tags)
    for bad in (-1, 16384, 2**40):
        with pytest.raises(ValueError, match="slot"):
            redis_records._slot_tag(bad)


def test_record_keys_of_a_wide_batch_cost_a_few_crcs_each(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cluster batch's record keys over hundreds of slots are computed, not searched:
    at most three CRC16s per key (the entry's, the plain name's, the tagged name's)."""
    real = redis_records.key_slot
    calls: list[bytes] = []

    def counting(key: bytes) -> int:
        calls.append(key)
        return int(real(key))

    monkeypatch.setattr(redis_records, "key_slot", counting)
    keys = [f"ns:k{i}" for i in range(2000)]  # ~1,800 distinct slots, none seen before
    names = [record_key(key, request_id(), cluster=True) for key in keys]
    assert len(calls) <= 3 * len(keys)
    assert [real(n) for n in names] == [real(k.encode()) for k in keys]


def test_request_ids_are_random_128_bit() -> None:
    ids = {request_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


@pytest.mark.parametrize(
    "key",
    [
        "plain",
        "ns:{user42}:count",
        "{}empty-tag",
        "open{only",
        "close}only",
        "}{reversed",
        "a{b}c{d}",
        "\u00e9t\u00e9{\u00e9}",
        "x" * 3000,
    ],
)
def test_record_keys_share_the_entry_slot(key: str) -> None:
    rid = request_id()
    for cluster in (False, True):
        name = record_key(key, rid, cluster)
        assert name.startswith((key.encode(), b"{"))
        assert rid in name
        if cluster:
            assert redis_records.key_slot(name) == redis_records.key_slot(key.encode())


# ---------------------------------------------------------------- DynamoDB


@pytest.mark.parametrize("start", [None, 10], ids=["fresh", "existing"])
def test_dynamodb_incr_applies_once_when_its_reply_is_lost(
    via_dynamo: Callable[..., DynamoDBCache], dynamo_proxy: FaultProxy, start: int | None
) -> None:
    cache = via_dynamo()
    if start is not None:
        cache.put("n", start)
    dynamo_proxy.reset_counts()
    dynamo_proxy.drop_reply(UPDATE)
    assert cache.incr("n", 5) == (start or 0) + 5
    assert cache.get("n") == (start or 0) + 5
    assert dynamo_proxy.dropped == 1
    assert dynamo_proxy.count(UPDATE) == 1  # never re-sent
    assert cache.decr("n") == (start or 0) + 4


def test_dynamodb_hit_write_back_counts_once_when_its_reply_is_lost(
    dynamo_proxy: FaultProxy, made_caches: list[BaseCache]
) -> None:
    """With hitCounts on, the ADD hitCount of a write-back is re-sent by botocore after a
    lost reply; the flush's id in the condition makes the re-send a no-op."""
    settings = dynamodb_settings(dynamo_proxy.url, hitCounts=True, hitFlushInterval=3600)
    cache = DynamoDBCache(settings, namespace=fresh_namespace("hf"))
    made_caches.append(cache)
    cache.put_many({"a": 1, "b": 2})
    for _ in range(3):
        assert cache.get("a") == 1
    assert cache.get("b") == 2
    dynamo_proxy.reset_counts()
    dynamo_proxy.drop_reply(UPDATE)
    assert cache.flush_hits() == 2
    assert dynamo_proxy.dropped == 1
    assert dynamo_proxy.count(UPDATE) == 3  # two write-backs, one of them re-sent
    assert cache.metadata("a").hit_count == 3
    assert cache.metadata("b").hit_count == 1
    # A later flush carries a new id and is counted.
    assert cache.get("a") == 1
    assert cache.flush_hits() == 1
    assert cache.metadata("a").hit_count == 4


def test_dynamodb_add_answers_true_when_its_reply_is_lost(
    via_dynamo: Callable[..., DynamoDBCache], dynamo_proxy: FaultProxy
) -> None:
    cache = via_dynamo()
    cache.connect()
    dynamo_proxy.reset_counts()
    dynamo_proxy.drop_reply(PUT)
    assert cache.add("k", {"v": 1}) is True
    assert cache.get("k") == {"v": 1}
    assert dynamo_proxy.count(PUT) == 1
    assert cache.add("k", "other") is False


def test_dynamodb_delete_if_equal_answers_true_when_its_reply_is_lost(
    via_dynamo: Callable[..., DynamoDBCache], dynamo_proxy: FaultProxy
) -> None:
    cache = via_dynamo()
    cache.put("lock", "token-1")
    dynamo_proxy.reset_counts()
    dynamo_proxy.drop_reply(DELETE)
    assert cache._delete_if_equal(cache._sk("lock"), "token-1", cache._clock()) is True
    assert not cache.exists("lock")
    assert dynamo_proxy.count(DELETE) == 1


def test_dynamodb_delete_if_equal_lost_request_is_sent_again(
    via_dynamo: Callable[..., DynamoDBCache], dynamo_proxy: FaultProxy
) -> None:
    """A request that never reached the server leaves the item as read: safe to send again."""
    cache = via_dynamo()
    cache.put("lock", "token-1")
    dynamo_proxy.reset_counts()
    dynamo_proxy.drop_request(DELETE)
    assert cache._delete_if_equal(cache._sk("lock"), "token-1", cache._clock()) is True
    assert not cache.exists("lock")
    assert dynamo_proxy.refused == 1
    assert dynamo_proxy.count(DELETE) == 2


def test_dynamodb_delete_never_answers_false_for_what_it_removed(
    via_dynamo: Callable[..., DynamoDBCache], dynamo_proxy: FaultProxy
) -> None:
    """A lost reply: the second send finds nothing, so the answer is unknown (not False)."""
    cache = via_dynamo()
    cache.put("k", 1)
    dynamo_proxy.reset_counts()
    dynamo_proxy.drop_reply(DELETE)
    with pytest.raises(CacheOutcomeUnknownError, match="entry is gone"):
        cache.delete("k")
    assert not cache.exists("k")
    assert dynamo_proxy.count(DELETE) == 2  # sent once more: deleting twice removes nothing


def test_dynamodb_delete_lost_request_is_sent_again_and_answers_true(
    via_dynamo: Callable[..., DynamoDBCache], dynamo_proxy: FaultProxy
) -> None:
    cache = via_dynamo()
    cache.put("k", 1)
    dynamo_proxy.reset_counts()
    dynamo_proxy.drop_request(DELETE)
    assert cache.delete("k") is True  # the second send removed it, and says so
    assert not cache.exists("k")
    assert dynamo_proxy.refused == 1
    assert cache.delete("k") is False


@pytest.mark.parametrize("op", ["incr", "add"])
def test_dynamodb_lost_request_is_reported_not_guessed(
    via_dynamo: Callable[..., DynamoDBCache], dynamo_proxy: FaultProxy, op: str
) -> None:
    """No reply and no trace of this call in the item: unknown, never re-sent blind."""
    ns = fresh_namespace("x3")
    other, cache = via_dynamo(ns), via_dynamo(ns)
    other.incr("n", 3) if op == "incr" else other.put("n", "someone")
    dynamo_proxy.reset_counts()
    matcher = UPDATE if op == "incr" else PUT
    dynamo_proxy.drop_request(matcher)
    with pytest.raises(CacheOutcomeUnknownError) as caught:
        cache.incr("n") if op == "incr" else cache.add("n", "mine")
    message = str(caught.value)
    assert "'n'" in message
    assert "read the key" in message
    assert SECRET_MARK not in message
    assert dynamo_proxy.count(matcher) == 1
    assert cache.get("n") == (3 if op == "incr" else "someone")  # applied zero times


@pytest.mark.parametrize(
    "planted",
    [{"N": "42"}, {"S": ""}, {"L": [{"S": "x"}]}, {"S": "z" * 5000}, {"BOOL": True}],
    ids=["number", "empty", "list", "huge", "bool"],
)
def test_dynamodb_garbage_request_id_is_never_taken_for_ours(
    via_dynamo: Callable[..., DynamoDBCache],
    dynamo_proxy: FaultProxy,
    planted: dict[str, Any],
) -> None:
    cache = via_dynamo()
    cache.put("n", 1)
    kn = cache.key_name
    cache.client.update_item(
        TableName=cache.table_name,
        Key={kn: {"S": cache._sk("n")}},
        UpdateExpression="SET requestId = :g",
        ExpressionAttributeValues={":g": planted},
    )
    dynamo_proxy.drop_request(UPDATE)
    with pytest.raises(CacheOutcomeUnknownError):
        cache.incr("n")
    assert cache.get("n") == 1
    assert cache.incr("n") == 2  # the garbage is simply replaced
    dynamo_proxy.drop_reply(UPDATE)
    assert cache.incr("n") == 3
    assert cache.get("n") == 3


def test_redis_delete_many_answers_its_count_when_its_reply_is_lost(
    via_redis: Callable[..., RedisCache], redis_proxy: FaultProxy
) -> None:
    cache = via_redis()
    _warm_redis(cache, redis_proxy)
    cache.delete_many(["warm-dm"])  # loads the script
    cache.put_many({"a": 1, "b": 2, "c": 3})
    redis_proxy.reset_counts()
    redis_proxy.drop_reply(lua.DELETE_MANY.sha.encode())
    # Applied by the first send, re-sent by redis-py: the re-send answers the first count.
    assert cache.delete_many(["a", "b", "c", "absent"]) == 3
    assert redis_proxy.dropped == 1
    assert redis_proxy.count(lua.DELETE_MANY.sha.encode()) == 2
    assert cache.get_many(["a", "b", "c"]) == {}
    cache.put("a", 1)
    assert cache.delete_many(["a", "b"]) == 1  # a later call is not taken for a re-send


def test_redis_hit_write_back_counts_once_when_its_reply_is_lost(
    via_redis: Callable[..., RedisCache], redis_proxy: FaultProxy
) -> None:
    cache = via_redis(hitCounts=True, hitFlushInterval=0)  # counts are opt-in
    _warm_redis(cache, redis_proxy)
    cache.put_many({"a": 1, "b": 2})
    cache.get("a")
    cache.flush_hits()  # loads the script
    for _ in range(3):
        cache.get("a")
    cache.get("b")
    redis_proxy.reset_counts()
    redis_proxy.drop_reply(lua.RECORD_READS.sha.encode())
    assert cache.flush_hits() == 2
    assert redis_proxy.dropped == 1
    assert redis_proxy.count(lua.RECORD_READS.sha.encode()) == 2
    other = via_redis(namespace=cache.namespace)
    assert other.metadata("a").hit_count == 4  # not 7: the re-send added nothing
    assert other.metadata("b").hit_count == 1


def test_redis_idle_slide_counts_once_when_its_reply_is_lost(
    via_redis: Callable[..., RedisCache], redis_proxy: FaultProxy
) -> None:
    cache = via_redis(hitCounts=True)  # asserts a hit count: counts are opt-in
    _warm_redis(cache, redis_proxy)
    cache.put("s", "v", idle_time=600)
    cache.get("s")  # loads the script
    redis_proxy.reset_counts()
    redis_proxy.drop_reply(lua.RECORD_READS.sha.encode())
    assert cache.get("s") == "v"
    assert redis_proxy.dropped == 1
    assert cache.metadata("s").hit_count == 2


# ---------------------------------------------------------------- late lock requests


def _given_up_acquire_leaves_the_lock_free(
    cache: BaseCache, proxy: FaultProxy, acquire: Matcher
) -> tuple[int, bool]:
    """``asyncio.run`` ends while a lock acquire's request is on its way; the request then
    reaches the server after the cancelled attempt's give-back. How many late requests
    the server answered, and whether the lock is free afterwards."""

    async def given_up() -> None:
        shell = cache.aio()
        warm = shell.lock("late-warm", ttl=30)  # scripts loaded, table known
        assert await warm.acquire(blocking=False)
        await warm.release()
        proxy.hold_request(acquire)
        waiter = asyncio.ensure_future(shell.lock("late", ttl=30).acquire())
        async with asyncio.timeout(10):
            while proxy.held == 0:
                await asyncio.sleep(0.001)
        assert not waiter.done()
        # Returns with the attempt waiting: asyncio.run cancels it and its waiter.

    async def free() -> bool:
        shell = cache.aio()
        probe = shell.lock("late", ttl=30)
        taken = await probe.acquire(blocking=False)
        if taken:
            await probe.release()
        await shell.close()
        return taken

    asyncio.run(asyncio.wait_for(given_up(), 30))
    answered = proxy.let_through()
    return answered, asyncio.run(asyncio.wait_for(free(), 30))


def test_redis_lock_acquire_arriving_after_its_give_back_takes_nothing(
    via_redis: Callable[..., RedisCache], redis_proxy: FaultProxy
) -> None:
    """The give-back of a cancelled attempt (AsyncLock) runs on a new connection and may
    reach the server before the attempt's own request: that request must then be refused,
    or the lock stays held by nobody for its ttl."""
    acquire = lua.LOCK_ACQUIRE.sha.encode()
    cache = via_redis()
    assert _given_up_acquire_leaves_the_lock_free(cache, redis_proxy, acquire) == (1, True)


def test_dynamodb_lock_acquire_arriving_after_its_give_back_takes_nothing(
    via_dynamo: Callable[..., DynamoDBCache], dynamo_proxy: FaultProxy
) -> None:
    """As for Redis; DynamoDB handles connections in parallel, so the order the requests
    were sent in does not decide the order they are applied in."""
    cache = via_dynamo()
    acquire = b"if_not_exists(#fence"  # the acquire's UpdateExpression, and only its
    assert _given_up_acquire_leaves_the_lock_free(cache, dynamo_proxy, acquire) == (1, True)
