"""Hostile inputs, issue #15 items 3, 4 and 6: filters, untyped exceptions, configuration.

Table-driven. Every case runs in a fresh child process (:func:`sandbox.run_bounded`) capped
in address space and wall time, and must end with the expected value or a typed
:class:`~cachehub.errors.CacheError` of the expected class - never a crash, a timeout, an
untyped exception or a secret (anything containing ``SECRET_MARK``) in what it showed.

* filters - pathological ``*``/``?`` patterns against keys of up to 100,000 characters, on
  every provider (``keys``, ``count``, ``clear``): the old backtracking regex took minutes;
* untyped exceptions - expiries beyond what a clock holds, and Redis headers / DynamoDB
  items planted by "another process" with impossible stamps, kinds and attribute types;
* configuration - nesting that would exhaust the stack, ``${...}`` nesting and escapes,
  environment values that look like references, and 16,000 cache entries.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import pytest

from cachehub.api import MAX_TIME_SPAN
from cachehub.loader import MAX_DEPTH, MAX_REFERENCE_DEPTH

from .conftest import (
    AWS_ACCESS_KEY_ID,
    AWS_SECRET_KEY,
    REDIS_PASSWORD,
    SECRET_MARK,
    SHARED_TABLE,
    SIGNING_KEY,
    fresh_namespace,
)
from .sandbox import Outcome, assert_contained, run_bounded

ANY: Final[Any] = object()
"""Expected value: any value (the case only promises no crash and no untyped error)."""

_A16K: Final = "a" * 16_384
"""The longest key the cache API accepts, all one letter: worst case for backtracking."""
_A100K: Final = "a" * 100_000
_STAR_A: Final = "*a" * 14 + "*b"
"""30 characters, 15 stars: a backtracking matcher tries O(n**14) ways on ``_A100K``."""
_Q_RUN: Final = "*" + "a?" * 14 + "b"
_MIXED: Final = "*a*?" * 7 + "b"
PATHOLOGICAL: Final = (_STAR_A, _Q_RUN, _MIXED)


@dataclass(frozen=True)
class Where:
    """What a child needs to reach the servers (picklable; no fixtures in a child)."""

    namespace: str
    redis: tuple[str, int] | None = None
    dynamo: str | None = None


class Ctx:
    """The child's view: the case's cache and raw clients to plant what others would."""

    def __init__(self, backend: str, where: Where) -> None:
        self.where = where
        self.ns = where.namespace
        self.cache: Any = _build(backend, where) if backend != "none" else None

    def raw_redis(self) -> Any:
        from redis import Redis

        assert self.where.redis is not None
        host, port = self.where.redis
        return Redis(host=host, port=port, password=REDIS_PASSWORD, socket_timeout=10)

    def plant_header(self, key: str, fields: tuple[Any, ...], payload: bytes = b"") -> None:
        """SET ``key`` to a Redis entry header built from raw ``fields`` (see entry.py)."""
        from cachehub_redis.entry import HEADER, MAGIC

        client = self.raw_redis()
        client.set(self.ns + key, HEADER.pack(MAGIC, *fields) + payload)
        client.close()

    def plant_item(self, key: str, **attrs: dict[str, Any]) -> None:
        """PutItem ``key`` with exactly ``attrs`` (plus the partition key) in the table."""
        import boto3

        client = boto3.client(
            "dynamodb",
            endpoint_url=self.where.dynamo,
            region_name="us-east-1",
            aws_access_key_id=AWS_ACCESS_KEY_ID,
            aws_secret_access_key=AWS_SECRET_KEY,
        )
        client.put_item(TableName=SHARED_TABLE, Item={"cacheKey": {"S": self.ns + key}, **attrs})
        client.close()


def _build(backend: str, where: Where) -> Any:
    if backend == "memory":
        from cachehub_memory import MemoryCache

        return MemoryCache(namespace=where.namespace, signingKey=SIGNING_KEY)
    if backend == "redis":
        from cachehub_redis import RedisCache

        assert where.redis is not None
        host, port = where.redis
        settings = {"host": host, "port": port, "password": REDIS_PASSWORD}
        return RedisCache(settings, namespace=where.namespace, signingKey=SIGNING_KEY)
    from cachehub_dynamodb import DynamoDBCache

    settings = {
        "tableName": SHARED_TABLE,
        "host": where.dynamo,
        "accessKeyId": AWS_ACCESS_KEY_ID,
        "secretkey": AWS_SECRET_KEY,
        "signingKey": SIGNING_KEY,
    }
    return DynamoDBCache(settings, namespace=where.namespace)


@dataclass(frozen=True)
class Hostile:
    """One case: where it runs, what it does, and the only acceptable endings."""

    id: str
    backend: str
    """``memory``, ``redis``, ``dynamo``, or ``none`` (configuration cases)."""
    run: Callable[[Ctx], Any]
    value: Any = ANY
    """The value the case must return (:data:`ANY`: any value), unless ``errors``."""
    errors: tuple[str, ...] = ()
    """Class names of the typed errors the case must raise instead (empty: must return)."""
    seconds: float = 60.0
    env: dict[str, str] = field(default_factory=dict)


def run_case(case_id: str, where: Where) -> Any:
    """Child entry point: run the case named ``case_id``."""
    case = CASES_BY_ID[case_id]
    os.environ.update(case.env)
    ctx = Ctx(case.backend, where)
    try:
        return case.run(ctx)
    finally:
        if ctx.cache is not None:
            ctx.cache.close()


# ---------------------------------------------------------------------- filters


def _fill_long_keys(ctx: Ctx, count: int = 6) -> None:
    ctx.cache.put_many({_A16K[: 16_384 - i]: i for i in range(count)})
    ctx.cache.put("short", 1)


def _keys_pathological(ctx: Ctx) -> list[str]:
    _fill_long_keys(ctx)
    return [k for p in PATHOLOGICAL for k in ctx.cache.keys(p)]


def _count_pathological(ctx: Ctx) -> list[int]:
    _fill_long_keys(ctx)
    return [ctx.cache.count(p) for p in PATHOLOGICAL]


def _clear_pathological(ctx: Ctx) -> tuple[list[int], int]:
    _fill_long_keys(ctx)
    removed = [ctx.cache.clear(p) for p in PATHOLOGICAL]
    return removed, ctx.cache.count()


def _pathological_that_matches(ctx: Ctx) -> list[int]:
    ctx.cache.put(_A16K[:-1] + "b", 1)
    ctx.cache.put(_A16K[:-2] + "xb", 2)
    return [ctx.cache.count(p) for p in (_STAR_A, _Q_RUN, _MIXED, "*a?b", "a*x?")]


def _get_all_pathological(ctx: Ctx) -> dict[str, Any]:
    _fill_long_keys(ctx, 3)
    return dict(ctx.cache.get_all(_MIXED))


def _wildcard_only_pattern(ctx: Ctx) -> list[int]:
    ctx.cache.put("k" * 9_000, 1)
    ctx.cache.put("short", 2)
    # 16,384 characters of "*?": selects keys of at least 8,192 characters.
    return [ctx.cache.count("*?" * 8_192), ctx.cache.count("*" * 100_000), ctx.cache.count("?")]


def _filter_newlines_and_astral(ctx: Ctx) -> list[list[str]]:
    ctx.cache.put_many({"a\nb": 1, "a\n\nb": 2, "𝄞": 3, "𝄞𝄞": 4, "ab": 5})
    return [sorted(ctx.cache.keys(p)) for p in ("a?b", "a*\n*b", "?", "??", "*\n")]


def _bad_filter_types(ctx: Ctx) -> Any:
    return ctx.cache.keys(b"user_*")


def _redis_plant_100k_keys(ctx: Ctx) -> None:
    """Entries under names of 100,000 characters, which only another client can write
    (the server's MATCH still runs over them; no scan counts or lists them, see
    test_redis_planted_names), and three of 16,384 characters, the longest keys
    cachehub writes: the ones scans find."""
    from cachehub_redis.entry import KIND_CODEC, pack

    blob = pack(KIND_CODEC, ctx.cache.codec.dumps("v"), 1e9, 1e9, None, None)
    client = ctx.raw_redis()
    client.mset({ctx.ns + _A100K[i:]: blob for i in range(3)})
    client.mset({ctx.ns + _A16K[i:]: blob for i in range(3)})
    client.close()


def _redis_keys_100k(ctx: Ctx) -> list[Any]:
    _redis_plant_100k_keys(ctx)
    ctx.cache.put("short", 1)
    return [len(list(ctx.cache.keys(p))) for p in PATHOLOGICAL] + [ctx.cache.count("a*")]


def _redis_clear_100k(ctx: Ctx) -> list[int]:
    _redis_plant_100k_keys(ctx)
    return [ctx.cache.clear(p) for p in PATHOLOGICAL] + [ctx.cache.clear("*a?")]


def _redis_glob_specials(ctx: Ctx) -> list[int]:
    # Redis glob syntax ([, ], \) in a pathological pattern must stay literal.
    ctx.cache.put_many({"[a]" * 3000: 1, "\\a" * 4000: 2})
    return [ctx.cache.count(p) for p in ("*[a*[a*[a*[a*]x", "*\\a*\\a*\\a*\\ax", "*[a]")]


# ---------------------------------------------------------------------- expiry arguments


def _put_span(span: Any, **extra: Any) -> Callable[[Ctx], Any]:
    def run(ctx: Ctx) -> Any:
        ctx.cache.put("k", 1, time_span=span, **extra)
        return ctx.cache.metadata("k").time_to_live

    return run


def _put_idle(span: Any) -> Callable[[Ctx], Any]:
    def run(ctx: Ctx) -> Any:
        return ctx.cache.put("k", 1, idle_time=span)

    return run


def _put_until(until: Any) -> Callable[[Ctx], Any]:
    def run(ctx: Ctx) -> Any:
        return ctx.cache.put("k", 1, until=until)

    return run


def _touch_inf(ctx: Ctx) -> Any:
    ctx.cache.put("k", 1)
    return ctx.cache.touch("k", time_span=float("inf"))


def _max_span_metadata(ctx: Ctx) -> bool:
    ctx.cache.put("k", 1, time_span=MAX_TIME_SPAN, idle_time=MAX_TIME_SPAN)
    meta = ctx.cache.metadata("k")
    return meta.time_to_live is not None and meta.expires is not None and meta.expires.year > 3000


# ---------------------------------------------------------------------- Redis headers

_NAN: Final = float("nan")
_INF: Final = float("inf")
_NOW: Final = 1.9e9
"""A stamp in 2030: entries planted with it are alive for the test's lifetime."""
_V: Final = 0x76
_I: Final = 0x69


