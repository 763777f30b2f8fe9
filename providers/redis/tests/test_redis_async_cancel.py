"""A cancel delivered to a task inside a Redis request always reaches that task.

Python 3.11's ``asyncio.wait_for`` returns its inner call's result when the cancel arrives
in the loop turn that call finished in (CPython gh-86296), and redis-py sends every
command through one (``send_packed_command``). A cancelled ``get`` then answered, and a
cancelled ``get_or_set`` waiter went on to compute: the async conformance cases
``test_cancelled_get_or_set_holds_nothing`` hung for their 60 s now and then under load.

The cancel is placed by counting loop turns (never by timing): every turn of a request
in turn, and a client that swallows every cancel as that ``wait_for`` does (so the cases
fail without the fix on any Python, not only 3.11).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final, TypeVar

import pytest
from cachehub_redis import RedisCache

from cachehub.aio import AsyncCache

T = TypeVar("T")

MISSING: Final = object()
STEPS: Final = 60
"""Most loop turns a case steps through: a request to the local server takes a handful
before its reply can arrive, the window is in its first three."""

Operation = Callable[[AsyncCache], Awaitable[Any]]


def run(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run``, bounded: a hang fails the test."""
    return asyncio.run(asyncio.wait_for(coro, 60))


async def _never() -> str:
    raise AssertionError("the creator of a present key is never called")


OPERATIONS: Final[dict[str, Operation]] = {
    "get hit": lambda a: a.get("present", MISSING),
    "get miss": lambda a: a.get("absent", MISSING),
    "exists": lambda a: a.exists("present"),
    "put": lambda a: a.put("written", 1, time_span=600),
    "delete": lambda a: a.delete("gone"),
    "incr": lambda a: a.incr("counter"),
    "get_many": lambda a: a.get_many(["present", "absent", "other"]),
    "put_many": lambda a: a.put_many({f"m{i}": i for i in range(3)}, time_span=600),
    "get_or_set hit": lambda a: a.get_or_set("present", _never),
    "lock": lambda a: a.lock("job", ttl=30).acquire(blocking=False),
}


async def _cancelled_after(turns: int, operation: Awaitable[Any]) -> str:
    """Run ``operation`` in a task, cancel it after ``turns`` loop turns: what it did."""
    task = asyncio.ensure_future(operation)
    for _ in range(turns):
        await asyncio.sleep(0)
    if task.done():
        return "finished first"
    task.cancel()
    try:
        result = await task
    except asyncio.CancelledError:
        return "cancelled"
    return f"answered {result!r} though cancelled"


@pytest.mark.parametrize("name", list(OPERATIONS))
def test_a_cancel_at_any_turn_of_a_request_reaches_the_task(
    make_cache: Callable[..., RedisCache], name: str
) -> None:
    shell = make_cache().aio()
    operation = OPERATIONS[name]

    async def scenario() -> list[tuple[int, str]]:
        await shell.put("present", "v", time_span=600)
        await operation(shell)  # warm: the loop's client is connected, scripts loaded
        outcomes = []
        for turns in range(1, STEPS):
            outcome = await _cancelled_after(turns, operation(shell))
            if outcome == "finished first":
                break
            outcomes.append((turns, outcome))
        await shell.close()
        return outcomes

    outcomes = run(scenario())
    assert outcomes  # the request spans loop turns: the cancel reached it in flight
    assert [o for o in outcomes if o[1] != "cancelled"] == []


class Swallowing:
    """An async client's ``execute_command`` that swallows a cancel as Python 3.11's
    ``wait_for`` does: the caller gets the answer instead. ``sent`` is set once a
    request of ``command`` is in flight."""

    def __init__(self, send: Callable[..., Awaitable[Any]], command: str) -> None:
        self.send = send
        self.command = command
        self.sent = asyncio.Event()
        self.swallowed = 0

    async def __call__(self, *args: Any, **options: Any) -> Any:
        request = asyncio.ensure_future(self.send(*args, **options))
        if args[0] == self.command:
            self.sent.set()
        try:
            return await asyncio.shield(request)
        except asyncio.CancelledError:
            self.swallowed += 1
            return await request


def _swallowing(shell: AsyncCache, command: str, monkeypatch: pytest.MonkeyPatch) -> Swallowing:
    client = shell.cache._aconns[asyncio.get_running_loop()].client  # type: ignore[attr-defined]
    fake = Swallowing(client.execute_command, command)
    monkeypatch.setattr(client, "execute_command", fake)
    return fake


