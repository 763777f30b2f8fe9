"""Conformance, opt-in: two processes whose clocks disagree by :attr:`SkewTests.skew`.

For providers whose backend is shared by several hosts. The skewed party is a *forked
child process* whose ``time.time`` runs ``skew`` seconds off - everything in it sees the
wrong time, as on a host whose clock is wrong - and which builds its own cache with the
provider's ``cache_factory(namespace=...)`` and **no** ``clock=`` (the default clock, as in
production). The test process keeps the true clock. A provider opts in by subclassing
:class:`SkewTests` next to its conformance class and saying whose clock decides expiry::

    class TestMySkew(SkewTests):
        expiry_clock = "server"  # or "writer"

        @pytest.fixture
        def cache_factory(self):
            return lambda **kw: MyCache({"host": "localhost"}, **kw)

``expiry_clock = "server"``: the backend's own clock decides entry expiry, so a skewed
process changes nothing - a lagging writer's ``put(time_span=3)`` lives 3 s, a leading
adder cannot replace a live entry, a leading reader sees it. ``"writer"``: each process's
clock decides (stored absolute deadlines); the tests then prove the documented bound -
with clocks ``S`` seconds apart an entry of span ``T`` written by the lagging process is
seen by the others for ``T - S`` seconds, and a leading process treats an entry as expired
``S`` seconds early. Locks follow the cache's :attr:`~cachehub.api.BaseCache.lock_clock`:
``"server"`` locks ignore skew, ``"cache"`` locks are taken over after ``ttl - S`` and
never earlier, by a holder with a higher fence.

In-process providers (memory) have one clock and do not opt in. Children are bounded:
each must answer within :data:`CHILD_TIMEOUT` seconds or is killed and the test fails.
"""

from __future__ import annotations

import multiprocessing
import time
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from typing import Any, ClassVar, Final

import pytest

from cachehub.api import BaseCache
from cachehub.errors import CacheKeyError, LockLostError

from .support import CacheFactory, ConformanceBase

__all__ = ["CHILD_TIMEOUT", "SkewTests", "run_skewed"]

CHILD_TIMEOUT: Final = 60.0
"""Seconds a skewed child may take (it starts a client and sends a few requests)."""
_ABSENT: Final = "<absent>"
_GONE_BOUND: Final = 15.0
"""Most seconds a test polls for the backend to expire a short-lived entry."""


def _child(
    conn: Connection, skew: float, build: Callable[[], BaseCache], act: Callable[[BaseCache], Any]
) -> None:
    real = time.time
    time.time = lambda: real() + skew  # the whole process's wall clock is off
    try:
        cache = build()
        try:
            outcome: tuple[str, Any] = ("value", act(cache))
        finally:
            cache.close()
    except BaseException as exc:  # reported to the test process, never lost
        outcome = ("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
    conn.send(outcome)
    conn.close()


def run_skewed(
    skew: float,
    build: Callable[[], BaseCache],
    act: Callable[[BaseCache], Any],
    *,
    timeout: float = CHILD_TIMEOUT,
) -> Any:
    """Run ``act(build())`` in a forked process whose clock is ``skew`` seconds off.

    Returns what ``act`` returned (it must be picklable); an exception in the child, or
    no answer within ``timeout`` seconds (the child is then killed), fails the test.
    """
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("skew tests fork a child process; this platform cannot fork")
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child, args=(send, skew, build, act), daemon=True)
    child.start()
    send.close()
    try:
        if not receive.poll(timeout):
            pytest.fail(f"the skewed child (clock {skew:+} s) did not answer in {timeout} s")
        kind, payload = receive.recv()
    except EOFError:
        pytest.fail(f"the skewed child (clock {skew:+} s) died without answering")
    finally:
        receive.close()
        child.join(5.0)
        if child.is_alive():
            child.kill()
            child.join(5.0)
    if kind == "error":
        pytest.fail(f"the skewed child (clock {skew:+} s) raised {payload}")
    return payload