def _header_get(fields: tuple[Any, ...], payload: bytes = b"") -> Callable[[Ctx], Any]:
    def run(ctx: Ctx) -> Any:
        ctx.plant_header("k", fields, payload or ctx.cache.codec.dumps("v"))
        return ctx.cache.get("k")

    return run


def _header_metadata(fields: tuple[Any, ...]) -> Callable[[Ctx], Any]:
    def run(ctx: Ctx) -> Any:
        ctx.plant_header("k", fields, ctx.cache.codec.dumps("v"))
        return ctx.cache.metadata("k").hit_count

    return run


def _header_get_many(ctx: Ctx) -> Any:
    ctx.cache.put("good", 1, time_span=60)
    ctx.plant_header("bad", (_V, _NOW, _NOW, _NOW, 0.0, _INF, _NAN), ctx.cache.codec.dumps(1))
    return ctx.cache.get_many(["good", "bad"])


def _header_exists(ctx: Ctx) -> Any:
    ctx.plant_header("k", (_V, _NOW, _NOW, _NAN, 0.0, _NAN, 5.0))
    return ctx.cache.exists("k")


def _header_scans(ctx: Ctx) -> Any:
    # The scripts read headers in Lua: odd doubles must not break keys/count/clear.
    ctx.plant_header("k1", (_V, _NAN, _INF, -_INF, -1.0, _INF, -_INF), b"x")
    ctx.plant_header("k2", (_V, _NOW, _NOW, _NOW, 0.0, _NAN, _INF), b"x")
    ctx.plant_header("k3", (0x00, _NOW, _NOW, _NOW, 0.0, _NAN, _NAN), b"x")
    ctx.cache.put("good", 1)
    return len(list(ctx.cache.keys())) >= 1 and ctx.cache.count() >= 1 and ctx.cache.clear() >= 1


