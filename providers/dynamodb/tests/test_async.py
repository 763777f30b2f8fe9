"""The native async DynamoDB path (aiobotocore): same results, same requests as sync.

Every async primitive is driven by the same flow as its sync twin (``cachehub_dynamodb.flow``),
so these tests run one script of operations through both shells on the moto server and
compare the answers *and* the requests each operation sent, counted on the wire with a
``before-send`` hook on each client. Each async test runs on a fresh event loop watched
by the async conformance suite's blocking detector (``in_loop``): a wait or a CPU hog in
a callback, a boto3 request or a sleep on the loop fails the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from unittest import mock

import pytest
from cachehub_dynamodb import DynamoDBCache
from cachehub_dynamodb.errors import ForeignEntryError

from cachehub.api import MISSING, Expiry
from cachehub.errors import (
    CacheOutcomeUnknownError,
    CacheThrottledError,
    CacheUnavailableError,
)
from cachehub.filters import compile_filter
from cachehub.provider import Lease
from cachehub.testing.asyncshell import (
    CPU_PER_CALLBACK,
    LoopThread,
    closed_loop_leftovers,
    first_imports,
)
from cachehub.testing.faults import FaultProxy

from .conftest import CREDENTIALS, RequestCounter

T = TypeVar("T")


def _on_a_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _no_sync_io(blocked: list[str]) -> contextlib.ExitStack:
    """Record every blocking boto3 request or ``time.sleep`` made on the event loop's
    thread while a loop runs there (worker threads are free to make them)."""
    stack = contextlib.ExitStack()
    real_call, real_sleep = DynamoDBCache._send_request, time.sleep

    def call(self: DynamoDBCache, operation: str, /, **params: Any) -> Any:
        if _on_a_loop():
            blocked.append(f"boto3 {operation} on the event loop")
        return real_call(self, operation, **params)

    def sleep(seconds: float) -> None:
        if _on_a_loop():
            blocked.append(f"time.sleep({seconds}) on the event loop")
        real_sleep(seconds)

    stack.enter_context(mock.patch.object(DynamoDBCache, "_send_request", call))
    stack.enter_context(mock.patch.object(time, "sleep", sleep))
    return stack


def in_loop(main: Callable[[], Coroutine[Any, Any, T]], *, deadline: float = 60.0) -> T:
    """Run ``main()`` on a new event loop, watched by the async conformance suite's
    blocking detector (:class:`~cachehub.testing.asyncshell.LoopThread`: waits counted,
    CPU per callback limited); fail if anything blocked it, or made a boto3 request or
    slept on the loop."""
    blocked: list[str] = []
    loop = LoopThread(CPU_PER_CALLBACK)
    try:
        with _no_sync_io(blocked):
            return loop.run(main(), deadline)
    finally:
        loop.close()
        assert not blocked, blocked
        loop.check()


@pytest.fixture
def endpoint(process_endpoint: str) -> str:
    """This module's caches talk to moto in its own process (see ``process_endpoint``)."""
    return process_endpoint


async def shut(cache: DynamoDBCache) -> None:
    """Close this loop's async client of ``cache``."""
    await cache._aclose()


async def async_counter(cache: DynamoDBCache) -> RequestCounter:
    """A request counter on this loop's aiobotocore client of ``cache``."""
    await cache._aready()
    return RequestCounter(await cache._aconnection())


# ---------------------------------------------------------------- one script, two shells

_EXPIRY = Expiry()


