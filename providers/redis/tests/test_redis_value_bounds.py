"""A reader never downloads more than it would accept: ``maxValueSize`` bounds every read.

Another program with write access to the shared Redis plants a string far larger than
the cache's ``maxValueSize`` under a key of its namespace: foreign bytes, or a cachehub
header followed by the oversized value. Every read path then receives at most
``maxValueSize`` plus the entry header and the codec's framing, counted in reply bytes
through a loopback proxy (:class:`cachehub.testing.faults.FaultProxy`), never timed. On
main ``get`` received the whole planted string (1 MiB here, for a 4 KiB maxValueSize) to
answer a miss or a ``CorruptEntryError``, ``get_many`` 100 of them (100 MiB), and so did
``get_all``, ``metadata``, ``peek``, ``get_or_set`` and the async shell; ``incr`` over a
planted non-integer entry downloaded its value to name its type.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cachehub_redis import RedisCache
from cachehub_redis.entry import HEADER, KIND_CODEC, MAGIC
from cachehub_redis.server import RedisClusterServers, RedisServer
from redis import Redis

from cachehub.codec import PAYLOAD_OVERHEAD
from cachehub.errors import CacheKeyError, CacheValueError, CorruptEntryError, SerializationError
from cachehub.session import SessionStore
from cachehub.testing.faults import FaultProxy

LIMIT = 4096
"""The caches' maxValueSize here (the smallest accepted is 1 KiB)."""
PLANTED = 1 << 20
"""Bytes of each planted value: 256 times what the cache accepts."""
SLACK = 512
"""Protocol bytes of one reply beyond its values (RESP framing, a script's markers)."""
BOUND = HEADER.size + PAYLOAD_OVERHEAD + LIMIT + 1 + SLACK
"""The most one read of one key may download."""


def _foreign(size: int = PLANTED) -> bytes:
    """Another program's string: not a cachehub entry."""
    return b"x" * size


def _headed(size: int = PLANTED) -> bytes:
    """A cachehub header that claims a plain value, then far more bytes than it may hold."""
    nan = float("nan")
    return HEADER.pack(MAGIC, KIND_CODEC, 1.0, 1.0, 1.0, 0.0, nan, nan) + b"\x01" * size


PLANTS = {"foreign": _foreign, "headed": _headed}


@pytest.fixture(scope="module")
def redis_server(
    require_redis: None, script_loader: Callable[[Redis], None]
) -> Iterator[RedisServer]:
    """A server of this module's own (for ``plain`` too): the scans of get_all then walk
    only its keys, so the bytes they download do not depend on what other tests stored.
    Its scripts are loaded first, as on the shared server (``plain`` checks they stay)."""
    with RedisServer() as server:
        client = server.client()
        script_loader(client)
        client.close()
        yield server


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[FaultProxy]:
    with FaultProxy(redis_server.host, redis_server.port) as running:
        yield running


@pytest.fixture
def bounded(proxy: FaultProxy, redis_server: RedisServer) -> Iterator[RedisCache]:
    """A cache with a 4 KiB maxValueSize, talking to the server through ``proxy``."""
    cache = RedisCache(
        host=proxy.host,
        port=proxy.port,
        namespace="vb:",
        maxValueSize=LIMIT,
        retries=0,
        storage=True,
    )
    cache.put("warm", 1)  # connect, so the counts below are the operations' own
    cache.delete("warm")
    yield cache
    cache.close()
    # Cleared directly, not through the proxy: its forwarding thread, starved at a load
    # of 11, made 8 teardowns in a row time out reading from Redis.
    cleaner = RedisCache(url=redis_server.url, namespace="vb:")
    cleaner.clear()
    cleaner.close()


def _received(proxy: FaultProxy, operation: Callable[[], Any]) -> tuple[int, Any]:
    """(reply bytes the operation downloaded, its result or the CacheError it raised)."""
    proxy.reset_counts()
    try:
        outcome: Any = operation()
    except (CorruptEntryError, CacheValueError, CacheKeyError) as exc:
        outcome = exc
    return proxy.replied, outcome


def _arun(make: Callable[[], Any]) -> Any:
    async def run() -> Any:
        return await asyncio.wait_for(make(), 30)

    return asyncio.run(run())


