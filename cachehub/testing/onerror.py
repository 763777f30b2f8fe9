"""Conformance: the ``onError`` policy holds for every public operation.

These cases need a cache whose backend cannot be reached. A provider opts in with an
``unreachable_factory`` fixture (``lambda **kw: MyCache({"port": <closed port>}, **kw)``);
without one (an in-process provider cannot be unreachable) the cases are skipped.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cachehub.api import BaseCache
from cachehub.decorators import cached
from cachehub.errors import CacheKeyError, CacheUnavailableError
from cachehub.hookspecs import OperationEvent

from .support import CacheFactory, ConformanceBase

__all__ = ["DEGRADED", "NEVER_DEGRADED", "OnErrorTests"]

_NOT_RUN: Any = object()

DEGRADED: dict[str, tuple[str, Callable[[BaseCache], Any], Any]] = {
    # case: (operation event name, call, result under onError: miss)
    "get": ("get", lambda c: c.get("k", "default"), "default"),
    "exists": ("exists", lambda c: c.exists("k"), False),
    "get_many": ("get_many", lambda c: c.get_many(["a", "b"]), {}),
    "get_all": ("get_all", lambda c: c.get_all(), {}),
    "get_all_filter": ("get_all", lambda c: c.get_all("a*"), {}),
    "keys": ("keys", lambda c: list(c.keys()), []),
    "keys_filter": ("keys", lambda c: list(c.keys("a*")), []),
    "count": ("count", lambda c: c.count(), 0),
    "count_filter": ("count", lambda c: c.count("a*"), 0),
    "put": ("put", lambda c: c.put("k", 1), None),
    "put_ttl": ("put", lambda c: c.put("k", 1, time_span=60), None),
    "put_many": ("put_many", lambda c: c.put_many({"a": 1, "b": 2}), None),
    "delete": ("delete", lambda c: c.delete("k"), False),
    "delete_many": ("delete_many", lambda c: c.delete_many(["a", "b"]), 0),
    "clear": ("clear", lambda c: c.clear(), 0),
    "clear_filter": ("clear", lambda c: c.clear("a*"), 0),
    "touch": ("touch", lambda c: c.touch("k", time_span=60), False),
}
"""Operations that degrade under ``onError: miss``: an outage looks like an empty cache
whose writes are dropped."""

NEVER_DEGRADED: dict[str, tuple[str, Callable[[BaseCache], Any]]] = {
    # Neither answer would be true without the backend, so these raise in both modes.
    "add": ("add", lambda c: c.add("k", 1)),
    "incr": ("incr", lambda c: c.incr("n")),
    "decr": ("decr", lambda c: c.decr("n", 2)),
    "lock_acquire": ("lock", lambda c: c.lock("job").acquire(blocking=False)),
    "lock_context_manager": ("lock", lambda c: c.lock("job", timeout=0).__enter__()),
}
"""Operations that raise :class:`CacheUnavailableError` even under ``onError: miss``."""


class OnErrorTests(ConformanceBase):
    """With the backend unreachable: ``raise`` raises, ``miss`` degrades as documented."""

    @pytest.fixture
    def unreachable_factory(self) -> CacheFactory:
        """Override: ``lambda **kw: MyCache(<settings of an unreachable backend>, **kw)``."""
        pytest.skip(
            f"{type(self).__name__} defines no unreachable_factory fixture, which runs "
            "the onError cases (an in-process provider has no outage to test)"
        )

    @pytest.fixture
    def down(
        self, unreachable_factory: CacheFactory, namespace: str
    ) -> Iterator[Callable[..., tuple[BaseCache, list[OperationEvent]]]]:
        """``down(onError)``: an unreachable cache and the events it reports."""
        created: list[BaseCache] = []

        def make(on_error: str) -> tuple[BaseCache, list[OperationEvent]]:
            events: list[OperationEvent] = []
            cache = unreachable_factory(
                namespace=namespace, onError=on_error, observer=events.append
            )
            created.append(cache)
            return cache, events

        yield make
        for cache in created:
            # Closing a cache that never connected may still report the outage.
            with contextlib.suppress(CacheUnavailableError):
                cache.close()

    @pytest.mark.parametrize("op", list(DEGRADED))
    def test_miss_degrades(self, down: Any, op: str, caplog: pytest.LogCaptureFixture) -> None:
        cache, events = down("miss")
        name, call, expected = DEGRADED[op]
        with caplog.at_level(logging.WARNING):
            assert call(cache) == expected
        assert any("unavailable" in r.getMessage() for r in caplog.records), (
            "an outage degraded silently: onError: miss must log a WARNING"
        )
        # The outage is still reported to observers, under the operation's own name.
        assert events, "no operation event was reported"
        assert events[-1].operation == name
        assert isinstance(events[-1].error, CacheUnavailableError)

    @pytest.mark.parametrize("op", list(DEGRADED))
    def test_raise_raises(self, down: Any, op: str) -> None:
        cache, events = down("raise")
        name, call, _ = DEGRADED[op]
        with pytest.raises(CacheUnavailableError):
            call(cache)
        assert events[-1].operation == name
        assert isinstance(events[-1].error, CacheUnavailableError)

    @pytest.mark.parametrize("on_error", ["miss", "raise"])
    @pytest.mark.parametrize("op", list(NEVER_DEGRADED))
    def test_never_degrades(self, down: Any, op: str, on_error: str) -> None:
        cache, events = down(on_error)
        name, call = NEVER_DEGRADED[op]
        if op.startswith("lock") and type(cache)._lock_acquire is BaseCache._lock_acquire:
            pytest.skip("this provider keeps its locks in process: no outage reaches them")
        with pytest.raises(CacheUnavailableError):
            call(cache)
        assert events[-1].operation == name

    @pytest.mark.parametrize("on_error", ["miss", "raise"])
    def test_get_throw_when_not_exist(self, down: Any, on_error: str) -> None:
        cache, _ = down(on_error)
        expected = CacheKeyError if on_error == "miss" else CacheUnavailableError
        with pytest.raises(expected):
            cache.get("k", throw_when_not_exist=True)

    @pytest.mark.parametrize("on_error", ["miss", "raise"])
    def test_metadata(self, down: Any, on_error: str) -> None:
        # Under miss an unreachable entry is a missing one: CacheKeyError, as for a miss.
        cache, _ = down(on_error)
        expected = CacheKeyError if on_error == "miss" else CacheUnavailableError
        with pytest.raises(expected):
            cache.metadata("k")

    def test_get_or_set_miss_computes_without_caching(self, down: Any) -> None:
        cache, _ = down("miss")
        calls: list[int] = []

        def creator() -> int:
            calls.append(1)
            return 42

        assert cache.get_or_set("k", creator, time_span=60) == 42
        assert cache.get_or_set("k", creator) == 42
        assert len(calls) == 2  # nothing could be stored, so it is computed again

    def test_get_or_set_raise_raises_before_computing(self, down: Any) -> None:
        cache, _ = down("raise")
        calls: list[int] = []
        with pytest.raises(CacheUnavailableError):
            cache.get_or_set("k", lambda: calls.append(1))
        assert calls == []

    @pytest.mark.parametrize("on_error", ["miss", "raise"])
    def test_cached_function(self, down: Any, on_error: str) -> None:
        cache, _ = down(on_error)
        calls: list[int] = []

        @cached(cache, time_span=60)
        def double(x: int) -> int:
            calls.append(x)
            return 2 * x

        if on_error == "miss":
            assert [double(2), double(2)] == [4, 4]
            assert calls == [2, 2]
            assert double.invalidate(2) is False
        else:
            with pytest.raises(CacheUnavailableError):
                double(2)
            with pytest.raises(CacheUnavailableError):
                double.invalidate(2)
            assert calls == []