def _header_truncated(ctx: Ctx) -> Any:
    client = ctx.raw_redis()
    client.set(ctx.ns + "k", bytes([0xCA, _V]) + b"\x00" * 20)  # magic, then too short
    client.close()
    return ctx.cache.get("k", "default")


# ---------------------------------------------------------------------- DynamoDB items


def _item(key_attrs: dict[str, Any], read: str = "get") -> Callable[[Ctx], Any]:
    def run(ctx: Ctx) -> Any:
        ctx.plant_item("k", **key_attrs)
        if read == "metadata":
            return ctx.cache.metadata("k").hit_count
        if read == "get_many":
            return ctx.cache.get_many(["k"])
        return ctx.cache.get("k")

    return run


_N: Final = {"N": "1900000000"}
_BIG: Final = {"N": "9.9e125"}
"""The largest magnitude DynamoDB stores: no ``datetime`` or ``PXAT`` holds it."""


# ---------------------------------------------------------------------- configuration


def _configure(config: Any) -> Any:
    from cachehub.registry import Caches

    caches = Caches(config)
    try:
        return sorted(caches.validate())
    finally:
        caches.close()


def _namespace_of(text: str) -> Callable[[Ctx], Any]:
    def run(ctx: Ctx) -> Any:
        from cachehub.registry import Caches

        caches = Caches({"c": {"class": "memory", "custom": {"namespace": text}}})
        try:
            return caches["c"].namespace
        finally:
            caches.close()

    return run