def _script(cache: DynamoDBCache) -> list[tuple[str, str, tuple[Any, ...]]]:
    """``(label, primitive, args)``: every primitive, on storage keys of ``cache``."""
    sk = cache._sk
    now = cache._clock()
    many = {sk(f"m{i}"): {"i": i} for i in range(100)}
    flt = compile_filter(None, cache.namespace)
    return [
        ("put", "set", (sk("k"), {"v": 1}, _EXPIRY, now)),
        ("get", "get", (sk("k"), now)),
        ("get missing", "get", (sk("absent"), now)),
        ("exists", "exists", (sk("k"), now)),
        ("entry", "get_entry", (sk("k"), now)),
        ("add taken", "add", (sk("k"), "other", _EXPIRY, now)),
        ("add fresh", "add", (sk("n"), 1, _EXPIRY, now)),
        ("incr", "incr", (sk("n"), 2, now)),
        ("incr new", "incr", (sk("new"), -4, now)),
        ("touch", "touch", (sk("n"), Expiry(expires_at=now + 60), now)),
        ("touch missing", "touch", (sk("absent"), Expiry(expires_at=now + 60), now)),
        ("delete_if_equal no", "delete_if_equal", (sk("k"), {"v": 2}, now)),
        ("delete_if_equal", "delete_if_equal", (sk("k"), {"v": 1}, now)),
        ("delete", "delete", (sk("n"), now)),
        ("delete again", "delete", (sk("n"), now)),
        ("put_many", "set_many", (many, _EXPIRY, now)),
        ("get_many", "get_many", (list(many), now)),
        ("get_many missing", "get_many", ([sk("absent"), sk("k")], now)),
        ("count", "count", (flt, now)),
        ("scan", "scan", (flt, now)),
        ("delete_many", "delete_many", (list(many)[:30], now)),
        ("lock", "lock_acquire", ("L", "token-1", 30.0, now)),
        ("lock taken", "lock_acquire", ("L", "token-2", 30.0, now)),
        ("lock again", "lock_acquire", ("L", "token-1", 30.0, now)),
        ("holder", "lock_holder", ("L", now)),
        ("extend", "lock_extend", ("L", "token-1", 60.0, now)),
        ("extend other", "lock_extend", ("L", "token-2", 60.0, now)),
        ("release", "lock_release", ("L", "token-1", now)),
        ("holder none", "lock_holder", ("L", now)),
        ("clear_internal", "clear_internal", (now,)),
        ("clear", "clear", (flt, now)),
        ("count empty", "count", (flt, now)),
    ]


def _comparable(label: str, result: Any, namespace: str) -> Any:
    """``result`` without what differs between the two caches (namespace, clocks)."""
    if label in ("lock", "lock again"):  # fences start from each writer's clock
        return result is not None
    if label == "entry":
        return (result.value, result.hits, result.idle)
    if label == "scan":
        return sorted(k[len(namespace) :] for k in result)
    if isinstance(result, dict):
        return {k[len(namespace) :]: v for k, v in result.items()}
    return result


def _run_sync(cache: DynamoDBCache, counter: RequestCounter) -> list[tuple[str, Any, list[str]]]:
    rows = []
    for label, name, args in _script(cache):
        counter.reset()
        result = getattr(cache, f"_{name}")(*args)
        if name == "scan":
            result = list(result)
        rows.append((label, _comparable(label, result, cache.namespace), list(counter.calls)))
    return rows


async def _run_async(cache: DynamoDBCache) -> list[tuple[str, Any, list[str]]]:
    counter = await async_counter(cache)
    rows = []
    for label, name, args in _script(cache):
        counter.reset()
        if name == "scan":
            result: Any = [k async for k in cache._ascan(*args)]
        else:
            result = await getattr(cache, f"_a{name}")(*args)
        rows.append((label, _comparable(label, result, cache.namespace), list(counter.calls)))
    await shut(cache)
    return rows


@pytest.mark.parametrize("layout", ["cachehub", "lucee"])
def test_async_primitives_answer_and_cost_exactly_as_sync(
    make: Callable[..., DynamoDBCache], layout: str
) -> None:
    sync_cache = make(namespace="SYNC", settings={"itemFormat": layout})
    sync_cache.connect()
    expected = _run_sync(sync_cache, RequestCounter(sync_cache.client))
    async_cache = make(namespace="ASYNC", settings={"itemFormat": layout})
    got = in_loop(lambda: _run_async(async_cache))
    assert [row[0] for row in got] == [row[0] for row in expected]
    for mine, theirs in zip(got, expected, strict=True):
        assert mine == theirs
    costs = {label: calls for label, _, calls in got}
    # The budgets of docs/dynamodb.md, on the wire.
    assert costs["get"] == ["GetItem"]
    assert costs["get_many"] == ["BatchGetItem"]
    assert costs["put"] == (["PutItem"] if layout == "cachehub" else ["UpdateItem"])
    assert costs["incr"] == ["UpdateItem"]
    assert costs["lock"] == ["UpdateItem"]


