"""Cluster specifics: batches across slots and nodes (sync and async), SCAN on every
primary, the shared client, async requests waiting for a free connection."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Iterator
from typing import Any, Final, TypeVar

import pytest
from cachehub_redis import RedisCache
from cachehub_redis.connection import WaitingCluster
from cachehub_redis.dispatch import LOOP_CLUSTER_COMMANDS
from cachehub_redis.server import RedisClusterServers
from redis.asyncio.connection import AbstractConnection as AsyncConnection
from redis.cluster import RedisCluster
from redis.connection import AbstractConnection
from redis.crc import key_slot

from cachehub.errors import CacheError, CacheUnavailableError

T = TypeVar("T")


def test_batches_span_every_node(
    cluster_cache: RedisCache, redis_cluster: RedisClusterServers
) -> None:
    items = {f"k{i}": i for i in range(300)}
    cluster_cache.put_many(items, time_span=600)
    per_node = []
    for node in redis_cluster.nodes:
        client = node.client()
        per_node.append(sum(1 for _ in client.scan_iter(match=f"{cluster_cache.namespace}*")))
        client.close()
    assert sum(per_node) == 300
    assert all(count > 0 for count in per_node)  # the keys really are spread out
    assert cluster_cache.get_many(list(items)) == items
    assert cluster_cache.count() == 300
    assert cluster_cache.count("k1?") == 10
    assert sorted(cluster_cache.keys("k29?")) == [f"k29{i}" for i in range(10)]
    assert cluster_cache.delete_many([f"k{i}" for i in range(100)]) == 100
    assert cluster_cache.clear() == 200
    assert cluster_cache.count() == 0


def test_caches_with_the_same_settings_share_one_cluster_client(
    redis_cluster: RedisClusterServers,
) -> None:
    settings = {"host": redis_cluster.host, "port": redis_cluster.port, "cluster": True}
    first = RedisCache(settings, namespace="a:")
    second = RedisCache(settings, namespace="b:")
    first.put("k", 1)
    second.put("k", 2)
    assert first._conn is second._conn
    assert isinstance(first._conn, RedisCluster)
    first.close()
    assert second.get("k") == 2  # closing one cache leaves the other working
    second.close()
    assert first.get("k") == 1  # and a closed cache reconnects lazily
    first.clear()
    second.clear()
    first.close()


def _count_sends(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The port of every request the sync clients send from now on, in order."""
    sent: list[int] = []
    original = AbstractConnection.send_packed_command

    def counting(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        sent.append(self.port)  # type: ignore[attr-defined]
        original(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    return sent


def test_batches_are_one_round_trip_per_node(
    cluster_cache: RedisCache, redis_cluster: RedisClusterServers, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = {f"k{i}": i for i in range(300)}  # spread over all three primaries
    cluster_cache.put_many(items)
    cluster_cache.delete_many(list(items))
    cluster_cache.put_many(items)
    cluster_cache.get_many(list(items))  # the scripts of all three loaded everywhere
    sent = _count_sends(monkeypatch)
    assert cluster_cache.get_many(list(items)) == items
    assert sorted(sent) == sorted(node.port for node in redis_cluster.nodes)
    sent.clear()
    assert cluster_cache.delete_many(list(items)) == 300
    assert len(sent) == 3


def test_a_batch_refused_for_an_unknown_script_is_sent_again_as_a_batch(
    cluster_cache: RedisCache, redis_cluster: RedisClusterServers, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every primary forgot its scripts (a restart, a SCRIPT FLUSH by another client): the
    # batch is refused on each node and sent again per node as EVALs - never one request
    # per key (306 requests for 300 keys before), nor a SCRIPT LOAD per node (9 before).
    items = {f"k{i}": i for i in range(300)}
    cluster_cache.put_many(items)
    for node in redis_cluster.nodes:
        with node.client() as client:
            client.script_flush()
    sent = _count_sends(monkeypatch)
    assert cluster_cache.delete_many(list(items)) == 300
    assert len(sent) == 6  # refused, sent again as EVAL: once per primary each
    assert cluster_cache.get_many(list(items)) == {}


def test_batches_keep_keys_of_one_slot_together(cluster_cache: RedisCache) -> None:
    # Hash tags put every key in one slot: one script call takes them all.
    items = {f"{{user42}}:k{i}": i for i in range(50)}
    cluster_cache.put_many(items)
    assert cluster_cache.get_many(list(items)) == items
    assert cluster_cache.count("{user42}:*") == 50
    assert cluster_cache.clear("{user42}:k1*") == 11
    assert cluster_cache.count() == 39
    cluster_cache.clear()


# ---------------------------------------------------------------------- async


def _arun(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run``, bounded: a hang fails the test."""
    return asyncio.run(asyncio.wait_for(coro, 60))


@pytest.fixture
def async_sends(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The port of every packet redis.asyncio writes: one write = one round trip."""
    sent: list[int] = []
    original = AsyncConnection.send_packed_command

    async def counting(self: AsyncConnection, command: Any, check_health: bool = True) -> None:
        sent.append(self.port)  # type: ignore[attr-defined]
        await original(self, command, check_health)

    monkeypatch.setattr(AsyncConnection, "send_packed_command", counting)
    return sent


ITEMS: Final = {f"k{i}": i for i in range(300)}  # over all three primaries, ~300 slots
ASYNC_BATCHES: dict[str, Callable[[Any], Coroutine[Any, Any, Any]]] = {
    "get_many": lambda a: a.get_many(list(ITEMS)),
    "get_many idle": lambda a: a.get_many([f"idle{i}" for i in range(300)]),  # + the slides
    "put_many": lambda a: a.put_many(ITEMS),
    "put_many ttl": lambda a: a.put_many(ITEMS, time_span=600),
    "delete_many": lambda a: a.delete_many(list(ITEMS)),
}


def _slots(cache: RedisCache, keys: Iterable[str]) -> int:
    """How many hash slots ``keys`` of ``cache`` fall in: the commands of a batch."""
    return len({key_slot(f"{cache.namespace}{key}".encode()) for key in keys})


def _assert_per_node(sent: list[int], ports: list[int], most: int) -> None:
    """Every node got at most ``most`` round trips, and the busiest exactly that many."""
    per_node = Counter(sent)
    assert set(per_node) == set(ports), per_node
    assert max(per_node.values()) == most, per_node


@pytest.mark.parametrize("name", list(ASYNC_BATCHES))
def test_async_batches_are_one_round_trip_per_node_per_pipeline(
    cluster_cache: RedisCache,
    redis_cluster: RedisClusterServers,
    async_sends: list[int],
    name: str,
) -> None:
    shell = cluster_cache.aio()
    ports = sorted(node.port for node in redis_cluster.nodes)

    async def scenario() -> list[int]:
        # Warm: topology known, every script loaded on every primary.
        await shell.put_many(ITEMS, time_span=600)
        await shell.put_many({f"idle{i}": i for i in range(300)}, idle_time=600)
        await shell.get_many([f"idle{i}" for i in range(300)])
        await shell.delete_many([f"absent{i}" for i in range(300)])  # on every primary
        await shell.put_many(ITEMS)
        async_sends.clear()
        await ASYNC_BATCHES[name](shell)
        sent = list(async_sends)
        await shell.close()
        return sent

    sent = _arun(scenario())
    trips = 2 if name == "get_many idle" else 1  # MGET, then the slides: as sync
    # One command per hash slot; the loop sends them in pipelines of LOOP_CLUSTER_COMMANDS
    # (redis-py routes and reads a pipeline in one callback each), one after the other:
    # at most one round trip per node for each (a short last one may miss a node).
    # The slots of the batch's own keys (the idle ones are other keys: counting ITEMS'
    # slots failed when the random namespace put the two sets in different pipelines).
    keys = [f"idle{i}" for i in range(300)] if name == "get_many idle" else list(ITEMS)
    pipelines = -(-_slots(cluster_cache, keys) // LOOP_CLUSTER_COMMANDS)
    _assert_per_node(sent, ports, trips * pipelines)


def test_async_hit_write_back_is_one_round_trip_per_node_per_pipeline(
    redis_cluster: RedisClusterServers, async_sends: list[int]
) -> None:
    cache = RedisCache(
        host=redis_cluster.host,
        port=redis_cluster.port,
        cluster=True,
        namespace=f"h{uuid.uuid4().hex[:8]}:",
        hitCounts=True,
        hitFlushInterval=0,
    )
    shell = cache.aio()

    async def scenario() -> tuple[list[int], int, int]:
        await shell.put_many(ITEMS)
        await shell.get_many(list(ITEMS))
        await cache.aflush_hits()  # warm: RECORD_READS loaded everywhere
        await shell.get_many(list(ITEMS))
        async_sends.clear()
        flushed = await cache.aflush_hits()
        sent = list(async_sends)
        hits = (await shell.metadata("k7")).hit_count
        await shell.clear()
        await shell.close()
        return sent, flushed, hits

    try:
        sent, flushed, hits = _arun(scenario())
    finally:
        cache.close()
    assert flushed == 300
    pipelines = -(-_slots(cache, ITEMS) // LOOP_CLUSTER_COMMANDS)
    _assert_per_node(sent, [node.port for node in redis_cluster.nodes], pipelines)
    assert hits == 2


def test_async_batch_survives_a_script_flush(
    cluster_cache: RedisCache, redis_cluster: RedisClusterServers
) -> None:
    shell = cluster_cache.aio()

    async def scenario() -> tuple[int, int]:
        await shell.put_many(ITEMS, time_span=600)
        for node in redis_cluster.nodes:  # every primary forgets every script
            client = node.client()
            client.script_flush()
            client.close()
        deleted = await shell.delete_many(list(ITEMS))
        count = await shell.count()
        await shell.close()
        return deleted, count

    assert _arun(scenario()) == (300, 0)


@pytest.fixture
def one_connection_cache(
    redis_cluster: RedisClusterServers,
) -> Iterator[Callable[[float], RedisCache]]:
    """Makes caches on the test cluster with one connection per node (``maxConnections``
    1) and the given ``socketTimeout``, each on a namespace of its own; closed at the end."""
    made: list[RedisCache] = []

    def make(socket_timeout: float) -> RedisCache:
        cache = RedisCache(
            host=redis_cluster.host,
            port=redis_cluster.port,
            cluster=True,
            namespace=f"o{uuid.uuid4().hex[:8]}:",
            maxConnections=1,
            socketTimeout=socket_timeout,
        )
        made.append(cache)
        return cache

    yield make
    for cache in made:
        cache.close()


def test_async_cluster_requests_wait_for_a_free_connection(
    one_connection_cache: Callable[[float], RedisCache],
) -> None:
    cache = one_connection_cache(0.5)
    shell = cache.aio()

    async def scenario() -> tuple[list[Any], type[BaseException] | None, str]:
        await shell.put_many(ITEMS)
        # 60 tasks on one connection per node: the extra ones wait their turn.
        got: list[Any] = list(await asyncio.gather(*(shell.get(f"k{i}") for i in range(60))))
        got.append(await shell.get_many(list(ITEMS)) == ITEMS)
        # Hold the only permit: a request now waits socketTimeout, then a typed error.
        client = await cache._aconnection()
        assert isinstance(client, WaitingCluster)
        held, release = asyncio.Event(), asyncio.Event()

        async def hold() -> None:
            async with client.permit():
                held.set()
                await release.wait()

        holder = asyncio.ensure_future(hold())
        await held.wait()
        error: type[BaseException] | None = None
        message = ""
        try:
            await shell.get("k1")
        except CacheError as exc:
            error, message = type(exc), str(exc)
        release.set()
        await holder
        got.append(await shell.get("k1"))  # the permit is back: works again
        await shell.clear()
        await shell.close()
        return got, error, message

    got, error, message = _arun(scenario())
    assert got == [*range(60), True, 1]
    assert error is CacheUnavailableError
    assert "exhausted" in message
    assert "busy for 0.5 s" in message


@pytest.mark.parametrize(
    "request_",
    [
        pytest.param(lambda a: a.get_many(list(ITEMS)), id="get_many"),
        pytest.param(lambda a: a.put_many(ITEMS, time_span=600), id="put_many-script"),
        pytest.param(lambda a: a.get("k1"), id="get"),
        pytest.param(lambda a: a.count("k1*"), id="count-scan"),
    ],
)
def test_async_cluster_requests_cancelled_mid_reply_leave_every_connection_usable(
    redis_cluster: RedisClusterServers,
    one_connection_cache: Callable[[float], RedisCache],
    async_sends: list[int],
    request_: Callable[[Any], Coroutine[Any, Any, Any]],
) -> None:
    # A request cancelled while its replies are awaited (a timeout around it): redis-py
    # 5.0's cluster node dropped such a connection without handing it back to its free
    # list, so with one connection per node every later request to that node failed as
    # "pool exhausted", for good (the permits cannot help). Each node is paused (CLIENT
    # PAUSE) while the request is in flight, so the cancel lands in the read.
    shell = one_connection_cache(5).aio()
    admins = [node.client() for node in redis_cluster.nodes]

    async def scenario() -> tuple[int, dict[str, Any], Any]:
        await shell.put_many(ITEMS, time_span=600)  # every node connected, scripts loaded
        cancelled = 0
        for _ in range(2):
            # Every node answers nothing for a second (the pause ends by itself: CLIENT
            # PAUSE ALL holds an UNPAUSE too), far longer than the few ms to the cancel.
            for admin in admins:
                admin.execute_command("CLIENT", "PAUSE", 1000, "ALL")
            async_sends.clear()
            task = asyncio.ensure_future(request_(shell))
            for _ in range(1000):  # until the request is on the wire (bounded)
                if async_sends:
                    break
                await asyncio.sleep(0.001)
            await asyncio.sleep(0.01)  # the other nodes' parts too: all wait on a reply
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                cancelled += 1
        found = await shell.get_many(list(ITEMS))  # every node, every reply its own
        one = await shell.get("k7")
        await shell.clear()
        await shell.close()
        return cancelled, found, one

    try:
        cancelled, found, one = _arun(scenario())
    finally:
        for admin in admins:
            admin.close()
    assert cancelled == 2
    assert found == ITEMS
    assert one == 7


def test_a_cluster_request_cancelled_before_its_first_step_gives_its_permit_back() -> None:
    # The loop shutting down (asyncio.run cancelling every task left) cancels a request's
    # own task before its first step: its coroutine never ran, so a permit handed back in
    # its ``finally`` was lost for good (2 permits left 1). No server: the request never
    # reaches the client, whose constructor does not connect.
    client = WaitingCluster(host="127.0.0.1", port=1, max_connections=2, wait_timeout=1)
    sent: list[str] = []

    async def send() -> str:
        sent.append("sent")
        return "answer"

    async def scenario() -> tuple[int, list[bool]]:
        outer = asyncio.ensure_future(client.request(send))
        await asyncio.sleep(0)  # outer took a permit and made the request's task
        pending = asyncio.all_tasks() - {asyncio.current_task()}
        assert outer in pending
        assert len(pending) == 2  # and the request's own task, not yet started
        for task in pending:  # as asyncio.run does with the tasks left at its end
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await asyncio.sleep(0)  # done callbacks have run
        return client._permits._value, [task.cancelled() for task in pending]

    assert asyncio.run(scenario()) == (2, [True, True])  # nothing in it can wait
    assert sent == []
