"""Bad-input corpus, part 2: keys, filters, values, TTLs, oversized and corrupted entries.

Corrupted bytes and malicious pickles are planted directly with a raw redis-py client and
a raw boto3 client, in the item layouts docs/redis.md and docs/dynamodb.md document; the
caches reading them must raise :class:`CorruptEntryError` and never unpickle anything.
"""

from __future__ import annotations

import collections
import math
import os
import threading
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgpack
import pytest
from cachehub_redis import RedisCache

from cachehub.api import MAX_KEY_LENGTH, BaseCache
from cachehub.codec import (
    FORMAT_SIGNED,
    FORMAT_SIGNED_ZLIB,
    MAX_DECOMPRESSED_SIZE,
    PickleCodec,
    _key_id,
)
from cachehub.errors import (
    CacheKeyError,
    CachePermissionError,
    CacheValueError,
    CorruptEntryError,
    InvalidKeyError,
    ReadOnlyCacheError,
    SerializationError,
    UnknownSigningKeyError,
)

from .conftest import SIGNING_KEY
from .corpus import Case, Env, Run, check, exploit_bytes, params, signed_with_other_key


def _on(provider: str, action: Callable[[Any], Any], **kwargs: Any) -> Run:
    """A case body: build a ``provider`` cache and run ``action`` on it.

    The action gets the cache as ``Any``: the corpus passes wrong types on purpose.
    """
    return lambda env: action(getattr(env, provider)(**kwargs))


def _recursive() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


def _forged_pickle(path: Path, marker: int = FORMAT_SIGNED) -> bytes:
    """A pickle-codec frame around an exploit: the id of the readers' key (it is no
    secret), and a made-up signature."""
    body = exploit_bytes(path)
    if marker == FORMAT_SIGNED_ZLIB:
        body = zlib.compress(body)
    return bytes([marker]) + _key_id(SIGNING_KEY.encode()) + os.urandom(32) + body


def _zip_bomb() -> bytes:
    return b"\x02" + zlib.compress(b"\0" * (MAX_DECOMPRESSED_SIZE + 1024), 1)


def _planted(
    provider: str,
    payload: Callable[[Env], bytes],
    *,
    read: Callable[[BaseCache], Any] = lambda cache: cache.get("k"),
    **kwargs: Any,
) -> Run:
    """A case body: plant ``payload`` as key ``k`` through the raw client, then read it."""

    def run(env: Env) -> Any:
        cache: BaseCache = getattr(env, provider)(**kwargs)
        plant = env.plant_redis if provider == "redis" else env.plant_dynamo
        plant(cache, "k", payload(env))
        return read(cache)

    return run


def _written_then_read(writer_key: str, reader_key: str, provider: str) -> Run:
    """A case body: one pickle-codec cache writes, another with another key reads."""

    def run(env: Env) -> Any:
        build = getattr(env, provider)
        namespace = f"pk{os.urandom(4).hex()}:"
        writer = build(namespace=namespace, codec="pickle", signingKey=writer_key)
        writer.put("k", {"set": {1, 2}, "when": datetime(2024, 1, 1, tzinfo=UTC)})
        reader = build(namespace=namespace, codec="pickle", signingKey=reader_key)
        return reader.get("k", throw_when_not_exist=True)

    return run


def _wrong_redis_password(env: Env) -> None:
    host, port = env.redis_endpoint
    bad = RedisCache(host=host, port=port, password="SuperSecret-123-wrong", retries=0)
    env.shown.append(bad)
    try:
        bad.get("k")
    finally:
        bad.close()


def _wrong_redis_url_password(env: Env) -> None:
    host, port = env.redis_endpoint
    bad = RedisCache(url=f"redis://:SuperSecret-123-wrong@{host}:{port}/0", retries=0)
    env.shown.append(bad)
    try:
        bad.put("k", 1)
    finally:
        bad.close()


def _random_bytes(size: int) -> Any:
    return os.urandom(size)


def _past() -> datetime:
    return datetime.now(UTC) - timedelta(minutes=1)


def _pickle_codec() -> dict[str, Any]:
    return {"codec": "pickle", "signingKey": SIGNING_KEY}


