"""Shared machinery of the conformance suite: fixtures, time control, threads, deep equality."""

from __future__ import annotations

import math
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from datetime import time as dtime
from decimal import Decimal
from typing import Any, ClassVar, TypeVar

import pytest

from cachehub.api import BaseCache
from cachehub.errors import CacheValueError

from .clock import FakeClock

__all__ = [
    "CacheFactory",
    "ConformanceBase",
    "Timeline",
    "assert_same",
    "cache_maker",
    "count_loop_yields",
    "run_threads",
]

CacheFactory = Callable[..., BaseCache]
"""``cache_factory(**kwargs)``: a new provider instance on the shared test backend."""

T = TypeVar("T")


@dataclass(frozen=True)
class Timeline:
    """Moves time for expiry tests: the fake clock when there is one, real sleeps otherwise.

    Durations are expressed in *units*: a minute of fake time when the provider takes a
    clock (so nothing sleeps), ``real_time_unit`` seconds of wall time when it does not.
    """

    clock: FakeClock | None
    unit: float

    def span(self, units: float) -> float:
        """``units`` as seconds, for ``time_span=``/``idle_time=`` arguments."""
        return units * self.unit

    def now(self) -> float:
        """Current epoch seconds as the cache under test sees them."""
        return self.clock() if self.clock is not None else time.time()

    def at(self, units: float) -> datetime:
        """An aware UTC datetime ``units`` from now, for ``until=``."""
        return datetime.fromtimestamp(self.now() + self.span(units), UTC)

    def align(self) -> float:
        """Move a fake clock to the next whole second; return the (real or fake) time.

        Exact-instant tests start here: a whole-second start plus whole-second spans
        gives deadlines every backend stores exactly (DynamoDB Numbers keep microseconds,
        Redis headers doubles), so ``now == deadline`` really happens.
        """
        if self.clock is not None:
            now = self.clock()
            self.clock.advance(math.ceil(now) - now)  # exact: both are close doubles
        return self.now()

    def wait(self, units: float) -> None:
        """Let ``units`` pass: instantly on a fake clock, by sleeping otherwise."""
        if self.clock is not None:
            self.clock.advance(self.span(units))
        else:
            time.sleep(self.span(units))

    def wait_until(self, start: float, units: float) -> None:
        """Let time reach ``start`` (a :meth:`now` reading) plus ``units``.

        A schedule of these does not drift: each real sleep overshoots once, instead of
        every earlier sleep's overshoot and request adding up as repeated :meth:`wait`
        calls do. Tests that must read just before a deadline use it.
        """
        left = start + self.span(units) - self.now()
        if left <= 0:
            return  # late already: time never moves backwards
        if self.clock is not None:
            self.clock.advance(left)
        else:
            time.sleep(left)


RACE_SWITCH_INTERVAL = 1e-6
"""``sys.setswitchinterval`` while :func:`run_threads` runs: races become likely."""


def run_threads(count: int, target: Callable[[int], T], *, timeout: float = 30.0) -> list[T]:
    """Run ``target(i)`` in ``count`` threads released together; return results in order.

    A barrier lines the threads up so that they really race. The first exception raised
    by any thread is re-raised here.
    """
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def body(index: int) -> None:
        try:
            barrier.wait(timeout)
            results[index] = target(index)
        except BaseException as exc:  # reported to the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(count)]
    # CPython switches threads every 5 ms by default: a short critical section without its
    # lock is then almost never interrupted. A 1 us interval makes those races likely.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(RACE_SWITCH_INTERVAL)
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout)
    finally:
        sys.setswitchinterval(interval)
    if any(thread.is_alive() for thread in threads):
        pytest.fail(f"{count} threads did not finish within {timeout}s (deadlock?)")
    if errors:
        raise errors[0]
    return results


def _same_float(expected: float, actual: float) -> bool:
    if math.isnan(expected):
        return math.isnan(actual)
    return expected == actual and math.copysign(1.0, expected) == math.copysign(1.0, actual)


def _typed(items: Any) -> set[tuple[type, Any]]:
    return {(type(item), item) for item in items}


