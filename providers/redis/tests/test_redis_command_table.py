"""The async cluster client's command table is read off the event loop (commandtable.py).

Counted, not timed: which thread asks the server for ``COMMAND``, how often, and that the
commands that need the table (keys of MGET, EVAL, SET... to route by slot) still reach the
right node - on the installed redis-py and on 5.0.0 (``nox -s oldest``).
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from cachehub_redis import RedisCache, commandtable
from cachehub_redis.server import RedisClusterServers
from redis import Redis
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from cachehub.errors import CacheUnavailableError
from cachehub.testing.asyncshell import CPU_PER_CALLBACK, LoopThread

T = TypeVar("T")


def _arun(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run``, bounded: a hang fails the test."""
    return asyncio.run(asyncio.wait_for(coro, 60))


async def _aclose(client: Any) -> None:
    # aclose() on redis-py 5.0.1+, close() on 5.0.0.
    await (client.aclose() if hasattr(client, "aclose") else client.close())


class Sent:
    """Every ``COMMAND`` request: by the async cluster nodes (on the loop) and by sync
    clients (the worker thread's reader), with the thread that sent it."""

    def __init__(self) -> None:
        self.on_loop: list[int] = []
        self.by_sync: list[int] = []


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sent]:
    commandtable.clear_tables()  # every test starts with no table kept
    seen = Sent()
    node_execute = ClusterNode.execute_command
    sync_execute = Redis.execute_command

    async def node_counting(self: ClusterNode, *args: Any, **kwargs: Any) -> Any:
        if args[:1] == ("COMMAND",):
            seen.on_loop.append(threading.get_ident())
        return await node_execute(self, *args, **kwargs)

    def sync_counting(self: Redis, *args: Any, **kwargs: Any) -> Any:
        if args[:1] == ("COMMAND",):
            seen.by_sync.append(threading.get_ident())
        return sync_execute(self, *args, **kwargs)

    monkeypatch.setattr(ClusterNode, "execute_command", node_counting)
    monkeypatch.setattr(Redis, "execute_command", sync_counting)
    yield seen
    commandtable.clear_tables()


def _table_of(redis_cluster: RedisClusterServers) -> dict[str, Any]:
    """The table as redis.asyncio reads it the plain way (on a loop of its own)."""

    async def read() -> dict[str, Any]:
        client = AsyncRedisCluster(host=redis_cluster.host, port=redis_cluster.port)
        try:
            await client.initialize()
            return dict(client.commands_parser.commands)
        finally:
            await _aclose(client)

    return _arun(read())


async def _routes(client: Any, tag: str) -> list[Any]:
    """Commands whose keys the table locates, over every node: MGET in one slot, SET/GET
    and EVAL on keys of many slots, DEL of several keys."""
    keys = [f"{tag}:{i}" for i in range(30)]  # over all three primaries
    for i, key in enumerate(keys):
        await client.set(key, i)
    got = [await client.get(key) for key in keys]
    script = "return redis.call('GET', KEYS[1])"
    evals = [await client.eval(script, 1, key) for key in keys]
    same_slot = [f"{{{tag}}}:a", f"{{{tag}}}:b"]
    await client.set(same_slot[0], "x")
    await client.set(same_slot[1], "y")
    many = await client.mget(same_slot)
    deleted = sum([await client.delete(key) for key in keys + same_slot])
    return [got, evals, many, deleted]


def _expected() -> list[Any]:
    values = [str(i).encode() for i in range(30)]
    return [values, values, [b"x", b"y"], 32]


def test_the_table_is_read_off_the_loop_once_per_server(
    cluster_cache: RedisCache, redis_cluster: RedisClusterServers, sent: Sent
) -> None:
    plain = _table_of(redis_cluster)
    assert len(sent.on_loop) == 1  # the plain client asks on its loop: the finding
    sent.on_loop.clear()

    async def scenario() -> tuple[int, dict[str, Any], list[Any]]:
        client = await cache_client(cluster_cache)
        routed = await _routes(client, uuid.uuid4().hex)
        table = dict(client.commands_parser.commands)
        await cluster_cache.aio().close()
        return threading.get_ident(), table, routed

    loop_thread, table, routed = _arun(scenario())
    assert sent.on_loop == []
    assert len(sent.by_sync) == 1
    assert sent.by_sync[0] != loop_thread
    assert table == plain  # the same table, so the same routing
    assert routed == _expected()
    # A second loop (a second client) of the process: the table kept, nothing read.
    _, table, routed = _arun(scenario())
    assert sent.on_loop == []
    assert len(sent.by_sync) == 1
    assert table == plain
    assert routed == _expected()