CASES = [
    # ---- keys
    Case("key-empty", InvalidKeyError, ("cache key is empty",), _on("memory", lambda c: c.get(""))),
    Case(
        "key-too-long",
        InvalidKeyError,
        (f"the limit is {MAX_KEY_LENGTH}",),
        _on("memory", lambda c: c.put("k" * (MAX_KEY_LENGTH + 1), 1)),
    ),
    Case(
        "key-int",
        InvalidKeyError,
        ("cache keys must be str, got int",),
        _on("memory", lambda c: c.get(42)),
    ),
    Case(
        "key-none",
        InvalidKeyError,
        ("cache keys must be str, got NoneType",),
        _on("memory", lambda c: c.put(None, 1)),
    ),
    Case(
        "key-bytes",
        InvalidKeyError,
        ("cache keys must be str, got bytes",),
        _on("memory", lambda c: c.delete(b"k")),
    ),
    Case(
        "key-tuple",
        InvalidKeyError,
        ("cache keys must be str, got tuple",),
        _on("memory", lambda c: c.exists(("a", 1))),
    ),
    Case(
        "key-lone-surrogate",
        InvalidKeyError,
        ("lone surrogate",),
        _on("memory", lambda c: c.put("bad\udcff", 1)),
    ),
    Case(
        "key-int-in-get-many",
        InvalidKeyError,
        ("got int",),
        _on("memory", lambda c: c.get_many(["a", 7])),
    ),
    Case(
        "key-empty-redis",
        InvalidKeyError,
        ("cache key is empty",),
        _on("redis", lambda c: c.put("", 1)),
    ),
    Case(
        "key-too-long-dynamodb",
        InvalidKeyError,
        ("characters long",),
        _on("dynamo", lambda c: c.get("k" * (MAX_KEY_LENGTH + 1))),
    ),
    Case(
        "key-bytes-in-put-many-dynamodb",
        InvalidKeyError,
        ("got bytes",),
        _on("dynamo", lambda c: c.put_many({b"k": 1})),
    ),
    # ---- filters
    Case(
        "filter-int",
        CacheValueError,
        ("filter must be a string", "int"),
        _on("memory", lambda c: c.count(5)),
    ),
    Case(
        "filter-bytes",
        CacheValueError,
        ("filter must be a string", "bytes"),
        _on("memory", lambda c: list(c.keys(b"user_*"))),
    ),
    Case(
        "filter-list",
        CacheValueError,
        ("filter must be a string", "list"),
        _on("memory", lambda c: c.clear(["user_*"])),
    ),
    Case(
        "filter-dict-redis",
        CacheValueError,
        ("filter must be a string", "dict"),
        _on("redis", lambda c: c.get_all({"user": "*"})),
    ),
    Case(
        "filter-int-dynamodb",
        CacheValueError,
        ("filter must be a string", "int"),
        _on("dynamo", lambda c: c.clear(3)),
    ),
    # ---- values the codecs cannot store
    Case(
        "value-lambda",
        SerializationError,
        ("function", "safe codec cannot store"),
        _on("memory", lambda c: c.put("k", lambda: 1)),
    ),
    Case(
        "value-object",
        SerializationError,
        ("object", "safe codec cannot store"),
        _on("memory", lambda c: c.put("k", object())),
    ),
    Case(
        "value-lock",
        SerializationError,
        ("_thread.lock",),
        _on("memory", lambda c: c.put("k", threading.Lock())),
    ),
    Case(
        "value-ordered-dict",
        SerializationError,
        ("OrderedDict", "plain dict"),
        _on("memory", lambda c: c.put("k", collections.OrderedDict(a=1))),
    ),
    Case(
        "value-nested-object-path",
        SerializationError,
        ("value['a'][1]",),
        _on("memory", lambda c: c.put("k", {"a": [1, object()]})),
    ),
    Case(
        "value-recursive",
        SerializationError,
        ("contains itself",),
        _on("memory", lambda c: c.put("k", _recursive())),
    ),
    Case(
        "value-lambda-pickle-codec",
        SerializationError,
        ("pickle codec cannot store",),
        _on("memory", lambda c: c.put("k", lambda: 1), **_pickle_codec()),
    ),
    Case(
        "value-object-redis",
        SerializationError,
        ("safe codec cannot store",),
        _on("redis", lambda c: c.put("k", object())),
    ),
    Case(
        "value-generator-dynamodb",
        SerializationError,
        ("generator",),
        _on("dynamo", lambda c: c.put_many({"k": (i for i in range(3))})),
    ),
    # ---- TTLs
    Case(
        "ttl-negative",
        CacheValueError,
        ("time_span must be a positive, finite duration",),
        _on("memory", lambda c: c.put("k", 1, time_span=-1)),
    ),
    Case(
        "ttl-nan",
        CacheValueError,
        ("positive, finite", "nan"),
        _on("memory", lambda c: c.put("k", 1, time_span=math.nan)),
    ),
    Case(
        "ttl-inf",
        CacheValueError,
        ("positive, finite", "inf"),
        _on("memory", lambda c: c.put("k", 1, time_span=math.inf)),
    ),
    Case(
        "ttl-zero",
        CacheValueError,
        ("positive, finite", "got 0"),
        _on("memory", lambda c: c.add("k", 1, time_span=0)),
    ),
    Case(
        "ttl-negative-timedelta",
        CacheValueError,
        ("positive, finite",),
        _on("memory", lambda c: c.put("k", 1, time_span=timedelta(seconds=-5))),
    ),
    Case(
        "ttl-string",
        CacheValueError,
        ("time_span must be a timedelta or a number", "str"),
        _on("memory", lambda c: c.put("k", 1, time_span="10")),
    ),
    Case(
        "ttl-bool",
        CacheValueError,
        ("got bool",),
        _on("memory", lambda c: c.put("k", 1, time_span=True)),
    ),
    Case(
        "idle-negative",
        CacheValueError,
        ("idle_time must be a positive",),
        _on("memory", lambda c: c.put("k", 1, idle_time=-5)),
    ),
    Case(
        "idle-nan-touch-redis",
        CacheValueError,
        ("idle_time", "nan"),
        _on("redis", lambda c: c.touch("k", idle_time=math.nan)),
    ),
    Case(
        "ttl-inf-put-many-dynamodb",
        CacheValueError,
        ("positive, finite",),
        _on("dynamo", lambda c: c.put_many({"k": 1}, time_span=math.inf)),
    ),
    Case(
        "until-in-the-past",
        CacheValueError,
        ("is in the past",),
        _on("memory", lambda c: c.put("k", 1, until=_past())),
    ),
    Case(
        "until-in-the-past-dynamodb",
        CacheValueError,
        ("is in the past",),
        _on("dynamo", lambda c: c.add("k", 1, until=_past())),
    ),
    Case(
        "until-not-a-datetime",
        CacheValueError,
        ("until must be a datetime, got str",),
        _on("memory", lambda c: c.put("k", 1, until="tomorrow")),
    ),
    Case(
        "until-and-time-span",
        CacheValueError,
        ("cannot be combined",),
        _on("memory", lambda c: c.put("k", 1, time_span=5, until=datetime.now(UTC))),
    ),
    # ---- other arguments
    Case(
        "incr-float-delta",
        CacheValueError,
        ("delta must be an int, got float",),
        _on("memory", lambda c: c.incr("n", 1.5)),
    ),
    Case(
        "incr-on-a-string-redis",
        CacheValueError,
        ("holds a str",),
        _on("redis", lambda c: (c.put("n", "x"), c.incr("n"))),
    ),
    Case(
        "incr-on-a-string-dynamodb",
        CacheValueError,
        ("holds a str",),
        _on("dynamo", lambda c: (c.put("n", "x"), c.incr("n"))),
    ),
    Case(
        "lock-poll-zero",
        CacheValueError,
        ("poll interval must be > 0",),
        _on("memory", lambda c: c.lock("l", poll=0)),
    ),
    # Ints beyond a float's range raised a raw OverflowError when the lock computed its
    # deadline or waits.
    Case(
        "lock-timeout-beyond-float",
        CacheValueError,
        ("lock timeout must be a number of seconds", "1329 bits"),
        _on("memory", lambda c: c.lock("l", timeout=10**400).acquire()),
    ),
    Case(
        "lock-acquire-timeout-beyond-float",
        CacheValueError,
        ("lock timeout must be a number of seconds",),
        _on("memory", lambda c: c.lock("l").acquire(timeout=-(10**400))),
    ),
    Case(
        "lock-poll-beyond-float",
        CacheValueError,
        ("lock poll interval must be a number of seconds",),
        _on("memory", lambda c: c.lock("l", poll=10**400)),
    ),
    Case(
        "get-missing-throw",
        CacheKeyError,
        ("no entry for key 'absent'",),
        _on("redis", lambda c: c.get("absent", throw_when_not_exist=True)),
    ),
    Case(
        "metadata-missing",
        CacheKeyError,
        ("no entry for key 'absent'",),
        _on("dynamo", lambda c: c.metadata("absent")),
    ),
    Case(
        "read-only-put",
        ReadOnlyCacheError,
        ("is read-only", "put()"),
        _on("redis", lambda c: c.put("k", 1), read_only=True),
    ),
    # ---- DynamoDB's 400 KB item limit (random bytes do not compress)
    Case(
        "dynamodb-oversized-value",
        CacheValueError,
        ("400 KB", "after compression"),
        _on("dynamo", lambda c: c.put("big", _random_bytes(450 * 1024))),
    ),
    Case(
        "dynamodb-oversized-in-put-many",
        CacheValueError,
        ("400 KB",),
        _on("dynamo", lambda c: c.put_many({"ok": 1, "big": _random_bytes(420 * 1024)})),
    ),
    Case(
        "dynamodb-oversized-add",
        CacheValueError,
        ("400 KB",),
        _on("dynamo", lambda c: c.add("big", [_random_bytes(210 * 1024)] * 2)),
    ),
    # ---- corrupted bytes planted in Redis (hash field v)
    Case(
        "redis-corrupt-unknown-format",
        CorruptEntryError,
        ("format byte 0xee is unknown",),
        _planted("redis", lambda env: b"\xee" + os.urandom(63)),
    ),
    Case("redis-corrupt-empty", CorruptEntryError, ("empty",), _planted("redis", lambda env: b"")),
    Case(
        "redis-corrupt-truncated-msgpack",
        CorruptEntryError,
        ("msgpack body is invalid",),
        _planted("redis", lambda env: b"\x01\x93\x01"),
    ),
    Case(
        "redis-corrupt-bad-zlib",
        CorruptEntryError,
        ("compressed body is invalid",),
        _planted("redis", lambda env: b"\x02not zlib at all"),
    ),
    Case(
        "redis-corrupt-zip-bomb",
        CorruptEntryError,
        ("decompression limit",),
        _planted("redis", lambda env: _zip_bomb()),
    ),
    Case(
        "redis-corrupt-unknown-extension",
        CorruptEntryError,
        ("unknown extension type 99",),
        _planted("redis", lambda env: b"\x01" + msgpack.packb(msgpack.ExtType(99, b"x"))),
    ),
    Case(
        "redis-corrupt-via-get-many",
        CorruptEntryError,
        ("cannot be decoded",),
        _planted("redis", lambda env: b"\x01\xc1", read=lambda c: c.get_many(["k"])),
    ),
    # ---- corrupted bytes planted in DynamoDB (attribute value, type B)
    Case(
        "dynamodb-corrupt-unknown-format",
        CorruptEntryError,
        ("format byte 0x7f is unknown",),
        _planted("dynamo", lambda env: b"\x7f" + os.urandom(31)),
    ),
    Case(
        "dynamodb-corrupt-truncated-msgpack",
        CorruptEntryError,
        ("msgpack body is invalid",),
        _planted("dynamo", lambda env: b"\x01\xdc\x00"),
    ),
    Case(
        "dynamodb-corrupt-bad-zlib",
        CorruptEntryError,
        ("compressed body",),
        _planted("dynamo", lambda env: b"\x02" + zlib.compress(b"x" * 100)[:-6]),
    ),
    Case(
        "dynamodb-corrupt-via-get-many",
        CorruptEntryError,
        ("cannot be decoded",),
        _planted("dynamo", lambda env: b"\x09", read=lambda c: c.get_many(["k", "other"])),
    ),
    # ---- malicious pickles: never executed, whatever the codec
    Case(
        "redis-raw-pickle-safe-codec",
        CorruptEntryError,
        ("looks like a raw pickle",),
        _planted("redis", lambda env: exploit_bytes(env.marker)),
    ),
    Case(
        "redis-raw-pickle-pickle-codec",
        CorruptEntryError,
        ("looks like a raw pickle",),
        _planted("redis", lambda env: exploit_bytes(env.marker), **_pickle_codec()),
    ),
    Case(
        "redis-forged-signature-pickle-codec",
        CorruptEntryError,
        ("HMAC signature does not match", "Nothing was unpickled"),
        _planted("redis", lambda env: _forged_pickle(env.marker), **_pickle_codec()),
    ),
    Case(
        "redis-forged-zlib-pickle-pickle-codec",
        CorruptEntryError,
        ("HMAC signature does not match",),
        _planted(
            "redis", lambda env: _forged_pickle(env.marker, FORMAT_SIGNED_ZLIB), **_pickle_codec()
        ),
    ),
    Case(
        "redis-forged-pickle-safe-codec",
        CorruptEntryError,
        ("written by the pickle codec", "never unpickles"),
        _planted("redis", lambda env: _forged_pickle(env.marker)),
    ),
    Case(
        "dynamodb-raw-pickle-safe-codec",
        CorruptEntryError,
        ("looks like a raw pickle",),
        _planted("dynamo", lambda env: exploit_bytes(env.marker)),
    ),
    Case(
        "dynamodb-raw-pickle-pickle-codec",
        CorruptEntryError,
        ("looks like a raw pickle",),
        _planted("dynamo", lambda env: exploit_bytes(env.marker), **_pickle_codec()),
    ),
    Case(
        "dynamodb-forged-signature-pickle-codec",
        CorruptEntryError,
        ("HMAC signature does not match",),
        _planted("dynamo", lambda env: _forged_pickle(env.marker), **_pickle_codec()),
    ),
    Case(
        "dynamodb-forged-pickle-via-get-many",
        CorruptEntryError,
        ("HMAC signature",),
        _planted(
            "dynamo",
            lambda env: _forged_pickle(env.marker, FORMAT_SIGNED_ZLIB),
            read=lambda c: c.get_many(["k"]),
            **_pickle_codec(),
        ),
    ),
    # ---- a pickle-codec cache reading an entry signed with another key: a miss
    Case(
        "redis-signed-with-another-key",
        CacheKeyError,
        ("no entry for key",),
        _written_then_read("a-different-signing-key-4567", SIGNING_KEY, "redis"),
    ),
    Case(
        "dynamodb-signed-with-another-key",
        CacheKeyError,
        ("no entry for key",),
        _written_then_read("a-different-signing-key-4567", SIGNING_KEY, "dynamo"),
    ),
    Case(
        "memory-planted-other-key-pickle",
        UnknownSigningKeyError,
        ("does not know", "Nothing was unpickled", "signingKeyFallbacks"),
        lambda env: PickleCodec(SIGNING_KEY).loads(signed_with_other_key([1, 2])),
    ),
    # ---- refused credentials: typed, and the password never shown
    Case("redis-wrong-password", CachePermissionError, ("refused access",), _wrong_redis_password),
    Case(
        "redis-wrong-password-in-url",
        CachePermissionError,
        ("refused access",),
        _wrong_redis_url_password,
    ),
]


def test_the_exploit_is_live(tmp_path: Path) -> None:
    """The planted payload really runs code when unpickled (so the corpus proves something)."""
    import pickle

    canary = tmp_path / "canary"
    pickle.loads(exploit_bytes(canary))
    assert canary.exists()


@pytest.mark.parametrize("case", params(CASES))
def test_bad_data(
    case: Case, request: pytest.FixtureRequest, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    check(case, Env(request, tmp_path), caplog)
