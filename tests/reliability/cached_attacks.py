"""Child-process targets for tests/reliability/test_cached_flights.py.

Each case deadlocked forever before per-key flights (a ``@cached`` function calling
another whose key fell on the lock stripe its caller held), so each runs bounded in a
child; they build their own memory cache and return plain data.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from cachehub_memory import MemoryCache

from cachehub.decorators import cached


def sync_fib(n: int) -> tuple[int, int]:
    """``fib(n)`` through ``@cached`` (each call needs two nested keys); (value, computations)."""
    computed: list[int] = []

    @cached(MemoryCache(), prefix="fib")
    def fib(k: int) -> int:
        computed.append(k)
        return k if k < 2 else fib(k - 1) + fib(k - 2)

    return fib(n), len(computed)


def sync_needs_itself(depth: int) -> tuple[int, int]:
    """A cached function that calls itself with the same arguments ``depth`` times."""
    calls: list[int] = []

    @cached(MemoryCache(), prefix="self")
    def f(x: int) -> int:
        calls.append(x)
        return f(x) if len(calls) < depth else x

    return f(7), len(calls)


def two_threads_needing_each_other() -> dict[str, Any]:
    """Thread A computes ``a`` and needs ``b`` while thread B computes ``b`` and needs ``a``.

    Whoever would wait second closes the cycle, so it computes the key itself; that
    second computation of a key returns its bare name, which ends the recursion.
    """
    cache = MemoryCache()
    started = {"a": threading.Event(), "b": threading.Event()}
    computations = {"a": 0, "b": 0}
    results: dict[str, Any] = {}

    @cached(cache, prefix="pair")
    def value(name: str) -> str:
        computations[name] += 1
        if computations[name] > 1:
            return name
        other = "b" if name == "a" else "a"
        started[name].set()
        started[other].wait(10)  # both threads now lead their own key
        return name + value(other)

    def run(name: str) -> None:
        results[name] = value(name)

    threads = [threading.Thread(target=run, args=(n,), daemon=True) for n in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    results["alive"] = [t.is_alive() for t in threads]
    results["computations"] = computations
    return results


def async_fib(n: int) -> tuple[int, int]:
    """``fib(n)`` through ``@cached`` on an ``async def``."""
    computed: list[int] = []

    @cached(MemoryCache(), prefix="afib")
    async def fib(k: int) -> int:
        computed.append(k)
        return k if k < 2 else await fib(k - 1) + await fib(k - 2)

    return asyncio.run(fib(n)), len(computed)


def async_needs_itself(depth: int) -> tuple[int, int]:
    """An ``async def`` cached function awaiting itself with the same arguments."""
    calls: list[int] = []

    @cached(MemoryCache(), prefix="aself")
    async def f(x: int) -> int:
        calls.append(x)
        return await f(x) if len(calls) < depth else x

    return asyncio.run(f(7)), len(calls)
