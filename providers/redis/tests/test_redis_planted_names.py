"""Key *names* planted under the cache's namespace longer than any key cachehub writes.

cachehub writes the namespace and a key of at most ``MAX_KEY_LENGTH`` (16,384) characters.
Another program with write access to the shared Redis may plant a name of up to 512 MB
there. On main, ``keys``, ``get_all`` (and ``count``/``clear`` in a cluster or with a ``?``
filter) ran ``SCAN`` from the client: every planted name came whole to the client (a 1 MiB
name: 1 MiB sent per scan, and back again in the script call checking the page), and a
planted name whose value starts with a cachehub header was listed (a key ``get`` then
refused as too long), counted and cleared. Now the scans run inside the server and leave
such names there: never sent, listed, counted or cleared; names up to the limit are
entries like any other.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cachehub_redis import RedisCache
from cachehub_redis.entry import HEADER, KIND_CODEC, MAGIC
from cachehub_redis.server import RedisClusterServers, RedisServer
from redis import Redis

from cachehub.api import MAX_KEY_LENGTH

NS = "pn:"
PLANTED = 1 << 20
"""Characters of each planted long name (Redis allows 512 MB; 1 MiB keeps the test cheap)."""
SENT_MOST = PLANTED // 4
"""What one scan may send to the client over the cache's own few entries: far below one
planted name."""
_HEADED = HEADER.pack(MAGIC, KIND_CODEC, 1.0, 1.0, 1.0, 0.0, math.nan, math.nan)
"""A cachehub header that never expires: with it, a planted string reads as an entry."""
ENTRIES = {f"e{i}": i for i in range(5)}


def _entry_bytes(cache: RedisCache, value: Any) -> bytes:
    """The stored form of ``value``: header and the cache's own codec bytes."""
    cache.put("__probe", value)
    raw = cache._connection().get(cache._sk("__probe"))
    cache.delete("__probe")
    assert isinstance(raw, bytes)
    return raw


@pytest.fixture
def admin(private_redis_server: RedisServer) -> Iterator[Redis]:
    client = private_redis_server.client()
    client.flushall()
    yield client
    client.flushall()
    client.close()


@pytest.fixture
def cache(private_redis_server: RedisServer, admin: Redis) -> Iterator[RedisCache]:
    made = RedisCache(url=private_redis_server.url, namespace=NS)
    made.put_many(ENTRIES)
    yield made
    made.close()


def _lua(client: Redis) -> int:
    """The server's Lua heap: what the scan scripts still hold after their call."""
    return int(client.info("memory")["used_memory_lua"])


def _sent(clients: list[Redis]) -> int:
    return sum(int(c.info("stats")["total_net_output_bytes"]) for c in clients)


def _arun(make: Callable[[], Any]) -> Any:
    async def run() -> Any:
        return await asyncio.wait_for(make(), 60)

    return asyncio.run(run())


async def _alist(cache: RedisCache) -> list[str]:
    shell = cache.aio()
    try:
        return sorted([key async for key in shell.keys()])  # noqa: SIM118 - async iterator
    finally:
        await shell.close()


async def _aclose_after(cache: RedisCache, op: str) -> Any:
    shell = cache.aio()
    try:
        return await getattr(shell, op)()
    finally:
        await shell.close()


SCANS: dict[str, Callable[[RedisCache], Any]] = {
    "keys": lambda c: sorted(c.keys()),
    "keys_filtered": lambda c: sorted(c.keys("?*")),
    "get_all": lambda c: c.get_all(),
    "count": lambda c: c.count(),
    "count_filtered": lambda c: c.count("??*"),  # '?': the client-side scan's path
    "clear": lambda c: c.clear(),
    "clear_filtered": lambda c: c.clear("??*"),
    "akeys": lambda c: _arun(lambda: _alist(c)),
    "acount": lambda c: _arun(lambda: _aclose_after(c, "count")),
    "aclear": lambda c: _arun(lambda: _aclose_after(c, "clear")),
}