def test_reads_never_write_and_get_many_is_one_request(
    make: Callable[..., DynamoDBCache],
) -> None:
    cache = make(settings={"hitFlushInterval": 0.000001})

    async def main() -> list[list[str]]:
        counter = await async_counter(cache)
        keys = [cache._sk(f"k{i}") for i in range(100)]
        await cache._aset_many(dict.fromkeys(keys, "v"), _EXPIRY, cache._clock())
        costs = []
        for _ in range(3):
            counter.reset()
            assert await cache._aget(keys[0], cache._clock()) == "v"
            assert await cache._aexists(keys[1], cache._clock()) is True
            assert await cache._aget_many(keys, cache._clock()) == dict.fromkeys(keys, "v")
            costs.append(list(counter.calls))
        await shut(cache)
        return costs

    assert in_loop(main) == [["GetItem", "GetItem", "BatchGetItem"]] * 3
    assert cache.pending_hits() == 0


def test_hit_counts_are_written_back_by_the_async_path(
    make: Callable[..., DynamoDBCache],
) -> None:
    cache = make(settings={"hitCounts": True, "hitFlushInterval": 0})
    key = cache._sk("k")

    async def main() -> tuple[int, list[str]]:
        counter = await async_counter(cache)
        await cache._aset(key, "v", _EXPIRY, cache._clock())
        for _ in range(3):
            await cache._aget(key, cache._clock())
        counter.reset()
        await shut(cache)  # writes the counted reads back, on the loop
        return cache.pending_hits(), list(counter.calls)

    pending, calls = in_loop(main)
    assert (pending, calls) == (0, ["UpdateItem"])
    entry = cache.metadata("k")
    assert entry is not None
    assert entry.hit_count == 3


# ---------------------------------------------------------------- loops


def test_each_event_loop_gets_its_own_client_and_a_closed_loop_is_left_behind(
    make: Callable[..., DynamoDBCache],
) -> None:
    cache = make()
    key = cache._sk("k")
    clients: list[Any] = []

    async def first() -> None:
        await cache._aset(key, 1, _EXPIRY, cache._clock())
        clients.append(await cache._aconnection())

    async def second() -> Any:
        clients.append(await cache._aconnection())
        value = await cache._aget(key, cache._clock())
        await shut(cache)
        return value

    in_loop(first)  # its loop is closed without closing the client
    assert in_loop(second) == 1
    assert clients[0] is not clients[1]
    assert len(cache._aconns) == 0  # the dead loop's client was dropped, the live one closed


def test_a_loop_closed_without_its_shutdown_leaves_nothing_open(
    make: Callable[..., DynamoDBCache],
) -> None:
    """An application that runs calls with its own ``loop.run_until_complete(...)`` and
    then ``loop.close()`` (no ``shutdown_asyncgens``, so the cache cannot close the
    loop's client at the loop's end): the next loop's first operation closes what the
    closed loop left. Before, it only dropped the client: its HTTP connection stayed
    open until the collector found it (3 loops: 3 sockets), and aiohttp then logged
    "Unclosed client session" and "Unclosed connector" at ERROR level for each."""
    cache = make()
    assert closed_loop_leftovers(cache) == (0, [])  # no fd left open, nothing warned
    assert len(cache._aconns) == len(cache._aguards) == 0


def test_many_tasks_share_one_client_per_loop(make: Callable[..., DynamoDBCache]) -> None:
    cache = make()

    async def main() -> int:
        keys = [cache._sk(f"k{i}") for i in range(50)]
        await asyncio.gather(*(cache._aincr(k, 1, cache._clock()) for k in keys))
        got = await asyncio.gather(*(cache._aget(k, cache._clock()) for k in keys))
        assert got == [1] * 50
        clients = len(cache._aconns)
        await shut(cache)
        return clients

    assert in_loop(main) == 1


