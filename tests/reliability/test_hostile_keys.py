"""Hostile keys: long DynamoDB keys stay in their namespace and are verified on every read;
internal lock keys never push a valid user key over a limit.

Each case runs in a child process (:func:`~.sandbox.run_bounded`) against the shared moto
table (or the session's redis-server) and returns what it observed; the parent checks the
observation, that nothing crashed, stalled or raised anything but a typed CacheError, and
that no configured secret showed. Items are planted with the raw boto3 client, the way
another process (or an attacker) with write access to the table would.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from typing import Any, Final

import pytest
from cachehub_redis.server import RedisServer

from cachehub.api import MAX_KEY_LENGTH, BaseCache
from cachehub.errors import CacheError

from .conftest import REDIS_PASSWORD, SECRET_MARK, dynamodb_settings
from .sandbox import assert_contained, run_bounded

LONG: Final = "L" * 3000
"""A key whose storage key exceeds DynamoDB's 2048-byte partition-key limit."""


def _hashed(storage_key: str, namespace: str) -> str:
    return f"{namespace}sha256:{hashlib.sha256(storage_key.encode()).hexdigest()}"


def _outcome(fn: Callable[[], Any]) -> Any:
    """``fn()``, or the name of the CacheError it raised."""
    try:
        return fn()
    except CacheError as exc:
        return type(exc).__name__


class World:
    """Two caches on the shared table: ``a`` (namespaced) and ``bare`` (no namespace)."""

    def __init__(self, endpoint: str, namespace_len: int = 0) -> None:
        from cachehub_dynamodb import DynamoDBCache

        tag = uuid.uuid4().hex[:10]
        self.ns = f"k{tag}:" if not namespace_len else f"k{tag}" + "n" * namespace_len + ":"
        settings = dynamodb_settings(endpoint)
        self.a: BaseCache = DynamoDBCache(settings, namespace=self.ns)
        self.bare: BaseCache = DynamoDBCache(settings)
        self.raw: Any = getattr(self.a, "client")  # noqa: B009 - the boto3 client
        self.kn = str(getattr(self.a, "key_name"))  # noqa: B009
        self.table = str(getattr(self.a, "table_name"))  # noqa: B009
        self.long_pk = _hashed(self.ns + LONG, self.ns)

    def plant(self, pk: str, **attrs: dict[str, Any]) -> None:
        self.raw.put_item(TableName=self.table, Item={self.kn: {"S": pk}, **attrs})

    def raw_item(self, pk: str) -> dict[str, Any] | None:
        reply = self.raw.get_item(TableName=self.table, Key={self.kn: {"S": pk}})
        item: dict[str, Any] | None = reply.get("Item")
        return item

    def close(self) -> None:
        self.a.close()
        self.bare.close()


# ---------------------------------------------------------------------- cases (children)


def long_key_roundtrip(w: World) -> Any:
    a = w.a
    a.put(LONG, 1)
    return [
        a.get(LONG),
        a.exists(LONG),
        a.get_many([LONG, "absent"]),
        list(a.keys("L*")) == [LONG],
        a.incr(LONG, 2),
        a.touch(LONG, 60),
        a.metadata(LONG).time_to_live is not None,
        a.delete(LONG),
        a.get(LONG),
    ]


def hashed_key_keeps_namespace(w: World) -> Any:
    w.a.put(LONG, "v")
    item = w.raw_item(w.long_pk)
    assert item is not None
    return [w.long_pk.startswith(w.ns), item["originalKey"]["S"] == w.ns + LONG]


def bare_reads_other_namespace_hash(w: World) -> Any:
    w.a.put(LONG, "theirs")
    b = w.bare
    return [
        b.get(w.long_pk),
        b.exists(w.long_pk),
        b.get_many([w.long_pk]),
        _outcome(lambda: b.metadata(w.long_pk)),
        w.a.get(LONG),
    ]


def _bare_write(op: Callable[[World], Any]) -> Callable[[World], Any]:
    def case(w: World) -> Any:
        w.a.put(LONG, "theirs")
        result = _outcome(lambda: op(w))
        return [result, w.a.get(LONG)]

    return case