def _deep_json_file(depth: int, where: str = "custom") -> Callable[[Ctx], Any]:
    def run(ctx: Ctx) -> Any:
        nested = "[" * depth + "]" * depth
        entry = f'{{"class": "memory", "{where}": {{"x": {nested}}}}}'
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "caches.json")
            with open(path, "w", encoding="utf-8") as file:
                file.write(f'{{"caches": {{"c": {entry}}}}}')
            return _configure(path)

    return run


def _deep_dict(ctx: Ctx) -> Any:
    deep: dict[str, Any] = {}
    for _ in range(50_000):
        deep = {"x": deep}
    return _configure({"c": {"class": "memory", "custom": {"extra": deep}}})


def _self_containing(ctx: Ctx) -> Any:
    loop: dict[str, Any] = {}
    loop["again"] = loop
    return _configure({"c": {"class": "memory", "custom": {"extra": loop}}})


def _shared_list_bomb(ctx: Ctx) -> Any:
    bomb: list[Any] = ["x"]
    for _ in range(30):
        bomb = [bomb, bomb]  # 2**30 leaves, 31 objects
    return _configure({"c": {"class": "memory", "custom": {"extra": bomb}}})


def _many_entries(ctx: Ctx) -> Any:
    from cachehub.registry import Caches

    config = {
        f"c{i}": {"class": "memory", "custom": {"namespace": f"n{i}:", "store": "one"}}
        for i in range(16_000)
    }
    server = {
        f"s{i}": {"class": "memory", "custom": {"namespace": f"s{i}:", "store": "one"}}
        for i in range(16_000)
    }
    caches = Caches(config, server_config=server)
    try:
        return len(caches)
    finally:
        caches.close()


