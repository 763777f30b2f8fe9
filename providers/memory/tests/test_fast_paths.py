"""MemoryCache's own get/put fast paths keep every check of BaseCache's general path.

The fast paths (see ``cachehub_memory.cache``) skip key validation for a key already
stored and build records without an Expiry: each test here feeds them what BaseCache
would refuse or treat specially, on both storage modes and with or without a namespace,
and checks the same typed error, the same stored entry, or the hand-over to BaseCache.
"""

from __future__ import annotations

import math
import sys
from collections import OrderedDict
from datetime import timedelta
from typing import Any

import pytest
from cachehub_memory import MemoryCache
from cachehub_memory import cache as memory_module

from cachehub.api import MAX_KEY_LENGTH, MAX_TIME_SPAN
from cachehub.codec import FORMAT_SAFE, FORMAT_SAFE_ZLIB, make_codec
from cachehub.errors import (
    CacheBackendError,
    CacheError,
    CacheKeyError,
    CacheValueError,
    InvalidKeyError,
    ReadOnlyCacheError,
    SerializationError,
)
from cachehub.hookspecs import OperationEvent
from cachehub.testing import FakeClock

MODES = [
    pytest.param({}, id="copies"),
    pytest.param({"serialize": False}, id="references"),
    pytest.param({"namespace": "ns:"}, id="copies-namespaced"),
    pytest.param({"serialize": False, "namespace": "ns:"}, id="references-namespaced"),
]
BAD_KEYS = [
    pytest.param("", id="empty"),
    pytest.param("k" * (MAX_KEY_LENGTH + 1), id="too-long"),
    pytest.param("lone-\ud800-surrogate", id="surrogate"),
    pytest.param(b"bytes", id="bytes"),
    pytest.param(42, id="int"),
    pytest.param(None, id="none"),
    pytest.param(["unhashable"], id="list"),
]


@pytest.mark.parametrize("settings", MODES)
@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_raise_invalid_key_on_get_and_put(settings: dict[str, Any], key: Any) -> None:
    cache = MemoryCache(**settings)
    cache.put("good", 1)
    for call in (
        lambda: cache.get(key),
        lambda: cache.get(key, "default"),
        lambda: cache.put(key, 1),
        lambda: cache.put(key, 1, 60),
    ):
        with pytest.raises(InvalidKeyError):
            call()
    assert list(cache.keys()) == ["good"]  # nothing stored under a bad key


@pytest.mark.parametrize("settings", MODES)
def test_a_bad_key_is_refused_even_when_its_storage_key_exists(settings: dict[str, Any]) -> None:
    # Another cache of the store, with a shorter namespace, stored the very storage key a
    # bad (empty) key would map to: the bad key must still be refused, not read.
    store = f"fast-{sorted(settings.items())}"
    ns = settings.get("namespace", "")
    other = MemoryCache(store=store, **{**settings, "namespace": ns[:-1]})
    mine = MemoryCache(store=store, **settings)
    if ns:
        other.put(ns[-1], "theirs")  # storage key == ns, what mine.get("") would look up
    with pytest.raises(InvalidKeyError):
        mine.get("")


@pytest.mark.parametrize("settings", MODES)
def test_non_ascii_and_str_subclass_keys_work(settings: dict[str, Any]) -> None:
    class Key(str):
        """A str subclass with a hostile hash: BaseCache turns it into a plain str."""

        def __hash__(self) -> int:
            raise RuntimeError("hash of a subclass must not be used")

    cache = MemoryCache(**settings)
    cache.put("clé-ü-€", "accent")
    assert cache.get("clé-ü-€") == "accent"
    cache.put(Key("sub"), "sub")
    assert cache.get("sub") == "sub"
    assert cache.get(Key("sub")) == "sub"
    assert sorted(cache.keys()) == ["clé-ü-€", "sub"]


