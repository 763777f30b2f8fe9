"""Conformance: the exact instant an entry dies, for every way of setting it and every operation.

The contract (``cachehub.api.Entry.alive``): an entry is alive while ``now < deadline``,
so at ``now == deadline`` it is already dead, and one millisecond before it is alive.
Every case starts on a whole second (:meth:`Timeline.align`) and moves the fake clock
by whole seconds, so the deadline a backend stores is exactly the instant tested.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cachehub.api import MISSING, BaseCache
from cachehub.errors import CacheValueError

from .clock import FakeClock
from .expiry import _ON_EXPIRED
from .support import ConformanceBase, Timeline

__all__ = ["InstantTests"]

SPAN = 60
"""Whole seconds: every deadline in these cases is a whole second too."""

# How each operation sees a live entry "k" (holding "old"), with "alive" beside it.
_ON_ALIVE: dict[str, tuple[Callable[[BaseCache], Any], Any]] = {
    "get": (lambda c: c.get("k", MISSING), "old"),
    "exists": (lambda c: c.exists("k"), True),
    "get_many": (lambda c: c.get_many(["k", "alive"]), {"k": "old", "alive": "yes"}),
    "keys": (lambda c: sorted(c.keys()), ["alive", "k"]),
    "keys_filtered": (lambda c: list(c.keys("k*")), ["k"]),
    "get_all": (lambda c: c.get_all(), {"k": "old", "alive": "yes"}),
    "count": (lambda c: c.count(), 2),
    "count_filtered": (lambda c: c.count("k"), 1),
    "metadata": (lambda c: c.metadata("k").hit_count, 0),
    "add_refused": (lambda c: c.add("k", "new"), False),
    "touch": (lambda c: c.touch("k", time_span=SPAN), True),
    "delete": (lambda c: c.delete("k"), True),
    "delete_many": (lambda c: c.delete_many(["k"]), 1),
    "clear_counts_it": (lambda c: c.clear(), 2),
    "clear_filtered": (lambda c: c.clear("k"), 1),
    "get_or_set_keeps": (lambda c: c.get_or_set("k", lambda: "fresh"), "old"),
}

# Ways of giving "k" a deadline exactly SPAN seconds after the aligned start ``t0``.
# Each writes "k" = "old" and may move the clock, but ends with the deadline at t0 + SPAN.
_SETTERS: dict[str, Callable[[BaseCache, FakeClock, float], None]] = {
    "time_span": lambda c, clock, t0: c.put("k", "old", time_span=SPAN),
    "time_span_timedelta": lambda c, clock, t0: c.put(
        "k", "old", time_span=timedelta(seconds=SPAN)
    ),
    "until": lambda c, clock, t0: c.put("k", "old", until=datetime.fromtimestamp(t0 + SPAN, UTC)),
    "idle": lambda c, clock, t0: c.put("k", "old", idle_time=SPAN),
    "add": lambda c, clock, t0: _ignore(c.add("k", "old", time_span=SPAN)),
    "put_many": lambda c, clock, t0: c.put_many({"k": "old"}, time_span=SPAN),
    "put_many_idle": lambda c, clock, t0: c.put_many({"k": "old"}, idle_time=SPAN),
    "get_or_set": lambda c, clock, t0: _ignore(c.get_or_set("k", lambda: "old", time_span=SPAN)),
    "touch_after_put": lambda c, clock, t0: _touched(c, clock, time_span=SPAN - 10),
    "touch_idle": lambda c, clock, t0: _touched(c, clock, idle_time=SPAN - 10),
    "touch_until": lambda c, clock, t0: _touched(
        c, clock, until=datetime.fromtimestamp(t0 + SPAN, UTC)
    ),
    "idle_slid_by_get": lambda c, clock, t0: _slid(c, clock, lambda: c.get("k")),
    "idle_slid_by_get_many": lambda c, clock, t0: _slid(c, clock, lambda: c.get_many(["k"])),
    "idle_capped_by_time_span": lambda c, clock, t0: _capped(c, clock),
}


def _ignore(_result: object) -> None:
    """Drop a setter's return value (the table's setters return nothing)."""


def _touched(cache: BaseCache, clock: FakeClock, **expiry: Any) -> None:
    """Written without expiry, then touched 10 s later to die at t0 + SPAN."""
    cache.put("k", "old")
    clock.advance(10)
    assert cache.touch("k", **expiry) is True


def _slid(cache: BaseCache, clock: FakeClock, read: Callable[[], Any]) -> None:
    """Idle entry read after 20 s: its deadline slides from t0 + SPAN - 20 to t0 + SPAN."""
    cache.put("k", "old", idle_time=SPAN - 20)
    clock.advance(20)
    read()


def _capped(cache: BaseCache, clock: FakeClock) -> None:
    """Idle time would slide past t0 + SPAN on every read; the absolute lifetime wins."""
    cache.put("k", "old", time_span=SPAN, idle_time=40)
    for _ in range(2):  # reads at +25 and +50 slide the idle deadline to +90
        clock.advance(25)
        assert cache.get("k") == "old"


class InstantTests(ConformanceBase):
    """Entries die exactly at their deadline, whatever set it, for every operation."""

    @pytest.fixture
    def fake(self, timeline: Timeline) -> tuple[FakeClock, float]:
        """The fake clock, aligned on a whole second, and that second."""
        if timeline.clock is None:
            pytest.skip("exact instants need a fake clock (supports_clock = False)")
        return timeline.clock, timeline.align()

    @pytest.mark.parametrize("op", list(_ON_EXPIRED))
    def test_dead_at_the_deadline(
        self, cache: BaseCache, fake: tuple[FakeClock, float], op: str
    ) -> None:
        clock, _ = fake
        cache.put("k", "old", time_span=SPAN)
        cache.put("alive", "yes")
        clock.advance(SPAN)  # now == deadline: already dead
        call, expected = _ON_EXPIRED[op]
        assert call(cache) == expected

    @pytest.mark.parametrize("op", list(_ON_ALIVE))
    def test_alive_a_millisecond_before(
        self, cache: BaseCache, fake: tuple[FakeClock, float], op: str
    ) -> None:
        clock, _ = fake
        cache.put("k", "old", time_span=SPAN)
        cache.put("alive", "yes")
        clock.advance(SPAN - 0.001)
        call, expected = _ON_ALIVE[op]
        assert call(cache) == expected

    @pytest.mark.parametrize("offset", [0.3327086, 0.1558325, 0.9999996])
    def test_an_unaligned_deadline_is_one_instant_to_every_operation(
        self, make_cache: Callable[..., BaseCache], fake: tuple[FakeClock, float], offset: float
    ) -> None:
        """A start with a sub-microsecond part, as ``time.time()`` has: a backend that
        stores deadlines to the microsecond must judge ``now`` to the same microsecond on
        every path (DynamoDB's get once compared the raw instant with a deadline rounded
        up, and found alive what add, keys and count found dead)."""
        clock, _ = fake
        clock.advance(offset)
        cache, other = make_cache(), make_cache()
        cache.put("k", "old", time_span=SPAN)
        cache.put("alive", "yes")
        clock.advance(SPAN)  # now == deadline, unrounded
        assert other.get("k", MISSING) is MISSING
        assert other.exists("k") is False
        assert sorted(other.keys()) == ["alive"]
        assert other.count() == 1
        assert other.get_many(["k", "alive"]) == {"alive": "yes"}
        assert other.add("k", "new") is True
        assert cache.get("k") == "new"

    @pytest.mark.parametrize("setter", list(_SETTERS))
    def test_every_deadline_is_exact(
        self, make_cache: Callable[..., BaseCache], fake: tuple[FakeClock, float], setter: str
    ) -> None:
        clock, t0 = fake
        cache, other = make_cache(), make_cache()  # the second instance judges too
        _SETTERS[setter](cache, clock, t0)
        elapsed = clock() - t0
        assert elapsed == int(elapsed), "setters move the clock by whole seconds"
        clock.advance(SPAN - 1 - elapsed)  # one second before the deadline
        assert other.exists("k") is True
        meta = other.metadata("k")
        assert meta.expires == datetime.fromtimestamp(t0 + SPAN, UTC)
        assert meta.time_to_live == timedelta(seconds=1)
        clock.advance(1)  # exactly the deadline (no read in between: exists slides nothing)
        assert cache.get("k", MISSING) is MISSING
        assert other.exists("k") is False
        assert other.count() == 0
        assert list(other.keys()) == []

    def test_incr_keeps_the_exact_deadline(
        self, cache: BaseCache, fake: tuple[FakeClock, float]
    ) -> None:
        clock, _ = fake
        cache.put("n", 1, time_span=SPAN)
        clock.advance(10)
        assert cache.incr("n") == 2
        clock.advance(SPAN - 10 - 1)
        assert cache.incr("n") == 3  # one second before: the same counter
        clock.advance(1)
        assert cache.incr("n") == 1  # at the deadline: a fresh counter from 0
        assert cache.metadata("n").expires is None

    def test_clear_of_the_empty_namespace_at_the_deadline(
        self, make_cache: Callable[..., BaseCache], fake: tuple[FakeClock, float]
    ) -> None:
        # clear() on the empty namespace empties the whole backend: only done on an
        # in-process provider, whose backend lives in this test alone.
        probe = make_cache()
        if probe.distributed:
            pytest.skip("clear() on the empty namespace would wipe a shared backend")
        clock, _ = fake
        probe.put_many({"a": 1, "b": 2})
        probe.put("dying", 3, time_span=SPAN)
        make_cache(namespace="other:").put("c", 4)
        clock.advance(SPAN)  # "dying" is dead at this very instant
        root = make_cache(namespace="")
        assert root.clear() == 3  # a, b and other:c
        assert root.count() == 0
        assert probe.get_many(["a", "b", "dying"]) == {}

    def test_until_now_is_refused(self, cache: BaseCache, fake: tuple[FakeClock, float]) -> None:
        clock, _ = fake
        with pytest.raises(CacheValueError):
            cache.put("k", "v", until=clock.datetime())  # dead on arrival: refused
        with pytest.raises(CacheValueError):
            cache.touch("k", until=clock.datetime())
        assert cache.exists("k") is False

    def test_metadata_of_an_idle_entry_after_reads(
        self, make_cache: Callable[..., BaseCache], fake: tuple[FakeClock, float]
    ) -> None:
        cache = self.counting(make_cache)  # asserts a hit count: hitCounts on where needed
        clock, t0 = fake
        cache.put("k", "v", idle_time=SPAN)
        meta = cache.metadata("k")
        assert meta.expires == datetime.fromtimestamp(t0 + SPAN, UTC)
        assert meta.time_to_live == timedelta(seconds=SPAN)
        assert meta.idle_time == timedelta(seconds=SPAN)
        clock.advance(15)
        cache.get_many(["k"])
        meta = cache.metadata("k")
        assert meta.expires == datetime.fromtimestamp(t0 + 15 + SPAN, UTC)
        assert meta.last_accessed == datetime.fromtimestamp(t0 + 15, UTC)
        assert meta.hit_count == 1
        clock.advance(15)
        cache.get("k")
        meta = cache.metadata("k")
        assert meta.expires == datetime.fromtimestamp(t0 + 30 + SPAN, UTC)
        assert meta.last_accessed == datetime.fromtimestamp(t0 + 30, UTC)
        assert meta.hit_count == 2