def _many_entries_one_nested(ctx: Ctx) -> Any:
    # One named store: memory caches are private otherwise, and private ones never clash.
    config = {
        f"c{i}": {"class": "memory", "custom": {"namespace": f"n{i}:", "store": "one"}}
        for i in range(16_000)
    }
    config["inner"] = {"class": "memory", "custom": {"namespace": "n15999:deeper:", "store": "one"}}
    return _configure(config)


def _huge_string(ctx: Ctx) -> Any:
    from cachehub.loader import interpolate

    text = "$${x}" * 400_000 + "${HOSTILE_A}" * 100_000
    return len(interpolate(text, cache="c", setting="namespace"))


# ---------------------------------------------------------------------- the table

_BAD_SPAN: Final = ("CacheValueError",)
_CORRUPT: Final = ("CorruptEntryError",)
_CONFIG: Final = ("ConfigError",)
_ENV: Final = {
    "HOSTILE_A": "alpha",
    "HOSTILE_EMPTY": "",
    "HOSTILE_SECRET": f"{SECRET_MARK}-from-env",
    "HOSTILE_LOOKS_LIKE_REF": "${HOSTILE_SECRET}",
}

CASES: Final[list[Hostile]] = [
    # ---- filters: linear in the key length on every provider
    *(
        Hostile(f"filter-keys-{b}", b, _keys_pathological, value=[])
        for b in ("memory", "redis", "dynamo")
    ),
    *(
        Hostile(f"filter-count-{b}", b, _count_pathological, value=[0, 0, 0])
        for b in ("memory", "redis", "dynamo")
    ),
    *(
        Hostile(f"filter-clear-{b}", b, _clear_pathological, value=([0, 0, 0], 7))
        for b in ("memory", "redis", "dynamo")
    ),
    Hostile("filter-matches-memory", "memory", _pathological_that_matches, value=[2, 2, 2, 2, 1]),
    Hostile("filter-matches-redis", "redis", _pathological_that_matches, value=[2, 2, 2, 2, 1]),
    Hostile("filter-get-all-memory", "memory", _get_all_pathological, value={}),
    Hostile("filter-get-all-dynamo", "dynamo", _get_all_pathological, value={}),
    Hostile("filter-wildcards-only-memory", "memory", _wildcard_only_pattern, value=[1, 2, 0]),
    Hostile("filter-wildcards-only-redis", "redis", _wildcard_only_pattern, value=[1, 2, 0]),
    Hostile(
        "filter-newline-astral-memory",
        "memory",
        _filter_newlines_and_astral,
        value=[["a\nb"], ["a\n\nb", "a\nb"], ["𝄞"], ["ab", "𝄞𝄞"], []],
    ),
    Hostile("filter-bytes-pattern", "memory", _bad_filter_types, errors=("CacheValueError",)),
    Hostile("filter-redis-100k-keys", "redis", _redis_keys_100k, value=[0, 0, 0, 3]),
    Hostile("filter-redis-100k-clear", "redis", _redis_clear_100k, value=[0, 0, 0, 3]),
    Hostile("filter-redis-glob-specials", "redis", _redis_glob_specials, value=[0, 0, 1]),
    # ---- expiry arguments no clock can hold
    Hostile("span-timedelta-max", "memory", _put_span(timedelta.max), errors=_BAD_SPAN),
    Hostile("span-1e12-redis", "redis", _put_span(10**12), errors=_BAD_SPAN),
    Hostile("span-huge-int-dynamo", "dynamo", _put_span(10**400), errors=_BAD_SPAN),
    Hostile("span-nan", "memory", _put_span(_NAN), errors=_BAD_SPAN),
    Hostile("idle-timedelta-max-redis", "redis", _put_idle(timedelta.max), errors=_BAD_SPAN),
    Hostile("idle-inf-dynamo", "dynamo", _put_idle(_INF), errors=_BAD_SPAN),
    Hostile(
        "until-datetime-max",
        "memory",
        _put_until(datetime.max.replace(tzinfo=UTC)),
        errors=_BAD_SPAN,
    ),
    Hostile("until-naive-max", "memory", _put_until(datetime.max), errors=_BAD_SPAN),
    Hostile("until-naive-min", "redis", _put_until(datetime.min), errors=_BAD_SPAN),
    Hostile("touch-inf", "memory", _touch_inf, errors=_BAD_SPAN),
    *(
        Hostile(f"max-span-metadata-{b}", b, _max_span_metadata, value=True)
        for b in ("memory", "redis", "dynamo")
    ),
    # ---- Redis entry headers another process wrote
    Hostile(
        "redis-nan-created",
        "redis",
        _header_metadata((_V, _NAN, 1.0, 1.0, 0.0, _NAN, _NAN)),
        errors=_CORRUPT,
    ),
    Hostile(
        "redis-inf-expiry",
        "redis",
        _header_get((_V, 1.0, 1.0, 1.0, 0.0, _INF, _NAN)),
        errors=_CORRUPT,
    ),
    Hostile(
        "redis-huge-expiry",
        "redis",
        _header_metadata((_V, 1.0, 1.0, 1.0, 0.0, 1e300, _NAN)),
        errors=_CORRUPT,
    ),
    Hostile(
        "redis-negative-hits",
        "redis",
        _header_metadata((_V, 1.0, 1.0, 1.0, -3.0, _NAN, _NAN)),
        errors=_CORRUPT,
    ),
    Hostile(
        "redis-inf-hits",
        "redis",
        _header_metadata((_V, 1.0, 1.0, 1.0, _INF, _NAN, _NAN)),
        errors=_CORRUPT,
    ),
    Hostile(
        "redis-inf-idle",
        "redis",
        _header_get((_V, _NOW, _NOW, _NOW, 0.0, _NAN, _INF)),
        errors=_CORRUPT,
    ),
    Hostile(
        "redis-negative-idle",
        "redis",
        _header_get((_V, _NOW, _NOW, _NOW, 0.0, _NAN, -5.0)),
        errors=_CORRUPT,
    ),
    Hostile(
        "redis-unknown-kind",
        "redis",
        _header_get((0x7A, 1.0, 1.0, 1.0, 0.0, _NAN, _NAN)),
        errors=_CORRUPT,
    ),
    Hostile(
        "redis-int-truncated",
        "redis",
        _header_get((_I, 1.0, 1.0, 1.0, 0.0, _NAN, _NAN), b"\x01\x02"),
        errors=_CORRUPT,
    ),
    Hostile(
        "redis-int-too-long",
        "redis",
        _header_get((_I, 1.0, 1.0, 1.0, 0.0, _NAN, _NAN), b"\x00" * 20),
        errors=_CORRUPT,
    ),
    Hostile(
        "redis-int-metadata-truncated",
        "redis",
        _header_metadata((_I, 1.0, 1.0, 1.0, 0.0, 1e10, _NAN)),
        errors=_CORRUPT,
    ),
    Hostile("redis-get-many-one-bad", "redis", _header_get_many, errors=_CORRUPT),
    Hostile("redis-exists-nan-accessed", "redis", _header_exists, errors=_CORRUPT),
    Hostile("redis-scans-odd-doubles", "redis", _header_scans, value=True),
    Hostile("redis-truncated-header", "redis", _header_truncated, value="default"),
    # ---- DynamoDB items another program wrote (moto refuses NaN/1e400 like DynamoDB;
    # items.py's own tests cover those)
    Hostile(
        "dynamo-huge-deadline",
        "dynamo",
        _item({"value": {"S": "v"}, "deadline": _BIG}, "metadata"),
        errors=_CORRUPT,
    ),
    Hostile(
        "dynamo-huge-ttl-get", "dynamo", _item({"value": {"S": "v"}, "timeToLive": _BIG}), value="v"
    ),
    Hostile(
        "dynamo-negative-created",
        "dynamo",
        _item({"value": {"S": "v"}, "createdTime": {"N": "-9.9e125"}}, "metadata"),
        errors=_CORRUPT,
    ),
    Hostile(
        "dynamo-deadline-as-string",
        "dynamo",
        _item({"value": {"N": "7"}, "deadline": {"S": "soon"}}),
        value=None,  # a deadline of another type: already past (docs/dynamodb.md)
    ),
    Hostile(
        "dynamo-idle-as-string",
        "dynamo",
        _item({"value": {"N": "7"}, "idleTime": {"S": "5"}}),
        value=7,
    ),
    Hostile(
        "dynamo-huge-idle",
        "dynamo",
        _item({"value": {"N": "7"}, "idleTime": _BIG, "deadline": _N}),
        errors=("CacheBackendError", "CorruptEntryError"),
        value=7,
    ),
    Hostile(
        "dynamo-huge-hits",
        "dynamo",
        _item({"value": {"N": "7"}, "hitCount": {"N": "9" * 38}}, "metadata"),
        # Before: shown rounded through a float, 99999999999999997748809823456034029568.
        errors=("CorruptEntryError",),
    ),
    # Writes refuse both; metadata() showed them as they were (hit_count -3).
    Hostile(
        "dynamo-negative-hits",
        "dynamo",
        _item({"value": {"N": "7"}, "hitCount": {"N": "-3"}}, "metadata"),
        errors=("CorruptEntryError",),
    ),
    Hostile(
        "dynamo-negative-idle",
        "dynamo",
        _item({"value": {"N": "7"}, "idleTime": {"N": "-5"}, "deadline": _N}, "metadata"),
        errors=("CorruptEntryError",),
    ),
    Hostile(
        "dynamo-value-string-set", "dynamo", _item({"value": {"SS": ["a", "b"]}}), value={"a", "b"}
    ),
    Hostile(
        "dynamo-value-map",
        "dynamo",
        _item({"value": {"M": {"x": {"L": [{"NULL": True}]}}}}, "get_many"),
        value={"k": {"x": [None]}},
    ),
    Hostile(
        "dynamo-value-bool",
        "dynamo",
        _item({"value": {"BOOL": False}, "lastAccessed": _BIG}),
        value=False,
    ),
    Hostile("dynamo-no-value", "dynamo", _item({"other": {"S": "x"}}), value=ANY),
    # ---- configuration: nesting and references
    Hostile("config-json-100k-deep", "none", _deep_json_file(100_000), errors=_CONFIG),
    Hostile("config-json-past-limit", "none", _deep_json_file(MAX_DEPTH + 5), errors=_CONFIG),
    Hostile(
        "config-json-deep-lucee-key",
        "none",
        _deep_json_file(MAX_DEPTH + 5, "maven"),
        errors=_CONFIG,
    ),
    Hostile("config-dict-50k-deep", "none", _deep_dict, errors=_CONFIG),
    Hostile("config-self-containing", "none", _self_containing, errors=_CONFIG),
    Hostile("config-shared-list-bomb", "none", _shared_list_bomb, errors=_CONFIG),
    Hostile(
        "ref-nested-fallback",
        "none",
        _namespace_of("${HOSTILE_UNSET:-${HOSTILE_A}}:"),
        value="alpha:",
        env=_ENV,
    ),
    Hostile(
        "ref-nested-three",
        "none",
        _namespace_of("${X1:-${X2:-${X3:-deep}}}"),
        value="deep",
        env=_ENV,
    ),
    Hostile(
        "ref-empty-uses-nested",
        "none",
        _namespace_of("${HOSTILE_EMPTY:-${HOSTILE_A}x}y"),
        value="alphaxy",
        env=_ENV,
    ),
    Hostile(
        "ref-unused-fallback-not-expanded",
        "none",
        _namespace_of("${HOSTILE_A:-${HOSTILE_UNSET}}"),
        value="alpha",
        env=_ENV,
    ),
    Hostile(
        "ref-used-fallback-missing",
        "none",
        _namespace_of("${HOSTILE_UNSET:-${HOSTILE_UNSET2}}"),
        errors=("MissingEnvVarError",),
        env=_ENV,
    ),
    Hostile(
        "ref-env-value-not-reexpanded",
        "none",
        _namespace_of("${HOSTILE_LOOKS_LIKE_REF}"),
        value="${HOSTILE_SECRET}",
        env=_ENV,
    ),
    Hostile(
        "ref-escape-then-ref",
        "none",
        _namespace_of("$${HOSTILE_A:-${HOSTILE_A}}"),
        value="${HOSTILE_A:-alpha}",
        env=_ENV,
    ),
    Hostile(
        "ref-too-deep",
        "none",
        _namespace_of("${X:-" * (MAX_REFERENCE_DEPTH + 1) + "}" * (MAX_REFERENCE_DEPTH + 1)),
        errors=_CONFIG,
        env=_ENV,
    ),
    Hostile(
        "ref-100k-deep",
        "none",
        _namespace_of("${X:-" * 100_000 + "}" * 100_000),
        errors=_CONFIG,
        env=_ENV,
    ),
    Hostile(
        "ref-unterminated-nested",
        "none",
        _namespace_of("${HOSTILE_UNSET:-${HOSTILE_A}"),
        errors=_CONFIG,
        env=_ENV,
    ),
    Hostile(
        "ref-other-operator",
        "none",
        _namespace_of("${HOSTILE_SECRET:?no}"),
        errors=_CONFIG,
        env=_ENV,
    ),
    Hostile(
        "ref-unset-default-operator",
        "none",
        _namespace_of("${HOSTILE_A-x}"),
        errors=_CONFIG,
        env=_ENV,
    ),
    Hostile(
        "ref-huge-string", "none", _huge_string, value=400_000 * 5 - 400_000 + 100_000 * 5, env=_ENV
    ),
    # ---- configuration: scale
    Hostile("config-32k-entries", "none", _many_entries, value=32_000),
    Hostile("config-16k-one-nested", "none", _many_entries_one_nested, errors=_CONFIG),
]
CASES_BY_ID: Final = {case.id: case for case in CASES}