def _expected(scan: str, entries: dict[str, Any]) -> Any:
    if "keys" in scan:
        return sorted(entries)
    if scan == "get_all":
        return entries
    return len(entries)


def _plant_long(client: Any, cache: RedisCache, value: bytes, tag: str = "x") -> list[bytes]:
    """Two 1 MiB names under the namespace: one holding an entry's bytes, one foreign."""
    names = [f"{NS}{tag}h".encode() + b"h" * PLANTED, f"{NS}{tag}f".encode() + b"f" * PLANTED]
    client.set(names[0], value)
    client.set(names[1], b"foreign")
    return names


@pytest.mark.parametrize("scan", list(SCANS))
def test_a_planted_long_name_is_never_sent_listed_counted_or_cleared(
    cache: RedisCache, admin: Redis, scan: str
) -> None:
    planted = _plant_long(admin, cache, _entry_bytes(cache, "planted"))
    before, lua = _sent([admin]), _lua(admin)
    outcome = SCANS[scan](cache)
    sent = _sent([admin]) - before
    assert outcome == _expected(scan, ENTRIES)
    assert sent < SENT_MOST, f"{scan} sent {sent} bytes"
    # The script's copy of the names is collected before it returns (before: 2 MiB kept).
    assert _lua(admin) - lua < SENT_MOST
    assert admin.exists(*planted) == 2  # another program's keys: clear leaves them
    assert cache.count() == (0 if "clear" in scan else len(ENTRIES))


def _edge_names() -> dict[str, bool]:
    """User keys around the limit, by characters and UTF-8 bytes -> whether cachehub
    could write them (and so scans find them)."""
    return {
        "a" * MAX_KEY_LENGTH: True,
        "b" * (MAX_KEY_LENGTH + 1): False,
        "\U0001f600" * MAX_KEY_LENGTH: True,  # 65,536 bytes: the most a key may take
        "\U0001f600" * (MAX_KEY_LENGTH + 1): False,
        "\u00e9" * MAX_KEY_LENGTH: True,  # two bytes each: counted by characters
        "\u00e9" * (MAX_KEY_LENGTH + 1): False,
        "c" + "\u00e9" * MAX_KEY_LENGTH: False,
        "d" * (4 * MAX_KEY_LENGTH + 1): False,
    }


def test_names_at_the_limit_are_entries_and_one_past_it_is_not(
    cache: RedisCache, admin: Redis
) -> None:
    """The rule is the key length cachehub accepts, in characters, whatever the bytes:
    every name listed can be read, and no key cachehub could write is missed."""
    value = _entry_bytes(cache, "edge")
    names = _edge_names()
    for key in names:
        admin.set((NS + key).encode(), value)
    ours = {key: "edge" for key, fits in names.items() if fits}
    assert sorted(cache.keys()) == sorted([*ENTRIES, *ours])
    assert cache.get_all() == {**ENTRIES, **ours}
    assert cache.count() == cache.count("?*") == len(ENTRIES) + len(ours)
    for key in list(cache.keys()):  # every listed key is one get() accepts
        assert cache.get(key) is not None
    assert cache.clear("?*") == len(ENTRIES) + len(ours)
    others = [(NS + key).encode() for key, fits in names.items() if not fits]
    assert admin.exists(*others) == len(others)


def test_a_long_namespace_moves_the_limit_with_it(private_redis_server: RedisServer) -> None:
    """The limit counts from the end of the namespace, whatever its length."""
    namespace = "\u00e9" * 1000 + ":"
    cache = RedisCache(url=private_redis_server.url, namespace=namespace)
    admin = private_redis_server.client()
    try:
        value = _entry_bytes(cache, 1)
        admin.set((namespace + "a" * MAX_KEY_LENGTH).encode(), value)
        admin.set((namespace + "a" * (MAX_KEY_LENGTH + 1)).encode(), value)
        assert list(cache.keys()) == ["a" * MAX_KEY_LENGTH]
        assert cache.count() == 1
    finally:
        cache.close()
        admin.flushall()
        admin.close()