async def cache_client(cache: RedisCache) -> Any:
    """The running loop's async cluster client of ``cache``, initialized."""
    client = await cache._aconnection()
    assert isinstance(client.commands_parser, commandtable.OffLoopCommandsParser)
    await client.initialize()
    return client


def test_key_specs_are_compiled_from_the_same_table(
    cluster_cache: RedisCache, redis_cluster: RedisClusterServers, sent: Sent
) -> None:
    # redis-py 8 compiles the movable-keys commands' key specs (EVAL, ZUNION...) from the
    # table in its own initialize(), which still runs: the result is the plain one's.
    def specs(client: Any) -> Any:
        found = getattr(client.commands_parser, "_movablekeys_specs", None)
        encoder = getattr(client.commands_parser, "_encoder", None)
        return found, encoder is not None

    async def plain() -> Any:
        client = AsyncRedisCluster(host=redis_cluster.host, port=redis_cluster.port)
        await client.initialize()
        result = specs(client)
        await _aclose(client)
        return result

    async def ours() -> Any:
        result = specs(await cache_client(cluster_cache))
        await cluster_cache.aio().close()
        return result

    assert _arun(ours()) == _arun(plain())
    assert len(sent.on_loop) == 1  # the plain client's only


def test_no_callback_of_a_new_cluster_client_computes_past_the_limit(
    cluster_cache: RedisCache, sent: Sent
) -> None:
    # The detector's own verdict: the first command (topology + table) blocks nothing.
    loop = LoopThread(CPU_PER_CALLBACK)
    try:
        for _ in range(2):  # the table read, then the table kept
            loop.run(cluster_cache.aio().put("k", "v"))
            assert loop.run(cluster_cache.aio().get("k")) == "v"
            loop.run(cluster_cache.aio().close())
    finally:
        loop.close()
    loop.check()
    assert sent.on_loop == []
    assert len(sent.by_sync) == 1


