"""Conformance: a cache built with ``read_only=True`` refuses every write."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from cachehub.api import BaseCache
from cachehub.errors import ReadOnlyCacheError

from .support import CacheFactory, ConformanceBase

__all__ = ["ReadOnlyTests"]

_WRITES: dict[str, Callable[[BaseCache], Any]] = {
    "put": lambda c: c.put("k", "new"),
    "put_new_key": lambda c: c.put("fresh", 1),
    "put_with_ttl": lambda c: c.put("k", "new", time_span=60),
    "add": lambda c: c.add("fresh", 1),
    "delete": lambda c: c.delete("k"),
    "delete_missing": lambda c: c.delete("absent"),
    "clear": lambda c: c.clear(),
    "clear_filter": lambda c: c.clear("k*"),
    "incr": lambda c: c.incr("n"),
    "incr_missing": lambda c: c.incr("absent"),
    "decr": lambda c: c.decr("n"),
    "touch": lambda c: c.touch("k", time_span=60),
    "put_many": lambda c: c.put_many({"k": "new", "fresh": 1}),
    "put_many_empty": lambda c: c.put_many({}),
    "delete_many": lambda c: c.delete_many(["k", "n"]),
    "delete_many_empty": lambda c: c.delete_many([]),
    "lock_acquire": lambda c: c.lock("job").acquire(blocking=False),
    "lock_context_manager": lambda c: c.lock("job", timeout=0).__enter__(),
}


class ReadOnlyTests(ConformanceBase):
    """Writes raise :class:`ReadOnlyCacheError` and change nothing; reads work."""

    @pytest.fixture
    def caches(self, make_cache: CacheFactory, namespace: str) -> tuple[BaseCache, BaseCache]:
        writer = make_cache(namespace=namespace)
        writer.put_many({"k": "old", "n": 5})
        return writer, make_cache(namespace=namespace, read_only=True)

    @pytest.mark.parametrize("op", list(_WRITES))
    def test_write_refused(self, caches: tuple[BaseCache, BaseCache], op: str) -> None:
        writer, reader = caches
        with pytest.raises(ReadOnlyCacheError) as info:
            _WRITES[op](reader)
        assert reader.name in str(info.value)
        assert isinstance(info.value, PermissionError)
        assert writer.get_all() == {"k": "old", "n": 5}

    def test_reads_work(self, caches: tuple[BaseCache, BaseCache]) -> None:
        _, reader = caches
        assert reader.read_only is True
        assert reader.get("k") == "old"
        assert reader.get("absent", "dflt") == "dflt"
        assert reader.exists("n")
        assert reader.get_many(["k", "n", "absent"]) == {"k": "old", "n": 5}
        assert sorted(reader.keys()) == ["k", "n"]
        assert reader.get_all("k") == {"k": "old"}
        assert reader.count() == 2
        assert reader.metadata("k").hit_count >= int(reader.counts_hits)

    def test_reads_see_later_writes(self, caches: tuple[BaseCache, BaseCache]) -> None:
        writer, reader = caches
        writer.put("k", "newer")
        writer.delete("n")
        assert reader.get("k") == "newer"
        assert reader.exists("n") is False

    def test_get_or_set_computes_but_stores_nothing(
        self, caches: tuple[BaseCache, BaseCache]
    ) -> None:
        writer, reader = caches
        assert reader.get_or_set("k", lambda: "unused") == "old"
        assert reader.get_or_set("computed", lambda: "value") == "value"
        assert writer.exists("computed") is False

    def test_validation_is_not_skipped(self, caches: tuple[BaseCache, BaseCache]) -> None:
        # The read-only guard comes first, but reads still validate their keys.
        _, reader = caches
        with pytest.raises(ValueError):
            reader.get("")