READS: dict[str, Callable[[RedisCache], Any]] = {
    "get": lambda c: c.get("k"),
    "aget": lambda c: _arun(lambda: c.aio().get("k")),
    "get_many": lambda c: c.get_many(["k", "absent"]),
    "aget_many": lambda c: _arun(lambda: c.aio().get_many(["k", "absent"])),
    "get_all": lambda c: c.get_all(),
    "aget_all": lambda c: _arun(lambda: c.aio().get_all()),
    "metadata": lambda c: c.metadata("k"),
    "peek": lambda c: c.peek("k"),
    "apeek": lambda c: _arun(lambda: c.aio().peek("k")),
    "get_or_set": lambda c: c.get_or_set("k", lambda: "fresh"),
    "exists": lambda c: c.exists("k"),
    "touch": lambda c: c.touch("k", time_span=60),
    "add": lambda c: c.add("k", "new"),
    "incr": lambda c: c.incr("k"),
}


@pytest.mark.parametrize("read", list(READS))
@pytest.mark.parametrize("plant", list(PLANTS))
def test_no_read_downloads_more_than_max_value_size(
    bounded: RedisCache, proxy: FaultProxy, plain: Redis, plant: str, read: str
) -> None:
    plain.set("vb:k", PLANTS[plant]())
    if read == "get_or_set":
        # A cache's first lock reads INFO memory once (the eviction-policy warning):
        # ~1.5 KB that is no read of the value, taken before counting.
        with bounded.lock("vb-warm"):
            pass
    received, outcome = _received(proxy, lambda: READS[read](bounded))
    # get_or_set reads the key three times: before its in-process flight, before its
    # lock and under it.
    reads = 3 if read == "get_or_set" else 1
    assert received <= reads * BOUND, f"{read} downloaded {received} bytes of a {plant} value"
    if isinstance(outcome, CorruptEntryError):
        # Only an entry's header makes it a cachehub entry worth an error; it names the fix.
        assert plant == "headed"
        assert "vb:k" in outcome.message
        assert "maxValueSize" in str(outcome)


@pytest.mark.parametrize("plant", list(PLANTS))
def test_a_session_load_never_downloads_a_planted_value(
    proxy: FaultProxy, plain: Redis, plant: str
) -> None:
    cache = RedisCache(
        host=proxy.host, port=proxy.port, namespace="vs:", maxValueSize=LIMIT, storage=True
    )
    store = SessionStore(cache)
    try:
        sid = store.create({"user": 1})
        plain.set("vs:" + store.storage_key(sid), PLANTS[plant]())
        received, loaded = _received(proxy, lambda: store.load(sid))
        assert received <= BOUND, f"load downloaded {received} bytes of a {plant} value"
        assert loaded is None or isinstance(loaded, CorruptEntryError)
    finally:
        cache.clear()
        cache.close()


def test_a_batch_of_oversized_values_downloads_none_of_them(
    bounded: RedisCache, proxy: FaultProxy, plain: Redis
) -> None:
    keys = [f"k{i}" for i in range(100)]
    plain.mset({f"vb:{k}": _foreign() for k in keys})
    bounded.put("small", "v")
    received, found = _received(proxy, lambda: bounded.get_many([*keys, "small"]))
    assert found == {"small": "v"}
    assert received <= 100 * BOUND, f"get_many downloaded {received} bytes"


@pytest.mark.parametrize("plant", list(PLANTS))
def test_an_oversized_value_reads_as_any_unreadable_value_does(
    bounded: RedisCache, plain: Redis, plant: str
) -> None:
    """Foreign bytes are a miss, as any foreign string; a cachehub header over too many
    bytes is a CorruptEntryError naming the key and the fix, as any corrupt entry. The
    planted key is left as it is."""
    plain.set("vb:k", PLANTS[plant]())
    if plant == "foreign":
        assert bounded.get("k", "dflt") == "dflt"
        assert bounded.get_many(["k"]) == {}
    else:
        for read in (lambda: bounded.get("k"), lambda: bounded.get_many(["k"])):
            with pytest.raises(CorruptEntryError, match="maxValueSize"):
                read()
    assert plain.strlen("vb:k") == len(PLANTS[plant]())


def test_a_value_of_exactly_max_value_size_still_reads(bounded: RedisCache) -> None:
    # Raw bytes encode with a few bytes of msgpack framing: the largest that fit.
    largest = b"v" * (LIMIT - 3)
    bounded.put("k", largest)
    assert bounded.get("k") == largest
    assert bounded.get_many(["k"]) == {"k": largest}
    assert _arun(lambda: bounded.aio().get("k")) == largest
    entry = bounded.peek("k")
    assert entry is not None
    assert entry.value == largest