@pytest.mark.parametrize("settings", MODES)
@pytest.mark.parametrize(
    "span",
    [
        pytest.param(True, id="bool"),
        pytest.param(0, id="zero"),
        pytest.param(-1, id="negative"),
        pytest.param(math.nan, id="nan"),
        pytest.param(math.inf, id="inf"),
        pytest.param(10**400, id="huge-int"),
        pytest.param(MAX_TIME_SPAN.total_seconds() * 2, id="beyond-max"),
        pytest.param("60", id="str"),
    ],
)
def test_bad_time_spans_raise_cache_value_error(settings: dict[str, Any], span: Any) -> None:
    cache = MemoryCache(**settings)
    with pytest.raises(CacheValueError):
        cache.put("k", 1, span)
    assert cache.get("k") is None


@pytest.mark.parametrize("settings", MODES)
@pytest.mark.parametrize(
    "span", [1, 2.5, timedelta(seconds=3), MAX_TIME_SPAN.total_seconds()], ids=str
)
def test_time_span_puts_expire_like_the_general_path(settings: dict[str, Any], span: Any) -> None:
    clock = FakeClock()
    cache = MemoryCache(clock=clock, **settings)
    cache.put("k", "v", span)
    seconds = span.total_seconds() if isinstance(span, timedelta) else float(span)
    meta = cache.metadata("k")
    assert meta.time_to_live == timedelta(seconds=seconds)
    assert meta.idle_time is None
    clock.advance(seconds - 0.5)
    assert cache.get("k") == "v"
    clock.advance(0.5)
    assert cache.get("k") is None
    assert cache.count() == 0


@pytest.mark.parametrize("settings", MODES)
def test_a_remembered_lifetime_lets_no_other_through(settings: dict[str, Any]) -> None:
    # The fast put skips the checks for the very lifetime object it accepted last: every
    # other object, bad ones in between good ones included, is still checked, and each
    # entry gets its own put's lifetime.
    clock = FakeClock()
    cache = MemoryCache(clock=clock, **settings)
    too_long = MAX_TIME_SPAN.total_seconds() * 2
    # 1 == True: a memo compared by value rather than identity would let True through.
    for good in (1, 300):
        for bad in (True, 0, -300, math.nan, math.inf, 10**400, too_long, "300", 300.0j):
            cache.put("good", 1, good)
            with pytest.raises(CacheValueError):
                cache.put("bad", 1, bad)
    assert sorted(cache.keys()) == ["good"]
    for key, span in (("a", 5), ("b", 7.5), ("c", 5), ("d", 300), ("e", 5)):
        cache.put(key, key, span)
        assert cache.metadata(key).time_to_live == timedelta(seconds=span)
    clock.advance(5)
    assert sorted(cache.keys()) == ["b", "d", "good"]


@pytest.mark.parametrize("settings", MODES)
def test_get_counts_hits_slides_idle_entries_and_drops_dead_ones(settings: dict[str, Any]) -> None:
    clock = FakeClock()
    cache = MemoryCache(clock=clock, **settings)
    cache.put("idle", "v", idle_time=10)  # general path; read by the fast one
    for _ in range(3):
        clock.advance(8)
        assert cache.get("idle") == "v"  # each read slides the deadline
    assert cache.metadata("idle").hit_count == 3
    clock.advance(10)
    assert cache.get("idle", "gone") == "gone"
    assert cache.count() == 0


@pytest.mark.parametrize("settings", MODES)
def test_throwing_get_and_default(settings: dict[str, Any]) -> None:
    cache = MemoryCache(**settings)
    sentinel = object()
    assert cache.get("absent", sentinel) is sentinel
    with pytest.raises(CacheKeyError):
        cache.get("absent", throw_when_not_exist=True)
    cache.put("k", None)
    assert cache.get("k", sentinel) is None  # a cached None is a hit


def test_read_only_put_is_refused() -> None:
    cache = MemoryCache(read_only=True)
    with pytest.raises(ReadOnlyCacheError):
        cache.put("k", 1)
    with pytest.raises(ReadOnlyCacheError):
        cache.put("k", 1, 60)


def test_an_unencodable_value_is_refused_typed_and_not_stored() -> None:
    cache = MemoryCache()
    cache.put("k", "old")
    with pytest.raises(SerializationError):
        cache.put("k", object())
    assert cache.get("k") == "old"
    # A bad key is reported before the value is even looked at, as in BaseCache.put.
    with pytest.raises(InvalidKeyError):
        cache.put("", object())