def assert_same(expected: Any, actual: Any, path: str = "value") -> None:
    """Assert ``actual`` equals ``expected`` with exactly the same types, recursively.

    Stricter than ``==``: ``1 == 1.0 == True`` and ``(1,) != [1]`` are told apart, float
    signs and NaN are compared, Decimal exponents and datetime offsets must survive.
    """
    assert type(actual) is type(expected), (
        f"{path}: expected {type(expected).__name__} {expected!r:.80}, "
        f"got {type(actual).__name__} {actual!r:.80}"
    )
    if isinstance(expected, float):
        assert _same_float(expected, actual), f"{path}: expected {expected!r}, got {actual!r}"
    elif isinstance(expected, Decimal):
        assert expected.as_tuple() == actual.as_tuple(), f"{path}: {expected!r} != {actual!r}"
    elif isinstance(expected, (datetime, dtime)):
        assert expected == actual, f"{path}: {expected!r} != {actual!r}"
        assert (expected.tzinfo is None) == (actual.tzinfo is None), f"{path}: tz lost"
        assert expected.utcoffset() == actual.utcoffset(), f"{path}: UTC offset changed"
    elif isinstance(expected, (list, tuple)):
        assert len(expected) == len(actual), f"{path}: length {len(expected)} != {len(actual)}"
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            assert_same(e, a, f"{path}[{i}]")
    elif isinstance(expected, dict):
        actual_by_key = {(type(k), k): v for k, v in actual.items()}
        assert len(actual_by_key) == len(expected), f"{path}: {len(expected)} keys expected"
        for k, v in expected.items():
            assert (type(k), k) in actual_by_key, f"{path}: key {k!r} ({type(k).__name__}) lost"
            assert_same(v, actual_by_key[(type(k), k)], f"{path}[{k!r}]")
    elif isinstance(expected, (set, frozenset)):
        assert _typed(expected) == _typed(actual), f"{path}: {expected!r} != {actual!r}"
    elif isinstance(expected, date):  # plain dates (datetime was handled above)
        assert expected == actual, f"{path}: {expected!r} != {actual!r}"
    else:
        assert expected == actual, f"{path}: {expected!r:.200} != {actual!r:.200}"


def cache_maker(
    cache_factory: CacheFactory,
    clock: FakeClock | None,
    namespace: str,
    *,
    view: Callable[[BaseCache], BaseCache] = lambda cache: cache,
    release: Callable[[BaseCache], object] = BaseCache.close,
) -> Iterator[CacheFactory]:
    """The ``make_cache`` fixture's body: caches on the test's namespace (by default),
    handed out as ``view(cache)``; afterwards the test's namespaces are cleared and each
    cache is ``release``d."""
    created: list[BaseCache] = []

    def make(**kwargs: Any) -> BaseCache:
        kwargs.setdefault("namespace", namespace)
        if clock is not None:
            kwargs.setdefault("clock", clock)
        cache = cache_factory(**kwargs)
        created.append(cache)
        return view(cache)

    yield make
    # Clear with the real clock: the fake one may hide entries a backend still holds.
    # Only the test's own namespaces: "" would wipe a shared backend.
    used = {c.namespace for c in created if c.namespace.startswith(namespace)}
    for ns in sorted(used | {namespace}):
        cleaner = cache_factory(namespace=ns)
        try:
            cleaner.clear(include_internal=True)  # locks a test left behind too
        finally:
            cleaner.close()
    for cache in created:
        release(cache)