class SkewTests(ConformanceBase):
    """Entries and locks shared with a process whose clock is ``skew`` seconds off."""

    expiry_clock: ClassVar[str] = "server"
    """Whose clock decides entry expiry: ``"server"`` or ``"writer"`` (see the module)."""
    skew: ClassVar[float] = 5.0
    """Seconds between the two processes' clocks (the issue's 5 s)."""

    @pytest.fixture
    def peer(
        self, cache_factory: CacheFactory, make_cache: CacheFactory, namespace: str
    ) -> Iterator[BaseCache]:
        """A cache in this process on the true clock (no ``clock=``), on the namespace."""
        cache = cache_factory(namespace=namespace)
        yield cache
        cache.close()

    @pytest.fixture
    def skewed(
        self, cache_factory: CacheFactory, namespace: str
    ) -> Callable[[float, Callable[[BaseCache], Any]], Any]:
        """``skewed(offset, act)``: ``act(cache)`` in a child whose clock is ``offset`` off."""

        def run(offset: float, act: Callable[[BaseCache], Any]) -> Any:
            return run_skewed(offset, lambda: cache_factory(namespace=namespace), act)

        return run

    def _server(self) -> bool:
        return self.expiry_clock == "server"

    @staticmethod
    def _wait_gone(cache: BaseCache, key: str) -> None:
        """Poll (bounded) until ``key`` has expired for ``cache``."""
        deadline = time.monotonic() + _GONE_BOUND
        while cache.exists(key):
            assert time.monotonic() < deadline, f"{key!r} outlived its span by {_GONE_BOUND} s"
            time.sleep(0.05)

    # ------------------------------------------------------------------ entries

    def test_lagging_writer_time_span(self, peer: BaseCache, skewed: Any) -> None:
        short, long_ = self.skew - 2, self.skew + 20

        def write(cache: BaseCache) -> None:
            cache.put("short", "v", time_span=short)
            cache.put("long", "v", time_span=long_)
            cache.put_many({"a": 1, "b": 2}, time_span=short)

        skewed(-self.skew, write)
        assert peer.get("long", _ABSENT) == "v"
        if self._server():
            # The span is what the writer asked for, whatever its clock says.
            assert peer.get("short", _ABSENT) == "v"
            assert peer.get_many(["a", "b"]) == {"a": 1, "b": 2}
            assert peer.count() == 4
        else:
            # Documented: seen by others for span - skew, which is already past.
            assert peer.get("short", _ABSENT) == _ABSENT
            assert peer.get_many(["a", "b"]) == {}
            assert peer.count() == 1

    def test_leading_process_add_and_reads(self, peer: BaseCache, skewed: Any) -> None:
        short = self.skew - 2
        peer.put("k", "old", time_span=short)
        peer.put("n", 10, time_span=short)

        def act(cache: BaseCache) -> tuple[Any, ...]:
            return (
                cache.get("k", _ABSENT),
                cache.exists("k"),
                sorted(cache.keys()),
                cache.add("k", "new", time_span=60),
                cache.incr("n", 5),
            )

        got, exists, keys, added, counted = skewed(self.skew, act)
        if self._server():
            assert (got, exists, keys, added, counted) == ("old", True, ["k", "n"], False, 15)
            assert peer.get("k") == "old"
        else:
            # Documented: the leading process takes both entries for expired already.
            assert (got, exists, keys, added, counted) == (_ABSENT, False, [], True, 5)
            assert peer.get("k") == "new"

    def test_leading_process_add_respects_a_long_entry(self, peer: BaseCache, skewed: Any) -> None:
        peer.put("k", "old", time_span=self.skew + 20)
        assert skewed(self.skew, lambda c: c.add("k", "new")) is False
        assert peer.get("k") == "old"

    def test_lagging_touch(self, peer: BaseCache, skewed: Any) -> None:
        peer.put("k", "v")
        short = self.skew - 2
        assert skewed(-self.skew, lambda c: c.touch("k", time_span=short)) is True
        if self._server():
            assert peer.get("k", _ABSENT) == "v"
            # The deadline shown is the server's: the lagging toucher's own stamp (now + short
            # on a clock skew seconds behind) has already passed.
            ttl = peer.metadata("k").time_to_live
            assert ttl is not None
            assert timedelta(0) < ttl <= timedelta(seconds=short), ttl
        else:
            assert peer.get("k", _ABSENT) == _ABSENT

    def test_idle_entry_read_by_a_leading_process(self, peer: BaseCache, skewed: Any) -> None:
        peer.put("k", "v", idle_time=self.skew - 2)
        got = skewed(self.skew, lambda c: c.get("k", _ABSENT))
        if self._server():
            assert got == "v"
            assert peer.get("k", _ABSENT) == "v"
            # The slid deadline is the server's: the leading reader's access stamp (skew
            # seconds ahead) must not push it past now + idle.
            meta = peer.metadata("k")
            assert meta.time_to_live is not None
            assert meta.last_accessed is not None
            assert meta.time_to_live <= timedelta(seconds=self.skew - 2), meta
            assert meta.last_accessed <= datetime.now(UTC), meta
        else:
            assert got == _ABSENT

    def test_idle_entry_cap_holds_whoever_slides_it(self, peer: BaseCache, skewed: Any) -> None:
        """An idle entry's absolute cap is the server's: a skewed reader's slide neither
        moves the deadline past it (lagging) nor ends the entry before it (leading), and a
        lagging writer's cap is its span, not its stamp."""
        if not self._server():
            pytest.skip("the writer's clock decides: the span cases above prove its bound")
        cap = 2.0
        start = time.monotonic()
        peer.put("lag", "v", idle_time=60, time_span=cap)
        peer.put("lead", "v", idle_time=60, time_span=cap)
        skewed(-self.skew, lambda c: c.put("written", "v", idle_time=60, time_span=cap))
        assert skewed(-self.skew, lambda c: c.get("lag", _ABSENT)) == "v"  # cap + skew away
        assert skewed(self.skew, lambda c: c.get("lead", _ABSENT)) == "v"  # cap passed
        # The lagging writer's cap is skew seconds in the past by this clock: still alive.
        assert peer.get("written", _ABSENT) == "v"
        # metadata() reads without sliding: only the slides above have set the deadlines (a
        # slide that ended an entry early leaves it a millisecond or so).
        for key, slide in (("lead", "a leading reader's"), ("written", "this process's")):
            try:
                left = peer.metadata(key).time_to_live
            except CacheKeyError:
                left = timedelta(0)  # already gone
            assert left is not None, f"{key!r} lost its cap"
            assert left > timedelta(seconds=0.1), (
                f"{slide} slide of {key!r} ended it before its cap ({left} left)"
            )
        time.sleep(max(0.0, cap + 1.0 - (time.monotonic() - start)))
        assert not peer.exists("lag"), "a lagging reader's slide moved it past its cap"

    def test_expired_entry_stays_expired_for_a_lagging_process(
        self, peer: BaseCache, skewed: Any
    ) -> None:
        peer.put("k", "v", time_span=0.3)
        self._wait_gone(peer, "k")

        def act(cache: BaseCache) -> tuple[Any, ...]:
            return cache.get("k", _ABSENT), cache.exists("k"), cache.count()

        got = skewed(-self.skew, act)
        if self._server():
            assert got == (_ABSENT, False, 0)
        # On a writer's clock the lagging reader may still see it (documented): a
        # backend that deleted it already hides it, so nothing is asserted there.

    # ------------------------------------------------------------------ locks

    def test_lock_is_not_taken_by_a_skewed_process(self, peer: BaseCache, skewed: Any) -> None:
        ttl = self.skew + 20  # on a writer's clock: taken over after ttl - skew, not now
        lock = peer.lock("job", ttl=ttl)
        assert lock.acquire(blocking=False)
        for offset in (self.skew, -self.skew):
            assert skewed(offset, lambda c: c.lock("job", ttl=ttl).acquire(blocking=False)) is False
        assert lock.held
        assert lock.release() is True

    def test_lock_takeover_bound(self, peer: BaseCache, skewed: Any) -> None:
        if peer.lock_clock == "server":
            pytest.skip("the server's clock decides locks: no takeover bound to prove")
        ttl = self.skew + 0.5
        lock = peer.lock("job", ttl=ttl)
        assert lock.acquire(blocking=False)
        fence = lock.fence
        assert fence is not None
        time.sleep(0.6)  # past ttl - skew by the holder's clock: a leading process may take it

        def take(cache: BaseCache) -> tuple[bool, int]:
            rival = cache.lock("job", ttl=60)
            return rival.acquire(blocking=False), rival.fence or 0

        taken, rival_fence = skewed(self.skew, take)
        assert taken is True
        assert rival_fence > fence  # the stale holder's writes can be refused by fence
        with pytest.raises(LockLostError):
            lock.release()
