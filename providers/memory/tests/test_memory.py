"""Memory-provider specifics: eviction policies, reference storage, settings."""

from __future__ import annotations

import gc
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import cachetools
import pytest
from cachehub_memory import MemoryCache

from benchmarks.scale import peak_bytes
from cachehub.errors import ConfigError
from cachehub.testing import FakeClock


def _fill(cache: MemoryCache, *keys: str) -> None:
    for i, key in enumerate(keys):
        cache.put(key, i)


class TestEviction:
    """maxsize is enforced by the chosen policy; each test tells the policies apart."""

    def test_lru_evicts_least_recently_used(self) -> None:
        cache = MemoryCache(maxsize=3, policy="lru")
        _fill(cache, "a", "b", "c")
        cache.get("a")  # a is now more recent than b and c
        cache.put("d", 3)
        assert sorted(cache.keys()) == ["a", "c", "d"]

    def test_lfu_evicts_least_frequently_used(self) -> None:
        cache = MemoryCache(maxsize=3, policy="lfu")
        _fill(cache, "a", "b", "c")
        for key, reads in (("a", 3), ("b", 2), ("c", 1)):  # c is the most recent read
            for _ in range(reads):
                cache.get(key)
        cache.put("d", 3)
        assert sorted(cache.keys()) == ["a", "b", "d"]

    def test_fifo_evicts_oldest_write_despite_reads(self) -> None:
        cache = MemoryCache(maxsize=3, policy="fifo")
        _fill(cache, "a", "b", "c")
        cache.get("a")
        cache.get("a")
        cache.put("d", 3)
        assert sorted(cache.keys()) == ["b", "c", "d"]

    def test_rr_keeps_maxsize_and_the_new_entry(self) -> None:
        cache = MemoryCache(maxsize=3, policy="rr")
        _fill(cache, "a", "b", "c", "d", "e")
        keys = set(cache.keys())
        assert len(keys) == 3
        assert "e" in keys
        assert keys <= {"a", "b", "c", "d", "e"}

    def test_ttl_drops_expired_entries_first(self) -> None:
        clock = FakeClock()
        cache = MemoryCache(maxsize=3, policy="ttl", clock=clock)
        cache.put("a", 1, time_span=100)
        cache.put("b", 2, time_span=10)
        cache.put("c", 3)
        clock.advance(11)
        cache.put("d", 4)
        assert sorted(cache.keys()) == ["a", "c", "d"]

    def test_ttl_without_expired_entries_evicts_least_recently_used(self) -> None:
        # Nothing has expired: recency decides, not the nearest deadline ('a' expires
        # first but was read last, so 'b' goes).
        cache = MemoryCache(maxsize=3, policy="ttl", clock=FakeClock())
        cache.put("a", 1, time_span=10)
        cache.put("b", 2, time_span=100)
        cache.put("c", 3)
        cache.get("a")
        cache.put("d", 4)
        assert sorted(cache.keys()) == ["a", "c", "d"]

    def test_ttl_policy_follows_idle_slides(self) -> None:
        # The ttl policy must learn of a slid idle deadline, or it drops a live entry.
        clock = FakeClock()
        cache = MemoryCache(maxsize=10, policy="ttl", clock=clock)
        cache.put("a", 1, idle_time=10)
        clock.advance(8)
        assert cache.get("a") == 1
        clock.advance(5)  # 13 s after the write, 5 s after the read
        assert cache.get("a") == 1
        clock.advance(11)
        assert cache.exists("a") is False

    def test_ttl_policy_follows_touch(self) -> None:
        clock = FakeClock()
        cache = MemoryCache(maxsize=10, policy="ttl", clock=clock)
        cache.put("a", 1, time_span=10)
        cache.touch("a", time_span=100)
        clock.advance(20)
        assert cache.get("a") == 1

    @pytest.mark.parametrize("policy", ["lru", "lfu", "fifo", "rr", "ttl"])
    def test_count_never_exceeds_maxsize(self, policy: str) -> None:
        cache = MemoryCache(maxsize=5, policy=policy)
        for i in range(50):
            cache.put(f"k{i}", i)
            assert cache.count() <= 5
        assert cache.count() == 5
        assert cache.exists("k49")

    @pytest.mark.parametrize("policy", ["lru", "lfu", "fifo", "rr", "ttl"])
    def test_put_many_respects_maxsize(self, policy: str) -> None:
        cache = MemoryCache(maxsize=4, policy=policy)
        cache.put_many({f"k{i}": i for i in range(10)})
        assert cache.count() == 4

    def test_lru_counts_rewrites_and_batch_reads_as_uses(self) -> None:
        cache = MemoryCache(maxsize=3, policy="lru")
        _fill(cache, "a", "b", "c")
        cache.put("a", 10)  # a rewrite makes 'a' the most recent
        assert cache.get_many(["b"]) == {"b": 1}  # a batch read makes 'b' more recent
        cache.put("d", 3)
        assert sorted(cache.keys()) == ["a", "b", "d"]

    def test_fifo_ignores_batch_reads(self) -> None:
        cache = MemoryCache(maxsize=2, policy="fifo")
        _fill(cache, "a", "b")
        assert cache.get_many(["a"]) == {"a": 0}
        cache.put("c", 2)
        assert sorted(cache.keys()) == ["b", "c"]

    @pytest.mark.parametrize("policy", ["lru", "lfu", "fifo", "rr", "ttl"])
    def test_get_many_counts_hits_and_slides_idle(self, policy: str) -> None:
        clock = FakeClock()
        cache = MemoryCache(maxsize=10, policy=policy, clock=clock)
        cache.put_many({"a": 1, "b": 2}, idle_time=10)
        clock.advance(8)
        assert cache.get_many(["a", "b", "a", "missing"]) == {"a": 1, "b": 2}
        assert cache.metadata("a").hit_count == 1  # a repeated key is read once
        clock.advance(8)  # 16 s after the write, 8 s after the batch read
        assert cache.get_many(["a"]) == {"a": 1}
        clock.advance(8)  # 'b' was last read 16 s ago
        assert cache.exists("b") is False
        assert cache.delete_many(["a", "b"]) == 1

    def test_overwrite_does_not_evict(self) -> None:
        cache = MemoryCache(maxsize=2)
        _fill(cache, "a", "b")
        cache.put("a", 10)
        cache.put("b", 20)
        assert cache.get_all() == {"a": 10, "b": 20}

    def test_maxsize_is_shared_by_namespaces_of_one_instance(self) -> None:
        cache = MemoryCache(maxsize=2, namespace="ns:")
        _fill(cache, "a", "b", "c")
        assert cache.count() == 2


