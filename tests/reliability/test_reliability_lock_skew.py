"""Locks across two processes whose clocks disagree (issue #16: clock skew).

The rival runs in a fresh interpreter (:func:`sandbox.run_bounded`) with its own clock:

* Redis decides lock deadlines with the server's clock, so the rival's skew of +-5 s
  changes nothing: a held lock stays held (its ttl outlasts the rival's start).
* DynamoDB decides them with the writer's clock, as documented ("Locks and clocks"): with
  clocks S seconds apart a lock of ttl T is taken over after T - S seconds, never
  earlier, and the taker's fencing token is higher than the stale holder's.

The rival's clock is frozen at a chosen offset from the holder's acquire, so no test
depends on how long a child takes to start.
"""

from __future__ import annotations

import time
from typing import Any, Final

import pytest
from cachehub_dynamodb import DynamoDBCache, LocalDynamoDB
from cachehub_redis import RedisCache
from cachehub_redis.server import RedisServer

from cachehub.errors import LockLostError
from cachehub.testing import FakeClock

from .conftest import dynamodb_settings, fresh_namespace, redis_settings
from .sandbox import DEFAULT_SECONDS, assert_contained, run_bounded

TTL = 8.0
SERVER_TTL: Final = 3 * DEFAULT_SECONDS
"""The Redis lock's ttl: the server's clock decides it, so it must outlast the rival's
start, however slow (bounded by run_bounded's DEFAULT_SECONDS). With 8 s, a rival that
took over 8 s to start on a loaded CI machine rightly found the lock expired."""


def rival_takes_lock(provider: str, settings: dict[str, Any], now: float) -> tuple[bool, int]:
    """In the child: try the lock once with a clock frozen at ``now``; keep it if taken."""
    cls = RedisCache if provider == "redis" else DynamoDBCache
    cache = cls(settings, clock=lambda: now)
    lock = cache.lock("job", ttl=TTL)
    taken = lock.acquire(blocking=False)
    return taken, lock.fence or 0


@pytest.mark.parametrize("skew", [5.0, -5.0])
def test_redis_lock_ignores_a_skewed_process(redis_server: RedisServer, skew: float) -> None:
    settings = redis_settings(redis_server, namespace=fresh_namespace("skew"))
    holder = RedisCache(settings)
    try:
        lock = holder.lock("job", ttl=SERVER_TTL)
        assert lock.acquire(blocking=False)
        # The rival believes the ttl + 1 s have passed: by its clock the lock is long dead.
        rival_now = time.time() + skew + SERVER_TTL + 1
        outcome = run_bounded(rival_takes_lock, "redis", settings, rival_now)
        assert_contained(outcome)
        assert outcome.value == (False, 0), outcome.describe()
        assert lock.held
        assert lock.release() is True
    finally:
        holder.close()


@pytest.mark.parametrize(
    ("skew", "elapsed", "taken"),
    [
        (5.0, 2.9, False),  # a fast rival clock: not before TTL - S
        (5.0, 3.0, True),
        (-5.0, 12.9, False),  # a slow rival clock: only after TTL + S
        (-5.0, 13.0, True),
    ],
)
def test_dynamodb_takeover_bound_across_processes(
    local_dynamodb: LocalDynamoDB, shared_table: str, skew: float, elapsed: float, taken: bool
) -> None:
    settings = dynamodb_settings(local_dynamodb.endpoint, namespace=fresh_namespace("skew"))
    clock = FakeClock()
    holder = DynamoDBCache(settings, clock=clock)
    try:
        lock = holder.lock("job", ttl=TTL)
        assert lock.acquire(blocking=False)
        clock.advance(elapsed)
        outcome = run_bounded(rival_takes_lock, "dynamodb", settings, clock() + skew)
        assert_contained(outcome)
        got, fence = outcome.value
        assert got is taken, outcome.describe()
        if taken:
            assert not lock.held
            assert lock.fence is not None
            assert fence > lock.fence
            with pytest.raises(LockLostError):
                lock.release()
        elif elapsed < TTL:
            assert lock.held
            assert lock.release() is True
        else:
            # By the holder's own clock its ttl ran out; only the slow rival still
            # waited. The holder is told on release.
            assert not lock.held
            with pytest.raises(LockLostError):
                lock.release()
    finally:
        holder.clear(include_internal=True)
        holder.close()