BARE_WRITES: Final[dict[str, Callable[[World], Any]]] = {
    "put": lambda w: w.bare.put(w.long_pk, "mine"),
    "add": lambda w: w.bare.add(w.long_pk, "mine"),
    "incr": lambda w: w.bare.incr(w.long_pk),
    "touch": lambda w: w.bare.touch(w.long_pk, 5),
    "delete": lambda w: w.bare.delete(w.long_pk),
    "delete_many": lambda w: w.bare.delete_many([w.long_pk, "x"]),
    "put_many": lambda w: w.bare.put_many({w.long_pk: "mine", "x": 1}),
    "clear-filter": lambda w: w.bare.clear(w.long_pk),
}


def planted_foreign_original(w: World) -> Any:
    w.plant(w.long_pk, value={"S": "planted"}, originalKey={"S": w.ns + "other"})
    a = w.a
    observed = [
        a.get(LONG),
        a.exists(LONG),
        a.get_many([LONG]),
        _outcome(lambda: a.put(LONG, 1)),
        a.delete(LONG),
        _outcome(lambda: a.incr(LONG)),
        "other" in list(a.keys()),
    ]
    item = w.raw_item(w.long_pk)
    return [*observed, item is not None and item["value"]["S"] == "planted"]


def planted_without_original(w: World) -> Any:
    w.plant(w.long_pk, value={"S": "planted"})
    a = w.a
    return [
        a.get(LONG),
        a.exists(LONG),
        _outcome(lambda: a.add(LONG, 1)),
        _outcome(lambda: a.put(LONG, 1)),
        a.delete(LONG),
        w.raw_item(w.long_pk) is not None,
    ]


def forged_original_in_scan(w: World) -> Any:
    forged = f"{w.ns}sha256:{'ab' * 32}"
    w.plant(forged, value={"S": "x"}, originalKey={"S": w.ns + "victim"})
    w.a.put("real", 1)
    return [sorted(w.a.keys()), w.a.get("victim"), w.a.exists("victim")]


def hash_shaped_own_key(w: World) -> Any:
    key = "sha256:" + "0" * 64
    b = w.bare
    return [
        b.put(key, 1),
        b.get(key),
        b.add(key, 2),
        b.incr(key, 1),
        b.touch(key, 30),
        b.delete(key),
        b.get(key),
    ]


def long_namespace(w: World) -> Any:
    a = w.a
    a.put(LONG, "v")
    pk = f"sha256:{hashlib.sha256((w.ns + LONG).encode()).hexdigest()}"
    return [a.get(LONG), list(a.keys()) == [LONG], w.raw_item(pk) is not None, a.clear()]