class TestSerializeFalse:
    """``serialize: false`` stores references: fast, but shared with the caller."""

    def test_get_returns_the_same_object(self) -> None:
        cache = MemoryCache(serialize=False)
        value = {"items": [1]}
        cache.put("k", value)
        assert cache.get("k") is value

    def test_mutations_are_visible(self) -> None:
        cache = MemoryCache(serialize=False)
        value = [1]
        cache.put("k", value)
        value.append(2)
        assert cache.get("k") == [1, 2]
        cache.get("k").append(3)
        assert cache.get("k") == [1, 2, 3]

    def test_unencodable_values_are_accepted(self) -> None:
        cache = MemoryCache(serialize=False)
        lock = threading.Lock()
        cache.put("k", lock)
        assert cache.get("k") is lock

    def test_default_serializes(self) -> None:
        cache = MemoryCache()
        value = [1]
        cache.put("k", value)
        assert cache.get("k") is not value
        assert cache.get("k") == value

    def test_incr_and_lock_still_work(self) -> None:
        cache = MemoryCache(serialize=False)
        assert cache.incr("n", 2) == 2
        with cache.lock("job", timeout=0):
            assert cache.lock("job").acquire(blocking=False) is False


class TestSettings:
    """Provider settings are validated with typed, helpful errors."""

    def test_defaults(self) -> None:
        settings = MemoryCache().settings
        assert (settings["maxsize"], settings["policy"], settings["serialize"]) == (
            10_000,
            "lru",
            True,
        )

    def test_settings_mapping_and_keywords(self) -> None:
        cache = MemoryCache({"maxsize": 7, "policy": "fifo"}, policy="lfu")
        assert cache.settings["maxsize"] == 7
        assert cache.settings["policy"] == "lfu"

    @pytest.mark.parametrize(
        ("raw", "expected"),
        [("5", 5), (" 12 ", 12), (3.0, 3)],
        ids=["str", "padded_str", "integral_float"],
    )
    def test_maxsize_coerced(self, raw: Any, expected: int) -> None:
        assert MemoryCache(maxsize=raw).settings["maxsize"] == expected

    @pytest.mark.parametrize(
        "raw", [0, -1, "abc", True, 2.5, [3]], ids=["zero", "neg", "word", "bool", "frac", "list"]
    )
    def test_bad_maxsize(self, raw: Any) -> None:
        with pytest.raises(ConfigError, match="maxsize"):
            MemoryCache(maxsize=raw)

    def test_unknown_policy_lists_choices(self) -> None:
        with pytest.raises(ConfigError) as info:
            MemoryCache(policy="mru")
        message = str(info.value)
        for choice in ("lru", "lfu", "fifo", "rr", "ttl"):
            assert repr(choice) in message

    @pytest.mark.parametrize(("raw", "expected"), [("false", False), ("yes", True), (False, False)])
    def test_serialize_coerced(self, raw: Any, expected: bool) -> None:
        assert MemoryCache(serialize=raw).settings["serialize"] is expected

    def test_bad_serialize(self) -> None:
        with pytest.raises(ConfigError, match="serialize"):
            MemoryCache(serialize="maybe")

    @pytest.mark.parametrize("name", ["maxsise", "polcy"])
    def test_unknown_setting_suggests(self, name: str) -> None:
        with pytest.raises(ConfigError, match="Did you mean"):
            MemoryCache(**{name: 5})

    @pytest.mark.parametrize("name", ["maxSize", "MAXSIZE", "max_size"])
    def test_setting_names_are_case_insensitive(self, name: str) -> None:
        assert MemoryCache(**{name: 5}).settings["maxsize"] == 5  # CFML structs are

    def test_error_names_the_cache(self) -> None:
        with pytest.raises(ConfigError, match="'sessions'"):
            MemoryCache(name="sessions", maxsize=0)

    def test_repr_hides_the_signing_key(self) -> None:
        cache = MemoryCache(signingKey="s3cr3t-value")
        assert "s3cr3t-value" not in repr(cache)
        assert "MemoryCache" in repr(cache)