class ConformanceBase:
    """Fixtures every conformance mixin relies on; see :class:`CacheConformance`."""

    supports_clock: ClassVar[bool] = True
    """False for a provider that cannot take ``clock=``: expiry tests then sleep for real."""
    real_time_unit: ClassVar[float] = 0.5
    """Seconds per time unit when sleeping for real (``supports_clock = False``)."""
    timestamp_tolerance: ClassVar[float] = 0.01
    """Allowed difference, in seconds, between stored timestamps and the clock."""
    thread_count: ClassVar[int] = 8
    """How many threads race in the concurrency tests."""
    incr_rounds: ClassVar[int] = 200
    """Increments per thread in the atomic-incr test (lower it for a slow emulator)."""
    hit_count_settings: ClassVar[dict[str, Any]] = {}
    """Extra ``cache_factory`` keyword arguments of the caches whose hit counts the
    metadata cases assert (for a provider where hit counting must be switched on in a
    way of its own; a :class:`cachehub.provider.RemoteCache` is switched on with the
    core's ``hitCounts`` setting without this)."""

    value_size_limit: ClassVar[int | None] = None
    """Bytes of the largest encoded value the provider's backend can hold, for a backend
    that cannot hold the large-value cases' ~300 KB (an item limit of 256 KB): the cases
    whose value encodes to more are skipped, saying so (see :meth:`needs_value_bytes`).
    None: no such limit. The shipped providers hold them all and never set it."""

    def holds_value_bytes(self, size: int) -> bool:
        """Whether the backend holds a value that encodes to ``size`` bytes (see
        :attr:`value_size_limit`).

        Raises:
            CacheValueError: ``value_size_limit`` is neither None nor a positive int.
        """
        limit = self.value_size_limit
        if limit is None:
            return True
        if type(limit) is not int or limit <= 0:
            raise CacheValueError(
                f"{type(self).__name__}.value_size_limit is {limit!r}.",
                hint="set it to a positive number of bytes (the largest encoded value your "
                "backend can hold), or leave it None when there is no such limit.",
            )
        return size <= limit

    def needs_value_bytes(self, size: int) -> None:
        """Skip the calling case when its value encodes to ``size`` bytes, more than
        :attr:`value_size_limit`; the reason names the setting."""
        if not self.holds_value_bytes(size):
            pytest.skip(
                f"the case's value encodes to {size} bytes, more than "
                f"{type(self).__name__}.value_size_limit ({self.value_size_limit} bytes)"
            )

    def counting(self, make_cache: CacheFactory) -> BaseCache:
        """A cache that counts reads, for the cases that assert hit counts.

        Remote providers count only with ``hitCounts`` on (a counted read costs a
        write), so a cache that does not count by default is built again with it.
        """
        cache = make_cache(**self.hit_count_settings)
        if cache.counts_hits:
            return cache
        cache.close()
        return make_cache(**self.hit_count_settings, hitCounts=True)

    @pytest.fixture
    def cache_factory(self) -> CacheFactory:
        """Override in the provider's test class: ``lambda **kw: MyCache(settings, **kw)``."""
        pytest.fail(
            f"{type(self).__name__} must define a cache_factory fixture returning "
            "`lambda **kw: MyCache(<connection settings>, **kw)`; see docs/conformance.md.",
            pytrace=False,
        )

    @pytest.fixture
    def clock(self) -> FakeClock | None:
        """The fake clock handed to every cache of the test (None without clock support)."""
        return FakeClock() if self.supports_clock else None

    @pytest.fixture
    def timeline(self, clock: FakeClock | None) -> Timeline:
        """Time control for expiry tests (fake minutes, or real half seconds)."""
        return Timeline(clock, 60.0 if clock is not None else self.real_time_unit)

    @pytest.fixture
    def namespace(self) -> str:
        """A namespace no other test (or other run on a shared server) uses."""
        return f"chtest-{uuid.uuid4().hex[:16]}:"

    @pytest.fixture
    def make_cache(
        self, cache_factory: CacheFactory, clock: FakeClock | None, namespace: str
    ) -> Iterator[CacheFactory]:
        """Build caches on the test's namespace (by default) and clean them up afterwards."""
        yield from cache_maker(cache_factory, clock, namespace)

    @pytest.fixture
    def cache(self, make_cache: CacheFactory) -> BaseCache:
        """A fresh, empty, writable cache on the test's own namespace."""
        return make_cache()


def count_loop_yields(monkeypatch: pytest.MonkeyPatch, cls: type[Any]) -> dict[str, int]:
    """How often the flows of ``cls`` (a :class:`cachehub.provider.FlowCache`) hand the
    event loop over (:data:`cachehub.provider.YIELD_LOOP`), by driver: ``{"sync": n,
    "async": n}``, counted from now until the test ends. Counted, not timed: a test sets
    ``cachehub.provider.LOOP_STRETCH`` to 0 to make every stretch end."""
    seen = {"sync": 0, "async": 0}
    real_sync, real_async = cls._yield_loop, cls._ayield_loop

    def sync_yield(self: Any) -> None:
        seen["sync"] += 1
        real_sync(self)

    async def async_yield(self: Any) -> None:
        seen["async"] += 1
        await real_async(self)

    monkeypatch.setattr(cls, "_yield_loop", sync_yield)
    monkeypatch.setattr(cls, "_ayield_loop", async_yield)
    return seen
