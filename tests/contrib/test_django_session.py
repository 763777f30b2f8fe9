"""Django's cache session engine over CacheHubCache, and cachehub's guarded engine."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Iterator
from importlib import import_module
from typing import Any

import pytest
from cachehub_memory import MemoryCache
from django.contrib.sessions.backends.cache import SessionStore as DjangoCacheSession
from django.core.cache import caches
from django.test import override_settings

from cachehub.contrib.django import CacheHubCache
from cachehub.contrib.django_session import SessionStore as GuardedSession
from cachehub.errors import ConfigError, StorageNotEnabledError
from cachehub.testing.clock import FakeClock


@pytest.fixture(autouse=True)
def sessions_cache(make_cache: Callable[..., MemoryCache]) -> Iterator[MemoryCache]:
    """Point this thread's "sessions" alias at a fresh storage cache on the fake clock."""
    backend = caches["sessions"]
    assert isinstance(backend, CacheHubCache)
    original = backend.cachehub
    backend.cachehub = make_cache(storage=True, name="django-sessions")
    yield backend.cachehub
    backend.cachehub = original


@pytest.mark.parametrize("engine", [DjangoCacheSession, GuardedSession])
def test_session_roundtrip(engine: type[DjangoCacheSession]) -> None:
    session = engine()
    session["user_id"] = 42
    session["cart"] = ["apple", "pear"]
    session.save()
    key = session.session_key
    assert key
    assert session.exists(key)
    loaded = engine(session_key=key)
    assert loaded["user_id"] == 42
    assert loaded["cart"] == ["apple", "pear"]
    loaded["user_id"] = 7
    loaded.save()
    assert engine(session_key=key)["user_id"] == 7
    loaded.delete()
    assert not engine().exists(key)
    assert dict(engine(session_key=key).items()) == {}


def test_cycle_key_moves_data() -> None:
    session = DjangoCacheSession()
    session["a"] = 1
    session.save()
    old = session.session_key
    session.cycle_key()
    assert session.session_key != old
    assert not session.exists(old)
    assert DjangoCacheSession(session_key=session.session_key)["a"] == 1


def test_create_never_overwrites(sessions_cache: MemoryCache) -> None:
    session = DjangoCacheSession()
    session.create()
    assert session.session_key is not None
    assert sessions_cache.count() == 1


def test_session_expiry(clock: FakeClock) -> None:
    session = DjangoCacheSession()
    session["x"] = 1
    session.set_expiry(60)
    session.save()
    key = session.session_key
    clock.advance(59)
    assert DjangoCacheSession(session_key=key).get("x") == 1
    clock.advance(2)
    assert DjangoCacheSession(session_key=key).get("x") is None


def test_engine_importable_by_setting() -> None:
    with override_settings(SESSION_ENGINE="cachehub.contrib.django_session"):
        from django.conf import settings

        engine = import_module(settings.SESSION_ENGINE)
        assert engine.SessionStore is GuardedSession


def test_guarded_engine_needs_storage_cache() -> None:
    with (
        override_settings(SESSION_CACHE_ALIAS="default"),
        pytest.raises(StorageNotEnabledError, match="storage: true"),
    ):
        GuardedSession()


def test_guarded_engine_needs_cachehub_backend() -> None:
    with (
        override_settings(
            CACHES={"locmem": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
            SESSION_CACHE_ALIAS="locmem",
        ),
        pytest.raises(ConfigError, match="needs a cachehub cache"),
    ):
        GuardedSession()


@pytest.mark.parametrize("value_format", ["signed-pickle", "cache-codec"])
@pytest.mark.parametrize("engine", [DjangoCacheSession, GuardedSession])
@pytest.mark.parametrize("planted", ["a string", [1, 2], 5, b"bytes", True, None])
def test_entry_that_is_not_a_session_dict_is_no_session(
    engine: type[DjangoCacheSession],
    value_format: str,
    planted: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A session entry holding something other than the session dict (another client's
    value: with ``cache-codec`` anyone who can write to the backend can put one there)
    reads as no session, as a missing one does: Django starts a new session. On main
    every request of that session failed with AttributeError ("'str' object has no
    attribute 'items'"); a None was a miss for the engines but ``get_many`` returned it."""
    backend = caches["sessions"]
    assert isinstance(backend, CacheHubCache)
    if value_format == "cache-codec":
        options = {"class": "memory", "storage": True, "VALUE_FORMAT": value_format}
        monkeypatch.setattr(backend, "values", CacheHubCache("", {"OPTIONS": options}).values)
    session = engine()
    session["user_id"] = 42
    session.save()
    sid = session.session_key
    assert engine(session_key=sid)["user_id"] == 42  # the format round-trips a session
    stored = backend._key(engine(session_key=sid).cache_key, None)
    backend.cachehub.put(stored, backend.values.dumps(stored, planted))

    loaded = engine(session_key=sid)
    assert dict(loaded.items()) == {}
    assert loaded.session_key is None  # Django's "no such session": a new id on save
    assert asyncio.run(engine(session_key=sid).aload()) == {}
    assert backend.get_many([engine(session_key=sid).cache_key]) == {}
    assert asyncio.run(backend.aget_many([engine(session_key=sid).cache_key])) == {}
    loaded["user_id"] = 7
    loaded.save()
    assert loaded.session_key != sid
    assert engine(session_key=loaded.session_key)["user_id"] == 7


def test_non_dict_values_outside_session_keys_are_kept() -> None:
    """Only the session engines' keys must hold a dict: other keys keep any value."""
    backend = caches["sessions"]
    backend.set("django.contrib.sessionsX", "a string")
    backend.set("sessions", [1, 2])
    assert backend.get("django.contrib.sessionsX") == "a string"
    assert backend.get("sessions") == [1, 2]


def test_each_stock_engine_keeps_its_own_prefix() -> None:
    # On main "django.contrib.sessions.cached_db<id>" matched the cache engine's prefix
    # first and was stored as "django.contrib.sessions.cache" + sha256("d_db<id>"): a
    # filter on the cached_db prefix found none of its sessions (an operator clearing
    # them cleared nothing), and one on the cache prefix found both engines'. (cached_db
    # reads the database on a miss: its new keys cost one cache miss per session.)
    backend = caches["sessions"]
    assert isinstance(backend, CacheHubCache)
    sid = "a" * 32
    digest = hashlib.sha256(sid.encode()).hexdigest()
    cached_db = backend._key("django.contrib.sessions.cached_db" + sid, None)
    assert cached_db.endswith("django.contrib.sessions.cached_db" + digest)
    cache = backend._key("django.contrib.sessions.cache" + sid, None)
    assert cache.endswith("django.contrib.sessions.cache" + digest)
    store = backend.cachehub
    store.clear()
    store.put(cached_db, 1)
    store.put(cache, 2)
    assert list(store.keys("*django.contrib.sessions.cached_db*")) == [cached_db]