class TestSharedStore:
    def test_caches_naming_one_store_share_entries(self) -> None:
        store = uuid.uuid4().hex
        a = MemoryCache(store=store, namespace="a:")
        b = MemoryCache(store=store, namespace="b:")
        plain = MemoryCache(store=store)
        a.put("k", 1)
        b.put("k", 2)
        assert (a.get("k"), b.get("k")) == (1, 2)
        assert sorted(plain.keys()) == ["a:k", "b:k"]
        assert MemoryCache().count() == 0  # no store name: private

    def test_store_settings_must_agree(self) -> None:
        store = uuid.uuid4().hex
        keep = MemoryCache(store=store, maxsize=10)
        with pytest.raises(ConfigError, match="already exists with maxsize=10"):
            MemoryCache(store=store, maxsize=20)
        assert keep.count() == 0

    def test_store_is_released_with_its_last_cache(self) -> None:
        store = uuid.uuid4().hex
        first = MemoryCache(store=store, maxsize=10)
        first.put("k", 1)
        del first
        gc.collect()
        assert MemoryCache(store=store, maxsize=20).count() == 0


@pytest.mark.parametrize("policy", ["lru", "fifo", "lfu", "ttl"])
def test_clear_everything_counts_only_live_entries(policy: str) -> None:
    clock = FakeClock()
    cache = MemoryCache(maxsize=100, policy=policy, clock=clock)
    cache.put_many({f"k{i}": i for i in range(10)})
    cache.put_many({f"t{i}": i for i in range(5)}, time_span=1)
    clock.advance(2)
    assert cache.clear() == 10
    assert cache.count() == 0
    assert list(cache.keys()) == []


def test_clear_everything_needs_no_snapshot_of_the_keys() -> None:
    cache = MemoryCache(maxsize=100_000)
    cache.put_many({f"item:{i}": i for i in range(50_000)})
    removed: list[int] = []
    peak = peak_bytes(lambda: removed.append(cache.clear()))
    assert removed == [50_000]
    assert peak < 50_000  # a snapshot would take 8 bytes per key: 400,000


