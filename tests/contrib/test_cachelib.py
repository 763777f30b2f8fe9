"""CacheHubCachelib: the behaviours cachelib's own backend test mixins check, and
Flask-Caching using it as CACHE_TYPE."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import pytest
from cachehub_memory import MemoryCache
from flask import Flask
from flask_caching import Cache

from cachehub.contrib.cachelib import CacheHubCachelib
from cachehub.contrib.flask_cache import CacheHubFlaskCache
from cachehub.errors import CacheError
from cachehub.testing.clock import FakeClock

SECRET = "cachelib-tests-secret-not-for-production"
SAMPLE_NUMBERS = [0, 10, 1024000, 9, 5000000000000, 99, 738, 2000000]
SAMPLE_PAIRS: dict[str, Any] = {
    "128": False,
    "beef": True,
    "crevettes": {},
    "1024": "spam",
    "bacon": "eggs",
    "sausage": 2048,
    "3072": [],
    "brandy": [{}, "fried eggs"],
    "lobster": ["baked beans", [512]],
    "4096": {"sauce": [], "truffle": 256},
}


@pytest.fixture
def cache(make_cache: Callable[..., MemoryCache]) -> CacheHubCachelib:
    return CacheHubCachelib(make_cache(name="cachelib"), secret_key=SECRET)


def test_set_get(cache: CacheHubCachelib) -> None:
    for k, v in SAMPLE_PAIRS.items():
        assert cache.set(k, v)
        assert cache.get(k) == v
    assert cache.get("missing") is None


def test_set_get_many_and_dict(cache: CacheHubCachelib) -> None:
    assert cache.set_many(SAMPLE_PAIRS) == list(SAMPLE_PAIRS)
    assert cache.get_many(*SAMPLE_PAIRS) == list(SAMPLE_PAIRS.values())
    assert cache.get_dict(*SAMPLE_PAIRS) == SAMPLE_PAIRS
    assert cache.get_many("bacon", "missing") == ["eggs", None]


def test_delete_and_delete_many(cache: CacheHubCachelib) -> None:
    for k, v in SAMPLE_PAIRS.items():
        cache.set(k, v)
        assert cache.delete(k)
        assert not cache.get(k)
    assert not cache.delete("never-set")
    cache.set_many(SAMPLE_PAIRS)
    assert cache.delete_many(*SAMPLE_PAIRS) == list(SAMPLE_PAIRS)
    assert not any(cache.get_many(*SAMPLE_PAIRS))
    cache.set("bacon", "spam")
    assert cache.delete_many("eggs", "bacon") == ["eggs", "bacon"]
    assert cache.get("bacon") is None


def test_add(cache: CacheHubCachelib) -> None:
    cache.set_many(SAMPLE_PAIRS)
    for k in SAMPLE_PAIRS:
        assert not cache.add(k, "updated")
    assert cache.get_many(*SAMPLE_PAIRS) == list(SAMPLE_PAIRS.values())
    for k, v in SAMPLE_PAIRS.items():
        assert cache.add(f"{k}-new", v)
        assert cache.get(f"{k}-new") == v


def test_inc_dec(cache: CacheHubCachelib) -> None:
    for n in SAMPLE_NUMBERS:
        assert not cache.get(f"{n}-key-inc")
        assert cache.inc(f"{n}-key-inc", n) == n
        assert cache.get(f"{n}-key-inc") == n
        assert cache.dec(f"{n}-key-dec", n) == -n
        assert cache.get(f"{n}-key-dec") == -n
        assert cache.dec(f"{n}-key-inc", 5) == n - 5


def test_has_and_clear(cache: CacheHubCachelib) -> None:
    assert cache.set_many(SAMPLE_PAIRS)
    for k in SAMPLE_PAIRS:
        assert cache.has(k)
        assert k in cache
    assert not cache.has("unknown")
    assert cache.clear()
    assert not any(cache.get_many(*SAMPLE_PAIRS))


def test_expiration(make_cache: Callable[..., MemoryCache], clock: FakeClock) -> None:
    cache = CacheHubCachelib(make_cache(), default_timeout=300, secret_key=SECRET)
    for k, v in SAMPLE_PAIRS.items():
        cache.set(f"{k}-t0", v, timeout=0)  # 0: never expires
        cache.set(f"{k}-t1", v, timeout=1)
        cache.set(f"{k}-default", v)
    clock.advance(4)
    for k, v in SAMPLE_PAIRS.items():
        assert cache.get(f"{k}-t0") == v
        assert not cache.has(f"{k}-t1")
        assert cache.get(f"{k}-default") == v
    clock.advance(300)
    assert not any(cache.has(f"{k}-default") for k in SAMPLE_PAIRS)
    assert all(cache.has(f"{k}-t0") for k in SAMPLE_PAIRS)


def test_negative_timeout_stores_nothing(cache: CacheHubCachelib) -> None:
    cache.set("k", "v")
    assert cache.set("k", "new", timeout=-1)
    assert not cache.has("k")
    assert cache.add("fresh", "v", timeout=-1)
    assert not cache.has("fresh")


def test_flask_caching_cache_type(make_cache: Callable[..., MemoryCache]) -> None:
    backing = make_cache(name="flask-caching")
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=SECRET,
        CACHE_TYPE="cachehub.contrib.flask_cache.CacheHubFlaskCache",
        CACHE_OPTIONS={"cache": backing},
        CACHE_DEFAULT_TIMEOUT=60,
    )
    flask_cache = Cache(app)
    calls: list[int] = []

    @app.get("/square/<int:n>")
    @flask_cache.cached()
    def square(n: int) -> str:
        calls.append(n)
        return str(n * n)

    @flask_cache.memoize()
    def double(n: int) -> int:
        calls.append(-n)
        return 2 * n

    client = app.test_client()
    assert client.get("/square/3").text == "9"
    assert client.get("/square/3").text == "9"
    with app.app_context():
        assert double(4) == 8
        assert double(4) == 8
        flask_cache.delete_memoized(double, 4)
        assert double(4) == 8
        flask_cache.set("plain", {"a": 1})
        assert flask_cache.get("plain") == {"a": 1}
        backend = app.extensions["cache"][flask_cache]
        assert isinstance(backend, CacheHubFlaskCache)
        assert backend.default_timeout == 60
    assert calls == [3, -4, -4]
    assert backing.count() > 0


def test_flask_caching_with_registry_name(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> None:
    from cachehub import registry

    monkeypatch.setattr(registry, "_current", None)
    registry.configure({"pages": {"class": "memory"}}, clock=clock)
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=SECRET,
        CACHE_TYPE="cachehub.contrib.flask_cache.CacheHubFlaskCache",
        CACHE_ARGS=["pages"],
    )
    flask_cache = Cache(app)
    with app.app_context():
        flask_cache.set("k", "v", timeout=5)
        assert flask_cache.get("k") == "v"
        clock.advance(6)
        assert flask_cache.get("k") is None


def test_flask_caching_needs_a_cache_and_a_secret(make_cache: Callable[..., MemoryCache]) -> None:
    from cachehub.errors import ConfigError

    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=SECRET, CACHE_TYPE="cachehub.contrib.flask_cache.CacheHubFlaskCache"
    )
    with pytest.raises(ConfigError, match="CACHEHUB_CACHE"):
        Cache(app)
    app.config["CACHEHUB_CACHE"] = make_cache(name="fc")
    app.config["CACHE_KEY_PREFIX"] = "site:"
    cache = Cache(app)
    with app.app_context():
        cache.set("k", {"a": (1, 2)})
        assert cache.get("k") == {"a": (1, 2)}
    backend = app.extensions["cache"][cache]
    assert backend.key_prefix == "site:"
    assert backend.cache.exists("site:k")


def test_replaced_serializer_is_used_inside_the_signature(
    make_cache: Callable[..., MemoryCache],
) -> None:
    """Flask-Caching's CACHE_SERIALIZER: its bytes are signed; loads sees verified bytes."""
    from cachelib.serializers import JSONSerializer

    backing = make_cache(name="ser")
    cache = CacheHubCachelib(backing, secret_key=SECRET)
    cache.serializer = JSONSerializer()
    cache.set("k", {"a": [1, 2]})
    assert cache.get("k") == {"a": [1, 2]}
    assert cache.get_many("k", "missing") == [{"a": [1, 2]}, None]
    cache.set("n", 5)
    assert cache.inc("n") == 6  # ints stay native
    stored = backing.get("k")
    assert isinstance(stored, bytes)
    backing.put("k", stored[:-1] + bytes([stored[-1] ^ 1]))
    assert cache.get("k") is None  # tampered: the serializer never sees it
    with pytest.raises(pickle.PickleError) as info:  # JSON cannot encode a set
        cache.set("s", {1, 2})
    assert isinstance(info.value, CacheError)

    class Raising(JSONSerializer):
        def dumps(self, value: Any, protocol: int | None = None) -> bytes:
            raise RuntimeError("boom")

        def loads(self, bvalue: bytes) -> Any:
            raise ValueError("cannot read")

    cache.serializer = Raising()
    with pytest.raises(pickle.PickleError, match="RuntimeError"):
        cache.set("r", "x")
    assert cache.get("k") is None  # written by JSON, unreadable now: a miss