def test_the_bound_is_exact_at_one_byte_past_the_largest_entry(
    bounded: RedisCache, plain: Redis
) -> None:
    """A headed string of the largest length a payload may have is handed to the codec
    (which judges its garbage body); one byte more is refused as oversized, by every read."""
    largest = PAYLOAD_OVERHEAD + LIMIT
    plain.set("vb:k", _headed(largest))
    with pytest.raises(CorruptEntryError) as judged:
        bounded.get("k")
    assert "maxValueSize allows" not in str(judged.value)
    plain.set("vb:k", _headed(largest + 1))
    reads = [
        lambda: bounded.get("k"),
        lambda: bounded.get_many(["k"]),
        lambda: bounded.peek("k"),
        lambda: _arun(lambda: bounded.aio().get("k")),
    ]
    for read in reads:
        with pytest.raises(CorruptEntryError, match="maxValueSize allows"):
            read()


WRITES: dict[str, Callable[[RedisCache, Any], Any]] = {
    "put": lambda c, v: c.put("w", v),
    "put_many": lambda c, v: c.put_many({"w": v, "w2": 1}),
    "add": lambda c, v: c.add("w", v),
    "get_or_set": lambda c, v: c.get_or_set("w", lambda: v),
    "aput": lambda c, v: _arun(lambda: c.aio().put("w", v)),
    "aput_many": lambda c, v: _arun(lambda: c.aio().put_many({"w": v})),
    "session": lambda c, v: SessionStore(c, prefix="w").create({"v": v}),
}


@pytest.mark.parametrize("write", list(WRITES))
def test_every_write_refuses_a_value_over_max_value_size(
    bounded: RedisCache, proxy: FaultProxy, write: str
) -> None:
    proxy.reset_counts()
    with pytest.raises(SerializationError, match="maxValueSize"):
        WRITES[write](bounded, b"v" * (LIMIT + 1))
    assert proxy.count(b"v" * (LIMIT + 1)) == 0  # the value was never sent to be stored
    assert bounded.get_many(["w", "w2"]) == {}


def _sent(nodes: list[Redis]) -> int:
    """Bytes the servers have sent to clients so far (INFO stats, every node)."""
    return sum(int(node.info("stats")["total_net_output_bytes"]) for node in nodes)


TOPOLOGY_READS: dict[str, Callable[[RedisCache, list[str]], Any]] = {
    "get": lambda c, keys: [c.get(k) for k in keys],
    "aget": lambda c, keys: [_arun(lambda k=k: c.aio().get(k)) for k in keys],
    "get_many": lambda c, keys: c.get_many(keys),
    "aget_many": lambda c, keys: _arun(lambda: c.aio().get_many(keys)),
    "peek": lambda c, keys: [c.peek(k) for k in keys],
}


@pytest.mark.parametrize("read", list(TOPOLOGY_READS))
def test_a_cluster_never_sends_a_planted_value_either(
    redis_cluster: RedisClusterServers, read: str
) -> None:
    """Keys over every hash slot's node; counted by the servers themselves (a proxy cannot
    stand in for a cluster's nodes). Reads send no writes, so no replication is counted."""
    cache = RedisCache(
        host=redis_cluster.host,
        port=redis_cluster.port,
        cluster=True,
        namespace=f"vb{uuid.uuid4().hex[:8]}:",
        maxValueSize=LIMIT,
    )
    nodes = [node.client() for node in redis_cluster.nodes]
    keys = [f"k{i}" for i in range(6)]
    try:
        cache.put("warm", 1)
        TOPOLOGY_READS[read](cache, ["warm"])  # connected, scripts loaded
        # What the same read costs over absent keys: the async reads make a client per
        # loop (one loop per key here), whose setup replies depend on the redis-py version
        # (67 KB more on 5.0), and the INFO replies themselves are a few KiB.
        before = _sent(nodes)
        TOPOLOGY_READS[read](cache, [f"absent{i}" for i in range(len(keys))])
        overhead = _sent(nodes) - before
        admin = cache._connection()  # the cluster client: routes each key to its node
        for key in keys:
            admin.set(cache.namespace + key, _foreign())
        before = _sent(nodes)
        TOPOLOGY_READS[read](cache, keys)
        # Six 1 MiB values: 6 MiB on main.
        assert _sent(nodes) - before <= overhead + len(keys) * BOUND + 32 * 1024
    finally:
        cache.clear()
        cache.close()
        for node in nodes:
            node.close()