_POLICIES = ["lru", "fifo", "lfu", "rr", "ttl"]


def _peaks(policy: str, n: int) -> tuple[list[int], list[int]]:
    cache = MemoryCache(maxsize=100_000, policy=policy, namespace="ns:")
    cache.put_many({f"item:{i}": i for i in range(n)})
    results: list[int] = []
    peaks = [
        peak_bytes(lambda: results.append(sum(1 for _ in cache.keys(None)))),
        peak_bytes(lambda: results.append(cache.count("item:1*"))),
        peak_bytes(lambda: results.append(cache.clear("item:2*"))),
        peak_bytes(lambda: results.append(cache.clear())),  # in a namespace: filtered too
    ]
    return peaks, results


@pytest.mark.parametrize("policy", _POLICIES)
def test_keys_count_and_clear_stream_in_flat_memory(policy: str) -> None:
    """Peak memory is bounded by a constant, not by the number of keys."""
    small, _ = _peaks(policy, 5_000)
    large, results = _peaks(policy, 50_000)
    assert results == [50_000, 11_111, 11_111, 38_889]
    if policy == "rr":
        # cachetools' RRCache shrinks its own list of keys as entries go: a reallocation
        # tracemalloc counts, although the list only ever gets smaller.
        small, large = small[:3], large[:3]
    for at_5k, at_50k in zip(small, large, strict=True):
        # Snapshots at 50k: 400 KB (keys), 89 KB (the 11,111 keys of a filter), 311 KB
        # (the namespace's rest). A walk: at most a batch of 4,096 references, ~33 KB.
        assert at_50k < 64 * 1024
        assert at_50k < at_5k + 36 * 1024