@pytest.mark.parametrize(
    "timeout", [10**12, 2**70, 365_251 * 86_400], ids=["1e12", "2**70", "1000y+1d"]
)
def test_timeout_beyond_1000_years_keeps_the_entry_like_simplecache(
    make_cache: Callable[..., MemoryCache], clock: FakeClock, timeout: int
) -> None:
    """cachelib's SimpleCache (and RedisCache) store an entry with a timeout of any size;
    on main the adapter refused one above 1,000 years with CacheValueError. Such an entry
    is now kept without expiry, also as the default timeout."""
    from cachelib import SimpleCache

    reference = SimpleCache()
    ours = CacheHubCachelib(make_cache(), secret_key="k" * 32)
    default = CacheHubCachelib(make_cache(), default_timeout=timeout, secret_key="k" * 32)
    for backend in (reference, ours):
        assert backend.set("s", 1, timeout) is True
        assert backend.add("a", 2, timeout) is True
        assert backend.set_many({"m": 3}, timeout) == ["m"]
        assert backend.get_many("s", "a", "m") == [1, 2, 3]
    assert default.set("d", 4) is True
    clock.advance(10**10)
    assert ours.get_many("s", "a", "m") == [1, 2, 3]
    assert default.get("d") == 4


@pytest.mark.parametrize(
    ("timeout", "error"),
    [(float("inf"), ValueError), (float("nan"), ValueError), ("10", TypeError), ([1], TypeError)],
    ids=["inf", "nan", "str", "list"],
)
def test_unconvertible_timeout_is_a_typed_error(
    make_cache: Callable[..., MemoryCache], timeout: Any, error: type[Exception]
) -> None:
    """cachelib's own conversion raises a bare OverflowError (inf), ValueError (nan) or
    TypeError; the adapter raises a CacheError that is still a ValueError / TypeError
    and says what to pass, on every path that takes a timeout, and for default_timeout
    (on main: the bare errors)."""
    ours = CacheHubCachelib(make_cache(), secret_key="k" * 32)
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="k" * 32,
        CACHE_TYPE="cachehub.contrib.flask_cache.CacheHubFlaskCache",
        CACHEHUB_CACHE=make_cache(),
    )
    flask_cache = Cache(app)
    calls: list[Callable[[], Any]] = [
        lambda: ours.set("k", 1, timeout),
        lambda: ours.add("k", 1, timeout),
        lambda: ours.set_many({"k": 1}, timeout),
        lambda: CacheHubCachelib(make_cache(), default_timeout=timeout, secret_key="k" * 32),
    ]
    with app.app_context():
        calls.append(lambda: flask_cache.set("k", 1, timeout=timeout))
        for call in calls:
            with pytest.raises(CacheError, match="timeout must be") as info:
                call()
            assert isinstance(info.value, error)
            assert "timeout=300" in str(info.value)
    assert ours.get("k") is None


