"""Hit counts written back inside a later write: exact when that write is cancelled.

A write whose flow finds the read counts due writes them back (one conditional UpdateItem
per key) before it returns. Cancelled at any suspension of that write-back, the counts it
had drained were lost (the requests died with the flow); put back instead, a request that
had reached the table would count twice. They are written by a task of their own, which
``close()`` waits for: after close the count is the number of reads, never less or more.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from cachehub_dynamodb import DynamoDBCache

from cachehub.errors import CacheBackendError
from cachehub.testing.cancel import CancelAt

READS = 3
STEPS = 8
"""Suspensions cancelled at: a put with its write-back suspends 2 or 3 times (the
connection pool's state decides), so every one of them is hit, and the last runs finish."""


async def _cancelled(coro: Any, at: int) -> CancelAt:
    probe = CancelAt(coro, at)

    async def run() -> Any:
        return await probe

    task = asyncio.ensure_future(run())
    await asyncio.gather(task, return_exceptions=True)
    return probe


def _sweep(cache: DynamoDBCache, write: Callable[[Any, int], Any]) -> list[str]:
    """Cancel ``write`` at each suspension in turn, after READS reads of a fresh key."""
    shell = cache.aio()

    async def scenario() -> list[str]:
        problems: list[str] = []
        finished = 0
        for at in range(1, STEPS + 1):
            key = f"hits-{at}"
            await shell.put(key, at, time_span=600)
            for _ in range(READS):
                assert await shell.get(key) == at
            assert cache.pending_hits() == 1
            probe = await _cancelled(write(shell, at), at)
            finished += probe.suspended < at  # ended before its at-th suspension
            await shell.close()  # waits for a write-back its cancelled caller left
            entry = await shell.metadata(key)
            hits = None if entry is None else entry.hit_count
            if hits != READS:
                problems.append(f"cancelled at {at}: hit count {hits}, not {READS}")
            if cache.pending_hits():
                problems.append(f"cancelled at {at}: {cache.pending_hits()} still pending")
        if not finished:
            problems.append(f"still suspending after {STEPS} cancels")
        return problems

    return asyncio.run(asyncio.wait_for(scenario(), 240))


def test_a_cancelled_put_writes_the_counts_it_drained_exactly_once(
    make: Callable[..., DynamoDBCache],
) -> None:
    cache = make(settings={"hitCounts": True, "hitFlushInterval": 0.000001})
    assert _sweep(cache, lambda shell, at: shell.put(f"other-{at}", 1)) == []


def test_a_cancelled_delete_many_writes_them_too(make: Callable[..., DynamoDBCache]) -> None:
    cache = make(settings={"hitCounts": True, "hitFlushInterval": 0.000001})
    assert _sweep(cache, lambda shell, at: shell.delete_many([f"x{at}", f"y{at}"])) == []


async def _cancel_once_set(gate: asyncio.Event, shell: Any) -> None:
    """Start a put, cancel it once ``gate`` is set (inside its write-back), then close."""
    task = asyncio.ensure_future(shell.put("other", 1))
    await gate.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()
    await shell.close()


@pytest.mark.parametrize("sent", [False, True], ids=["before-sending", "after-applying"])
def test_a_write_cancelled_in_its_write_back_counts_every_read_once(
    make: Callable[..., DynamoDBCache], sent: bool
) -> None:
    """The two ends of the race the sweep above lands in by chance: the caller cancelled
    while the write-back waits to send (main lost the counts: 0, not 3), and after the
    table applied it but before the reply came (put back, they would count 6)."""
    cache = make(settings={"hitCounts": True, "hitFlushInterval": 0.000001})
    shell = cache.aio()
    real = cache._afanout

    async def scenario() -> int | None:
        await shell.put("k", 1, time_span=600)
        for _ in range(READS):
            await shell.get("k")
        gate = asyncio.Event()

        async def held(calls: Any, workers: int) -> Any:
            # A suspension before the requests go out, or after they were applied.
            result = await real(calls, workers) if sent else None
            gate.set()
            await asyncio.sleep(0.01)  # the caller is cancelled here
            return result if sent else await real(calls, workers)

        cache._afanout = held  # type: ignore[method-assign]
        await _cancel_once_set(gate, shell)
        cache._afanout = real  # type: ignore[method-assign]
        entry = await shell.metadata("k")
        return None if entry is None else entry.hit_count

    assert asyncio.run(asyncio.wait_for(scenario(), 120)) == READS
    assert cache.pending_hits() == 0


def test_a_failed_orphaned_write_back_is_logged_not_lost_silently(
    make: Callable[..., DynamoDBCache], caplog: Any
) -> None:
    """The cancelled caller cannot see the write-back's error: the cache logs it."""
    cache = make(settings={"hitCounts": True, "hitFlushInterval": 0.000001})
    shell = cache.aio()

    async def scenario() -> None:
        await shell.put("k", 1, time_span=600)
        await shell.get("k")
        entered = asyncio.Event()

        async def failing(pending: Any) -> None:
            entered.set()
            await asyncio.sleep(0.01)  # the caller is cancelled meanwhile
            raise CacheBackendError("injected write-back failure")

        cache._awrite_hits = failing  # type: ignore[method-assign]
        await _cancel_once_set(entered, shell)

    asyncio.run(asyncio.wait_for(scenario(), 30))
    assert "could not flush hit counts" in caplog.text
