"""Redis locks: internal keys no user key can spell, deadlines by the server's clock."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from cachehub_redis import RedisCache
from cachehub_redis.cache import LOCK_GRACE_MS
from redis import Redis

from cachehub.errors import CorruptEntryError, LockLostError
from cachehub.lock import Lock
from cachehub.testing import FakeClock

MakeCache = Callable[..., RedisCache]
_BOUND = 10.0
"""Most seconds a test polls for a real (server-side) expiry."""


def _wait_free(cache: RedisCache, name: str) -> None:
    lock = cache.lock(name)
    deadline = time.monotonic() + _BOUND
    while lock.busy:
        assert time.monotonic() < deadline, f"lock {name!r} never expired"
        time.sleep(0.02)


def test_layout_is_a_hash_under_an_internal_key(make_cache: MakeCache, plain: Redis) -> None:
    cache = make_cache()
    ns = cache.namespace.encode()
    with cache.lock("job", ttl=30, timeout=0) as lock:
        key = ns + b"\xfflock:job"
        assert plain.type(key) == b"hash"
        fields = plain.hgetall(key)
        assert fields[b"t"].decode() == lock.token
        assert int(fields[b"f"]) == lock.fence
        seconds, micros = plain.time()
        server_ms = int(seconds) * 1000 + int(micros) // 1000
        assert 0 < int(fields[b"d"]) - server_ms <= 30_000  # server ms, not a client's
        assert 30_000 < plain.pttl(key) <= 30_000 + LOCK_GRACE_MS
        with pytest.raises(UnicodeDecodeError):
            key.decode()  # so no str key, namespaced or not, is ever this key
    fields = plain.hgetall(ns + b"\xfflock:job")
    assert b"t" not in fields
    assert fields[b"r"]


@pytest.mark.parametrize("skew", [5.0, -5.0, 86_400.0, -86_400.0])
def test_client_clock_skew_does_not_move_lock_deadlines(make_cache: MakeCache, skew: float) -> None:
    # Two processes whose clocks disagree by `skew`: the server's clock decides alone.
    holder = make_cache()
    rival = make_cache(namespace=holder.namespace, clock=FakeClock(time.time() + skew))
    first = holder.lock("job", ttl=8)
    assert first.acquire(blocking=False)
    assert rival.lock("job", ttl=8).acquire(blocking=False) is False
    assert rival.lock("job").busy
    assert first.held
    first.release()

    short = holder.lock("job", ttl=0.2)  # now let a lock expire for real
    assert short.acquire(blocking=False)
    assert rival.lock("job").acquire(blocking=False) is False
    _wait_free(rival, "job")
    taker = rival.lock("job", ttl=30)
    assert taker.acquire(blocking=False)
    assert taker.fence is not None
    assert short.fence is not None
    assert taker.fence > short.fence
    with pytest.raises(LockLostError):
        short.release()
    taker.release()


def test_fences_keep_growing_after_the_lock_key_is_gone(
    make_cache: MakeCache, plain: Redis
) -> None:
    cache = make_cache()
    lock = cache.lock("job")
    assert lock.acquire(blocking=False)
    first = lock.fence
    lock.release()
    plain.delete(cache.namespace.encode() + b"\xfflock:job")  # as if the grace ran out
    again = cache.lock("job")
    assert again.acquire(blocking=False)
    assert again.fence is not None
    assert first is not None
    assert again.fence > first
    again.release()


def test_a_foreign_value_at_the_internal_key_is_a_typed_error(
    make_cache: MakeCache, plain: Redis
) -> None:
    cache = make_cache()
    plain.set(cache.namespace.encode() + b"\xfflock:job", b"not a lock")
    for call in (
        lambda: cache.lock("job").acquire(blocking=False),
        lambda: cache.lock("job").busy,
    ):
        with pytest.raises(CorruptEntryError, match="internal key space"):
            call()


def test_scans_and_clear_skip_internal_keys(make_cache: MakeCache, plain: Redis) -> None:
    cache = make_cache()
    cache.put("a", 1)
    with cache.lock("job", timeout=0) as lock:
        # Both count/clear paths: in-server pages (exact glob) and client-side checks.
        assert cache.count() == 1
        assert cache.count("*a*") == 1
        assert cache.count("?") == 1
        assert list(cache.keys()) == ["a"]
        assert list(cache.keys("*")) == ["a"]
        assert cache.clear("*") == 1
        assert cache.clear() == 0
        assert lock.held
        assert plain.exists(cache.namespace.encode() + b"\xfflock:job")
    cache.clear(include_internal=True)
    assert not plain.keys(cache.namespace.encode() + b"*")


def test_clear_include_internal_reaches_every_node(redis_cluster: object) -> None:
    from cachehub_redis.server import RedisClusterServers

    assert isinstance(redis_cluster, RedisClusterServers)
    cache = RedisCache(
        host=redis_cluster.host, port=redis_cluster.port, cluster=True, namespace="lk:"
    )
    try:
        locks = [cache.lock(f"job{i}", ttl=30) for i in range(40)]  # spread over slots
        for lock in locks:
            assert lock.acquire(blocking=False)
        assert cache.count() == 0
        assert cache.clear(include_internal=True) == 0
        assert not any(lock.held for lock in locks)
    finally:
        cache.close()


def test_slow_creator_keeps_its_fill_lock(make_cache: MakeCache) -> None:
    # A creator slower than lock_timeout: keep_alive extends the lock, so a second
    # process waiting on it gets the first one's value instead of computing again.
    one = make_cache()
    two = make_cache(namespace=one.namespace)
    extends: list[float] = []
    real = one._lock_extend

    def counting(name: str, token: str, ttl: float, now: float) -> bool:
        extends.append(ttl)
        return real(name, token, ttl, now)

    one._lock_extend = counting  # type: ignore[method-assign]
    second: list[object] = []
    second_created: list[int] = []

    def creator_one() -> str:
        other = threading.Thread(
            target=lambda: second.append(
                two.get_or_set("k", lambda: second_created.append(1) or "two", lock_timeout=30)
            )
        )
        other.start()
        deadline = time.monotonic() + 30
        while len(extends) < 5:  # five heartbeats: well past the 1.5 s lock_timeout
            assert time.monotonic() < deadline, "the fill lock was never extended"
            time.sleep(0.05)
        threads.append(other)
        return "one"

    threads: list[threading.Thread] = []
    assert one.get_or_set("k", creator_one, lock_timeout=1.5) == "one"
    threads[0].join(30)
    assert second == ["one"]
    assert second_created == []


def test_crashed_creator_delays_others_at_most_its_lock_timeout(make_cache: MakeCache) -> None:
    # The documented bound: a fill lock whose holder died frees itself after its ttl.
    one = make_cache()
    two = make_cache(namespace=one.namespace)
    crashed = Lock(one, "k", ttl=0.3, kind="fill")
    assert crashed.acquire(blocking=False)  # ...and never released
    calls: list[int] = []
    assert two.get_or_set("k", lambda: calls.append(1) or 7, lock_timeout=10) == 7
    assert calls == [1]


@pytest.mark.parametrize(
    "fields",
    [
        {b"t": b"planted"},  # no deadline: holds nothing
        {b"t": b"planted", b"d": b"not a number"},
        {b"f": b"nan"},
        {b"f": b"1e308"},
        {b"f": b"-5"},
        {b"t": b"x", b"d": b"0", b"f": b"1.5"},
    ],
)
def test_planted_lock_records_never_crash(
    make_cache: MakeCache, plain: Redis, fields: dict[bytes, bytes]
) -> None:
    cache = make_cache()
    plain.hset(cache.namespace.encode() + b"\xfflock:job", mapping=fields)  # type: ignore[arg-type]
    with cache.lock("job", timeout=0) as lock:
        assert isinstance(lock.fence, int)
        assert 0 < lock.fence < 2**53
        assert lock.held


def test_a_planted_holder_is_read_bounded(make_cache: MakeCache, plain: Redis) -> None:
    cache = make_cache()
    key = cache.namespace.encode() + b"\xfflock:job"
    seconds, _ = plain.time()
    deadline = str((int(seconds) + 600) * 1000).encode()
    plain.hset(key, mapping={b"t": b"\xff" * 1_000_000, b"d": deadline})
    plain.pexpire(key, 600_000)
    lock = cache.lock("job")
    assert lock.busy  # the planted record holds the lock: only 64 bytes came back
    assert len(cache._lock_holder(lock.key, cache._clock()) or "") <= 64
    assert lock.acquire(blocking=False) is False
    cache.clear(include_internal=True)
    assert lock.acquire(blocking=False)
    lock.release()


@pytest.mark.parametrize(
    "deadline",
    [b"99999999999999999999", b"1e300", b"inf", b"31557686400000+"],
    ids=["20 digits", "1e300", "inf", "a horizon and a day ahead"],
)
@pytest.mark.parametrize("expires", [True, False], ids=["expiring", "persistent"])
def test_a_deadline_past_the_horizon_holds_nothing(
    make_cache: MakeCache, plain: Redis, deadline: bytes, expires: bool
) -> None:
    """Another program's record whose deadline no ttl reaches: the lock and get_or_set of
    its key are free at once, not blocked for centuries (or for ever)."""
    cache = make_cache()
    ns = cache.namespace.encode()
    if deadline.endswith(b"+"):  # the horizon (1,000 years and a day) plus a minute
        seconds, _ = plain.time()
        deadline = str(int(seconds) * 1000 + int(deadline[:-1]) + 60_000).encode()
    for key in (ns + b"\xfflock:job", ns + b"\xfffill:report"):
        plain.hset(key, mapping={b"t": b"attacker", b"d": deadline, b"f": b"1"})
        if expires:
            plain.pexpire(key, 3_600_000)
    lock = cache.lock("job", timeout=0)
    assert not lock.busy
    with lock:
        assert lock.held
        assert 0 < plain.pttl(ns + b"\xfflock:job") <= 30_000 + LOCK_GRACE_MS
    assert cache.get_or_set("report", lambda: "made", lock_timeout=0.5) == "made"


def test_a_persistent_record_holds_nothing_whatever_its_deadline(
    make_cache: MakeCache, plain: Redis
) -> None:
    """cachehub sets a lock's expiry in the script that sets its holder: a hash that never
    expires is another program's, even with a plausible deadline a minute ahead."""
    cache = make_cache()
    key = cache.namespace.encode() + b"\xfflock:job"
    seconds, _ = plain.time()
    plain.hset(key, mapping={b"t": b"attacker", b"d": str((int(seconds) + 60) * 1000)})
    with cache.lock("job", timeout=0) as lock:
        assert lock.held
    plain.pexpire(key, 120_000)  # the same record, expiring: now it holds the lock
    plain.hset(key, mapping={b"t": b"attacker", b"d": str((int(seconds) + 60) * 1000)})
    assert cache.lock("job").busy
    assert cache.lock("job").acquire(blocking=False) is False