def utf8_boundary(w: World) -> Any:
    room = 2048 - len(w.ns.encode())
    fits = "é" * (room // 2) + "x" * (room % 2)  # exactly 2048 bytes with the namespace
    over = fits + "x"
    w.a.put_many({fits: 1, over: 2})
    return [
        w.a.get_many([fits, over]) == {fits: 1, over: 2},
        w.raw_item(w.ns + fits) is not None,
        w.raw_item(_hashed(w.ns + over, w.ns)) is not None,
        w.a.delete_many([fits, over]),
    ]


def get_or_set_at_max_key(w: World) -> Any:
    key = "g" * MAX_KEY_LENGTH
    calls: list[int] = []

    def create() -> int:
        calls.append(1)
        return 7

    first = w.a.get_or_set(key, create)
    second = w.a.get_or_set(key, create)
    return [first, second, len(calls), w.a.get(key)]


def lock_at_max_name(w: World) -> Any:
    one = "n" * (MAX_KEY_LENGTH - 1) + "1"
    two = "n" * (MAX_KEY_LENGTH - 1) + "2"
    with w.a.lock(one, ttl=30, timeout=5) as first:
        other = w.a.lock(two, ttl=30)
        taken = other.acquire(blocking=False)  # a different name: a different lock
        same = w.a.lock(one, ttl=30).acquire(blocking=False)  # the same name: held
        other.release()
    return [len(first.key) <= MAX_KEY_LENGTH, taken, same]


def lock_name_not_str(w: World) -> Any:
    return _outcome(lambda: w.a.lock(b"bytes-name"))  # type: ignore[arg-type]


CASES: Final[dict[str, tuple[Callable[[World], Any], Any]]] = {
    "long-key-roundtrip": (
        long_key_roundtrip,
        [1, True, {LONG: 1}, True, 3, True, True, True, None],
    ),
    "hashed-key-keeps-namespace": (hashed_key_keeps_namespace, [True, True]),
    "bare-cache-reads-other-namespace-hash": (
        bare_reads_other_namespace_hash,
        [None, False, {}, "CacheKeyError", "theirs"],
    ),
    **{
        f"bare-cache-{name}-over-other-namespace-hash": (
            _bare_write(op),
            [
                {
                    "put": "InvalidKeyError",
                    "add": "InvalidKeyError",
                    "incr": "InvalidKeyError",
                    "touch": False,
                    "delete": False,
                    "delete_many": 0,
                    "put_many": "InvalidKeyError",
                    "clear-filter": 0,
                }[name],
                "theirs",
            ],
        )
        for name, op in BARE_WRITES.items()
    },
    "planted-foreign-original-key": (
        planted_foreign_original,
        [None, False, {}, "InvalidKeyError", False, "InvalidKeyError", False, True],
    ),
    "planted-hash-without-original-key": (
        planted_without_original,
        [None, False, "InvalidKeyError", "InvalidKeyError", False, True],
    ),
    "forged-original-key-in-scan": (forged_original_in_scan, [["real"], None, False]),
    "hash-shaped-own-key": (hash_shaped_own_key, [None, 1, False, 2, True, True, None]),
    "utf8-2048-byte-boundary": (utf8_boundary, [True, True, True, 2]),
    "get-or-set-at-max-key-length": (get_or_set_at_max_key, [7, 7, 1, 7]),
    "lock-names-at-max-key-length": (lock_at_max_name, [True, True, False]),
    "lock-name-not-str": (lock_name_not_str, "InvalidKeyError"),
}

NAMESPACE_LEN: Final = {"long-namespace": 2000}


def run_key_case(endpoint: str, name: str) -> Any:
    """Child entry point: build the world, run case ``name``, return its observation."""
    if name == "long-namespace":
        world = World(endpoint, NAMESPACE_LEN[name])
        try:
            return long_namespace(world)
        finally:
            world.close()
    world = World(endpoint)
    try:
        return CASES[name][0](world)
    finally:
        world.close()


@pytest.mark.parametrize("name", list(CASES))
def test_dynamodb_key_case(local_dynamodb: Any, shared_table: str, name: str) -> None:
    outcome = run_bounded(run_key_case, local_dynamodb.endpoint, name, seconds=60)
    assert_contained(outcome, forbidden=(SECRET_MARK,))
    assert outcome.kind == "value", outcome.describe()
    assert outcome.value == CASES[name][1]


def test_namespace_too_long_to_prefix_hashes_without_it(
    local_dynamodb: Any, shared_table: str
) -> None:
    outcome = run_bounded(run_key_case, local_dynamodb.endpoint, "long-namespace", seconds=60)
    assert_contained(outcome, forbidden=(SECRET_MARK,))
    assert outcome.value == ["v", True, True, 1], outcome.describe()


# ---------------------------------------------------------------------- redis


def redis_max_key(host: str, port: int, namespace: str) -> Any:
    """get_or_set and lock at the key length limit on a distributed (Redis) cache."""
    from cachehub_redis import RedisCache

    cache = RedisCache(
        {"host": host, "port": port, "password": REDIS_PASSWORD}, namespace=namespace
    )
    try:
        key = "r" * MAX_KEY_LENGTH
        first = cache.get_or_set(key, lambda: "made")
        with cache.lock(key, ttl=10, timeout=5) as lock:
            held = lock.locked
        return [first, cache.get_or_set(key, lambda: "again"), held]
    finally:
        cache.clear()
        cache.close()


def test_redis_get_or_set_and_lock_at_max_key_length(redis_server: RedisServer) -> None:
    outcome = run_bounded(
        redis_max_key, redis_server.host, redis_server.port, f"kr{uuid.uuid4().hex[:8]}:"
    )
    assert_contained(outcome, forbidden=(SECRET_MARK,))
    assert outcome.value == ["made", "made", True], outcome.describe()
