"""The hostile values of test_hostile_values.py, and what its children run.

Kept apart from the test module so that a child imports only this (not the fixtures'
servers, moto and all): the settings it needs, secrets included, come as arguments.

Each case plants bytes under a key, in the memory cache, in Redis and in DynamoDB, and
reads them back, all inside a child process (:func:`run_bounded`) capped in address
space and time, so a SIGSEGV or a memory bomb fails its own case only. The caches use a
small ``maxValueSize`` (:data:`MAX_SIZE`), and the child's peak RSS must stay within a
small multiple of it above a benign read's. Every outcome is a correct value, a miss or
a typed :class:`~cachehub.errors.CorruptEntryError`, and no secret shows anywhere.
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from cachehub.codec import FORMAT_PICKLE, MAX_EXTENSION_DEPTH, PickleCodec, SafeCodec

# The fixtures' secrets (conftest.py): every one contains the mark, so none may show.
SECRET_MARK: Final = "SuperSecret-123"
SIGNING_KEY: Final = f"{SECRET_MARK}-signing-key"

MAX_SIZE: Final = 2 * 1024 * 1024
"""The caches' maxValueSize: small, so that a memory bound is meaningful and fast."""
RSS_MULTIPLE: Final = 16
"""A case may use at most this many times MAX_SIZE more peak memory than a benign read."""
OLD_KEY: Final = f"{SECRET_MARK}-old-signing-key"
ROGUE_KEY: Final = "rogue-key-nobody-configured-0001"

# --------------------------------------------------------------------------- msgpack bytes


def _ext(code: int, payload: bytes) -> bytes:
    """An ext 32 header (any size) with ``payload``."""
    return b"\xc9" + struct.pack(">Ib", len(payload), code) + payload


def _array(items: list[bytes]) -> bytes:
    return b"\xdd" + struct.pack(">I", len(items)) + b"".join(items)


def _safe(body: bytes) -> bytes:
    return b"\x01" + body


def _zipped(body: bytes) -> bytes:
    return b"\x02" + zlib.compress(body, 9)


def _nested_tuples(levels: int, lists: int = 0, leaf: bytes = b"\xc0") -> bytes:
    body = leaf
    for _ in range(levels):
        body = _ext(2, _array([b"\x91" * lists + body]))
    return body


def _chain_tuples(levels: int, size: int) -> bytes:
    """Tuples nested ``levels`` deep, the innermost holding ``size`` bytes of bin."""
    body = b"\xc6" + struct.pack(">I", size) + b"\0" * size
    for _ in range(levels):
        body = _ext(2, _array([body]))
    return body


def _query(cell: bytes) -> bytes:
    return _ext(12, _array([_array([b"\xa1a"]), _array([_array([cell])]), b"\xc0"]))


def _many(count: int, item: bytes) -> bytes:
    return b"\xdd" + struct.pack(">I", count) + item * count