def test_a_planted_long_lock_name_is_not_sent_by_clear_internal(
    cache: RedisCache, admin: Redis
) -> None:
    """``clear(include_internal=True)`` scans the namespace's lock hashes the same way."""
    lock = cache.lock("job")
    assert lock.acquire(blocking=False)
    lock.release()
    planted = NS.encode() + b"\xff" + b"L" * PLANTED
    admin.hset(planted, "t", "x")
    before = _sent([admin])
    cache.clear(include_internal=True)
    assert _sent([admin]) - before < SENT_MOST
    assert admin.exists(planted) == 1
    assert admin.exists(NS.encode() + b"\xfflock:job") == 0


CLUSTER_SCANS = ["keys", "get_all", "count", "clear", "akeys", "acount"]


@pytest.mark.parametrize("scan", CLUSTER_SCANS)
def test_a_cluster_scan_leaves_planted_long_names_on_their_nodes(
    redis_cluster: RedisClusterServers, scan: str
) -> None:
    """Long names on every node (six: each node gets some), among entries."""
    namespace = f"pn{uuid.uuid4().hex[:6]}:"
    cache = RedisCache(
        host=redis_cluster.host, port=redis_cluster.port, cluster=True, namespace=namespace
    )
    nodes = [node.client() for node in redis_cluster.nodes]
    entries = {f"e{i}": i for i in range(30)}
    try:
        cache.put_many(entries)
        router = cache._connection()
        value = _entry_bytes(cache, "planted")
        planted = [f"{namespace}big{i}".encode() + b"n" * PLANTED for i in range(6)]
        for name in planted:
            router.set(name, value)
        before = _sent(nodes)
        outcome = SCANS[scan](cache)
        sent = _sent(nodes) - before
        assert outcome == _expected(scan, entries)
        assert sent < SENT_MOST, f"{scan} sent {sent} bytes"
        assert sum(router.exists(name) for name in planted) == len(planted)
    finally:
        cache.clear()
        for name in planted:
            cache._connection().unlink(name)
        cache.close()
        for node in nodes:
            node.close()


NOT_UTF8 = {
    "lone-byte": b"bad\xfe",
    "overlong": b"\xc0\xaf",
    "surrogate": b"\xed\xa0\x80",
    "cut-short": b"euro\xe2\x82",
    "past-U+10FFFF": b"\xf4\x90\x80\x80",
    "continuation": b"\x80abc",
    "joined-if-removed": b"\xc3\xf0\x9f\x98\x80\xa9",  # a lead byte, an emoji, a continuation
}
UTF8 = ["\u00e9t\u00e9", "\u20ac", "\U0001f600", "\U0010ffff", "\uffff", "\u0800", "\u07ff"]


def test_names_that_are_not_utf8_are_skipped_by_every_scan_alike(
    cache: RedisCache, admin: Redis
) -> None:
    """On a single server ``count`` and ``clear`` scan inside the server: they counted and
    removed an entry under a name that is not UTF-8 (which cachehub never writes), while
    ``keys`` and a ``?`` filter, decoding each name in the client, skipped it (count() 19,
    count('?*') 12 here). Now the server skips it too; every UTF-8 name counts."""
    value = _entry_bytes(cache, "v")
    for raw in NOT_UTF8.values():
        admin.set(NS.encode() + raw, value)
    for key in UTF8:
        admin.set((NS + key).encode(), value)
    ours = sorted([*ENTRIES, *UTF8])
    assert sorted(cache.keys()) == ours
    assert cache.count() == cache.count("?*") == cache.count("*") == len(ours)
    assert cache.clear() == len(ours)
    assert admin.exists(*(NS.encode() + raw for raw in NOT_UTF8.values())) == len(NOT_UTF8)
