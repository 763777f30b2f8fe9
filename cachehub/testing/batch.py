"""Conformance: get_many / put_many / delete_many."""

from __future__ import annotations

import pytest

from cachehub.api import BaseCache

from .support import ConformanceBase

__all__ = ["BatchTests"]


class BatchTests(ConformanceBase):
    """Batches of 0, 1 and many keys, with duplicates and missing keys."""

    @pytest.mark.parametrize("size", [0, 1, 2, 25, 250])
    def test_put_many_get_many(self, cache: BaseCache, size: int) -> None:
        items = {f"key-{i}": {"n": i} for i in range(size)}
        cache.put_many(items)
        assert cache.get_many(list(items)) == items
        assert cache.count() == size
        assert sorted(cache.keys()) == sorted(items)

    @pytest.mark.parametrize("size", [0, 1, 250])
    def test_delete_many(self, cache: BaseCache, size: int) -> None:
        items = {f"key-{i}": i for i in range(size)}
        cache.put_many(items)
        cache.put("keep", True)
        assert cache.delete_many(list(items)) == size
        assert list(cache.keys()) == ["keep"]

    def test_get_many_empty_is_empty(self, cache: BaseCache) -> None:
        cache.put("k", 1)
        assert cache.get_many([]) == {}

    def test_put_many_empty_stores_nothing(self, cache: BaseCache) -> None:
        cache.put_many({})
        assert cache.count() == 0

    def test_delete_many_empty_returns_zero(self, cache: BaseCache) -> None:
        cache.put("k", 1)
        assert cache.delete_many([]) == 0
        assert cache.exists("k")

    def test_get_many_skips_missing(self, cache: BaseCache) -> None:
        cache.put_many({"a": 1, "c": 3})
        assert cache.get_many(["a", "b", "c", "d"]) == {"a": 1, "c": 3}

    def test_get_many_all_missing(self, cache: BaseCache) -> None:
        assert cache.get_many([f"absent-{i}" for i in range(30)]) == {}

    def test_get_many_keeps_cached_none(self, cache: BaseCache) -> None:
        cache.put("none", None)
        assert cache.get_many(["none", "absent"]) == {"none": None}

    def test_get_many_duplicates(self, cache: BaseCache) -> None:
        cache.put("a", 1)
        assert cache.get_many(["a", "a", "b", "b", "a"]) == {"a": 1}

    def test_get_many_accepts_any_iterable(self, cache: BaseCache) -> None:
        cache.put_many({"a": 1, "b": 2})
        assert cache.get_many(k for k in ("a", "b")) == {"a": 1, "b": 2}
        assert cache.get_many({"a", "zz"}) == {"a": 1}
        assert cache.get_many(("b",)) == {"b": 2}

    def test_delete_many_duplicates_count_once(self, cache: BaseCache) -> None:
        cache.put_many({"a": 1, "b": 2})
        assert cache.delete_many(["a", "a", "b", "a"]) == 2
        assert cache.count() == 0

    def test_delete_many_counts_only_existing(self, cache: BaseCache) -> None:
        cache.put_many({"a": 1, "b": 2, "c": 3})
        assert cache.delete_many(["a", "x", "c", "y"]) == 2
        assert list(cache.keys()) == ["b"]

    def test_delete_many_accepts_generator(self, cache: BaseCache) -> None:
        cache.put_many({f"k{i}": i for i in range(10)})
        assert cache.delete_many(f"k{i}" for i in range(0, 10, 2)) == 5
        assert sorted(cache.keys()) == [f"k{i}" for i in range(1, 10, 2)]

    def test_put_many_overwrites(self, cache: BaseCache) -> None:
        cache.put_many({"a": 1, "b": 2})
        cache.put_many({"b": 20, "c": 30})
        assert cache.get_all() == {"a": 1, "b": 20, "c": 30}

    def test_put_many_then_get_each(self, cache: BaseCache) -> None:
        items = {f"k{i}": [i] * (i % 5) for i in range(40)}
        cache.put_many(items)
        for key, value in items.items():
            assert cache.get(key) == value

    def test_get_many_of_single_puts(self, cache: BaseCache) -> None:
        for i in range(30):
            cache.put(f"k{i}", i)
        assert cache.get_many([f"k{i}" for i in range(35)]) == {f"k{i}": i for i in range(30)}

    def test_put_many_large_batch_with_large_values(self, cache: BaseCache) -> None:
        # ~5 MB in one call: providers must split into requests their backend accepts.
        items = {f"blob-{i}": bytes([i % 256]) * 20_000 for i in range(250)}
        cache.put_many(items)
        assert cache.get_many(items) == items
        assert cache.delete_many(items) == 250