def _needs(case: Hostile, request: pytest.FixtureRequest) -> Where:
    redis = dynamo = None
    if case.backend == "redis":
        server = request.getfixturevalue("redis_server")
        redis = (server.host, server.port)
    if case.backend == "dynamo":
        request.getfixturevalue("shared_table")
        dynamo = request.getfixturevalue("local_dynamodb").endpoint
    return Where(fresh_namespace("hostile"), redis, dynamo)


def check_outcome(case: Hostile, outcome: Outcome) -> None:
    """The promise of every case: contained, no secret, and the expected ending."""
    assert_contained(outcome, errors=case.errors, forbidden=(SECRET_MARK,))
    if outcome.kind == "error":
        assert case.errors, f"expected a value, {outcome.describe()}"
        return
    if case.errors and case.value is ANY:
        pytest.fail(f"expected {case.errors}, {outcome.describe()}")
    if case.value is not ANY:
        assert outcome.value == case.value, outcome.describe()


def test_case_ids_are_unique() -> None:
    assert len(CASES_BY_ID) == len(CASES) >= 40


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_input(case: Hostile, request: pytest.FixtureRequest) -> None:
    where = _needs(case, request)
    outcome = run_bounded(run_case, case.id, where, memory_mb=512, seconds=case.seconds)
    check_outcome(case, outcome)


def test_the_check_fails_for_an_untyped_error() -> None:
    """The harness itself: an untyped exception or a leaked secret fails a case."""
    case = Hostile("self-check", "none", _deep_dict, errors=_CONFIG)
    untyped = Outcome("error", error_type="builtins.RecursionError", is_cache_error=False)
    with pytest.raises(AssertionError):
        check_outcome(case, untyped)
    leaked = Outcome("value", value=1, texts=(f"oops {SECRET_MARK}",))
    with pytest.raises(AssertionError):
        check_outcome(Hostile("self-check-2", "none", _deep_dict, value=1), leaked)
