"""The adapters' default value format: signed pickle keyed from the framework secret.

Hostile cases: planted unsigned pickles, tampered / truncated / copied signatures,
rotated secrets, another adapter's signatures, missing secrets, secrets in output.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cachehub_memory import MemoryCache
from django.http import HttpResponse
from django.test import override_settings
from flask import Flask
from flask_caching import Cache
from markupsafe import Markup

from cachehub.codec import SafeCodec
from cachehub.contrib import django as django_adapter
from cachehub.contrib.cachelib import CacheHubCachelib
from cachehub.contrib.django import CacheHubCache
from cachehub.contrib.signing import (
    AdapterPickleError,
    AdapterTypeError,
    SignedValues,
    derive_key,
)
from cachehub.errors import CacheError, ConfigError, CorruptEntryError, SerializationError
from cachehub.testing import unavailable

SECRET = "signed-values-test-secret-0123456789"
OLD_SECRET = "the-previous-secret-abcdefghijklmnop"

_detonated: list[str] = []


def _detonate(what: str) -> None:
    """What a planted pickle would run: records that it ran."""
    _detonated.append(what)


class _Bomb:
    def __reduce__(self) -> tuple[Any, ...]:
        return (_detonate, ("planted pickle ran",))


class Point:
    """A user class (like a model instance): the safe codec refuses it, pickle does not."""

    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

    def __hash__(self) -> int:
        return hash((self.x, self.y))


class Unpicklable:
    def __getstate__(self) -> Any:
        raise pickle.PickleError("no")


@pytest.fixture(autouse=True)
def _no_detonation() -> Iterator[None]:
    _detonated.clear()
    yield
    assert _detonated == [], "a planted pickle was unpickled"


@pytest.fixture
def memory(make_cache: Callable[..., MemoryCache]) -> MemoryCache:
    return make_cache(name="signed")


def django_backend(cache: MemoryCache, **params: Any) -> CacheHubCache:
    params.setdefault("OPTIONS", {"class": "memory"})
    backend = CacheHubCache("", params)
    backend.cachehub = cache
    backend.values = SignedValues(
        cache,
        SECRET,
        purpose="cachehub.contrib.django cache values",
        adapter="test",
        setting="test",
        value_format=params["OPTIONS"].get("VALUE_FORMAT", "signed-pickle"),
    )
    return backend


# --------------------------------------------------------------------------- round trips


def test_django_stores_arbitrary_objects_signed(memory: MemoryCache) -> None:
    backend = django_backend(memory)
    response = HttpResponse("hello", headers={"X-A": "1"})
    response.set_cookie("c", "v")
    backend.set("resp", response)
    backend.set("point", Point(1, 2))
    backend.set("types", {"t": (1, 2), "s": {1}, "b": b"\x80raw"})
    assert backend.get("resp").content == b"hello"
    assert backend.get("resp").cookies["c"].value == "v"
    assert backend.get("point") == Point(1, 2)
    assert backend.get("types") == {"t": (1, 2), "s": {1}, "b": b"\x80raw"}
    # What the cachehub cache holds is signed bytes, not the object, and not the secret.
    stored = memory.get(backend.make_key("point"))
    assert isinstance(stored, bytes)
    assert stored[0] == 0x05
    assert SECRET.encode() not in stored


def test_ints_stay_native_so_incr_is_atomic(memory: MemoryCache) -> None:
    backend = django_backend(memory)
    backend.set("n", 41)
    assert memory.get(backend.make_key("n")) == 41
    assert backend.incr("n") == 42
    backend.set("flag", True)  # a bool is not an int here: it must come back a bool
    assert backend.get("flag") is True


def test_flask_caching_stores_markup_and_responses(memory: MemoryCache) -> None:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=SECRET,
        CACHE_TYPE="cachehub.contrib.flask_cache.CacheHubFlaskCache",
        CACHE_OPTIONS={"cache": memory},
        CACHE_KEY_PREFIX="app1:",
    )
    cache = Cache(app)
    with app.app_context():
        cache.set("m", Markup("<b>x</b>"))
        assert cache.get("m") == Markup("<b>x</b>")
        assert isinstance(cache.get("m"), Markup)
    assert memory.exists("app1:m")


# --------------------------------------------------------------------------- hostile writes


def test_planted_unsigned_pickle_is_never_unpickled(
    memory: MemoryCache, caplog: pytest.LogCaptureFixture
) -> None:
    backend = django_backend(memory)
    key = backend.make_key("victim")
    memory.put(key, pickle.dumps(_Bomb()))
    with caplog.at_level(logging.WARNING, "cachehub.contrib"):
        assert backend.get("victim", "default") == "default"
        assert backend.get_many(["victim"]) == {}
    assert "bytes that is not a signed value" in caplog.text
    assert SECRET not in caplog.text


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda b: b[:-1] + bytes([b[-1] ^ 1]), id="flipped-body-bit"),
        pytest.param(lambda b: b[:20], id="truncated-signature"),
        pytest.param(lambda b: b[:1], id="format-byte-only"),
        pytest.param(lambda b: b[:41] + pickle.dumps(_Bomb()), id="swapped-body"),
        pytest.param(lambda b: b"\x05" + b"\x00" * 8 + b[9:], id="unknown-key-id"),
        pytest.param(lambda b: b"\x03" + b[1:], id="old-format-byte"),
        pytest.param(
            lambda b: SafeCodec().dumps({"is_admin": True}), id="unsigned-safe-format-bytes"
        ),
    ],
)
def test_tampered_signed_values_read_as_misses(
    memory: MemoryCache, damage: Callable[[bytes], bytes]
) -> None:
    backend = django_backend(memory)
    backend.set("k", Point(3, 4))
    key = backend.make_key("k")
    memory.put(key, damage(memory.get(key)))
    assert backend.get("k") is None


def test_a_signed_value_copied_to_another_key_is_refused(memory: MemoryCache) -> None:
    backend = django_backend(memory)
    backend.set("admin-flag", True)
    memory.put(backend.make_key("user-flag"), memory.get(backend.make_key("admin-flag")))
    assert backend.get("user-flag") is None
    assert backend.get("admin-flag") is True


def test_foreign_safe_values_under_adapter_keys_are_misses(
    memory: MemoryCache, caplog: pytest.LogCaptureFixture
) -> None:
    backend = django_backend(memory)
    memory.put(backend.make_key("k"), {"is_admin": True})
    with caplog.at_level(logging.WARNING, "cachehub.contrib"):
        assert backend.get("k") is None
    assert "not a signed value" in caplog.text


def test_another_adapters_signature_is_not_valid_here(memory: MemoryCache) -> None:
    """Same secret, same cache, same key: the purpose in the derived key tells them apart."""
    cachelib = CacheHubCachelib(memory, secret_key=SECRET)
    backend = django_backend(memory)
    key = backend.make_key("shared")
    cachelib.set(key, Point(5, 6))
    assert cachelib.get(key) == Point(5, 6)
    assert backend.get("shared") is None
    assert derive_key(SECRET, "a") != derive_key(SECRET, "b")
    assert SECRET not in derive_key(SECRET, "a")


def test_raw_pickle_written_straight_into_redis_is_never_unpickled() -> None:
    from cachehub_redis import RedisCache
    from cachehub_redis.server import INSTALL_HINT, RedisServer, redis_server_available

    if not redis_server_available():
        unavailable(f"no redis-server found: {INSTALL_HINT}.")
    with RedisServer() as server:
        cache = RedisCache(url=server.url, namespace="hostile:")
        try:
            backend = django_backend(cache)  # type: ignore[arg-type]
            key = backend.make_key("victim")
            client = server.client()
            client.set("hostile:" + key, pickle.dumps(_Bomb()))
            try:
                answer = backend.get("victim", "default")
            except CorruptEntryError as exc:  # the provider refuses the bytes: also fine
                answer = str(exc)
            assert answer == "default" or "pickle" in answer
            cache.put(key, pickle.dumps(_Bomb()))  # through the cache's own format
            assert backend.get("victim", "default") == "default"
        finally:
            cache.close()


# --------------------------------------------------------------------------- rotation


def test_secret_rotation_with_fallbacks(memory: MemoryCache) -> None:
    purpose = "p"
    old = SignedValues(memory, OLD_SECRET, purpose=purpose, adapter="t", setting="t")
    stored = old.dumps("k", Point(7, 8))
    rotated = SignedValues(memory, SECRET, [OLD_SECRET], purpose=purpose, adapter="t", setting="t")
    assert rotated.loads("k", stored) == Point(7, 8)
    # New writes are signed with the new secret, which the old one cannot read.
    assert old.loads("k", rotated.dumps("k", Point(1, 1))).__class__ is not Point
    # Without the fallback the old entries are misses (recomputed), not errors.
    fresh = SignedValues(memory, SECRET, purpose=purpose, adapter="t", setting="t")
    assert fresh.loads("k", stored) is django_adapter.MISSING


def test_unreadable_entry_does_not_block_add_or_get_or_set(memory: MemoryCache) -> None:
    """An entry the adapter reads as a miss (signed with a retired secret, bytes of
    another writer) is absent for ``add`` too, as ``get`` says. On main ``add`` kept
    returning False, so Django's ``get_or_set`` recomputed on every call and never
    cached that key again (forever, for an entry stored with timeout=None); side by
    side, LocMemCache computes once."""
    import asyncio

    from django.core.cache.backends.locmem import LocMemCache

    with override_settings(SECRET_KEY=OLD_SECRET):
        old = django_backend(memory)
        old.values = SignedValues(
            memory,
            OLD_SECRET,
            purpose="cachehub.contrib.django cache values",
            adapter="t",
            setting="t",
        )
        old.set("rotated", "old value", None)
        old.set("async", "old value", None)
    new = django_backend(memory)
    memory.put(new.make_key("junk"), b"bytes of another writer")
    reference = LocMemCache("unreadable-add", {})
    reference.clear()
    for backend in (reference, new):
        computed: list[str] = []

        def compute(computed: list[str] = computed) -> str:
            computed.append("fresh")
            return "fresh"

        for key in ("rotated", "junk"):
            for _ in range(3):
                assert backend.get_or_set(key, compute) == "fresh"
        assert computed == ["fresh", "fresh"]  # once per key
        assert backend.add("rotated", "other") is False  # a readable entry still wins
    assert asyncio.run(new.aadd("async", "fresh")) is True
    assert asyncio.run(new.aadd("async", "other")) is False
    assert new.get("async") == "fresh"
    cachelib = CacheHubCachelib(memory, secret_key=SECRET)
    memory.put("planted", b"bytes of another writer")
    assert cachelib.add("planted", "fresh") is True
    assert cachelib.add("planted", "other") is False
    assert cachelib.get("planted") == "fresh"


def test_adders_racing_over_an_unreadable_entry_have_one_winner(memory: MemoryCache) -> None:
    """Replacing an unreadable entry is delete-then-add under a lock on the key: of
    eight threads adding over it at once exactly one wins, as add promises."""
    import threading

    backend = django_backend(memory)
    memory.put(backend.make_key("k"), b"bytes of another writer")
    start = threading.Barrier(8)
    results: dict[int, bool] = {}

    def adder(n: int) -> None:
        start.wait(10)
        results[n] = backend.add("k", n)

    threads = [threading.Thread(target=adder, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive()
    winners = [n for n, won in results.items() if won]
    assert len(results) == 8
    assert len(winners) == 1
    assert backend.get("k") == winners[0]


def test_django_reads_secret_key_fallbacks(memory: MemoryCache) -> None:
    with override_settings(SECRET_KEY=OLD_SECRET):
        old = CacheHubCache("", {"OPTIONS": {"class": "memory", "name": "rot"}})
        old.set("k", Point(1, 2))
    with override_settings(SECRET_KEY=SECRET, SECRET_KEY_FALLBACKS=[OLD_SECRET]):
        new = CacheHubCache("", {"OPTIONS": {"class": "memory", "name": "rot"}})
        assert new.cachehub is old.cachehub
        assert new.get("k") == Point(1, 2)
    with override_settings(SECRET_KEY=SECRET, SECRET_KEY_FALLBACKS=[]):
        assert CacheHubCache("", {"OPTIONS": {"class": "memory", "name": "rot"}}).get("k") is None


# --------------------------------------------------------------------------- no secret


def test_django_refuses_to_start_without_secret_key() -> None:
    with override_settings(SECRET_KEY=""), pytest.raises(ConfigError) as info:
        CacheHubCache("", {"OPTIONS": {"class": "memory"}})
    assert "SECRET_KEY" in str(info.value)
    assert "cache-codec" in str(info.value)


def test_cachelib_and_flask_refuse_to_start_without_secret(memory: MemoryCache) -> None:
    with pytest.raises(ConfigError, match="needs a secret"):
        CacheHubCachelib(memory)
    with pytest.raises(ConfigError, match="must be a non-empty string"):
        CacheHubCachelib(memory, secret_key=SECRET, secret_key_fallbacks=[""])
    with pytest.raises(ConfigError, match="must be a string or a list"):
        CacheHubCachelib(memory, secret_key=SECRET, secret_key_fallbacks=42)  # type: ignore[arg-type]
    app = Flask(__name__)
    app.config.update(
        CACHE_TYPE="cachehub.contrib.flask_cache.CacheHubFlaskCache",
        CACHE_OPTIONS={"cache": memory},
    )
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        Cache(app)
    # The plain cachelib class under Flask-Caching gets no app: the hint says what to use.
    app.config["CACHE_TYPE"] = "cachehub.contrib.cachelib.CacheHubCachelib"
    with pytest.raises(ConfigError, match="CacheHubFlaskCache"):
        Cache(app)


def test_no_secret_in_any_output(memory: MemoryCache, caplog: pytest.LogCaptureFixture) -> None:
    values = SignedValues(memory, SECRET, [OLD_SECRET], purpose="p", adapter="t", setting="t")
    memory.put("k", b"\x05" + b"\x00" * 60)
    with caplog.at_level(logging.DEBUG):
        assert values.loads("k", b"\x05" + b"\x00" * 60) is django_adapter.MISSING
        assert values.loads("k", memory.get("k")) is django_adapter.MISSING
        with pytest.raises(AdapterPickleError) as info:
            values.dumps("k", Unpicklable())
    texts = [caplog.text, repr(values), str(info.value), repr(values._codec)]
    for secret in (SECRET, OLD_SECRET, derive_key(SECRET, "p"), derive_key(OLD_SECRET, "p")):
        assert not any(secret in text for text in texts)


def test_cache_codec_format_needs_no_secret_and_never_pickles(memory: MemoryCache) -> None:
    with override_settings(SECRET_KEY=""):
        backend = django_backend(memory, OPTIONS={"VALUE_FORMAT": "cache-codec", "class": "memory"})
    backend.set("k", {"a": 1})
    assert memory.get(backend.make_key("k")) == {"a": 1}
    with pytest.raises(SerializationError):
        backend.set("p", Point(1, 2))
    with pytest.raises(ConfigError, match="unknown value format"):
        CacheHubCache("", {"OPTIONS": {"VALUE_FORMAT": "pickle", "class": "memory"}})


def test_cache_codec_refusal_names_the_default_format(memory: MemoryCache) -> None:
    """With ``cache-codec`` a value the codec refuses (Django's cached ``HttpResponse``,
    a user object) raises AdapterPickleError, a PicklingError as with signed pickle, whose
    hint names the adapter's default format as the fix; on main it was the codec's bare
    SerializationError, whose hint named only the cache's codec settings. Nothing is
    stored, on every write path."""
    import asyncio

    with override_settings(SECRET_KEY=""):
        options = {"VALUE_FORMAT": "cache-codec", "class": "memory", "name": "codec-hint"}
        backend = CacheHubCache("", {"OPTIONS": options})
    backend.cachehub = memory
    cachelib = CacheHubCachelib(memory, value_format="cache-codec")
    response = HttpResponse("page")
    writes: list[Callable[[], Any]] = [
        lambda: backend.set("r", response),
        lambda: backend.add("r", response),
        lambda: backend.set_many({"ok": 1, "r": response}),
        lambda: backend.get_or_set("r", response),
        lambda: asyncio.run(backend.aset("r", response)),
        lambda: asyncio.run(backend.aadd("r", response)),
        lambda: asyncio.run(backend.aset_many({"ok": 1, "r": response})),
        lambda: cachelib.set("r", Point(1, 2)),
        lambda: cachelib.add("r", Point(1, 2)),
        lambda: cachelib.set_many({"ok": 1, "r": Point(1, 2)}),
    ]
    for write in writes:
        with pytest.raises(AdapterPickleError) as info:
            write()
        assert isinstance(info.value, pickle.PicklingError)
        assert "'cache-codec' value format" in str(info.value)
        assert "signed pickle" in str(info.value)
        assert isinstance(info.value.__cause__, SerializationError)
    assert memory.count() == 0
    backend.set("fine", {"a": [1, 2]})  # what the codec holds is stored as before
    assert backend.get("fine") == {"a": [1, 2]}


# --------------------------------------------------------------------------- error types


def test_errors_are_the_types_frameworks_expect(memory: MemoryCache) -> None:
    backend = django_backend(memory)
    with pytest.raises(pickle.PickleError) as info:
        backend.set("u", Unpicklable())
    assert isinstance(info.value, CacheError)
    assert isinstance(info.value, SerializationError)
    with pytest.raises(pickle.PickleError):
        backend.set_many({"ok": 1, "u": Unpicklable()})
    with pytest.raises(pickle.PickleError):
        backend.add("u", lambda: None)
    backend.set("none", None)
    with pytest.raises(TypeError) as type_info:
        backend.incr("none")
    assert isinstance(type_info.value, CacheError)
    assert isinstance(type_info.value, ValueError)
    assert isinstance(type_info.value, AdapterTypeError)
    with pytest.raises(ValueError):
        backend.incr("absent")
    cachelib = CacheHubCachelib(memory, secret_key=SECRET)
    cachelib.set("s", "text")
    with pytest.raises(TypeError):
        cachelib.inc("s")


def test_oversized_value_is_a_pickle_error_not_a_crash(
    make_cache: Callable[..., MemoryCache],
) -> None:
    small = make_cache(name="small", maxValueSize=1024)
    backend = django_backend(small)
    with pytest.raises(pickle.PickleError, match="maxValueSize"):
        backend.set("big", b"x" * 4096)
    assert backend.get("big") is None


# --------------------------------------------------------------------------- options


def test_django_standard_options_beside_location_are_accepted_and_warn_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cachehub import registry

    monkeypatch.setattr(registry, "_current", None)
    monkeypatch.setattr(django_adapter, "_warned", set())
    registry.configure({"main": {"class": "memory"}})
    params = {"OPTIONS": {"MAX_ENTRIES": 30, "CULL_FREQUENCY": 3}}
    with caplog.at_level(logging.WARNING, "cachehub.contrib.django"):
        first = CacheHubCache("main", params)
        CacheHubCache("main", params)
    assert first.cachehub is registry.get_caches().get("main")
    warnings = [r for r in caplog.records if "is ignored" in r.getMessage()]
    assert len(warnings) == 2  # one per option, once per process
    messages = " ".join(w.getMessage() for w in warnings)
    assert "MAX_ENTRIES" in messages
    assert "CULL_FREQUENCY" in messages


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"PARSER_CLASS": "x"}, "not an option of CacheHubCache"),
        ({1: "x"}, "keys must be strings"),
    ],
)
def test_django_unknown_options_are_typed_errors(options: dict[Any, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        CacheHubCache("main", {"OPTIONS": options})


def test_cachelib_key_prefix_and_default_timeout(memory: MemoryCache, clock: Any) -> None:
    one = CacheHubCachelib(memory, key_prefix="one:", default_timeout=10, secret_key=SECRET)
    two = CacheHubCachelib(memory, key_prefix="two:", secret_key=SECRET)
    one.set("k", "1")
    two.set("k", "2")
    assert (one.get("k"), two.get("k")) == ("1", "2")
    assert memory.exists("one:k")
    assert one.clear()
    assert (one.get("k"), two.get("k")) == (None, "2")
    one.set("t", "x")
    clock.advance(11)
    assert one.get("t") is None
    for bad in ("a*", "b?"):
        with pytest.raises(ConfigError, match="key_prefix"):
            CacheHubCachelib(memory, key_prefix=bad, secret_key=SECRET)
