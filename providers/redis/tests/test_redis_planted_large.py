"""No script copies a whole planted value into the server's memory.

Another program with write access to the shared Redis plants 32 MiB strings under the
cache's namespace (foreign bytes, or a cachehub header over them), 32 MiB fields in its
lock records, 32 MiB strings under its request-record keys. Every operation then reads
them inside the server by a bounded prefix at most: the server's memory peak
(``used_memory_peak``, after levelling used memory up to it so that any copy raises it)
grows by far less than one planted value, and nothing large reaches the Lua heap
(``used_memory_lua``). The client-side reads were bounded before (test_redis_value_bounds);
on main, the scripts were not: ``count``, ``keys``, ``get_all`` and ``clear`` read a first
batch of 100 keys with one MGET, whole values included (+32 MiB per planted value),
``delete_if_equal`` read the whole value to compare it, the lock scripts read the lock
record with HMGET, and the single-key write scripts read their request record with GET.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from cachehub_redis import RedisCache
from cachehub_redis.entry import HEADER, KIND_CODEC, MAGIC
from cachehub_redis.records import record_key
from cachehub_redis.server import RedisClusterServers, RedisServer
from redis import Redis
from redis.exceptions import MovedError, ResponseError

from cachehub.errors import CorruptEntryError

PLANTED = 32 << 20
"""Bytes of each planted value (Redis allows 512 MB; 32 MiB keeps the test cheap)."""
MARGIN = 4 << 20
"""What an operation may raise the server's memory peak by: replies and scripts over a few
small entries, far below one planted value."""
LIMIT = 4096
"""The caches' maxValueSize: their reads of a value stop one byte past it, by design."""
ENTRIES = {f"e{i}": i for i in range(5)}
"""The cache's own entries, stored beside the planted keys."""
_NAN = math.nan
_HEADED = HEADER.pack(MAGIC, KIND_CODEC, 1.0, 1.0, 1.0, 0.0, _NAN, _NAN)
"""A cachehub header that never expires, claiming codec bytes."""


@pytest.fixture
def admin(private_redis_server: RedisServer) -> Iterator[Redis]:
    """A client of the module's own server (the tests read its memory figures), emptied."""
    client = private_redis_server.client()
    client.flushall(asynchronous=False)  # freed now: a background free would lower used memory
    yield client
    client.flushall(asynchronous=False)
    client.close()


@pytest.fixture
def cache(private_redis_server: RedisServer, admin: Redis) -> Iterator[RedisCache]:
    made = RedisCache(url=private_redis_server.url, namespace="pl:", retries=1, maxValueSize=LIMIT)
    made.put_many(ENTRIES)
    yield made
    made.close()


def plant(client: Any, key: str | bytes, head: bytes = b"") -> None:
    """A PLANTED-byte string at ``key`` starting with ``head`` (zeros otherwise, not an
    entry), built in place by SETRANGE: no 32 MiB request, so no query buffer to free later."""
    client.setrange(key, PLANTED - 1, b"x")
    if head:
        client.setrange(key, 0, head)


def plant_fields(server: RedisServer, key: bytes, fields: dict[bytes, bytes]) -> None:
    """HSET ``fields`` by a client of its own, then killed. After a 32 MiB argument the
    server keeps a query buffer as large for the client's next request and frees it in
    its cron, at a time of its choosing: that would lower used memory after
    :func:`levelled`. CLIENT KILL frees it now."""
    planter, killer = server.client(), server.client()
    try:
        planter_id = planter.client_id()
        planter.hset(key, mapping=fields)  # type: ignore[arg-type]
        killer.client_kill_filter(_id=planter_id)
    finally:
        planter.close()
        killer.close()


def levelled(client: Redis) -> int:
    """Raise the server's used memory to its peak, so that any copy an operation makes
    raises the peak: a zero-filled string of the difference, allocated in one piece
    (SETRANGE on a new key). The peak then."""
    memory = client.info("memory")
    gap = int(memory["used_memory_peak"]) - int(memory["used_memory"])
    # A cluster node refuses (MOVED) a key of another node's slots: a third of the names
    # land on each node, so 64 tries miss with odds of 1 in 10^11.
    for attempt in range(64 if gap > 0 else 0):
        try:
            client.setrange(f"ballast:{attempt}:{uuid.uuid4().hex}", gap, b"\0")
            break
        except ResponseError as refused:
            # Recent redis-py raises MovedError (its text: "<slot> <node>"); 5.0 raises a
            # bare ResponseError whose text starts with MOVED.
            if not isinstance(refused, MovedError) and not str(refused).startswith("MOVED"):
                raise
            continue
    return int(client.info("memory")["used_memory_peak"])