def test_the_lock_horizon_is_the_longest_ttl_and_a_day() -> None:
    from cachehub_redis import scripts

    from cachehub.api import LOCK_HORIZON, MAX_TIME_SPAN

    assert MAX_TIME_SPAN.total_seconds() + 86_400 == LOCK_HORIZON
    assert f"local HORIZON = {int(LOCK_HORIZON * 1000)}\n" in scripts.LOCK_ACQUIRE.source


def _server_us(plain: Redis) -> int:
    seconds, micros = plain.time()
    return int(seconds) * 1_000_000 + int(micros)


@pytest.mark.parametrize(
    "ahead_us",
    [
        2**53 - 1,  # + 1 reached 2**53, where the next acquire went back to the clock
        2 * 86_400 * 1_000_000,  # two days ahead of the server's clock
    ],
)
def test_a_fence_planted_far_ahead_of_the_clock_restarts_from_it(
    make_cache: MakeCache, plain: Redis, ahead_us: int
) -> None:
    """No cachehub fence runs ahead of the server's clock (in microseconds) by more than a
    day; one that does was planted, and is never handed to a holder."""
    cache = make_cache()
    key = cache.namespace.encode() + b"\xfflock:job"
    before = _server_us(plain)
    planted = ahead_us if ahead_us >= 2**52 else before + ahead_us
    plain.hset(key, mapping={b"f": str(planted).encode()})
    with cache.lock("job", timeout=0) as lock:
        assert lock.fence is not None
        assert before <= lock.fence <= _server_us(plain)
    with cache.lock("job", timeout=0) as again:
        assert again.fence is not None
        assert again.fence > lock.fence  # and grows from there


@pytest.mark.parametrize("planted", [b"abc", b"nan", b"-5", b"1e308"])
def test_a_retried_acquire_over_a_fence_planted_meanwhile_keeps_the_lock(
    make_cache: MakeCache, plain: Redis, planted: bytes
) -> None:
    """The re-sent acquire of a lost reply finds its own lock whose fence another program
    replaced: it answers with a restarted fence (the script used to fail on it)."""
    cache = make_cache()
    lock = cache.lock("job")
    first = cache._lock_acquire(lock.key, "tok", 30.0, cache._clock())
    assert first is not None
    plain.hset(cache.namespace.encode() + b"\xfflock:job", b"f", planted)
    fence = cache._lock_acquire(lock.key, "tok", 30.0, cache._clock())
    assert fence is not None
    assert first <= fence <= _server_us(plain)
    assert cache._lock_holder(lock.key, cache._clock()) == "tok"