def _counting_builds(cache: DynamoDBCache, builds: list[int], fail: list[bool]) -> None:
    """Count the async clients ``cache`` builds (each one a client made in a worker
    thread); while ``fail`` holds True, a build fails as an unreachable endpoint would.
    The table is bootstrapped first (in this thread): that is not what is counted."""
    assert cache.key_name
    real = cache._aconnect

    async def counting() -> Any:
        builds.append(1)
        await asyncio.sleep(0.01)  # every other first task arrives while this one builds
        if fail and fail[0]:
            raise CacheUnavailableError("endpoint unreachable (injected)", hint="retry")
        return await real()

    cache._aconnect = counting  # type: ignore[method-assign]


def test_tasks_starting_together_build_one_client(make: Callable[..., DynamoDBCache]) -> None:
    """50 tasks whose first operation on a loop starts at once make one client, not 50:
    the others wait for that build. (On main each made its own in a worker thread and 49
    were thrown away; those racing builds cost the loop's thread 50-110 ms of CPU in one
    callback under load - GIL hand-offs - which the blocking detector caught.)"""
    cache = make()
    builds: list[int] = []
    _counting_builds(cache, builds, [])

    async def main() -> list[Any]:
        keys = [cache._sk(f"k{i}") for i in range(50)]
        got = await asyncio.gather(*(cache._aget(k, cache._clock()) for k in keys))
        clients = [lease.client for lease in cache._aconns.values()]
        await shut(cache)
        return [got, clients]

    got, clients = in_loop(main)
    assert got == [MISSING] * 50
    assert len(builds) == 1
    assert len(clients) == 1
    assert cache._aconnecting == {}


def test_a_cancelled_first_task_does_not_cancel_the_build_the_others_await(
    make: Callable[..., DynamoDBCache],
) -> None:
    cache = make()
    builds: list[int] = []
    _counting_builds(cache, builds, [])

    async def main() -> tuple[list[Any], int]:
        first = asyncio.ensure_future(cache._aconnection())
        others = [asyncio.ensure_future(cache._aconnection()) for _ in range(5)]
        await asyncio.sleep(0)  # every task waits on the one build now
        first.cancel()
        clients = await asyncio.gather(*others)
        with contextlib.suppress(asyncio.CancelledError):
            await first
        again = await cache._aconnection()
        assert again is clients[0]
        kept = len(cache._aconns)
        await shut(cache)
        return clients, kept

    clients, kept = in_loop(main)
    assert len(builds) == 1
    assert all(c is clients[0] for c in clients)
    assert kept == 1


def test_a_failed_build_reaches_every_waiter_and_the_next_operation_retries(
    make: Callable[..., DynamoDBCache],
) -> None:
    cache = make()
    builds: list[int] = []
    fail = [True]
    _counting_builds(cache, builds, fail)

    async def main() -> tuple[list[Any], Any]:
        results = await asyncio.gather(
            *(cache._aconnection() for _ in range(5)), return_exceptions=True
        )
        assert cache._aconnecting == {}  # nothing failed is kept: the next call retries
        fail[0] = False
        client = await cache._aconnection()
        await shut(cache)
        return results, client

    results, client = in_loop(main)
    assert all(isinstance(r, CacheUnavailableError) for r in results), results
    assert client is not None
    assert len(builds) == 2  # one failed build shared by five tasks, then one retry