def assert_bounded(client: Redis, peak: int, what: str) -> None:
    """Nothing near a planted value was copied since ``peak`` (see :func:`levelled`)."""
    memory = client.info("memory")
    grown = int(memory["used_memory_peak"]) - peak
    assert grown < MARGIN, f"{what} raised the server's memory peak by {grown} bytes"
    lua = int(memory["used_memory_lua"])
    assert lua < MARGIN, f"{what} left {lua} bytes in the Lua heap"


def _arun(make: Callable[[], Any]) -> Any:
    async def run() -> Any:
        return await asyncio.wait_for(make(), 60)

    return asyncio.run(run())


async def _listed(keys: AsyncIterator[str]) -> list[str]:
    return sorted([key async for key in keys])


SCANS: dict[str, Callable[[RedisCache], Any]] = {
    "count": lambda c: c.count(),
    "count_filtered": lambda c: c.count("??*"),  # '?': the client-side scan's path
    "keys": lambda c: sorted(c.keys()),
    "get_all": lambda c: c.get_all(),
    "clear": lambda c: c.clear(),
    "clear_filtered": lambda c: c.clear("??*"),
    "acount": lambda c: _arun(lambda: c.aio().count()),
    "akeys": lambda c: _arun(lambda: _listed(c.aio().keys())),
    "aclear": lambda c: _arun(lambda: c.aio().clear()),
}


def _expected(scan: str, headed: bool) -> Any:
    """What ``scan`` answers over ENTRIES and a planted ``big``: foreign bytes are no entry;
    a headed string is one (counted, listed, cleared), whose value get_all refuses."""
    names = sorted([*ENTRIES, "big"] if headed else ENTRIES)
    if scan.endswith("keys"):
        return names
    if scan == "get_all":
        return CorruptEntryError if headed else ENTRIES
    return len(names)


@pytest.mark.parametrize("scan", list(SCANS))
@pytest.mark.parametrize("headed", [False, True], ids=["foreign", "headed"])
def test_scans_never_copy_a_planted_value(
    cache: RedisCache, admin: Redis, scan: str, headed: bool
) -> None:
    plant(admin, "pl:big", _HEADED if headed else b"")
    peak = levelled(admin)
    try:
        outcome: Any = SCANS[scan](cache)
    except CorruptEntryError as exc:
        outcome = type(exc)
    assert_bounded(admin, peak, scan)
    assert outcome == _expected(scan, headed)
    # clear keeps its semantics: cachehub entries go, other programs' strings stay.
    gone = "clear" in scan and headed
    assert admin.strlen("pl:big") == (0 if gone else PLANTED)


def test_delete_if_equal_never_reads_a_planted_value(cache: RedisCache, admin: Redis) -> None:
    plant(admin, "pl:big", _HEADED)
    peak = levelled(admin)
    assert cache._delete_if_equal(cache._sk("big"), "v", cache._clock()) is False
    assert_bounded(admin, peak, "delete_if_equal")
    assert admin.strlen("pl:big") == PLANTED
    # Entries of the compared length still compare byte by byte.
    cache.put("small", "v")
    assert cache._delete_if_equal(cache._sk("small"), "w", cache._clock()) is False
    assert cache._delete_if_equal(cache._sk("small"), "v", cache._clock()) is True


def _an_hour_ahead(admin: Redis) -> bytes:
    """A lock deadline (server ms) an hour ahead: with a key expiry, the record holds the
    lock (one past the longest ttl, or a hash that never expires, holds nothing)."""
    seconds, _ = admin.time()
    return str((int(seconds) + 3600) * 1000).encode()


def _lock_key(cache: RedisCache) -> bytes:
    return cache.namespace.encode() + b"\xfflock:job"


def test_a_planted_holder_is_never_copied(
    private_redis_server: RedisServer, cache: RedisCache, admin: Redis
) -> None:
    """A 32 MiB holder token with a live deadline: the lock is held by another program,
    whose token is not shown, and no lock script copies it."""
    fields = {b"t": b"\xff" * PLANTED, b"d": _an_hour_ahead(admin)}
    plant_fields(private_redis_server, _lock_key(cache), fields)
    admin.pexpire(_lock_key(cache), 3_600_000)
    lock = cache.lock("job")
    peak = levelled(admin)
    outcomes = (
        lock.busy,
        cache._lock_holder(lock.key, cache._clock()),
        lock.acquire(blocking=False),
        cache._lock_release(lock.key, "t" * 32, cache._clock()),
        cache._lock_extend(lock.key, "t" * 32, 30.0, cache._clock()),
    )
    assert_bounded(admin, peak, "the lock scripts")
    assert outcomes == (True, "", False, False, False)
    assert admin.hstrlen(_lock_key(cache), "t") == PLANTED


