"""Conformance: the edges providers get wrong: chunk boundaries, filter corners, argument
checks on every public method, metadata after every read path, 64-bit counters.

Providers cut batches into chunks (Redis: 500 keys per script call and 100 per MGET,
DynamoDB: 100 keys per BatchGetItem and 25 per BatchWriteItem, the base class: 500 per
``get_all``/``clear`` chunk, SCAN pages of 1,000), so the batch sizes here sit one past
each boundary. A provider that overrides a public method for speed is held to the same
argument checks as the base class.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cachehub.api import COUNTER_RANGE, MAX_KEY_LENGTH, MISSING, BaseCache
from cachehub.errors import CacheValueError, InvalidKeyError

from .support import CacheFactory, ConformanceBase, Timeline, run_threads

__all__ = ["EdgeTests"]

INT64_MAX = COUNTER_RANGE[-1]
INT64_MIN = COUNTER_RANGE[0]

# Sizes one past every chunk boundary a shipped provider has (see the module docstring).
_BATCH_SIZES = [101, 501, 1_001]

# Expiry arguments every method that takes them must refuse: (kwargs, why).
_BAD_EXPIRY: dict[str, dict[str, Any]] = {
    "span_zero": {"time_span": 0},
    "span_negative": {"time_span": -1},
    "span_nan": {"time_span": math.nan},
    "span_inf": {"time_span": math.inf},
    "span_bool": {"time_span": True},
    "span_str": {"time_span": "60"},
    "span_huge_int": {"time_span": 10**400},
    "span_negative_timedelta": {"time_span": timedelta(seconds=-5)},
    "idle_zero": {"idle_time": 0},
    "idle_bool": {"idle_time": True},
    "idle_nan": {"idle_time": math.nan},
    "until_str": {"until": "2100-01-01"},
    "until_past": {"until": datetime(2000, 1, 1, tzinfo=UTC)},
    "until_far": {"until": datetime(9999, 1, 1, tzinfo=UTC)},
    "span_and_until": {"time_span": 60, "until": datetime(2100, 1, 1, tzinfo=UTC)},
}

# Every public method taking expiry arguments, called on key "k" (which holds "old").
_WITH_EXPIRY: dict[str, Callable[[BaseCache, dict[str, Any]], Any]] = {
    "put": lambda c, kw: c.put("k", "new", **kw),
    "add": lambda c, kw: c.add("fresh", "new", **kw),
    "put_many": lambda c, kw: c.put_many({"k": "new", "fresh": "new"}, **kw),
    "touch": lambda c, kw: c.touch("k", **kw),
    "get_or_set": lambda c, kw: c.get_or_set("fresh", lambda: "new", **kw),
}


_BAD_SHAPES: dict[str, Callable[[Any], Any]] = {  # Any: the arguments are wrong on purpose
    "get_many(None)": lambda c: c.get_many(None),
    "get_many(5)": lambda c: c.get_many(5),
    "get_many('ab')": lambda c: c.get_many("ab"),  # not the keys "a" and "b"
    "get_many(b'ab')": lambda c: c.get_many(b"ab"),
    "put_many(pairs)": lambda c: c.put_many([("a", 1)]),
    "put_many(None)": lambda c: c.put_many(None),
    "delete_many(None)": lambda c: c.delete_many(None),
    "delete_many('ab')": lambda c: c.delete_many("ab"),
    "restore(None)": lambda c: c.restore("a", None),
    "restore(peek(missing))": lambda c: c.restore("a", c.peek("missing")),
}
"""Batch and restore calls given an argument of the wrong shape."""


class EdgeTests(ConformanceBase):
    """Batch sizes past every chunk boundary, filter corners, validation, metadata."""

    # ------------------------------------------------------------------ batches

    @pytest.mark.parametrize("size", _BATCH_SIZES)
    def test_batches_past_chunk_boundaries(
        self, cache: BaseCache, timeline: Timeline, size: int
    ) -> None:
        live = {f"k{i:05}": i for i in range(0, size, 2)}
        dying = {f"k{i:05}": i for i in range(1, size, 2)}
        cache.put_many(live)
        cache.put_many(dying, time_span=timeline.span(1))
        everything = [*live, *dying]
        assert cache.get_many(everything) == {**live, **dying}
        timeline.wait(1.3)
        assert cache.get_many(everything) == live
        assert cache.count() == len(live)
        assert cache.get_all() == live
        assert sorted(cache.keys()) == sorted(live)
        assert cache.delete_many(everything) == len(live)
        assert cache.count() == 0

    def test_clear_filter_over_thousands_of_keys(self, cache: BaseCache) -> None:
        selected = {f"sel:{i:05}": i for i in range(2_600)}
        others = {f"other:{i:05}": i for i in range(40)}
        cache.put_many(selected)
        cache.put_many(others)
        assert cache.count("sel:*") == len(selected)
        assert cache.count("sel:?????") == len(selected)  # not a prefix-only filter
        assert len(cache.get_all("sel:*")) == len(selected)
        assert cache.clear("sel:*") == len(selected)
        assert cache.count() == len(others)
        assert cache.get_many(list(selected)) == {}
        assert cache.get_all() == others

    def test_large_values_checked_for_expiry_in_bulk(
        self, cache: BaseCache, timeline: Timeline
    ) -> None:
        # Values over 1 KB: a provider may read such batches differently (Redis switches
        # from MGET to header reads); expiry must be judged the same way.
        blob = "x" * 2_048
        cache.put_many({f"live{i:03}": blob for i in range(110)})
        cache.put_many({f"dead{i:03}": blob for i in range(110)}, time_span=timeline.span(1))
        timeline.wait(1.3)
        assert cache.count() == 110
        assert cache.count("dead*") == 0
        assert sorted(cache.keys()) == [f"live{i:03}" for i in range(110)]
        assert cache.clear() == 110
        assert cache.count() == 0

    # ------------------------------------------------------------------ filters

    @pytest.mark.parametrize(
        ("pattern", "matching"),
        [
            ("ab*ba", ["abba", "abXba", "ab\nba"]),  # never "aba": head and tail overlap
            ("a*a", ["aa", "aba", "abba", "abXba", "ab\nba"]),  # never "a"
            ("*Key", ["myKey", "Key"]),  # case counts after a wildcard too
            ("?A*", ["bA", "bAz"]),
            ("a?b", ["a\nb", "aXb"]),  # ? matches a newline
            ("a*", ["a", "a\nb", "aba", "abba", "abXba", "ab\nba", "aa", "aXb", "ab"]),
            ("*b", ["a\nb", "aXb", "ab"]),
            ("*\n*", ["a\nb", "ab\nba", "line\n"]),
            ("??", ["aa", "ab", "bA", "ba"]),
            # "?" next to "*" still needs its one character: never "a" (a dialect that
            # folds "*?" into "*" matches it).
            ("a*?", ["aa", "ab", "aba", "abba", "abXba", "ab\nba", "a\nb", "aXb"]),
            ("a?*", ["aa", "ab", "aba", "abba", "abXba", "ab\nba", "a\nb", "aXb"]),
        ],
    )
    def test_filter_corners(self, cache: BaseCache, pattern: str, matching: list[str]) -> None:
        stored = [
            "a",
            "aa",
            "ab",
            "aba",
            "abba",
            "abXba",
            "ab\nba",
            "myKey",
            "mykey",
            "Key",
            "key",
            "bA",
            "ba",
            "bAz",
            "a\nb",
            "aXb",
            "line\n",
        ]
        cache.put_many({k: k for k in stored})
        assert sorted(cache.keys(pattern)) == sorted(matching)
        assert cache.count(pattern) == len(matching)
        assert sorted(cache.get_all(pattern)) == sorted(matching)
        assert cache.clear(pattern) == len(matching)
        assert sorted(cache.keys()) == sorted(set(stored) - set(matching))

    def test_long_keys_through_filters(self, cache: BaseCache) -> None:
        # Keys beyond a backend's own key limit are stored under a digest by some
        # providers: filters must still see the key the user wrote.
        long_l, long_m = "L" * 3_000 + "x", "M" * 3_000
        cache.put_many({long_l: 1, "Lshort": 2, long_m: 3})
        assert sorted(cache.keys("L*")) == sorted([long_l, "Lshort"])
        assert cache.count("L*") == 2
        assert cache.count("L*x") == 1
        assert cache.get_all("L*x") == {long_l: 1}
        # Without a star the match must end exactly at the key's end, far past any
        # small-int shortcut of a matcher that compares positions by identity.
        assert cache.count("L" * 3_000 + "?") == 1
        assert list(cache.keys("L" * 2_999 + "?x")) == [long_l]
        assert cache.count("L" * 3_000 + "??") == 0
        assert cache.clear("L*") == 2
        assert list(cache.keys()) == [long_m]

    @pytest.mark.parametrize("suffix", ["*", "**", "***", "*?*"])
    def test_match_all_looking_filters_in_the_empty_namespace(
        self, make_cache: CacheFactory, namespace: str, suffix: str
    ) -> None:
        inside = make_cache()
        sibling = make_cache(namespace=namespace + "sib:")
        inside.put_many({"a": 1, "b": 2})
        sibling.put("c", 3)
        root = make_cache(namespace="")  # sees the whole backend: only filters keep it in
        pattern = namespace + suffix
        assert sorted(root.keys(pattern)) == sorted(
            [namespace + "a", namespace + "b", namespace + "sib:c"]
        )
        assert root.count(pattern) == 3
        assert root.count(namespace + "sib:" + suffix) == 1
        assert root.clear(namespace + "sib:" + suffix) == 1
        assert inside.count() == 2
        assert sibling.count() == 0

    def test_prefix_of_the_namespace_is_not_match_all(
        self, make_cache: CacheFactory, namespace: str
    ) -> None:
        # A namespace ending in a wildcard-free prefix plus "*" must still filter.
        parent = make_cache()
        child = make_cache(namespace=namespace + "x:")
        parent.put("p", 1)
        child.put("c", 2)
        assert child.clear() == 1
        assert parent.get("p") == 1
        assert list(parent.keys()) == ["p"]

    # ------------------------------------------------------------------ validation

    @pytest.mark.parametrize("method", list(_WITH_EXPIRY))
    @pytest.mark.parametrize("case", list(_BAD_EXPIRY))
    def test_bad_expiry_refused_by_every_method(
        self, cache: BaseCache, method: str, case: str
    ) -> None:
        cache.put("k", "old")
        with pytest.raises(CacheValueError):
            _WITH_EXPIRY[method](cache, _BAD_EXPIRY[case])
        assert cache.get("k") == "old"  # nothing of the call was applied
        assert cache.exists("fresh") is False
        assert cache.metadata("k").expires is None

    @pytest.mark.parametrize("method", ["keys", "get_all", "count", "clear"])
    @pytest.mark.parametrize("bad", [b"k*", 3, ["k"], ("k",), None.__class__])
    def test_bad_filter_refused(self, cache: BaseCache, method: str, bad: Any) -> None:
        cache.put("k", 1)
        with pytest.raises(CacheValueError):
            result = getattr(cache, method)(bad)
            list(result) if method == "keys" else None
        assert cache.get("k") == 1

    @pytest.mark.parametrize("delta", [True, False, 1.0, "1", None, 2**64, -(2**64), 10**400])
    @pytest.mark.parametrize("method", ["incr", "decr"])
    def test_bad_delta_refused(self, cache: BaseCache, method: str, delta: Any) -> None:
        cache.put("n", 5)
        with pytest.raises(CacheValueError):
            getattr(cache, method)("n", delta)
        with pytest.raises(CacheValueError):
            getattr(cache, method)("missing", delta)
        assert cache.get("n") == 5
        assert cache.exists("missing") is False

    @pytest.mark.parametrize("call", list(_BAD_SHAPES))
    def test_batch_arguments_of_the_wrong_shape_are_refused(
        self, cache: BaseCache, call: str
    ) -> None:
        # On main these raised TypeError/AttributeError, and get_many("ab") read two keys.
        cache.put("a", "old")
        with pytest.raises(CacheValueError):
            _BAD_SHAPES[call](cache)
        assert cache.get("a") == "old"

    @pytest.mark.parametrize("bad", [None, 0, -1, float("nan"), float("inf"), "5", True, 10**400])
    def test_get_or_set_refuses_a_bad_lock_timeout_on_every_provider(
        self, cache: BaseCache, bad: Any
    ) -> None:
        # On main only distributed providers checked it (making their fill lock): code
        # tried on memory broke when the config moved it to Redis or DynamoDB. None has
        # no meaning here (it made the fill lock wait without limit).
        with pytest.raises(CacheValueError):
            cache.get_or_set("k", lambda: 1, lock_timeout=bad)
        assert cache.exists("k") is False

    # ------------------------------------------------------------------ 64-bit counters

    def test_counters_are_signed_64_bit(self, cache: BaseCache) -> None:
        cache.put("hi", INT64_MAX - 1)
        assert cache.incr("hi") == INT64_MAX
        with pytest.raises(CacheValueError):
            cache.incr("hi")
        assert cache.get("hi") == INT64_MAX  # unchanged by the refused call
        cache.put("lo", INT64_MIN + 1)
        assert cache.decr("lo") == INT64_MIN
        with pytest.raises(CacheValueError):
            cache.decr("lo")
        assert cache.get("lo") == INT64_MIN
        assert cache.incr("fresh", INT64_MAX) == INT64_MAX
        assert cache.decr("fresh2", INT64_MAX) == -INT64_MAX
        with pytest.raises(CacheValueError):
            cache.incr("fresh2", INT64_MIN)
        assert cache.get("fresh2") == -INT64_MAX

    @pytest.mark.parametrize("stored", [2**63, -(2**63) - 1, 2**70, -(10**30)])
    def test_incr_refuses_ints_beyond_64_bits(self, cache: BaseCache, stored: int) -> None:
        cache.put("big", stored)
        assert cache.get("big") == stored  # storing them is fine: only counting is not
        for delta in (1, -1):
            with pytest.raises(CacheValueError):
                cache.incr("big", delta)
        assert cache.get("big") == stored

    # ------------------------------------------------------------------ metadata

    def test_metadata_after_every_read_path(
        self, make_cache: CacheFactory, timeline: Timeline
    ) -> None:
        cache = self.counting(make_cache)
        t0 = timeline.align()
        cache.put_many({"k": "v", "other": "w"})
        steps: list[tuple[Callable[[], Any], int]] = [
            (lambda: cache.get("k"), 1),
            (lambda: cache.get_many(["k", "absent"]), 1),
            (lambda: cache.get_all(), 1),
            (lambda: cache.get_all("k"), 1),
            (lambda: cache.get_or_set("k", lambda: "never"), 1),
            (lambda: cache.exists("k"), 0),
            (lambda: list(cache.keys()), 0),
            (lambda: cache.count(), 0),
            (lambda: cache.metadata("k"), 0),
        ]
        hits = 0
        accessed = t0
        for number, (read, counts) in enumerate(steps, 1):
            timeline.wait(0.5)
            read()
            hits += counts
            if counts:
                accessed = timeline.now()
            meta = cache.metadata("k")
            assert meta.hit_count == hits, f"read path #{number}"
            assert meta.last_accessed is not None
            assert abs(meta.last_accessed.timestamp() - accessed) <= self.timestamp_tolerance, (
                f"read path #{number}"
            )
            assert abs(meta.created.timestamp() - t0) <= self.timestamp_tolerance
            assert abs(meta.last_modified.timestamp() - t0) <= self.timestamp_tolerance
        assert cache.metadata("other").hit_count == 1  # get_all() without a filter

    def test_metadata_after_touch_and_incr(self, cache: BaseCache, timeline: Timeline) -> None:
        t0 = timeline.align()
        cache.put("k", "v")
        cache.put("n", 1)
        timeline.wait(1)
        assert cache.touch("k", time_span=timeline.span(2))
        meta = cache.metadata("k")
        assert abs(meta.last_modified.timestamp() - timeline.now()) <= self.timestamp_tolerance
        assert abs(meta.created.timestamp() - t0) <= self.timestamp_tolerance
        assert meta.hit_count == 0
        cache.incr("n")
        meta = cache.metadata("n")
        assert abs(meta.last_modified.timestamp() - timeline.now()) <= self.timestamp_tolerance
        assert abs(meta.created.timestamp() - t0) <= self.timestamp_tolerance

    def test_overwrite_resets_created_and_hits(
        self, make_cache: CacheFactory, timeline: Timeline
    ) -> None:
        cache = self.counting(make_cache)
        cache.put("k", 1)
        cache.get("k")
        timeline.wait(1)
        writes: list[Callable[[], None]] = [
            lambda: cache.put("k", 2),
            lambda: cache.put_many({"k": 3}),
            lambda: cache.put("k", 4, time_span=timeline.span(5)),
            lambda: cache.put("k", 5, time_span=timedelta(seconds=timeline.span(5))),
            lambda: cache.put("k", 6, idle_time=timeline.span(5)),
            lambda: cache.put("k", 7, until=datetime.fromtimestamp(timeline.now() + 60, UTC)),
        ]
        for number, write in enumerate(writes, 1):
            timeline.wait(0.5)  # each write at its own instant: created must move with it
            cache.get("k")
            write()
            meta = cache.metadata("k")
            assert meta.hit_count == 0, f"write #{number}"
            assert abs(meta.created.timestamp() - timeline.now()) <= self.timestamp_tolerance, (
                f"write #{number}"
            )

    def test_hit_counts_seen_by_a_second_instance(self, make_cache: CacheFactory) -> None:
        reader = self.counting(make_cache)
        observer = self.counting(make_cache)
        reader.put("k", "v")
        reader.put("idle", "v", idle_time=3600)
        for _ in range(3):
            reader.get("k")
            reader.get_many(["k", "idle"])
        reader.get("idle")
        reader.close()  # pending counts are written back at the latest here
        assert observer.metadata("k").hit_count == 6
        assert observer.metadata("idle").hit_count == 4
        assert observer.get("k") == "v"  # the reader's close changed nothing else
        assert observer.metadata("k").hit_count == 7

    def test_hits_of_a_replaced_entry_are_not_carried_over(
        self, make_cache: CacheFactory, timeline: Timeline
    ) -> None:
        # Reads counted (perhaps buffered) by one instance belong to the entry they read:
        # another instance's overwrite in between starts a new entry at zero hits. (A
        # provider may tell entries apart by their creation stamp: the overwrite comes
        # a moment later, as it would on a real clock.)
        reader = self.counting(make_cache)
        writer = self.counting(make_cache)
        reader.put("k", "old")
        reader.get("k")
        reader.get_many(["k"])
        timeline.wait(0.01)
        writer.put("k", "new")
        reader.close()  # write-back of the two reads, if the provider buffers them
        meta = writer.metadata("k")
        assert meta.hit_count == 0
        assert writer.get("k") == "new"

    def test_read_of_a_missing_key_stores_nothing(self, cache: BaseCache) -> None:
        assert cache.get("k", MISSING) is MISSING
        assert cache.get_many(["k"]) == {}
        assert cache.count() == 0

    # ------------------------------------------------------------------ races

    def test_add_race_repeated(self, cache: BaseCache) -> None:
        # Several rounds, each on a fresh key: one lucky interleaving is not enough.
        for round_ in range(10):
            key = f"race{round_}"

            def claim(i: int, key: str = key) -> bool:
                return cache.add(key, i)

            won = run_threads(self.thread_count, claim)
            assert won.count(True) == 1, f"round {round_}"
            assert cache.get(f"race{round_}") == won.index(True)

    # ------------------------------------------------------------------ key limits

    def test_key_length_limit_in_batches(self, cache: BaseCache) -> None:
        longest = "k" * MAX_KEY_LENGTH
        too_long = "k" * (MAX_KEY_LENGTH + 1)
        cache.put_many({longest: 1, "short": 2})
        assert cache.get_many([longest, "short"]) == {longest: 1, "short": 2}
        for call in (
            lambda: cache.get_many(["short", too_long]),
            lambda: cache.put_many({"short": 3, too_long: 3}),
            lambda: cache.delete_many(["short", too_long]),
        ):
            with pytest.raises(InvalidKeyError):
                call()
        assert cache.get_many([longest, "short"]) == {longest: 1, "short": 2}
        assert cache.delete_many([longest]) == 1

    # ------------------------------------------------------------------ primitives

    def test_delete_if_equal_primitive(self, cache: BaseCache, timeline: Timeline) -> None:
        # The compare-and-delete primitive behind lock-style protocols: only the live
        # entry holding exactly that value goes.
        sk = cache._sk("k")
        cache.put("k", "token")
        assert cache._delete_if_equal(sk, "other", timeline.now()) is False
        assert cache._delete_if_equal(sk, b"token", timeline.now()) is False
        assert cache.get("k") == "token"
        assert cache._delete_if_equal(sk, "token", timeline.now()) is True
        assert cache.exists("k") is False
        assert cache._delete_if_equal(sk, "token", timeline.now()) is False
        cache.put("k", "token", time_span=timeline.span(1))
        timeline.wait(1.3)
        assert cache._delete_if_equal(sk, "token", timeline.now()) is False