def test_a_table_known_to_the_process_is_ready_without_a_worker_thread(
    make: Callable[..., DynamoDBCache],
) -> None:
    first = make()
    first.connect()  # this process bootstraps the table once
    cache = make()  # a new cache on it
    hops: list[Any] = []
    real = asyncio.to_thread

    async def counting(func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        hops.append(func)
        return await real(func, *args, **kwargs)

    async def main() -> None:
        with mock.patch.object(asyncio, "to_thread", counting):
            await asyncio.gather(*(cache._aready() for _ in range(20)))

    in_loop(main)
    assert hops == []
    assert cache._key_name == first.key_name
    assert cache._conn is None  # nor a sync client made for it


# ---------------------------------------------------------------- hostile


def test_cancelled_batch_stops_sending_and_leaves_no_state_behind(
    make: Callable[..., DynamoDBCache],
) -> None:
    """A put_many of 200 items cancelled at its third BatchWriteItem: nothing is sent after
    the cancellation, no task keeps running, and every key holds its new value or nothing."""
    cache = make(settings={"hitCounts": True})
    items = {cache._sk(f"k{i}"): i for i in range(200)}

    async def main() -> tuple[int, int, set[str]]:
        counter = await async_counter(cache)
        # reads counted for keys the batch overwrites: the batch forgets them up front
        await cache._aset(cache._sk("k0"), "old", _EXPIRY, cache._clock())
        await cache._aget(cache._sk("k0"), cache._clock())
        before = asyncio.all_tasks()
        batch: asyncio.Task[None] | None = None

        def cancel_at_third(**_: Any) -> None:
            if counter.count("BatchWriteItem") == 3 and batch is not None:
                batch.cancel()

        client = await cache._aconnection()
        client.meta.events.register("before-send.dynamodb", cancel_at_third)
        counter.reset()
        batch = asyncio.ensure_future(cache._aset_many(items, _EXPIRY, cache._clock()))
        with pytest.raises(asyncio.CancelledError):
            await batch
        sent = counter.total
        for _ in range(20):  # a leftover task would send more meanwhile
            await asyncio.sleep(0)
        client.meta.events.unregister("before-send.dynamodb", cancel_at_third)
        others = asyncio.all_tasks() - before
        found = await cache._aget_many(list(items), cache._clock())
        assert all(found[k] == v for k, v in found.items() if k in items)
        await shut(cache)
        return sent, counter.count("BatchWriteItem"), {t.get_name() for t in others}

    sent, writes, others = in_loop(main)
    assert sent == writes == 3
    assert others == set()
    assert cache.pending_hits() == 0


def test_throttling_is_a_typed_error_with_advice(
    injected: Callable[..., Any],
) -> None:
    from .conftest import ErrorInjector

    cache, _, _ = injected(settings={"maxAttempts": 1})
    cache.connect()

    async def main() -> str:
        client = await cache._aconnection()
        injector = _AsyncErrorInjector(client)
        injector.fail("GetItem", "ProvisionedThroughputExceededException")
        try:
            with pytest.raises(CacheThrottledError) as caught:
                await cache._aget(cache._sk("k"), cache._clock())
        finally:
            await shut(cache)
        return str(caught.value)

    assert ErrorInjector  # the sync injector's twin below answers the async client
    message = in_loop(main)
    assert "capacity" in message.lower() or "PAY_PER_REQUEST" in message


class _AsyncErrorInjector:
    """The conftest's ``ErrorInjector`` for an aiobotocore client (its responses are
    awaited, so the fabricated body is read with ``await raw.read()``)."""

    def __init__(self, client: Any) -> None:
        self.rules: dict[str, str] = {}
        client.meta.events.register("before-send.dynamodb", self._answer)

    def fail(self, operation: str, code: str) -> None:
        self.rules[operation] = code

    def _answer(self, request: Any, **_: Any) -> Any:
        import json

        from aiobotocore.awsrequest import AioAWSResponse

        target = request.headers.get("X-Amz-Target", b"")
        operation = (target.decode() if isinstance(target, bytes) else target).rsplit(".", 1)[-1]
        code = self.rules.get(operation)
        if code is None:
            return None
        body = json.dumps(
            {"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": f"injected {code}"}
        ).encode()
        headers = {"x-amzn-RequestId": "test", "Content-Type": "application/x-amz-json-1.0"}
        return AioAWSResponse(request.url, 400, headers, _AsyncRaw(body))


class _AsyncRaw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    async def read(self) -> bytes:
        return self._body


def test_unreachable_endpoint_is_unavailable_and_bounded(
    make: Callable[..., DynamoDBCache],
) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cache = make(settings={"host": f"http://127.0.0.1:{port}", "maxAttempts": 1})
    cache._key_name = "cacheKey"  # no bootstrap: the first request itself must fail

    async def main() -> str:
        try:
            with pytest.raises(CacheUnavailableError) as caught:
                await cache._aget(cache._sk("k"), cache._clock())
        finally:
            await shut(cache)
        return str(caught.value)

    assert "127.0.0.1" in in_loop(main)


# ---------------------------------------------------------------- lost replies (on the wire)

UPDATE = b"DynamoDB_20120810.UpdateItem"
PUT = b"DynamoDB_20120810.PutItem"
GET = b"DynamoDB_20120810.GetItem"


@pytest.fixture
def proxy(endpoint: str) -> Iterator[FaultProxy]:
    """A fault-injecting TCP proxy in front of the module's moto server."""
    with FaultProxy("127.0.0.1", int(endpoint.rsplit(":", 1)[1])) as faults:
        yield faults


@pytest.fixture
def via_proxy(
    make: Callable[..., DynamoDBCache], proxy: FaultProxy
) -> Callable[..., DynamoDBCache]:
    """A bootstrapped cache that talks to moto through the proxy."""

    def build(**settings: Any) -> DynamoDBCache:
        cache = make(settings={"host": proxy.url, **settings})
        cache.connect()
        return cache

    return build


@pytest.mark.parametrize("start", [None, 10], ids=["fresh", "existing"])
def test_async_incr_applies_once_when_its_reply_is_lost(
    via_proxy: Callable[..., DynamoDBCache], proxy: FaultProxy, start: int | None
) -> None:
    cache = via_proxy()
    key = cache._sk("n")

    async def main() -> tuple[int, Any, int]:
        if start is not None:
            await cache._aset(key, start, _EXPIRY, cache._clock())
        await cache._aconnection()
        proxy.reset_counts()
        proxy.drop_reply(UPDATE)
        counted = await cache._aincr(key, 5, cache._clock())
        updates = proxy.count(UPDATE)
        stored = await cache._aget(key, cache._clock())
        await shut(cache)
        return counted, stored, updates

    counted, stored, updates = in_loop(main)
    assert counted == stored == (start or 0) + 5
    assert proxy.dropped == 1
    assert updates == 1  # never re-sent: the item's requestId told it had landed
    assert cache.incr("n") == (start or 0) + 6


def test_async_add_answers_true_when_its_reply_is_lost(
    via_proxy: Callable[..., DynamoDBCache], proxy: FaultProxy
) -> None:
    cache = via_proxy()
    key = cache._sk("k")

    async def main() -> tuple[bool, int, bool]:
        await cache._aconnection()
        proxy.reset_counts()
        proxy.drop_reply(PUT)
        added = await cache._aadd(key, {"v": 1}, _EXPIRY, cache._clock())
        puts = proxy.count(PUT)
        again = await cache._aadd(key, "other", _EXPIRY, cache._clock())
        await shut(cache)
        return added, puts, again

    assert in_loop(main) == (True, 1, False)
    assert cache.get("k") == {"v": 1}


def test_async_add_lost_request_is_reported_not_guessed(
    via_proxy: Callable[..., DynamoDBCache], proxy: FaultProxy
) -> None:
    """The request never reached moto and another writer's entry is there: the outcome
    cannot be known, so it is a typed error - never a blind re-send."""
    cache = via_proxy()
    cache.put("k", "someone")
    key = cache._sk("k")

    async def main() -> str:
        await cache._aconnection()
        proxy.reset_counts()
        proxy.drop_request(PUT)
        try:
            with pytest.raises(CacheOutcomeUnknownError) as caught:
                await cache._aadd(
                    key, "mine", Expiry(expires_at=cache._clock() - 1), cache._clock()
                )
        finally:
            await shut(cache)
        return str(caught.value)

    message = in_loop(main)
    assert "read the key" in message
    assert proxy.count(PUT) == 1
    assert cache.get("k") == "someone"


def test_async_lock_acquire_holds_once_when_its_reply_is_lost(
    via_proxy: Callable[..., DynamoDBCache], proxy: FaultProxy
) -> None:
    """botocore re-sends the lost acquire; the re-send finds the lock held by this very
    token and answers with the fence of the first (and only) acquisition."""
    cache = via_proxy()

    async def main() -> tuple[int | None, str | None, int]:
        await cache._aconnection()
        proxy.reset_counts()
        proxy.drop_reply(UPDATE)
        fence = await cache._alock_acquire("L", "token-1", 30.0, cache._clock())
        holder = await cache._alock_holder("L", cache._clock())
        updates = proxy.count(UPDATE)
        await shut(cache)
        return fence, holder, updates

    fence, holder, updates = in_loop(main)
    assert proxy.dropped == 1
    assert holder == "token-1"
    assert updates == 2  # the re-send, which changed nothing
    item = cache.command("getItem", {cache.key_name: cache._lock_item("L")[0][cache.key_name]["S"]})
    assert fence == int(item["lockFence"])
    assert cache._lock_acquire("L", "token-2", 30.0, cache._clock()) is None


@pytest.mark.parametrize("planted", ["9.9E+125", "-5", "1.5"])
def test_async_lock_restarts_a_planted_fence(
    make: Callable[..., DynamoDBCache], planted: str
) -> None:
    """A fence no cachehub writer produces is restarted from the clock, never added to
    (the sync test_locks.py covers every shape; this drives the same flow async)."""
    cache = make(namespace="apf:")
    cache.connect()
    key, original = cache._lock_item("lock:job")
    item = {
        **key,
        "originalKey": {"S": original},
        "cachehubInternal": {"S": "lock"},
        "lockFence": {"N": planted},
    }
    cache.client.put_item(TableName=cache.table_name, Item=item)

    async def main() -> int | None:
        await cache._aconnection()
        fence = await cache._alock_acquire("lock:job", "token-1", 30.0, cache._clock())
        await shut(cache)
        return fence

    before = int(cache._clock() * 1_000_000)
    fence = in_loop(main)
    assert fence is not None
    assert before < fence <= int(cache._clock() * 1_000_000) + 1
    stored = cache.client.get_item(TableName=cache.table_name, Key=key, ConsistentRead=True)
    assert stored["Item"]["lockFence"] == {"N": str(fence)}
    assert stored["Item"]["lockHolder"] == {"S": "token-1"}


def test_async_endpoint_that_drops_every_reply_is_unavailable_and_bounded(
    via_proxy: Callable[..., DynamoDBCache], proxy: FaultProxy
) -> None:
    cache = via_proxy(maxAttempts=2)
    key = cache._sk("k")

    async def main() -> tuple[str, int]:
        await cache._aconnection()
        proxy.reset_counts()
        proxy.drop_reply(GET, times=1_000)
        try:
            with pytest.raises(CacheUnavailableError) as caught:
                await cache._aget(key, cache._clock())
        finally:
            await shut(cache)
        return str(caught.value), proxy.count(GET)

    message, sent = in_loop(main)
    assert sent == 2  # maxAttempts, then a typed error
    assert "GetItem" in message or "DynamoDB" in message


# ---------------------------------------------------------------- the detector itself


def test_the_loop_checks_catch_a_blocking_request_and_a_cpu_hog(
    make: Callable[..., DynamoDBCache],
) -> None:
    cache = make()
    cache.connect()

    async def blocking() -> None:
        cache.get("k")  # the sync client, on the loop

    async def hogging() -> None:
        until = time.thread_time() + 2 * CPU_PER_CALLBACK
        while time.thread_time() < until:
            continue

    with pytest.raises(AssertionError, match="boto3 GetItem on the event loop"):
        in_loop(blocking)
    with pytest.raises(pytest.fail.Exception, match="ms of CPU"):
        in_loop(hogging)


# ---------------------------------------------------------------- get_all skips foreign entries


@pytest.mark.parametrize("layout", ["cachehub", "lucee"])
def test_async_get_all_skips_unreadable_entries_and_reports_them(
    make: Callable[..., DynamoDBCache], layout: str
) -> None:
    """Issue #18 on the async path: one entry nobody can decode is skipped and reported
    with what its item holds; the others are returned."""
    from .test_lucee import _java_object_stream, _lucee_item, _plant

    cache = make(settings={"itemFormat": layout})
    cache.connect()
    good = {f"GOOD{i}": i for i in range(5)}
    cache.put_many(good)
    blob = gzip.compress(_java_object_stream("lucee.runtime.type.QueryImpl"))
    _plant(cache, _lucee_item("QUERY", {"B": blob}))
    seen: list[ForeignEntryError] = []
    cache.on_foreign_entry = seen.append

    async def main() -> dict[str, Any]:
        shell = cache.aio()
        try:
            return await shell.get_all()
        finally:
            await shell.close()

    assert in_loop(main) == good
    assert [e.key for e in seen] == ["QUERY"]
    assert "value:B" in seen[0].found


def test_two_threads_dropping_one_closed_loops_client_at_once(
    make: Callable[..., DynamoDBCache],
) -> None:
    """Two loops in two threads whose first operations both find the same closed loop's
    client to drop: each gets its own client, neither fails. On main both deleted it and
    one got a raw KeyError."""
    cache = make()
    both = threading.Barrier(2)
    armed = [False]

    class ClosedLoop(asyncio.SelectorEventLoop):
        def is_closed(self) -> bool:  # both threads look before either drops it
            if armed[0]:
                both.wait(timeout=10)
            return True

    gone = ClosedLoop()
    asyncio.SelectorEventLoop.close(gone)

    class Client:
        async def close(self) -> None:
            return None

    async def build() -> Client:
        return Client()

    cache._aconnect = build  # type: ignore[method-assign]
    cache._aconns[gone] = Lease(Client())
    armed[0] = True

    def worker() -> Any:
        return asyncio.run(cache._aconnection())

    try:
        with ThreadPoolExecutor(2) as pool:
            clients = list(pool.map(lambda _: worker(), range(2)))
    finally:
        armed[0] = False
    assert all(isinstance(c, Client) for c in clients)
    assert clients[0] is not clients[1]
    assert gone not in cache._aconns


def test_the_first_async_operations_import_nothing_on_the_loop(endpoint: str) -> None:
    # aiobotocore and aiohttp are imported in the worker thread that builds the client
    # (a first import there is no callback's), nothing on the loop.
    settings = {"tableName": f"first_imports_{os.getpid()}", "host": endpoint, **CREDENTIALS}
    setup = f"from cachehub_dynamodb import DynamoDBCache\ncache = DynamoDBCache({settings!r})"
    assert first_imports(setup) == []


@pytest.mark.parametrize("on_error", ["raise", "miss"])
def test_aclose_while_other_tasks_have_requests_in_flight_fails_none_of_them(
    make: Callable[..., DynamoDBCache], on_error: str
) -> None:
    """A close waits for the requests holding the loop's client (cachehub.provider's
    leases). Before, aiobotocore's session was closed under them: they failed with an
    untyped "An HTTP Client raised an unhandled exception" CacheBackendError whose hint
    sent the user to check host, region and credentials, under ``onError: miss`` too."""
    cache = make(onError=on_error)
    shell = cache.aio()
    errors: list[str] = []

    async def main() -> list[Any]:
        await shell.put("k", "v")

        async def reader() -> list[Any]:
            got = []
            for _ in range(4):
                try:
                    got.append(await shell.get("k"))
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
            return got

        async def closer() -> None:
            for _ in range(4):
                await asyncio.sleep(0.02)
                await shell.close()

        results = await asyncio.gather(*(reader() for _ in range(6)), closer())
        await shell.close()
        return [v for got in results[:-1] for v in got]

    assert in_loop(main) == ["v"] * 24
    assert errors == []
