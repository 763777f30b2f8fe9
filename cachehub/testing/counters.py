"""Conformance: add, incr and decr, including their atomicity under threads."""

from __future__ import annotations

from typing import Any

import pytest

from cachehub.api import BaseCache
from cachehub.errors import CacheValueError

from .support import ConformanceBase, run_threads

__all__ = ["CounterTests"]


class CounterTests(ConformanceBase):
    """put-if-absent and atomic counters."""

    def test_add_to_missing_key(self, cache: BaseCache) -> None:
        assert cache.add("k", "first") is True
        assert cache.get("k") == "first"

    def test_add_to_existing_key(self, cache: BaseCache) -> None:
        cache.put("k", "first")
        assert cache.add("k", "second") is False
        assert cache.get("k") == "first"

    def test_add_over_cached_none(self, cache: BaseCache) -> None:
        cache.put("k", None)
        assert cache.add("k", 1) is False
        assert cache.get("k") is None

    def test_add_after_delete(self, cache: BaseCache) -> None:
        cache.add("k", 1)
        cache.delete("k")
        assert cache.add("k", 2) is True
        assert cache.get("k") == 2

    def test_add_is_atomic_under_threads(self, cache: BaseCache) -> None:
        won = run_threads(self.thread_count, lambda i: cache.add("race", i))
        assert won.count(True) == 1
        assert cache.get("race") == won.index(True)

    def test_add_atomic_on_many_keys(self, cache: BaseCache) -> None:
        def claim(i: int) -> list[int]:
            return [k for k in range(20) if cache.add(f"slot-{k}", i)]

        claimed = run_threads(self.thread_count, claim)
        every = sorted(k for keys in claimed for k in keys)
        assert every == list(range(20))  # each slot claimed exactly once
        for owner, keys in enumerate(claimed):
            for k in keys:
                assert cache.get(f"slot-{k}") == owner

    def test_incr_missing_starts_at_zero(self, cache: BaseCache) -> None:
        assert cache.incr("n") == 1
        assert cache.get("n") == 1

    def test_incr_existing_int(self, cache: BaseCache) -> None:
        cache.put("n", 41)
        assert cache.incr("n") == 42
        got = cache.get("n")
        assert got == 42
        assert type(got) is int

    @pytest.mark.parametrize("delta", [0, 5, -5, 2**40, 2**53 + 1, -(2**53 + 1)])
    def test_incr_delta(self, cache: BaseCache, delta: int) -> None:
        cache.put("n", 10)
        assert cache.incr("n", delta) == 10 + delta
        assert cache.get("n") == 10 + delta

    def test_incr_big_values_stay_exact(self, cache: BaseCache) -> None:
        # Beyond float precision: a provider doing float arithmetic would round these.
        cache.put("n", 2**53)
        assert cache.incr("n") == 2**53 + 1
        assert cache.incr("n", 10**15) == 2**53 + 1 + 10**15
        assert cache.get("n") == 2**53 + 1 + 10**15

    def test_incr_sequence(self, cache: BaseCache) -> None:
        results = [cache.incr("n") for _ in range(10)]
        assert results == list(range(1, 11))

    def test_decr_missing(self, cache: BaseCache) -> None:
        assert cache.decr("n") == -1
        assert cache.decr("other", 5) == -5

    def test_decr_below_zero(self, cache: BaseCache) -> None:
        cache.put("n", 1)
        assert cache.decr("n") == 0
        assert cache.decr("n") == -1
        assert cache.decr("n", 10) == -11
        assert cache.get("n") == -11

    def test_decr_negative_delta_increments(self, cache: BaseCache) -> None:
        cache.put("n", 1)
        assert cache.decr("n", -4) == 5

    def test_incr_after_put_of_negative(self, cache: BaseCache) -> None:
        cache.put("n", -100)
        assert cache.incr("n", 1) == -99

    @pytest.mark.parametrize(
        "stored",
        ["12", 1.5, True, None, [1], {"n": 1}, b"1"],
        ids=["str", "float", "bool", "none", "list", "dict", "bytes"],
    )
    def test_incr_on_non_int_rejected(self, cache: BaseCache, stored: Any) -> None:
        cache.put("n", stored)
        with pytest.raises(CacheValueError):
            cache.incr("n")
        with pytest.raises(CacheValueError):
            cache.decr("n")
        assert cache.get("n") == stored  # unchanged

    @pytest.mark.parametrize(
        "delta",
        [1.5, "1", True, None, 1.0],
        ids=["float", "str", "bool", "none", "integral_float"],
    )
    def test_delta_type_rejected(self, cache: BaseCache, delta: Any) -> None:
        cache.put("n", 1)
        with pytest.raises(CacheValueError):
            cache.incr("n", delta)
        with pytest.raises(CacheValueError):
            cache.decr("n", delta)
        assert cache.get("n") == 1

    def test_delta_error_creates_nothing(self, cache: BaseCache) -> None:
        with pytest.raises(CacheValueError):
            cache.incr("n", 0.5)  # type: ignore[arg-type]
        assert cache.exists("n") is False

    def test_incr_is_atomic_under_threads(self, cache: BaseCache) -> None:
        rounds = self.incr_rounds

        def bump(_: int) -> list[int]:
            return [cache.incr("hits") for _ in range(rounds)]

        seen = run_threads(self.thread_count, bump)
        total = self.thread_count * rounds
        assert cache.get("hits") == total
        # Every intermediate value was handed out exactly once.
        assert sorted(v for values in seen for v in values) == list(range(1, total + 1))

    def test_incr_and_decr_race_to_zero(self, cache: BaseCache) -> None:
        cache.put("n", 0)

        def work(i: int) -> None:
            for _ in range(50):
                if i % 2:
                    cache.incr("n", 3)
                else:
                    cache.decr("n", 3)

        run_threads(self.thread_count, work)
        assert cache.get("n") == 0