def test_cached_none_view_after_a_secret_rotation_is_recomputed(
    make_cache: Callable[..., MemoryCache],
) -> None:
    """Flask-Caching's ``cached(cache_none=True)`` takes ``get() is None and has()`` for a
    cached None. An entry signed with a retired SECRET_KEY is a miss for ``get``; on main
    ``has`` still said True, so the view returned None: a 500 on every request until the
    entry expired. ``has`` and ``in`` now agree with ``get``, as with SimpleCache."""
    shared = make_cache()

    def app_with(secret: str) -> Flask:
        app = Flask(__name__)
        app.config.update(
            SECRET_KEY=secret,
            CACHE_TYPE="cachehub.contrib.flask_cache.CacheHubFlaskCache",
            CACHEHUB_CACHE=shared,
        )
        cache = Cache(app)

        @app.get("/")
        @cache.cached(cache_none=True)
        def page() -> str:
            return "page"

        return app

    assert app_with("old-secret-" * 4).test_client().get("/").data == b"page"
    rotated = app_with("new-secret-" * 4)
    for _ in range(2):
        response = rotated.test_client().get("/")
        assert response.status_code == 200
        assert response.data == b"page"
    ours = CacheHubCachelib(shared, secret_key="new-secret-" * 4)
    shared.put("planted", b"bytes of another writer")
    ours.set("none", None)
    assert not ours.has("planted")
    assert "planted" not in ours
    assert ours.has("none")
    assert "none" in ours