@pytest.mark.parametrize("batch", [7, 4096])
@pytest.mark.parametrize("policy", _POLICIES)
def test_clear_with_a_filter_over_many_batches(
    policy: str, batch: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("cachehub_memory.cursor.STEP", batch)  # log entries per step
    clock = FakeClock()
    cache = MemoryCache(maxsize=20_000, policy=policy, clock=clock)
    for i in range(6000):  # interleaved, so every pass skips kept entries first
        cache.put(f"a{i}", i)
        cache.put(f"b{i}", i)
    cache.put_many({f"a{i}": i for i in range(0, 6000, 3)}, time_span=1)  # rewritten: expire
    clock.advance(2)
    assert cache.clear("a*") == 4000
    assert cache.count() == 6000
    assert sorted(cache.keys()) == sorted(f"b{i}" for i in range(6000))


@pytest.mark.parametrize("policy", _POLICIES)
def test_keys_while_the_loop_deletes_what_it_is_given(policy: str) -> None:
    cache = MemoryCache(maxsize=10_000, policy=policy)
    cache.put_many({f"k{i}": i for i in range(2000)})
    seen = []
    for key in cache.keys(None):
        seen.append(key)
        if int(key[1:]) % 3:
            cache.delete(key)
    assert sorted(seen) == sorted(f"k{i}" for i in range(2000))
    assert cache.count() == 667


@pytest.mark.parametrize("policy", _POLICIES)
def test_keys_while_the_loop_reads_and_rewrites(policy: str) -> None:
    cache = MemoryCache(maxsize=10_000, policy=policy)
    cache.put_many({f"k{i}": i for i in range(2000)})
    seen = []
    for key in cache.keys(None):
        seen.append(key)
        cache.put(key, cache.get(key) + 1)  # a read promotes (lru), a rewrite stays in place
    assert sorted(seen) == sorted(f"k{i}" for i in range(2000))
    assert cache.get("k7") == 8


@pytest.mark.parametrize("policy", _POLICIES)
def test_keys_ends_when_the_loop_stores_every_key_again(policy: str) -> None:
    """delete + put moves a key to the end of the dict: the walk must not chase it."""
    cache = MemoryCache(maxsize=10_000, policy=policy)
    cache.put_many({f"k{i}": i for i in range(2000)})
    seen = []
    for key in cache.keys(None):
        seen.append(key)
        cache.delete(key)
        cache.put(key, 0)
        cache.put(f"new:{len(seen)}", 0)
    assert len(seen) == 2000
    assert sorted(seen) == sorted(f"k{i}" for i in range(2000))


_WALK_KEPT = 5000
_WALK_WRITES = 20_000
"""Rounds per writer thread: enough to overlap the walk, finite so the test always ends."""
_WALK_MOST_KEYS = 2 * _WALK_KEPT + 2 * _WALK_WRITES
"""Every key that can exist during the test; a walk yielding more repeats itself."""


@pytest.mark.parametrize("policy", _POLICIES)
def test_keys_while_other_threads_write_yields_every_kept_key_once(policy: str) -> None:
    cache = MemoryCache(maxsize=100_000, policy=policy)
    kept = [f"keep:{i}" for i in range(_WALK_KEPT)]
    for i, key in enumerate(kept):  # interleaved, so writes land next to the walk
        cache.put(key, 0)
        cache.put(f"churn:{i}", 0)
    stop = threading.Event()
    writes = [0, 0]

    def churn(seed: int) -> None:
        # Bounded: unbounded writers could keep a walk that chases new keys going forever.
        for i in range(1, _WALK_WRITES + 1):
            if stop.is_set():
                return
            cache.put(f"churn:{seed}:{i}", i)
            cache.delete(f"churn:{(i * 7919 + seed) % 5000}")
            moved = f"churn:{(i * 104729 + seed) % 5000}"
            if cache.delete(moved):
                cache.put(moved, i)  # removed and stored again: to the end of the dict
            cache.get(f"keep:{i % 5000}")
            cache.put(f"keep:{(i * 31) % 5000}", 0)  # rewritten in place: still kept
            writes[seed] = i

    writers = [threading.Thread(target=churn, args=(n,)) for n in range(2)]
    for writer in writers:
        writer.start()
    seen = []
    try:
        for n, key in enumerate(cache.keys(None)):
            if n >= _WALK_MOST_KEYS:
                pytest.fail(
                    f"keys() yielded more than the {_WALK_MOST_KEYS} keys that can exist "
                    f"({len(seen)} of them kept keys): the walk repeats keys"
                )
            if key.startswith("keep:"):
                seen.append(key)
            if n % 25 == 0:
                time.sleep(0)  # let the writers run between (and within) steps
    finally:
        stop.set()
        for writer in writers:
            writer.join()
    assert min(writes) > 100
    assert len(seen) == len(kept)
    assert set(seen) == set(kept)


@pytest.mark.parametrize("policy", _POLICIES)
def test_walks_count_as_no_use_and_reorder_nothing(policy: str) -> None:
    """keys(), count() and a filtered clear read entries without touching the policy."""
    clock = FakeClock()
    cache = MemoryCache(maxsize=3, policy=policy, clock=clock)
    _fill(cache, "a", "b", "c")
    cache.get("b")
    cache.get("c")  # every policy but rr and fifo now evicts "a" first
    for _ in range(5):  # would make "a" the most used (lfu) or most recent (lru, ttl)
        assert sorted(cache.keys()) == ["a", "b", "c"]
        assert cache.count("a") == 1
        assert cache.clear("z*") == 0
    cache.put("d", 3)
    if policy != "rr":
        assert sorted(cache.keys()) == (["b", "c", "d"])


def test_walks_on_the_ttl_policy_expire_nothing() -> None:
    """Listing is a read: the expired entries go when a write or a read meets them."""
    clock = FakeClock()
    cache = MemoryCache(policy="ttl", clock=clock)
    cache.put_many({f"t{i}": i for i in range(5)}, time_span=1)
    cache.put("k", 0)
    clock.advance(2)
    assert list(cache.keys()) == ["k"]
    assert cache.count() == 1
    assert cachetools.Cache.__len__(cache._store.data) == 6  # still there, unexpired


def test_no_private_cachetools_attribute_is_read() -> None:
    """cachetools' name-mangled internals may change in any release: none is used."""
    import cachehub_memory

    package = Path(cachehub_memory.__file__).parent
    for source in package.glob("*.py"):
        text = source.read_text(encoding="utf-8")
        assert "_Cache__" not in text, source.name
        assert not re.search(r"\bvars\(|__dict__", text), source.name
