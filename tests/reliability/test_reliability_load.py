"""Load: 8 threads of mixed operations on one cache object per provider.

Checks, under contention: ``incr`` totals are exact, an ``add``-based lock
(``cache.lock``) is never held by two owners at once (a shared holder counter and a
read-modify-write that would lose updates otherwise), each ``add`` key has exactly one
winner, reads never see a torn value, and nothing raises except the documented
:class:`~cachehub.errors.LockTimeoutError`.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

from cachehub.api import BaseCache
from cachehub.errors import LockTimeoutError

from .conftest import Factory, report

THREADS: Final = 8
OPERATIONS: Final = {"memory": 2000, "redis": 2000, "dynamodb": 100}
"""Operations per thread. moto's in-process server answers ~130 requests/s on two
cores, so DynamoDB runs 8 x 100 to stay inside the suite's time budget."""
ONCE_KEYS: Final = 40
OWN_KEYS: Final = 20
LOCK_NAME: Final = "hot-section"
DELTAS: Final = (-3, -2, -1, 0, 1, 2, 3, 5, 8)
"""incr deltas; 0 is included on purpose (a no-op update is an edge case in DynamoDB)."""

# (operation, weight): the mix every thread draws from.
MIX: Final = (
    ("incr", 22),
    ("put", 18),
    ("get", 20),
    ("add", 10),
    ("lock", 5),
    ("get_many", 10),
    ("delete", 7),
    ("exists", 8),
)


@dataclass
class Shared:
    """State the threads share, guarded by ``guard``."""

    guard: threading.Lock = field(default_factory=threading.Lock)
    holders: int = 0
    max_holders: int = 0
    sections: int = 0
    incr_total: int = 0
    winners: Counter[str] = field(default_factory=Counter)
    winner_of: dict[str, int] = field(default_factory=dict)
    lock_timeouts: int = 0
    errors: list[BaseException] = field(default_factory=list)
    torn: list[tuple[str, Any]] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)


def _valid(key: str, value: Any) -> bool:
    """A value written by a ``put`` of this test: ``(thread, step)`` for key ``t<thread>:...``."""
    if value is None:
        return True
    if type(value) is not tuple or len(value) != 2:
        return False
    owner = int(key[1 : key.index(":")])
    return value[0] == owner and type(value[1]) is int


def _locked_section(cache: BaseCache, shared: Shared) -> None:
    with cache.lock(LOCK_NAME, ttl=60, timeout=60, poll=0.002):
        with shared.guard:
            shared.holders += 1
            shared.max_holders = max(shared.max_holders, shared.holders)
        # Unprotected read-modify-write: any overlap of two owners loses an update.
        current = cache.get("rmw", 0)
        cache.put("rmw", current + 1)
        with shared.guard:
            shared.holders -= 1
            shared.sections += 1


def _worker(cache: BaseCache, index: int, operations: int, shared: Shared) -> None:
    rng = random.Random(index)
    names = [name for name, _ in MIX]
    weights = [weight for _, weight in MIX]
    incr_total = 0
    latencies: list[float] = []
    for step in range(operations):
        op = rng.choices(names, weights)[0]
        start = time.perf_counter()
        try:
            if op == "incr":
                delta = rng.choice(DELTAS)
                cache.incr("counter", delta)
                incr_total += delta
            elif op == "put":
                cache.put(f"t{index}:{step % OWN_KEYS}", (index, step))
            elif op == "get":
                key = f"t{rng.randrange(THREADS)}:{rng.randrange(OWN_KEYS)}"
                value = cache.get(key)
                if not _valid(key, value):
                    with shared.guard:
                        shared.torn.append((key, value))
            elif op == "add":
                key = f"once:{rng.randrange(ONCE_KEYS)}"
                if cache.add(key, index):
                    with shared.guard:
                        shared.winners[key] += 1
                        shared.winner_of[key] = index
            elif op == "lock":
                _locked_section(cache, shared)
            elif op == "get_many":
                keys = [f"t{rng.randrange(THREADS)}:{rng.randrange(OWN_KEYS)}" for _ in range(5)]
                for key, value in cache.get_many(keys).items():
                    if not _valid(key, value):
                        with shared.guard:
                            shared.torn.append((key, value))
            elif op == "delete":
                cache.delete(f"t{index}:{rng.randrange(OWN_KEYS)}")
            else:
                cache.exists(f"once:{rng.randrange(ONCE_KEYS)}")
        except LockTimeoutError:
            with shared.guard:
                shared.lock_timeouts += 1
        except Exception as exc:  # recorded and asserted on: nothing else may escape
            with shared.guard:
                shared.errors.append(exc)
        latencies.append(time.perf_counter() - start)
    with shared.guard:
        shared.incr_total += incr_total
        shared.latencies.extend(latencies)


def _run(cache: BaseCache, operations: int) -> tuple[Shared, float]:
    shared = Shared()
    barrier = threading.Barrier(THREADS)

    def body(index: int) -> None:
        barrier.wait()
        _worker(cache, index, operations, shared)

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(THREADS)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=150)
    elapsed = time.perf_counter() - start
    assert not any(t.is_alive() for t in threads), "a load thread hung"
    return shared, elapsed


def test_mixed_load(provider: str, factory: Factory) -> None:
    cache = factory()
    operations = OPERATIONS[provider]
    shared, elapsed = _run(cache, operations)

    total = THREADS * operations
    ordered = sorted(shared.latencies)
    p99 = ordered[int(len(ordered) * 0.99) - 1]
    report(
        f"load {provider}: {THREADS}x{operations} ops in {elapsed:.2f}s = "
        f"{total / elapsed:,.0f} ops/s; latency p50 {statistics.median(ordered) * 1e3:.2f} ms, "
        f"p99 {p99 * 1e3:.2f} ms; lock sections {shared.sections}, max holders "
        f"{shared.max_holders}, lock timeouts {shared.lock_timeouts}; incr total "
        f"{shared.incr_total}; errors {len(shared.errors)}"
    )

    assert shared.errors == [], f"undocumented exceptions under load: {shared.errors[:5]!r}"
    assert shared.torn == [], f"reads returned values no put wrote: {shared.torn[:5]!r}"
    assert cache.get("counter", 0) == shared.incr_total
    assert shared.max_holders <= 1, "two owners held the lock at once"
    assert cache.get("rmw", 0) == shared.sections, "a lock owner's update was lost"
    assert shared.sections > 0
    for key, wins in shared.winners.items():
        assert wins == 1, f"add({key!r}) succeeded {wins} times"
        assert cache.get(key) == shared.winner_of[key]
    assert cache.count("once:*") == len(shared.winners)
    assert not cache.exists("lock:" + LOCK_NAME), "the lock was left held"
