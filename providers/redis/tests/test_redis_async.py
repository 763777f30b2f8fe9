"""The Redis provider's async path: request budgets on the wire, loops, threads, outages.

The async conformance suite (test_redis_conformance.py) proves the semantics; these cases
count what goes over the wire and abuse the per-loop clients.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, Final, TypeVar

import pytest
import redis
from cachehub_redis import RedisCache
from cachehub_redis.dispatch import LOOP_MAX_KEYS, MAX_KEYS, pipelines
from cachehub_redis.entry import HEADER, KIND_CODEC, MAGIC
from cachehub_redis.server import RedisServer
from redis.asyncio.connection import AbstractConnection

from cachehub.errors import CacheUnavailableError
from cachehub.testing.asyncshell import closed_loop_leftovers, first_imports

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run``, bounded: a hang fails the test."""
    return asyncio.run(asyncio.wait_for(coro, 60))


class Packets:
    """Counts every packet of commands redis.asyncio writes: one write = one round trip."""

    def __init__(self) -> None:
        self.count = 0


@pytest.fixture
def packets(monkeypatch: pytest.MonkeyPatch) -> Packets:
    counter = Packets()
    original = AbstractConnection.send_packed_command

    async def counting(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        counter.count += 1
        await original(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    return counter


@pytest.fixture
def make_cache(redis_server: RedisServer) -> Iterator[Callable[..., RedisCache]]:
    made: list[RedisCache] = []
    namespace = f"a{uuid.uuid4().hex[:10]}:"

    def make(**kwargs: Any) -> RedisCache:
        kwargs.setdefault("namespace", namespace)
        cache = RedisCache(url=redis_server.url, **kwargs)
        made.append(cache)
        return cache

    yield make
    cleaner = RedisCache(url=redis_server.url, namespace=namespace)
    cleaner.clear(include_internal=True)
    cleaner.close()
    for cache in made:
        cache.close()


OPERATIONS: dict[str, tuple[int, Callable[[Any], Coroutine[Any, Any, Any]]]] = {
    # name: (round trips, the awaited operation), as the sync provider's budgets up to
    # a few hundred keys
    "get": (1, lambda a: a.get("k")),
    "get missing": (1, lambda a: a.get("absent")),
    "get idle": (2, lambda a: a.get("idle")),  # GET, then the new deadline
    "put": (1, lambda a: a.put("k", {"a": [1, 2]}, time_span=60)),
    "add": (1, lambda a: a.add("new", "v", idle_time=30)),
    "incr": (1, lambda a: a.incr("counter", 5)),
    "delete": (1, lambda a: a.delete("k")),
    "touch": (1, lambda a: a.touch("k", time_span=10)),
    "exists": (1, lambda a: a.exists("k")),
    "metadata": (1, lambda a: a.metadata("k")),
    "get_many 200": (1, lambda a: a.get_many([f"m{i}" for i in range(200)])),
    # 1,000 keys: ten READ_MANY calls of LOOP_MAX_KEYS, two pipelines of LOOP_PIPELINE_ARGS on the
    # loop (one round trip in sync): a huge batch's packing is cut, at one round trip more.
    "get_many 1000": (2, lambda a: a.get_many([f"m{i}" for i in range(1000)])),
    "put_many": (1, lambda a: a.put_many({f"m{i}": i for i in range(100)})),
    "put_many ttl": (1, lambda a: a.put_many({f"m{i}": i for i in range(100)}, time_span=60)),
    "delete_many": (1, lambda a: a.delete_many([f"m{i}" for i in range(100)])),
}


@pytest.mark.parametrize("name", list(OPERATIONS))
def test_async_operations_keep_the_sync_request_budget(
    make_cache: Callable[..., RedisCache], packets: Packets, name: str
) -> None:
    budget, operation = OPERATIONS[name]
    shell = make_cache(hitFlushInterval=0).aio()

    async def scenario() -> int:
        # Warm: connect, load every script this case may use.
        await shell.put("k", "value", time_span=60)
        await shell.put("idle", "value", idle_time=60)
        await shell.get("idle")
        await shell.add("warm", 1)
        await shell.incr("warm")
        await shell.touch("warm", time_span=60)
        await shell.metadata("warm")
        await shell.delete("warm")
        await shell.put_many({"w": 1}, time_span=60)
        await shell.get_many(["w"])  # READ_MANY: alone on a fresh server it cost a NOSCRIPT
        await shell.delete_many(["w"])
        before = packets.count
        await operation(shell)
        trips = packets.count - before
        await shell.close()
        return trips

    assert run(scenario()) == budget, name


def test_count_and_keys_page_inside_the_server(
    make_cache: Callable[..., RedisCache], packets: Packets, plain: redis.Redis
) -> None:
    shell = make_cache().aio()

    async def scenario() -> tuple[int, int, int, int]:
        await shell.put_many({f"k{i}": i for i in range(2500)})
        await shell.count()  # warm: SCAN_PAGE loaded
        stored = plain.dbsize()  # the server is shared: other tests' keys are scanned too
        before = packets.count
        total = await shell.count()
        trips = packets.count - before
        keys = [k async for k in shell.keys()]  # noqa: SIM118 - an async iterator
        await shell.close()
        return total, trips, len(keys), stored

    total, trips, keys, stored = run(scenario())
    assert (total, keys) == (2500, 2500)
    # One SCAN_PAGE call per page of 1000 keys of the whole database, never one per key
    # (a fixed bound failed when this worker's earlier tests had left enough keys).
    assert trips <= stored // 1000 + 2


def test_a_new_loop_gets_a_new_client(make_cache: Callable[..., RedisCache]) -> None:
    cache = make_cache()
    shell = cache.aio()
    clients: list[Any] = []

    async def use(value: int) -> Any:
        await shell.put("k", value)
        clients.append(await cache._aconnection())
        return await shell.get("k")

    assert run(use(1)) == 1  # this loop is closed afterwards, without aio().close()
    assert run(use(2)) == 2  # a new loop: a new client, never the dead loop's
    assert clients[0] is not clients[1]


def test_close_releases_the_loops_client_and_reconnects_lazily(
    make_cache: Callable[..., RedisCache],
) -> None:
    cache = make_cache()
    shell = cache.aio()

    async def scenario() -> tuple[bool, Any]:
        await shell.put("k", 1)
        first = await cache._aconnection()
        await shell.close()
        value = await shell.get("k")  # reconnects
        return first is not await cache._aconnection(), value

    assert run(scenario()) == (True, 1)


def test_two_loops_in_two_threads(make_cache: Callable[..., RedisCache]) -> None:
    cache = make_cache()
    shell = cache.aio()
    errors: list[BaseException] = []

    def worker() -> None:
        async def count() -> None:
            await asyncio.gather(*(shell.incr("n") for _ in range(100)))
            await shell.close()

        try:
            run(count())
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert not errors
    assert cache.get("n") == 300


@pytest.mark.parametrize("on_error", ["miss", "raise"])
def test_outage_in_the_middle_of_async_for(
    require_redis: None, on_error: str, caplog: pytest.LogCaptureFixture
) -> None:
    with RedisServer() as server:
        cache = RedisCache(url=server.url, retries=0, onError=on_error)
        shell = cache.aio()

        async def scenario() -> list[str]:
            await shell.put_many({f"k{i}": i for i in range(3000)})  # several SCAN pages
            seen: list[str] = []
            async for key in shell.keys():
                seen.append(key)
                if len(seen) == 10:
                    server.stop()  # the next SCAN page finds no server
            return seen

        try:
            if on_error == "raise":
                with pytest.raises(CacheUnavailableError):
                    run(scenario())
            else:
                with caplog.at_level(logging.WARNING):
                    seen = run(scenario())
                assert 10 <= len(seen) < 3000  # ended early, without an exception
                assert any("unavailable" in r.getMessage() for r in caplog.records)
        finally:
            cache.close()


def test_cancelled_get_leaves_the_client_usable(make_cache: Callable[..., RedisCache]) -> None:
    shell = make_cache().aio()

    async def scenario() -> Any:
        await shell.put("k", "v")
        tasks = [asyncio.ensure_future(shell.get("k")) for _ in range(50)]
        await asyncio.sleep(0)
        for task in tasks[::2]:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        value = await shell.get("k")  # no reply of a cancelled request is read as this one
        await shell.close()
        return value

    assert run(scenario()) == "v"


def test_clearing_the_internal_space_walks_every_scan_batch(
    make_cache: Callable[..., RedisCache], redis_server: RedisServer
) -> None:
    """More internal keys than one SCAN batch: every one is removed, in bounded batches."""
    cache = make_cache()
    raw = redis.Redis.from_url(str(redis_server.url))
    prefix = cache.namespace.encode() + b"\xff"
    with raw.pipeline(transaction=False) as pipe:
        for i in range(2100):  # two full SCAN batches of 1000 and a partial one
            pipe.hset(prefix + b"lock:%d" % i, mapping={"t": "planted"})
        pipe.execute()
    other = b"zz" + prefix + b"lock:0"  # another namespace's shape: left alone
    raw.hset(other, mapping={"t": "planted"})
    shell = cache.aio()

    async def scenario() -> None:
        await shell.put("k", 1)
        await shell.clear(include_internal=True)
        await shell.close()

    try:
        run(scenario())
        assert list(raw.scan_iter(match=prefix + b"*", count=1000)) == []
        assert raw.exists(other) == 1
    finally:
        raw.delete(other)
        raw.close()


def _frames_of(shell: Any, operation: Callable[[Any], Coroutine[Any, Any, Any]]) -> list[str]:
    """The functions of cachehub and this provider one awaited operation runs, one entry
    per frame (a coroutine resumed after a wait is the same frame: counted once), after a
    warm-up of the same operation connected the loop's client."""
    import cachehub_redis

    import cachehub

    ours = tuple(os.path.dirname(m.__file__ or "") + os.sep for m in (cachehub, cachehub_redis))
    # The test kit is not the shell: the loop detector (cachehub.testing.asyncshell), once
    # another test in this worker installed it, wraps every callback of every loop.
    kit = os.path.join(os.path.dirname(cachehub.__file__ or ""), "testing") + os.sep
    frames: dict[int, tuple[Any, str]] = {}  # id -> (the frame, kept alive: ids stay unique)

    def profile(frame: Any, event: str, _arg: Any) -> None:
        name = frame.f_code.co_filename
        if event == "call" and name.startswith(ours) and not name.startswith(kit):
            frames.setdefault(id(frame), (frame, frame.f_code.co_name))

    async def scenario() -> None:
        await operation(shell)  # warm: the client, the connection, the scripts
        sys.setprofile(profile)
        try:
            await operation(shell)
        finally:
            sys.setprofile(None)
        await shell.close()

    run(scenario())
    return [name for _, name in frames.values()]


# The async shell's work around the one request of a plain get / put: its frames, counted
# (never timed). The hot path is the sync shell's: no _run / _aget_checked / _sk frames
# and no flow (generator + driver) for a plain entry. The CancelWatch around the request
# (made, checked) is two plain calls, no coroutine; so is holding the client (a Lease,
# which a close() in another task waits for).
WATCH_FRAMES = ["__init__", "check"]
LEASE_FRAMES = ["_ajoin", "__enter__", "__exit__"]
PLAIN_GET_FRAMES = ["get", "_sk", "_aget", *WATCH_FRAMES, *LEASE_FRAMES, "_read_common"]
PLAIN_GET_FRAMES += ["common_head"]
PLAIN_GET_FRAMES += ["loads", "due"]
PLAIN_PUT_FRAMES = ["put", "_sk", "_aset", "heavy", "_server_cap", "_set_command", "_blob"]
PLAIN_PUT_FRAMES += ["dumps", "pack"]


def test_a_plain_async_get_runs_no_flow_and_no_extra_frames(
    make_cache: Callable[..., RedisCache],
) -> None:
    cache = make_cache()
    cache.put("plain", {"a": [1, 2]})
    frames = _frames_of(cache.aio(), lambda a: a.get("plain"))
    assert sorted(frames) == sorted(PLAIN_GET_FRAMES)
    miss = _frames_of(cache.aio(), lambda a: a.get("absent"))
    assert "_adrive" not in miss
    assert "_read_flow" not in miss
    assert "_got_miss" in miss


def test_an_idle_async_get_still_slides_through_the_shared_flow(
    make_cache: Callable[..., RedisCache],
) -> None:
    """The counter-case: an entry the fast path does not read goes through the flow both
    shells share (the idle entry's deadline moves on the server: a second request)."""
    cache = make_cache()
    cache.put("idle", "v", idle_time=60)
    frames = _frames_of(cache.aio(), lambda a: a.get("idle"))
    assert {"_read_common", "_adrive", "_read_flow", "_slide_flow"} <= set(frames)


def test_a_plain_async_put_runs_no_extra_frames(make_cache: Callable[..., RedisCache]) -> None:
    shell = make_cache().aio()
    frames = _frames_of(shell, lambda a: a.put("k", {"a": [1, 2]}))
    around = ("_acommand", *WATCH_FRAMES, *LEASE_FRAMES, "deadline", "forget", "due")
    counted = [f for f in frames if f not in around]
    assert sorted(counted) == sorted(PLAIN_PUT_FRAMES)
    assert frames.count("_acommand") == 1
    assert "_run" not in frames


def test_an_observed_async_get_reports_through_the_shared_operation(
    make_cache: Callable[..., RedisCache],
) -> None:
    """With an observer the async get takes the shared skeleton (_run, _Operation): one
    event per get, as the sync shell reports."""
    events: list[Any] = []
    cache = make_cache(observer=events.append)
    cache.put("k", 1)
    events.clear()
    frames = _frames_of(cache.aio(), lambda a: a.get("k"))
    assert "_run" in frames
    assert "_aget_checked" in frames
    assert [e.operation for e in events] == ["get", "get"]  # the warm-up and the counted get


_FIRST_CLIENT: Final = """
import asyncio, sys
from cachehub_redis import RedisCache
from cachehub_redis.dispatch import MAX_KEYS
opened = []
sys.addaudithook(lambda event, args: opened.append(str(args[0])) if event == "open" else None)

async def build():
    cache = RedisCache(host="127.0.0.1", port=1)
    await cache._aconnection()  # built on the loop; connects on its first command

asyncio.run(build())
print([path for path in opened if "dist-info" in path or "METADATA" in path])
"""


def test_the_first_async_client_of_a_process_reads_no_file_on_the_loop() -> None:
    # redis-py 8 reads its package metadata when its first client is built; the provider
    # reads it at import instead, so building a client in a loop callback opens no file.
    done = subprocess.run(
        [sys.executable, "-c", _FIRST_CLIENT], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


class ReplyTurns:
    """Which turn of the loop each pipelined reply was parsed in: a ticker task counts the
    turns, and every reply a ``redis.asyncio`` pipeline parses notes the count."""

    def __init__(self) -> None:
        self.ticks = 0
        self.seen: list[int] = []
        self.cancel_after: int | None = None  # cancel the reading task after this reply

    async def tick(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.ticks += 1
            await asyncio.sleep(0)


@pytest.fixture
def reply_turns(monkeypatch: pytest.MonkeyPatch) -> ReplyTurns:
    turns = ReplyTurns()
    original = redis.asyncio.client.Pipeline.parse_response

    async def noting(self: Any, connection: Any, command_name: Any, **options: Any) -> Any:
        reply = await original(self, connection, command_name, **options)
        turns.seen.append(turns.ticks)
        if turns.cancel_after is not None and len(turns.seen) == turns.cancel_after:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()  # delivered at the provider's next await: the yield after it
        return reply

    monkeypatch.setattr(redis.asyncio.client.Pipeline, "parse_response", noting)
    return turns


BIG_BATCH: Final = [f"big{i:05}" for i in range(3 * MAX_KEYS)]
BIG_BATCH_READS: Final = [  # READ_MANY calls: EVALSHA sha numkeys keys... last byte
    ("EVALSHA", "sha", LOOP_MAX_KEYS, *BIG_BATCH[i : i + LOOP_MAX_KEYS], "end")
    for i in range(0, len(BIG_BATCH), LOOP_MAX_KEYS)
]
BIG_BATCH_COMMANDS: Final = len(BIG_BATCH_READS)  # 15 calls, two pipelines


def test_a_big_batch_gives_the_loop_up_between_replies(
    make_cache: Callable[..., RedisCache], packets: Packets, reply_turns: ReplyTurns
) -> None:
    # redis-py parses a whole pipeline's replies in one callback; the provider yields
    # after each, so other tasks run between them, in the same round trips.
    cache = make_cache()
    cache.put_many({key: i for i, key in enumerate(BIG_BATCH)})
    shell = cache.aio()

    async def scenario() -> tuple[dict[str, Any], int]:
        await shell.get("warm")  # connected: the round trip below is the batch alone
        stop = asyncio.Event()
        ticker = asyncio.ensure_future(reply_turns.tick(stop))
        await asyncio.sleep(0)
        before = packets.count
        found = await shell.get_many(BIG_BATCH)
        trips = packets.count - before
        stop.set()
        await ticker
        await shell.close()
        return found, trips

    found, trips = run(scenario())
    assert found == {key: i for i, key in enumerate(BIG_BATCH)}
    assert trips == len(pipelines(BIG_BATCH_READS, False)) == 2
    assert len(reply_turns.seen) == BIG_BATCH_COMMANDS
    # each reply in a turn of its own
    assert len(set(reply_turns.seen)) == BIG_BATCH_COMMANDS, reply_turns.seen


def test_a_batch_cancelled_between_replies_leaves_the_client_usable(
    make_cache: Callable[..., RedisCache], reply_turns: ReplyTurns
) -> None:
    # Cancelled at the yield after its first reply, with its pipeline's other replies
    # unread on the connection: they must never be read as the answer to a later request.
    cache = make_cache()
    cache.put_many({key: i for i, key in enumerate(BIG_BATCH)})
    cache.put_many({"other": "x"})
    shell = cache.aio()

    async def scenario() -> tuple[bool, Any, dict[str, Any]]:
        reply_turns.cancel_after = 1
        batch = asyncio.ensure_future(shell.get_many(BIG_BATCH))
        cancelled = False
        try:
            await batch
        except asyncio.CancelledError:
            cancelled = True
        reply_turns.cancel_after = None
        other = await shell.get("other")
        again = await shell.get_many(BIG_BATCH)
        await shell.close()
        return cancelled, other, again

    cancelled, other, again = run(scenario())
    assert cancelled
    assert other == "x"
    assert again == {key: i for i, key in enumerate(BIG_BATCH)}


def test_the_sync_batch_is_unchanged_by_the_async_yields(
    make_cache: Callable[..., RedisCache],
) -> None:
    # The pause before decoding is a no-op in the sync driver: same result, same client.
    cache = make_cache()
    cache.put_many({key: i for i, key in enumerate(BIG_BATCH)})
    assert cache.get_many([*BIG_BATCH, "absent"]) == {key: i for i, key in enumerate(BIG_BATCH)}


@pytest.mark.parametrize(
    "batch",
    [
        pytest.param(lambda a: a.get_many(BIG_BATCH), id="get_many"),
        pytest.param(lambda a: a.put_many(dict.fromkeys(BIG_BATCH, -1), time_span=60), id="script"),
    ],
)
def test_a_batch_timed_out_while_awaiting_its_replies_answers_no_later_request(
    make_cache: Callable[..., RedisCache],
    redis_server: RedisServer,
    packets: Packets,
    batch: Callable[[Any], Coroutine[Any, Any, Any]],
) -> None:
    # A timeout around a pipelined batch while the server has not answered yet (paused):
    # its three replies arrive later on that connection, and must never be read as the
    # answer to the next request, whichever connection that request borrows.
    cache = make_cache(maxConnections=1)
    cache.put_many({key: i for i, key in enumerate(BIG_BATCH)})
    cache.put_many({"other": "x"})
    shell = cache.aio()
    admin = redis.Redis.from_url(str(redis_server.url))

    async def scenario() -> tuple[int, Any, dict[str, Any]]:
        await shell.get("warm")  # connected: the next packet is the batch
        timed_out = 0
        for _ in range(2):
            # The pause ends by itself (PAUSE ALL holds an UNPAUSE too): far longer than
            # the few ms until the timeout below.
            admin.execute_command("CLIENT", "PAUSE", 1000, "ALL")
            before = packets.count
            task = asyncio.ensure_future(batch(shell))
            for _ in range(1000):  # until the batch is on the wire (bounded)
                if packets.count > before:
                    break
                await asyncio.sleep(0.001)
            try:
                await asyncio.wait_for(task, 0.01)
            except TimeoutError:
                timed_out += 1
        other = await shell.get("other")
        again = await shell.get_many(BIG_BATCH)
        await shell.close()
        return timed_out, other, again

    try:
        timed_out, other, again = run(scenario())
    finally:
        admin.close()
    assert timed_out == 2
    assert other == "x"
    assert set(again) == set(BIG_BATCH)
    assert all(type(value) is int for value in again.values())


# ------------------------------------------------------------------ reply sizes on the loop
# redis-py parses each reply in one callback of the event loop: the async shell sends
# commands of at most LOOP_MAX_KEYS keys (more of them, in the same round trips) and SCAN
# pages of COUNT LOOP_MAX_KEYS, where the sync shell keeps MAX_KEYS and COUNT 1000.


class Sent:
    """Every command the async clients pack, by name with its arguments."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, tuple[Any, ...]]] = []

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [args for cmd, args in self.commands if cmd == name]

    def clear(self) -> None:
        self.commands.clear()


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Sent:
    record = Sent()
    original = AbstractConnection.pack_command

    def packing(self: AbstractConnection, *args: Any) -> Any:
        name = args[0].decode() if isinstance(args[0], bytes) else str(args[0])
        record.commands.append((name.upper(), args[1:]))
        return original(self, *args)

    monkeypatch.setattr(AbstractConnection, "pack_command", packing)
    return record


def _evalsha_keys(args: tuple[Any, ...]) -> int:
    return int(args[1])  # EVALSHA sha numkeys key... arg...


BATCHES: dict[str, tuple[str, Callable[[Any, list[str]], Coroutine[Any, Any, Any]]]] = {
    # name: (the command that carries the keys, the awaited batch over the keys)
    "get_many": ("EVALSHA", lambda a, keys: a.get_many(keys)),  # READ_MANY
    "put_many": ("MSET", lambda a, keys: a.put_many(dict.fromkeys(keys, 1))),
    "put_many ttl": ("EVALSHA", lambda a, keys: a.put_many(dict.fromkeys(keys, 1), time_span=60)),
    "delete_many": ("EVALSHA", lambda a, keys: a.delete_many(keys)),
}


@pytest.mark.parametrize("size", [LOOP_MAX_KEYS, LOOP_MAX_KEYS + 1, 1000, 2 * MAX_KEYS + 3])
@pytest.mark.parametrize("name", list(BATCHES))
def test_an_async_batch_is_commands_of_the_loop_size_in_pipelines_of_the_loop_size(
    make_cache: Callable[..., RedisCache], packets: Packets, sent: Sent, name: str, size: int
) -> None:
    # One round trip per pipeline of at most LOOP_PIPELINE_ARGS arguments: one for a
    # batch of up to a few hundred keys, as in the sync shell; a few for thousands.
    command, batch = BATCHES[name]
    keys = [f"b{i:05}" for i in range(size)]
    shell = make_cache().aio()

    async def scenario() -> int:
        await shell.put_many({"w": 1}, time_span=60)  # connected, scripts loaded
        await shell.delete_many(["w"])
        sent.clear()
        before = packets.count
        await batch(shell, keys)
        trips = packets.count - before
        await shell.close()
        return trips

    trips = run(scenario())
    assert trips == len(pipelines([(name, *args) for name, args in sent.commands], False))
    if size <= 2 * LOOP_MAX_KEYS:
        assert trips == 1  # a batch of up to 200 keys: one pipeline, as before
    wanted = {shell.cache.namespace + key for key in keys}
    calls = sent.named(command)
    # The batch's own keys in each call (a script call may carry a request record too).
    per_call = [sum(1 for arg in args if arg in wanted) for args in calls]
    assert len(calls) == -(-size // LOOP_MAX_KEYS), per_call
    assert sum(per_call) == size
    assert max(per_call) <= LOOP_MAX_KEYS


def test_the_sync_batch_keeps_its_own_size(
    make_cache: Callable[..., RedisCache], plain: redis.Redis
) -> None:
    # The loop's size is the async shell's only: a sync get_many of 1,000 keys is still
    # two READ_MANY calls of 500 (the server's command stats count them).
    cache = make_cache()
    keys = [f"s{i:04}" for i in range(1000)]
    cache.put_many(dict.fromkeys(keys, 1))
    plain.config_resetstat()
    assert len(cache.get_many(keys)) == 1000
    assert plain.info("commandstats")["cmdstat_evalsha"]["calls"] == 2


def test_async_scans_ask_for_pages_of_the_loop_size(
    make_cache: Callable[..., RedisCache], sent: Sent
) -> None:
    cache = make_cache()
    cache.put_many({f"k{i:04}": i for i in range(1000)})
    shell = cache.aio()

    async def scenario() -> tuple[list[str], int, dict[str, Any]]:
        await shell.get("warm")
        sent.clear()
        keys = [k async for k in shell.keys()]  # noqa: SIM118 - an async iterator
        counted = await shell.count("k0*")  # a glob Redis matches exactly: SCAN_PAGE
        found = await shell.get_all("k00*")  # SCAN, SCAN_CHECK, then MGET
        await shell.close()
        return keys, counted, found

    keys, counted, found = run(scenario())
    assert sorted(keys) == [f"k{i:04}" for i in range(1000)]
    assert counted == 1000
    assert found == {f"k{i:04}": i for i in range(100)}
    from cachehub_redis.scripts import SCAN_NAMES, SCAN_PAGE

    # SCAN runs inside a script (SCAN_NAMES: EVALSHA sha 0 cursor match count ...).
    scans = [args for args in sent.named("EVALSHA") if args[0] == SCAN_NAMES.sha]
    assert len(scans) >= 2 * -(-1000 // LOOP_MAX_KEYS)  # every page asked for, twice over
    assert {args[4] for args in scans} == {LOOP_MAX_KEYS}
    checks = [args for args in sent.named("EVALSHA") if _evalsha_keys(args) > 0]
    assert checks
    assert max(_evalsha_keys(args) for args in checks) <= LOOP_MAX_KEYS
    # Counting in the server sends no keys back: its pages stay at 1000 keys.
    assert {args[4] for args in sent.named("EVALSHA") if args[0] == SCAN_PAGE.sha} == {1000}


def test_a_sync_scan_keeps_its_page_size(
    make_cache: Callable[..., RedisCache], monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = make_cache()
    cache.put_many({f"k{i}": i for i in range(300)})
    from cachehub_redis.scripts import SCAN_NAMES

    counts: list[Any] = []
    original = redis.Redis.execute_command

    def execute(self: redis.Redis, *args: Any, **options: Any) -> Any:
        if args[:2] == ("EVALSHA", SCAN_NAMES.sha):  # EVALSHA sha 0 cursor match count ...
            counts.append(args[5])
        return original(self, *args, **options)

    monkeypatch.setattr(redis.Redis, "execute_command", execute)
    assert len(list(cache.keys())) == 300
    assert counts
    assert set(counts) == {1000}


def test_a_loop_per_call_keeps_no_client_of_a_closed_loop(
    make_cache: Callable[..., RedisCache], plain: redis.Redis
) -> None:
    """An application that runs each call on a new loop (``asyncio.run``, asgiref's
    ``async_to_sync``) and never closes the cache: each loop's shutdown closes its
    client (before, it was left to the next loop's first operation, unclosed). On an
    older main each loop's client (its loop, its open connection) was kept for good:
    20 calls, 20."""
    cache = make_cache()
    shell = cache.aio()
    name = f"loop-per-call-{uuid.uuid4().hex[:8]}"

    async def call(i: int) -> Any:
        client = await cache._aconnection()
        await client.client_setname(name)  # its connection, as the server lists it
        return await shell.get(f"k{i}")

    for i in range(20):
        assert asyncio.run(call(i)) is None
    gc.collect()
    assert len(cache._aconns) == 0
    named = [c for c in plain.client_list() if c.get("name") == name]
    assert len(named) <= 2  # the live loop's (and at most one not yet collected)


# redis-py 5.0.0 (the oldest declared) keeps sockets of its own for a loop closed by hand
# (4 on a cluster, 1 and a "loop is closed" warning through Sentinel) that the collector
# closes later; 5.0.1 and every later version measured (5.0.3, 5.0.8, 5.1.0, 5.2.1, 6.0.0,
# 8.2.0) leave none with the same cachehub code.
@pytest.mark.parametrize(
    "where",
    [
        "single",
        pytest.param(
            "cluster",
            marks=pytest.mark.skipif(
                redis.__version__ == "5.0.0", reason="redis-py 5.0.0's own cluster sockets"
            ),
        ),
    ],
)
def test_a_loop_closed_without_its_shutdown_leaves_nothing_open(
    request: pytest.FixtureRequest, where: str
) -> None:
    """An application that runs calls with its own ``loop.run_until_complete(...)`` and
    then ``loop.close()`` (no ``shutdown_asyncgens``, so the cache cannot close the
    loop's client at the loop's end): the next loop's first operation closes what the
    closed loop left. Before, it only dropped the client: its connections stayed open
    until the collector found them (3 loops: 3 sockets on a single server, one per node
    touched in a cluster), which then warned "unclosed Connection", "loop is closed"
    and "unclosed transport" for each."""
    if where == "single":
        cache = request.getfixturevalue("make_cache")()
    else:
        cache = request.getfixturevalue("cluster_cache")
    assert closed_loop_leftovers(cache) == (0, [])  # no fd left open, nothing warned
    assert len(cache._aconns) == len(cache._aguards) == 0


def test_close_releases_what_loops_closed_by_hand_left(
    make_cache: Callable[..., RedisCache],
) -> None:
    """No next loop: the process's last loops ended with ``loop.close()``, then the cache
    is closed. Before, ``close()`` closed the sync client only, and the loops' clients
    stayed (3 sockets) until the collector found them."""
    cache = make_cache()
    assert closed_loop_leftovers(cache, by_close=True) == (0, [])
    assert len(cache._aconns) == len(cache._aguards) == 0


def test_the_first_async_operations_import_nothing_on_the_loop(
    redis_server: RedisServer, plain: redis.Redis
) -> None:
    # A first import in a callback costs milliseconds once per process (a 78 ms
    # teardown callback in one CI run was suspected of one): redis.asyncio and every
    # module the provider's async path needs are imported before the loop needs them.
    # On a namespace of its own: the operations read every entry (get_all) and end in
    # clear(). Without one they read the whole shared server, and failed with a
    # CorruptEntryError whenever test_redis_corrupt_reads had planted its headers in this
    # worker before (and removed every other test's keys). A planted one stands for those.
    other = f"o{uuid.uuid4().hex[:10]}:k"
    planted = HEADER.pack(MAGIC, KIND_CODEC, math.nan, 0.0, 0.0, 0.0, math.nan, math.nan)
    plain.set(other, planted)
    try:
        namespace = f"f{uuid.uuid4().hex[:10]}:"
        setup = (
            "from cachehub_redis import RedisCache\n"
            f"cache = RedisCache(url={redis_server.url!r}, namespace={namespace!r})"
        )
        assert first_imports(setup) == []
        assert plain.get(other) == planted  # clear() kept to its namespace
    finally:
        plain.delete(other)