@pytest.mark.parametrize("field", ["d", "f", "r"])
def test_planted_lock_numbers_and_releases_are_never_copied(
    private_redis_server: RedisServer, cache: RedisCache, admin: Redis, field: str
) -> None:
    """A 32 MiB deadline, fence or released token holds nothing and is not read: the lock
    is taken (a fresh fence from the server's clock), extended and released as usual."""
    plant_fields(private_redis_server, _lock_key(cache), {field.encode(): b"1" * PLANTED})
    lock = cache.lock("job")
    peak = levelled(admin)
    assert not lock.busy
    assert lock.acquire(blocking=False)
    assert lock.fence is not None
    assert 0 < lock.fence < 2**53
    lock.extend(30)
    assert cache._lock_release(lock.key, "not the holder", cache._clock()) is False
    assert lock.release()
    assert_bounded(admin, peak, "the lock scripts")


RECORDED: dict[str, Callable[[RedisCache], Any]] = {
    "delete": lambda c: c.delete("e0"),
    "add": lambda c: c.add("new", 1),
    "incr": lambda c: c.incr("n"),
    "delete_many": lambda c: c.delete_many(["e0"]),
    "delete_if_equal": lambda c: c._delete_if_equal(c._sk("e0"), 0, c._clock()),
}
"""The writes that carry a request record (retries 1), each on the key planted below."""


@pytest.mark.parametrize("write", list(RECORDED))
def test_a_planted_request_record_is_never_copied(
    cache: RedisCache, admin: Redis, monkeypatch: pytest.MonkeyPatch, write: str
) -> None:
    """One who learnt a call's request id plants a 32 MiB string at its record, starting
    like a record (0xCB): the call reads no more of it than a record's 9 bytes, applies
    as usual (the string is no record of it) and records over it."""
    rid = uuid.uuid4().hex.encode()
    monkeypatch.setattr("cachehub_redis.cache.request_id", lambda: rid)
    key = {"add": "new", "incr": "n"}.get(write, "e0")
    record = record_key(cache._sk(key), rid)
    plant(admin, record, b"\xcb")
    peak = levelled(admin)
    assert RECORDED[write](cache) in (True, 1)
    assert_bounded(admin, peak, write)
    assert admin.strlen(record) == 9  # this call's own record replaced the planted string


@pytest.fixture(scope="module")
def cluster(require_redis: None) -> Iterator[RedisClusterServers]:
    """A cluster of this module's own: the tests read its nodes' memory figures."""
    with RedisClusterServers() as own:
        yield own


CLUSTER_SCANS = ["count", "keys", "get_all", "clear"]


@pytest.mark.parametrize("scan", CLUSTER_SCANS)
def test_a_cluster_scan_never_copies_a_planted_value(
    cluster: RedisClusterServers, scan: str
) -> None:
    """Foreign 32 MiB strings over the cluster's nodes (six keys: every node gets some
    with this namespace), among entries: each node's peak stays flat."""
    cache = RedisCache(
        host=cluster.host,
        port=cluster.port,
        cluster=True,
        namespace=f"pl{uuid.uuid4().hex[:6]}:",
        maxValueSize=LIMIT,
    )
    nodes = [node.client() for node in cluster.nodes]
    try:
        cache.put_many(ENTRIES)
        router = cache._connection()  # the cluster client: routes each key to its node
        planted = [f"{cache.namespace}big{i}" for i in range(6)]
        for key in planted:
            plant(router, key)
        peaks = [levelled(node) for node in nodes]
        found = SCANS[scan](cache)
        for node, peak in zip(nodes, peaks, strict=True):
            assert_bounded(node, peak, f"{scan} on a cluster node")
        assert found == _expected(scan, headed=False)
        assert [router.strlen(key) for key in planted] == [PLANTED] * len(planted)
    finally:
        cache.clear()
        cache.close()
        for node in nodes:
            node.flushall(asynchronous=False)
            node.close()


def test_scans_judge_short_and_long_strings_alike(cache: RedisCache, admin: Redis) -> None:
    """Pages mixing entries under and over the 1 KiB that MGET may read, foreign strings
    of both kinds and another type, in SCAN's order (a batch of mostly long strings reads
    the rest of its page by header): every verdict is the same either way."""
    cache.clear()
    longs = {f"long{i}": "v" * 2048 for i in range(250)}
    shorts = {f"short{i}": i for i in range(250)}
    cache.put_many({**longs, **shorts})
    admin.mset({f"pl:foreign{i}": b"x" * (10 if i % 2 else 5000) for i in range(100)})
    admin.hset("pl:hash", "f", "v")
    assert cache.count() == cache.count("?*") == 500
    assert sorted(cache.keys()) == sorted([*longs, *shorts])
    assert cache.clear("?*") == 500
    assert admin.exists(*[f"pl:foreign{i}" for i in range(100)], "pl:hash") == 101