@pytest.mark.parametrize(
    ("name", "command"),
    [("get hit", "GETRANGE"), ("exists", "GETRANGE"), ("put", "SET"), ("delete", "EVALSHA")],
)
def test_a_cancel_the_client_swallows_still_reaches_the_task(
    make_cache: Callable[..., RedisCache],
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    command: str,
) -> None:
    shell = make_cache().aio()
    operation = OPERATIONS[name]

    async def scenario() -> tuple[bool, int]:
        await shell.put("present", "v", time_span=600)
        await operation(shell)  # warm: the loop's client exists
        fake = _swallowing(shell, command, monkeypatch)
        task = asyncio.ensure_future(operation(shell))
        await fake.sent.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await shell.close()
        return task.cancelled(), fake.swallowed

    assert run(scenario()) == (True, 1)


def test_a_cancelled_get_or_set_waiter_never_computes(
    make_cache: Callable[..., RedisCache], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The conformance case's hang, made certain: the waiter is cancelled in its first
    GET, which swallows it; it must not queue behind the first caller and compute."""
    shell = make_cache().aio()
    computed: list[str] = []

    async def scenario() -> tuple[bool, Any, Any]:
        started = asyncio.Event()
        release = asyncio.Event()

        async def slow() -> str:
            computed.append("slow")
            started.set()
            await release.wait()  # the test ends it, not a clock
            return "first"

        await shell.get("k", MISSING)  # warm: the loop's client exists
        first = asyncio.ensure_future(shell.get_or_set("k", slow, lock_timeout=30))
        await started.wait()
        fake = _swallowing(shell, "GETRANGE", monkeypatch)
        waiting = asyncio.ensure_future(shell.get_or_set("k", slow, lock_timeout=30))
        await fake.sent.wait()
        waiting.cancel()
        release.set()  # the first caller finishes: a waiter that went on gets its turn
        await asyncio.gather(first, waiting, return_exceptions=True)
        value = await shell.get("k")
        await shell.close()
        return waiting.cancelled(), first.result(), value

    assert run(scenario()) == (True, "first", "first")
    assert computed == ["slow"]


def test_a_timeout_around_a_request_the_client_swallows_still_times_out(
    make_cache: Callable[..., RedisCache], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``asyncio.timeout`` cancels the task when it expires: the swallowed cancel used to
    let the request answer past its deadline instead of raising TimeoutError."""
    shell = make_cache().aio()

    async def scenario() -> list[Any]:
        await shell.put("present", "v", time_span=600)
        fake = _swallowing(shell, "GETRANGE", monkeypatch)
        scopes: list[asyncio.Timeout] = []

        async def bounded() -> Any:
            async with asyncio.timeout(None) as scope:
                scopes.append(scope)
                return await shell.get("present", MISSING)

        task = asyncio.ensure_future(bounded())
        await fake.sent.wait()
        scopes[0].reschedule(asyncio.get_running_loop().time())  # expires now, no clock
        outcome = await asyncio.gather(task, return_exceptions=True)
        await shell.close()
        return [type(outcome[0]), fake.swallowed]

    assert run(scenario()) == [TimeoutError, 1]


def _pool_connections(pool: Any) -> list[Any]:
    """Every connection of a ``redis.asyncio`` blocking pool. Private either way: redis-py
    5.1 and later list them by method, 5.0 (the oldest supported) keeps one list."""
    if hasattr(pool, "_get_free_connections"):
        return [*pool._get_free_connections(), *pool._get_in_use_connections()]
    return list(pool._connections)


def test_a_close_cancelled_at_any_turn_still_closes_every_connection(
    make_cache: Callable[..., RedisCache],
) -> None:
    """``close()`` forgets the loop's client, then disconnects it: a cancel in the
    disconnect left its connections open, referenced by nothing (unclosed sockets, a
    ResourceWarning when collected): 1 connection was left open by a cancel at turn 1."""
    shell = make_cache().aio()

    async def scenario() -> list[tuple[int, int]]:
        open_after: list[tuple[int, int]] = []
        for turns in range(1, STEPS):
            await shell.get_many(["a", "b"])  # a client with a connection
            client = shell.cache._aconns[asyncio.get_running_loop()].client  # type: ignore[attr-defined]
            pool = client.connection_pool
            outcome = await _cancelled_after(turns, shell.close())
            for _ in range(STEPS):  # a shielded disconnect ends within a few turns
                await asyncio.sleep(0)
            still = sum(1 for c in _pool_connections(pool) if c.is_connected)
            if still:
                open_after.append((turns, still))
            if outcome == "finished first":
                break
        return open_after

    assert run(scenario()) == []