def _map_of_ints(count: int) -> bytes:
    """A map of ``count`` pairs of tiny keys (uint 8, repeating: it must zip small)."""
    period = b"".join(bytes([0xCC, i, 0xC0]) for i in range(256))
    pairs = period * (count // 256) + period[: 3 * (count % 256)]
    return b"\xdf" + struct.pack(">I", count) + pairs


# --------------------------------------------------------------------------- cases

Plant = Callable[[str], dict[str, bytes]]
"""Builds what to plant, by key, given the namespace (signed cases sign storage keys)."""


def _one(make: Callable[[], bytes]) -> Plant:
    """Plant ``make()`` under ``k`` (built in the child only: some are megabytes)."""
    return lambda namespace: {"k": make()}


def _signed(value: Any, key: str, *, signer: str = SIGNING_KEY, at: str = "k") -> Plant:
    """``value`` signed by ``signer`` for user key ``key``, planted under user key ``at``."""

    def plant(namespace: str) -> dict[str, bytes]:
        return {at: PickleCodec(signer).dumps(value, namespace + key)}

    return plant


def _signed_elsewhere(value: Any) -> Plant:
    """Signed for the same key in another namespace, copied here."""

    def plant(namespace: str) -> dict[str, bytes]:
        return {"k": PickleCodec(SIGNING_KEY).dumps(value, "other-ns:" + "k")}

    return plant


def _forged_tag(value: Any) -> Plant:
    def plant(namespace: str) -> dict[str, bytes]:
        data = bytearray(PickleCodec(SIGNING_KEY).dumps(value, namespace + "k"))
        data[9:41] = os.urandom(32)  # the key id stays: a known key, a wrong tag
        return {"k": bytes(data)}

    return plant


def _legacy(value: Any) -> Plant:
    """The previous pickle format (tag over format byte + body only, no key id)."""

    def plant(namespace: str) -> dict[str, bytes]:
        import hashlib
        import hmac
        import pickle

        body = pickle.dumps(value, protocol=5)
        marker = bytes([FORMAT_PICKLE])
        tag = hmac.new(SIGNING_KEY.encode(), marker + body, hashlib.sha256).digest()
        return {"k": marker + tag + body}

    return plant


def _with_good(plant: Plant) -> Plant:
    """``plant`` plus a good signed entry under ``good``, for get_many / get_all."""

    def both(namespace: str) -> dict[str, bytes]:
        planted = plant(namespace)
        planted["good"] = PickleCodec(SIGNING_KEY).dumps({"ok": 1}, namespace + "good")
        return planted

    return both


@dataclass(frozen=True)
class Hostile:
    """One planted value and what every provider must make of it."""

    id: str
    plant: Plant
    expect: str  # corrupt, value, miss (get -> default, get_or_set recomputes), either
    codec: str = "safe"
    read: str = "get"  # get, get_many, get_all, get_or_set
    value: Any = None  # the value expected back, for "value"
    fallbacks: tuple[str, ...] = ()


M = MAX_SIZE
CASES: Final[list[Hostile]] = [
    # ---- nesting: the decoder recurses per extension type; bounded across calls
    Hostile("tuples-5000-deep", _one(lambda: _safe(_nested_tuples(5000))), "corrupt"),
    Hostile("tuples-64-x-lists-255", _one(lambda: _safe(_nested_tuples(64, 255))), "corrupt"),
    Hostile(
        "tuples-33-deep", _one(lambda: _safe(_nested_tuples(MAX_EXTENSION_DEPTH + 1))), "corrupt"
    ),
    Hostile(
        "tuples-32-x-lists-200-readable",
        _one(lambda: _safe(_nested_tuples(MAX_EXTENSION_DEPTH, 200, b"\x07"))),
        "value",
    ),
    Hostile(
        "sets-of-tuples-deep",
        _one(lambda: _safe(_ext(3, _array([_nested_tuples(400, 3)])))),
        "corrupt",
    ),
    Hostile(
        "frozensets-in-lists-deep",
        _one(lambda: _safe(b"\x91" * 900 + _ext(4, _array([b"\x91" * 900 + _nested_tuples(100)])))),
        "corrupt",
    ),
    Hostile(
        "query-cell-recursion",
        _one(lambda: _safe(_query(_query(_query(_nested_tuples(60)))))),
        "corrupt",
    ),
    Hostile("lists-100000-deep", _one(lambda: _zipped(b"\x91" * 100_000 + b"\xc0")), "corrupt"),
    Hostile("maps-5000-deep", _one(lambda: _zipped(b"\x81\xa1a" * 5000 + b"\xc0")), "corrupt"),
    Hostile(
        "tuple-keys-deep", _one(lambda: _safe(b"\x81" + _nested_tuples(3000) + b"\xc0")), "corrupt"
    ),
    Hostile(
        "zipped-tuple-chain-of-lists",
        _one(lambda: _zipped(_nested_tuples(31, 1000))),
        "value",
    ),
    # ---- amplification: bytes are bounded, and so are objects
    Hostile("zlib-zeros-beyond-size", _one(lambda: _zipped(b"\0" * (M + 4096))), "corrupt"),
    Hostile("zlib-empty-maps", _one(lambda: _zipped(_many(M - 16, b"\x80"))), "corrupt"),
    Hostile("zlib-empty-lists", _one(lambda: _zipped(_many(M - 16, b"\x90"))), "corrupt"),
    Hostile("zlib-empty-sets", _one(lambda: _zipped(_many(M // 8, _ext(3, b"\x90")))), "corrupt"),
    Hostile(
        "zlib-two-char-strings", _one(lambda: _zipped(_many(M // 3 - 8, b"\xa2ab"))), "corrupt"
    ),
    Hostile("zlib-map-of-many-keys", _one(lambda: _zipped(_map_of_ints(M // 4))), "corrupt"),
    Hostile(
        "zlib-tuples-of-nils", _one(lambda: _zipped(_many(M // 8, _ext(2, b"\x91\xc0")))), "corrupt"
    ),
    Hostile(
        "payload-chain-beyond-size",
        _one(lambda: _zipped(_chain_tuples(12, M // 4))),
        "corrupt",
    ),
    Hostile("array32-lie", _one(lambda: _safe(b"\xdd\xff\xff\xff\xff\xc0")), "corrupt"),
    Hostile("map32-lie", _one(lambda: _safe(b"\xdf\xff\xff\xff\xff\xc0\xc0")), "corrupt"),
    Hostile("str32-lie", _one(lambda: _safe(b"\xdb\xff\xff\xff\xffabc")), "corrupt"),
    Hostile("bin32-lie", _one(lambda: _safe(b"\xc6\xff\xff\xff\xffabc")), "corrupt"),
    Hostile("ext32-lie", _one(lambda: _safe(b"\xc9\xff\xff\xff\xff\x02\x90")), "corrupt"),
    Hostile(
        "lie-inside-tuple", _one(lambda: _safe(_ext(2, b"\xdd\xff\xff\xff\xff\xc0"))), "corrupt"
    ),
    Hostile(
        "lie-in-a-large-body",
        _one(
            lambda: _zipped(
                b"\x92"
                + b"\xc6"
                + struct.pack(">I", M // 4)
                + b"\0" * (M // 4)
                + b"\xdd\xff\xff\xff\xff\xc0"
            )
        ),
        "corrupt",
    ),
    # ---- the blob and short-string fast paths (issue #17) refuse what msgpack refuses
    Hostile(
        "blob-one-byte-short",
        _one(lambda: _safe(b"\xc6" + struct.pack(">I", 50_001) + b"\x07" * 50_000)),
        "corrupt",
    ),
    Hostile(
        "blob-then-trailing-byte",
        _one(lambda: _safe(b"\xc5" + struct.pack(">H", 50_000) + b"\x07" * 50_001)),
        "corrupt",
    ),
    Hostile(
        "zlib-blob-beyond-size",
        _one(lambda: _zipped(b"\xc6" + struct.pack(">I", M + 1) + b"\0" * (M + 1))),
        "corrupt",
    ),
    Hostile(
        "zlib-blob-of-half-the-size",
        _one(lambda: _zipped(b"\xc6" + struct.pack(">I", M // 2) + b"\x07" * (M // 2))),
        "value",
    ),
    Hostile("fixstr-not-utf8", _one(lambda: _safe(b"\xa3\xed\xa0\x80")), "corrupt"),
    Hostile("fixstr-length-lie", _one(lambda: _safe(b"\xbfabc")), "corrupt"),
    Hostile("bigint-of-half-the-size", _one(lambda: _zipped(_ext(1, b"\x01" * (M // 2)))), "value"),
    Hostile("bigint-beyond-size", _one(lambda: _zipped(_ext(1, b"\x01" * (M + 1)))), "corrupt"),
    Hostile(
        "timestamp-overflow",
        _one(lambda: _safe(b"\xc7\x0c\xff" + struct.pack(">Iq", 0, 2**63 - 1))),
        "corrupt",
    ),
    Hostile(
        "timestamp-bad-nanoseconds",
        _one(lambda: _safe(b"\xd7\xff" + struct.pack(">Q", (2**30 - 1) << 34))),
        "either",
    ),
    # UTC datetimes are written as Timestamps, which ormsgpack reads itself: a count lie
    # is refused before anything is read, and a body of nothing but them reads within bounds
    Hostile(
        "timestamps-count-lie",
        _one(lambda: _safe(b"\xdd" + struct.pack(">I", 2**31) + b"\xc7\x0c\xff" + bytes(12))),
        "corrupt",
    ),
    Hostile(
        "timestamps-many",
        _one(lambda: _zipped(_many(M // 16, b"\xc7\x0c\xff" + struct.pack(">Iq", 0, 1 << 30)))),
        "value",
    ),
    Hostile(
        "timestamps-many-of-them-invalid",
        _one(lambda: _zipped(_many(M // 16, b"\xc7\x0c\xff" + struct.pack(">Iq", 0, 1 << 62)))),
        "corrupt",
    ),
    Hostile(
        "datetime-offset-beyond-24h",
        _one(
            lambda: _safe(
                _ext(
                    7, b"\x07\xe8\x01\x01" + bytes(6) + b"\x01" + struct.pack(">q", 90_000 * 10**6)
                )
            )
        ),
        "corrupt",
    ),
    Hostile(
        "datetime-hour-25",
        _one(lambda: _safe(_ext(7, b"\x07\xe8\x01\x01\x19\x00\x00\0\0\0"))),
        "corrupt",
    ),
    Hostile("decimal-huge-exponent", _one(lambda: _safe(_ext(6, b"1E" + b"9" * 25))), "corrupt"),
    Hostile("decimal-long", _one(lambda: _zipped(_ext(6, b"9" * (M // 2)))), "value"),
    Hostile("unknown-extension", _one(lambda: _safe(_ext(99, b"x"))), "corrupt"),
    Hostile("zlib-trailing-garbage", _one(lambda: _zipped(b"\xc0") + b"junk"), "corrupt"),
    Hostile(
        "query-rows-not-lists",
        _one(lambda: _safe(_ext(12, _array([b"\x90", b"\x91\x01", b"\xc0"])))),
        "corrupt",
    ),
    # ---- signatures: bound to the storage key; unknown keys are misses
    Hostile(
        "signed-moved-to-another-key", _signed({"a": 1}, "elsewhere"), "corrupt", codec="pickle"
    ),
    Hostile(
        "signed-copied-from-another-namespace",
        _signed_elsewhere({"a": 1}),
        "corrupt",
        codec="pickle",
    ),
    Hostile("signed-forged-tag", _forged_tag({"a": 1}), "corrupt", codec="pickle"),
    Hostile(
        "signed-by-unknown-key-is-a-miss",
        _signed({"a": 1}, "k", signer=ROGUE_KEY),
        "miss",
        codec="pickle",
    ),
    Hostile(
        "signed-by-unknown-key-get-or-set",
        _signed({"a": 1}, "k", signer=ROGUE_KEY),
        "miss",
        codec="pickle",
        read="get_or_set",
    ),
    Hostile(
        "signed-by-old-key-with-fallback",
        _signed({"a": 1}, "k", signer=OLD_KEY),
        "value",
        codec="pickle",
        value={"a": 1},
        fallbacks=(OLD_KEY,),
    ),
    Hostile(
        "signed-by-old-key-without-fallback",
        _signed({"a": 1}, "k", signer=OLD_KEY),
        "miss",
        codec="pickle",
        read="get_or_set",
    ),
    Hostile(
        "legacy-unbound-format-is-a-miss",
        _legacy({"a": 1}),
        "miss",
        codec="pickle",
        read="get_or_set",
    ),
    Hostile(
        "replayed-at-its-own-key",
        _signed({"old": 1}, "k"),
        "value",
        codec="pickle",
        value={"old": 1},
    ),
    Hostile(
        "stale-entry-in-get-many",
        _with_good(_signed({"a": 1}, "k", signer=ROGUE_KEY)),
        "miss",
        codec="pickle",
        read="get_many",
    ),
    Hostile(
        "stale-entry-in-get-all",
        _with_good(_signed({"a": 1}, "k", signer=OLD_KEY)),
        "miss",
        codec="pickle",
        read="get_all",
    ),
    Hostile("signed-truncated", lambda ns: {"k": b"\x05" + b"\0" * 20}, "corrupt", codec="pickle"),
    Hostile(
        "signed-bomb-from-a-fallback-key",
        lambda ns: {
            "k": PickleCodec(OLD_KEY, compress_threshold=1, max_value_size=4 * M).dumps(
                b"\0" * (3 * M), ns + "k"
            )
        },
        "corrupt",
        codec="pickle",
        fallbacks=(OLD_KEY,),
    ),
    Hostile(
        "safe-bomb-through-the-pickle-codec",
        _one(lambda: _zipped(_many(M - 16, b"\x80"))),
        "corrupt",
        codec="pickle",
    ),
]

# --------------------------------------------------------------------------- the child


def _settings(
    provider: str, conn: dict[str, Any], codec: str, fallbacks: tuple[str, ...]
) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "codec": codec,
        "signingKey": SIGNING_KEY,
        "maxValueSize": MAX_SIZE,
    }
    if fallbacks:
        settings["signingKeyFallbacks"] = list(fallbacks)
    if provider == "redis":
        settings.update(host=conn["host"], port=conn["port"], password=conn["password"])
    elif provider == "dynamodb":
        settings.update(
            tableName=conn["table"],
            host=conn["endpoint"],
            accessKeyId=conn["access_key"],
            secretkey=conn["secret_key"],
        )
    return settings


def _build(provider: str, settings: dict[str, Any], namespace: str) -> Any:
    if provider == "memory":
        from cachehub_memory import MemoryCache

        return MemoryCache(settings, namespace=namespace)
    if provider == "redis":
        from cachehub_redis import RedisCache

        return RedisCache(settings, namespace=namespace)
    from cachehub_dynamodb import DynamoDBCache

    return DynamoDBCache(settings, namespace=namespace)


def _plant(provider: str, cache: Any, conn: dict[str, Any], key: str, payload: bytes) -> None:
    """Write ``payload`` as the codec bytes of ``key``, beside the cache's own writes."""
    storage_key = cache.namespace + key
    if provider == "memory":
        cache.put(key, 0)
        cache._data[storage_key][0] = payload  # the record's stored bytes
    elif provider == "redis":
        import time

        from cachehub_redis.entry import KIND_CODEC, pack
        from redis import Redis

        now = time.time()
        client = Redis(host=conn["host"], port=conn["port"], password=conn["password"])
        client.set(storage_key, pack(KIND_CODEC, payload, now, now, None, None))
        client.close()
    else:
        cache.put(key, 0)  # the item with every attribute; then only its value is replaced
        import boto3

        client = boto3.client(
            "dynamodb",
            endpoint_url=conn["endpoint"],
            region_name="us-east-1",
            aws_access_key_id=conn["access_key"],
            aws_secret_access_key=conn["secret_key"],
        )
        client.update_item(
            TableName=conn["table"],
            Key={"cacheKey": {"S": storage_key}},
            UpdateExpression="SET #v = :v",
            ExpressionAttributeNames={"#v": "value"},
            ExpressionAttributeValues={":v": {"B": payload}},
        )
        client.close()


def _describe(value: Any) -> str:
    """A short, bounded description (no repr of a value that may nest thousands deep)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"int of {value.bit_length()} bits"
    if isinstance(value, dict) and len(value) < 5:
        return f"dict {sorted(value.items())!r:.200}"
    if isinstance(value, list | tuple | set | frozenset | dict):
        return f"{type(value).__name__} of {len(value)}"
    return f"{type(value).__name__} of {len(str(value))} chars"


def read_planted(
    case_id: str, providers: tuple[str, ...], conn: dict[str, Any], namespace: str
) -> list[str]:
    """Child: plant the case's bytes in each provider and read them back.

    Returns one line per provider: ``value: ...``, ``miss``, ``recomputed`` or
    ``CorruptEntryError: ...``. Any other exception escapes: the test then fails.
    """
    from cachehub.errors import CorruptEntryError

    case = next(c for c in CASES if c.id == case_id)
    results: list[str] = []
    for provider in providers:
        settings = _settings(provider, conn, case.codec, case.fallbacks)
        ns = f"{namespace}{provider}:"
        cache = _build(provider, settings, ns)
        try:
            for key, payload in case.plant(ns).items():
                assert len(payload) < 350_000, "a planted item must fit DynamoDB"
                _plant(provider, cache, conn, key, payload)
            try:
                results.append(_read(cache, case.read))
            except CorruptEntryError as exc:
                results.append(f"{type(exc).__name__}: {exc}")
        finally:
            cache.close()
    return results


def _read(cache: Any, how: str) -> str:
    missing = object()
    if how == "get":
        value = cache.get("k", missing)
        return "miss" if value is missing else f"value: {_describe(value)}"
    if how == "get_or_set":
        value = cache.get_or_set("k", lambda: {"fresh": 1})
        again = cache.get("k", missing)  # the recomputed value was stored, signed anew
        if value == {"fresh": 1} and again == {"fresh": 1}:
            return "miss"
        return f"value: {_describe(value)}"
    found = cache.get_many(["k", "good"]) if how == "get_many" else cache.get_all()
    if found == {"good": {"ok": 1}}:
        return "miss"
    return f"value: {_describe(found)}"


def benign_read(providers: tuple[str, ...], conn: dict[str, Any], namespace: str) -> list[str]:
    """Child: the same work on a harmless entry, for the baseline of peak memory."""
    results: list[str] = []
    for provider in providers:
        cache = _build(provider, _settings(provider, conn, "safe", ()), f"{namespace}{provider}:")
        try:
            _plant(provider, cache, conn, "k", SafeCodec().dumps({"a": [1, 2, 3]}))
            results.append(_read(cache, "get"))
        finally:
            cache.close()
    return results


# --------------------------------------------------------------------------- small stacks


def deepest_values_in_a_small_thread(stack_kib: int) -> list[str]:
    """Child: write and read back the deepest values put() accepts, in a thread whose
    stack is ``stack_kib`` KiB, and try the planted crash shapes there too."""
    from cachehub.codec import MAX_DEPTH, make_codec
    from cachehub.errors import CorruptEntryError

    codec = make_codec("safe")

    def lists(levels: int, leaf: Any) -> Any:
        for _ in range(levels):
            leaf = [leaf]
        return leaf

    def tuples(levels: int, inner: int, leaf: Any) -> Any:
        for _ in range(levels):
            leaf = (lists(inner, leaf),)
        return leaf

    values = [
        lists(MAX_DEPTH, 1),
        tuples(MAX_EXTENSION_DEPTH, MAX_DEPTH // MAX_EXTENSION_DEPTH - 1, 1),
        tuples(MAX_EXTENSION_DEPTH - 2, 0, frozenset({(1, 2)})),
        lists(MAX_DEPTH - 2, {"k": (1,)}),
    ]
    planted = [_nested_tuples(5000), _nested_tuples(64, 255), _nested_tuples(32, 1000)]
    results: list[str] = []

    def run() -> None:
        for value in values:
            results.append("ok" if codec.loads(codec.dumps(value)) == value else "differs")
        for body in planted:
            try:
                codec.loads(_safe(body))
                results.append("read")
            except CorruptEntryError:
                results.append("corrupt")

    threading.stack_size(stack_kib * 1024)
    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return results