def test_a_changed_server_is_read_again(
    redis_cluster: RedisClusterServers, sent: Sent, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = redis_cluster.nodes[0]

    def open_node(host: str, port: int) -> Redis:
        return Redis(host=host, port=port, socket_timeout=5)

    first = commandtable.read_table(open_node, node.host, node.port, fresh=False)
    assert commandtable.read_table(open_node, node.host, node.port, fresh=False) == first
    assert len(sent.by_sync) == 1  # kept
    assert commandtable.read_table(open_node, node.host, node.port, fresh=True) == first
    assert len(sent.by_sync) == 2  # redis-py met an unknown command: read again

    real_info = Redis.info
    run_ids = iter(["restarted-" + uuid.uuid4().hex, "", "", None])

    def info(self: Redis, section: Any = None, *args: Any, **kwargs: Any) -> Any:
        reply = dict(real_info(self, section, *args, **kwargs))
        reply["run_id"] = next(run_ids)  # a restart, then a server that hides its run id
        return reply

    monkeypatch.setattr(Redis, "info", info)
    for _ in range(4):
        assert commandtable.read_table(open_node, node.host, node.port, fresh=False) == first
    assert len(sent.by_sync) == 6  # the restarted server once, the anonymous one each time


def test_each_caller_gets_its_own_copy(redis_cluster: RedisClusterServers, sent: Sent) -> None:
    node = redis_cluster.nodes[0]

    def open_node(host: str, port: int) -> Redis:
        return Redis(host=host, port=port, socket_timeout=5)

    table = commandtable.read_table(open_node, node.host, node.port, fresh=False)
    table["get"]["flags"].append("tampered")
    table.pop("set")
    again = commandtable.read_table(open_node, node.host, node.port, fresh=False)
    assert "tampered" not in again["get"]["flags"]
    assert "set" in again
    assert len(sent.by_sync) == 1


class _FakeNode:
    """A server that answers INFO with a new run id each time (hostile, or many servers)."""

    def __init__(self) -> None:
        self.closed = 0

    def info(self, section: str) -> dict[str, Any]:
        return {"run_id": uuid.uuid4().hex, "redis_version": "7.2.0"}

    def execute_command(self, *args: Any) -> dict[str, Any]:
        return {"get": {"name": "get"}}

    def close(self) -> None:
        self.closed += 1


def test_the_kept_tables_are_bounded() -> None:
    commandtable.clear_tables()
    fake = _FakeNode()

    def open_node(host: str, port: int) -> Any:
        return fake

    try:
        for port in range(3 * commandtable.MAX_TABLES):
            commandtable.read_table(open_node, "127.0.0.1", port, fresh=False)
        assert len(commandtable._tables) == commandtable.MAX_TABLES
        assert fake.closed == 3 * commandtable.MAX_TABLES  # every reader closed
    finally:
        commandtable.clear_tables()


def test_an_unknown_command_reads_the_table_again_off_the_loop(
    cluster_cache: RedisCache, sent: Sent
) -> None:
    async def scenario() -> str:
        client = await cache_client(cluster_cache)
        try:
            await client.commands_parser.get_keys("NOSUCHCOMMAND", "k")
        except RedisError as exc:
            return str(exc)
        finally:
            await cluster_cache.aio().close()
        return "no error"

    assert "NOSUCHCOMMAND" in _arun(scenario())
    assert sent.on_loop == []
    assert len(sent.by_sync) == 2  # the first read, then a fresh one


# ------------------------------------------------------------------ fallbacks


def test_an_unknown_parser_is_left_alone(
    cluster_cache: RedisCache, sent: Sent, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A redis-py whose cluster client has another parser than the one known here (or
    # none): the client keeps its own and reads the table the plain way, and works.
    class Other:
        pass

    monkeypatch.setattr(commandtable, "PARSER_CLASS", Other)

    async def scenario() -> tuple[str, list[Any]]:
        client = await cluster_cache._aconnection()
        kind = type(client.commands_parser).__name__
        routed = await _routes(client, uuid.uuid4().hex)
        await cluster_cache.aio().close()
        return kind, routed

    assert _arun(scenario()) == ("AsyncCommandsParser", _expected())
    assert len(sent.on_loop) == 1
    assert sent.by_sync == []
    assert not commandtable.offload_command_table(object(), lambda h, p: Redis())


def test_a_reader_that_fails_unexpectedly_falls_back_to_the_plain_read(
    cluster_cache: RedisCache, sent: Sent, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A future redis-py whose sync client takes other options: not a crash, the plain way.
    def broken(open_node: Any, host: str, port: int, fresh: bool) -> dict[str, Any]:
        raise TypeError("Redis.__init__() got an unexpected keyword argument")

    monkeypatch.setattr(commandtable, "read_table", broken)

    async def scenario() -> list[Any]:
        client = await cache_client(cluster_cache)
        routed = await _routes(client, uuid.uuid4().hex)
        await cluster_cache.aio().close()
        return routed

    assert _arun(scenario()) == _expected()
    assert len(sent.on_loop) == 1
    assert sent.by_sync == []


def test_a_redis_error_of_the_reader_is_the_caches_typed_error(
    redis_cluster: RedisClusterServers, sent: Sent, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server refused the reader: the same failure as the plain read, reported as one.
    def refused(open_node: Any, host: str, port: int, fresh: bool) -> dict[str, Any]:
        raise RedisConnectionError(f"Error 111 connecting to {host}:{port}. Connection refused.")

    monkeypatch.setattr(commandtable, "read_table", refused)
    cache = RedisCache(
        host=redis_cluster.host, port=redis_cluster.port, cluster=True, onError="raise"
    )

    async def scenario() -> None:
        try:
            await cache.aio().get("k")
        finally:
            await cache.aio().close()

    try:
        with pytest.raises(CacheUnavailableError, match="refused"):
            _arun(scenario())
    finally:
        cache.close()
    assert sent.on_loop == []
