"""Django's ``has_key``, ``in``, ``add(timeout=0)``, ``touch`` and ``incr`` over an entry
the adapter cannot read: absent, as ``get`` says, on memory, Redis and DynamoDB.

An entry signed with a secret since rotated out, bytes another writer put under an
adapter key, a value the adapter never signs (``None`` stored raw), a session key holding
something other than the session dict: ``get`` answers a miss for each. On main
``has_key`` and ``in`` answered True for all of them, ``add(key, v, timeout=0)`` answered
False, ``touch`` gave them a new timeout and answered True, and ``incr`` raised a
TypeError instead of Django's "not found" ValueError; the async twins the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from cachehub_memory import MemoryCache

from cachehub.api import BaseCache
from cachehub.contrib.django import CacheHubCache
from cachehub.contrib.signing import SignedValues
from cachehub.errors import CacheValueError

PURPOSE = "cachehub.contrib.django cache values"
RETIRED = "a-retired-secret-key-of-this-site"

PLANTS: dict[str, Callable[[CacheHubCache, BaseCache, str], None]] = {
    # signed with a secret that is no longer the SECRET_KEY nor a fallback
    "rotated": lambda django, cache, key: _backend(cache, RETIRED).set(key, "old", None),
    "foreign bytes": lambda django, cache, key: cache.put(django.make_key(key), b"junk"),
    "raw None": lambda django, cache, key: cache.put(django.make_key(key), None),
    "raw str": lambda django, cache, key: cache.put(django.make_key(key), "not signed"),
    "truncated signature": lambda django, cache, key: cache.put(
        django.make_key(key), b"\x05" + b"\x00" * 20
    ),
}


def _backend(cache: BaseCache, secret: str | None = None) -> CacheHubCache:
    """A Django backend over ``cache``; with ``secret``, signing with that secret only."""
    backend = CacheHubCache("", {"OPTIONS": {"class": "memory"}})
    backend.cachehub = cache
    if secret is not None:
        backend.values = SignedValues(cache, secret, purpose=PURPOSE, adapter="t", setting="t")
    return backend


@pytest.fixture(params=["memory", "redis", "dynamodb"])
def cache(
    request: pytest.FixtureRequest,
    make_cache: Callable[..., MemoryCache],
    make_remote: Callable[..., BaseCache],
) -> BaseCache:
    # storage: Django's session engine keys are allowed (test_a_session_key_...).
    if request.param == "memory":
        return make_cache(name="django", storage=True)
    return make_remote(request.param, storage=True)


def _arun(coroutine: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, 30))


@pytest.mark.parametrize("plant", list(PLANTS))
def test_an_unreadable_entry_is_absent_to_every_django_check(cache: BaseCache, plant: str) -> None:
    django = _backend(cache)
    PLANTS[plant](django, cache, "k")
    assert cache.exists(django.make_key("k"))  # it is there, for the cache
    assert django.get("k", "dflt") == "dflt"
    assert not django.has_key("k")
    assert "k" not in django
    assert django.add("k", "v", timeout=0) is True  # stores nothing, as Django's backends
    assert django.touch("k", 60) is False
    with pytest.raises(CacheValueError, match="not found"):
        django.incr("k")
    assert _arun(django.ahas_key("k")) is False
    assert _arun(django.aadd("k", "v", timeout=0)) is True
    assert _arun(django.atouch("k", 60)) is False
    with pytest.raises(CacheValueError, match="not found"):
        _arun(django.aincr("k"))
    # Nothing above changed it: still there, still unreadable.
    assert cache.exists(django.make_key("k"))
    assert django.get("k", "dflt") == "dflt"
    # add with a real timeout takes it over (signing.Add), as get_or_set relies on.
    assert django.add("k", "fresh", 60) is True
    assert django.has_key("k")
    assert django.get("k") == "fresh"


@pytest.mark.parametrize("plant", list(PLANTS))
def test_touch_with_a_zero_timeout_removes_it_and_says_it_was_absent(
    cache: BaseCache, plant: str
) -> None:
    django = _backend(cache)
    for key, touch in (
        ("sync", lambda: django.touch("sync", 0)),
        ("async", lambda: _arun(django.atouch("async", 0))),
    ):
        PLANTS[plant](django, cache, key)
        assert touch() is False
        assert not cache.exists(django.make_key(key))


def test_readable_entries_keep_their_answers(cache: BaseCache) -> None:
    """The counter-cases: a value this adapter wrote, a native int, a stored None."""
    django = _backend(cache)
    django.set("v", {"a": 1}, None)
    django.set("n", 5, None)
    django.set("none", None, None)
    for key in ("v", "n", "none"):
        assert django.has_key(key), key
        assert key in django
        assert django.add(key, "x", timeout=0) is False
        assert django.touch(key, 60) is True
        assert _arun(django.ahas_key(key)) is True
        assert _arun(django.aadd(key, "x", timeout=0)) is False
        assert _arun(django.atouch(key, 60)) is True
    assert django.incr("n") == 6
    assert _arun(django.aincr("n")) == 7
    assert not django.has_key("absent")
    assert django.touch("absent", 60) is False
    assert django.touch("v", 0) is True
    assert not django.has_key("v")


def test_a_session_key_holding_no_session_dict_is_absent(cache: BaseCache) -> None:
    """Django's session engines read a session key's entry as the session dict: one
    holding anything else is a miss for get (see CacheHubCache._value), so for has_key."""
    django = _backend(cache)
    key = "django.contrib.sessions.cache" + "a" * 32
    django.set(key, ["not", "a", "dict"], None)
    assert django.get(key) is None
    assert not django.has_key(key)
    django.set(key, {"user": 1}, None)
    assert django.has_key(key)


def test_has_key_counts_no_hit_and_slides_no_idle_entry(
    make_cache: Callable[..., MemoryCache],
) -> None:
    cache = make_cache(name="django", hitCounts=True)
    django = _backend(cache)
    django.set("k", "v", None)
    assert django.has_key("k")
    assert cache.metadata(django.make_key("k")).hit_count == 0


@pytest.mark.parametrize("kind", ["redis", "dynamodb"])
def test_an_entry_the_caches_own_codec_cannot_verify_is_absent(
    make_remote: Callable[..., BaseCache], kind: str
) -> None:
    """A cache on the pickle codec whose signingKey rotated: its get reads the old entries
    as misses (UnknownSigningKeyError), and peek, which has_key now reads, raised it."""
    old = make_remote(kind, codec="pickle", signingKey="old-signing-key-0123456789")
    new = make_remote(
        kind, namespace=old.namespace, codec="pickle", signingKey="new-signing-key-0123456789"
    )
    _backend(old).set("k", "v", None)
    django = _backend(new)
    assert django.get("k", "dflt") == "dflt"
    assert not django.has_key("k")
    assert _arun(django.ahas_key("k")) is False
    assert django.add("k", "v", timeout=0) is True
    assert django.touch("k", 60) is False