class _Broken(OrderedDict[str, Any]):
    """A store whose reads and writes fail like a provider bug would."""

    def get(self, key: Any, default: Any = None) -> Any:
        raise RuntimeError("store bug")


@pytest.mark.parametrize("op", ["get", "put", "put ttl"])
def test_a_failing_store_surfaces_as_cache_backend_error(
    op: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fast paths hold the store's dict from construction on: the broken one is the
    # one the cache's private store is built with.
    monkeypatch.setattr(memory_module, "OrderedDict", _Broken)
    cache = MemoryCache(serialize=False)
    assert type(cache._data) is _Broken
    calls = {
        "get": lambda: cache.get("k"),
        "put": lambda: cache.put("k", 1),
        "put ttl": lambda: cache.put("k", 1, 60),
    }
    with pytest.raises(CacheBackendError, match=op.split()[0]):
        calls[op]()
    # The lock was released: the cache still answers.
    assert cache._lock.acquire(blocking=False)
    cache._lock.release()


def test_an_observer_attached_later_sees_fast_path_operations() -> None:
    # The registry rebinds observers on live caches when plugins change.
    cache = MemoryCache()
    cache.put("k", 1)
    events: list[OperationEvent] = []
    cache._observer = events.append
    cache.get("k")
    cache.get("absent")
    cache.put("k", 2, 60)
    assert [(e.operation, e.key, e.hit) for e in events] == [
        ("get", "k", True),
        ("get", "absent", False),
        ("put", "k", None),
    ]


def test_memory_compresses_only_when_asked() -> None:
    # In process, compression costs CPU on every read and write for memory alone: the
    # memory provider's default threshold is 0 (off), unlike the remote providers.
    big = {"rows": [f"row {i} of a compressible value" for i in range(500)]}
    default = MemoryCache()
    assert default.settings["compressThreshold"] == 0
    default.put("k", big)
    assert default._data["k"][0][0] == FORMAT_SAFE
    assert default.get("k") == big
    compressing = MemoryCache(compressThreshold=1024)
    compressing.put("k", big)
    assert compressing._data["k"][0][0] == FORMAT_SAFE_ZLIB
    assert compressing.get("k") == big


def test_errors_are_cache_errors() -> None:
    # The hostile keys above raise CacheError subclasses only: never a raw TypeError.
    cache = MemoryCache()
    for key in (object(), 1.5, ("tuple",)):
        with pytest.raises(CacheError):
            cache.get(key)  # type: ignore[arg-type]
        with pytest.raises(CacheError):
            cache.put(key, 1)  # type: ignore[arg-type]


class _Wrapped(MemoryCache):
    """A subclass that overrides the primitives the fast paths inline."""

    calls: list[str]

    def _get(self, key: str, now: float) -> Any:
        self.calls.append("get")
        return super()._get(key, now)

    def _set(self, key: str, value: Any, expiry: Any, now: float) -> None:
        self.calls.append("set")
        super()._set(key, value, expiry, now)


def test_a_subclass_overriding_the_primitives_is_called_not_bypassed() -> None:
    cache = _Wrapped()
    cache.calls = []
    cache.put("k", "v")
    assert cache.get("k") == "v"
    assert cache.get("absent") is None
    assert cache.calls == ["set", "get", "get"]


class _OwnGetPut(MemoryCache):
    """A subclass that overrides get and put themselves: the fast paths, built per
    instance, must not shadow them."""

    calls: list[str]

    def get(self, key: str, default: Any = None, *, throw_when_not_exist: bool = False) -> Any:
        self.calls.append("get")
        return super().get(key, default, throw_when_not_exist=throw_when_not_exist)

    def put(self, key: str, value: Any, *args: Any, **kwargs: Any) -> None:
        self.calls.append("put")
        super().put(key, value, *args, **kwargs)


def test_a_subclass_overriding_get_and_put_is_called_not_shadowed() -> None:
    cache = _OwnGetPut()
    cache.calls = []
    cache.put("k", "v", 60)
    assert cache.get("k") == "v"
    assert cache.get("absent", "d") == "d"
    assert cache.calls == ["put", "get", "get"]
    assert cache.metadata("k").hit_count == 1  # the general path counted the read


def test_the_fast_paths_follow_a_codec_swapped_after_construction() -> None:
    cache = MemoryCache()
    cache.put("k", {"a": 1})
    with pytest.raises(SerializationError):
        cache.put("ordered", OrderedDict(a=1))  # the safe codec refuses subclasses
    cache.codec = make_codec("pickle", signing_key="s3cr3t-f4st-p4th")
    cache.put("ordered", OrderedDict(a=1))  # the pickle codec stores it
    assert type(cache.get("ordered")) is OrderedDict
    assert cache.get("k") == {"a": 1}  # and still reads what the safe codec wrote


def test_get_many_decodes_the_batch_in_one_codec_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default (copying) get_many hands its hits to loads_local_many at once; the
    values are copies, counted as hits, and a pickle codec still reads key by key."""
    cache = MemoryCache()
    for i in range(5):
        cache.put(f"k{i}", {"n": i, "tags": ["a", "b"]})
    calls: list[int] = []
    many = type(cache.codec).loads_local_many

    def counting(self: Any, stored: dict[str, bytes]) -> dict[str, Any]:
        calls.append(len(stored))
        return many(self, stored)

    monkeypatch.setattr(type(cache.codec), "loads_local_many", counting)
    got = cache.get_many(["k0", "k3", "nope", "k4"])
    assert calls == [3]
    assert got == {
        "k0": {"n": 0, "tags": ["a", "b"]},
        "k3": {"n": 3, "tags": ["a", "b"]},
        "k4": {"n": 4, "tags": ["a", "b"]},
    }
    got["k0"]["tags"].append("c")  # a copy: the cache's entry is untouched
    assert cache.get("k0") == {"n": 0, "tags": ["a", "b"]}
    assert cache._data["k3"][memory_module._HITS] == 1
    pickled = MemoryCache(codec="pickle", signingKey="k3y-0f-th3-f4st-p4th")
    pickled.put("p", {"x": 1})
    assert pickled.get_many(["p"]) == {"p": {"x": 1}}
    assert calls == [3]


def _c_calls(action: Any) -> list[str]:
    """The builtin functions ``action()`` calls, in order (sys.setprofile's c_call events)."""
    names: list[str] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "c_call":
            names.append(getattr(arg, "__qualname__", repr(arg)))

    sys.setprofile(profile)
    try:
        action()
    finally:
        sys.setprofile(None)
    assert names.pop() == "setprofile"  # the call that stopped the profile
    return names


HIT_CALLS = ["RLock.acquire", "OrderedDict.get", "time", "OrderedDict.move_to_end", "RLock.release"]
MISS_CALLS = ["RLock.acquire", "OrderedDict.get", "RLock.release", "len", "str.isascii"]


def test_a_fast_get_makes_only_the_calls_it_needs() -> None:
    """Per hit: the lock, one lookup, the clock, the LRU move, and (copies) one decode; a
    miss takes no clock. The lookup is the store's ``get`` bound when the cache is built:
    looked up on the OrderedDict at each call it cost ~15% of a hit (issue #17)."""
    references = MemoryCache(serialize=False)
    copies = MemoryCache()
    for cache in (references, copies):
        cache.put("k", {"a": 1})
        assert _c_calls(lambda: cache.get("nope")) == MISS_CALLS  # noqa: B023 - called now
        cells = [cell.cell_contents for cell in getattr(cache.get, "__closure__", None) or ()]
        assert cache._data.get in cells  # bound once, not looked up per call
    assert _c_calls(lambda: references.get("k")) == HIT_CALLS
    assert _c_calls(lambda: copies.get("k")) == [*HIT_CALLS, "len", "unpackb"]
    assert references.get("k") == copies.get("k") == {"a": 1}
    assert references._data["k"][memory_module._HITS] == 2
