"""Conformance: values come back with exactly the types they were stored with."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from cachehub.api import MISSING, BaseCache
from cachehub.codec import SafeCodec
from cachehub.errors import SerializationError
from cachehub.query import Query, query_new

from .support import ConformanceBase, assert_same

__all__ = ["VALUES", "ValueTests", "query_values"]

_AWARE = datetime(2024, 2, 29, 13, 45, 30, 123456, tzinfo=UTC)

VALUES: dict[str, Any] = {
    "str": "hello",
    "str_empty": "",
    "str_unicode": "ünïcödé ✓ 中文 🎉 \u200b",
    "str_nul_and_controls": "a\x00b\x01\n\r\t",
    "str_surrogate_pair_emoji": "\U0001f600" * 3,
    "int_zero": 0,
    "int_negative": -42,
    "int_64_max": 2**63 - 1,
    "int_beyond_64_bits": 2**100 + 7,
    "int_negative_beyond_64_bits": -(2**80) - 3,
    "float": 3.141592653589793,
    "float_negative": -2.5e-10,
    "float_inf": float("inf"),
    "float_negative_inf": float("-inf"),
    "float_nan": float("nan"),
    "float_negative_zero": -0.0,
    "float_subnormal": 5e-324,
    "decimal": Decimal("12.3400"),
    "decimal_negative_small": Decimal("-0.000001"),
    "decimal_huge_precision": Decimal("123456789012345678901234567890.123456789012345"),
    "bool_true": True,
    "bool_false": False,
    "none": None,
    "bytes": bytes(range(256)),
    "bytes_empty": b"",
    "datetime_naive": datetime(2024, 2, 29, 13, 45, 30, 123456),
    "datetime_aware_utc": _AWARE,
    "datetime_aware_offset": datetime(
        2023, 7, 1, 8, 0, tzinfo=timezone(timedelta(hours=5, minutes=30))
    ),
    "date": date(1999, 12, 31),
    "time": time(23, 59, 59, 999999),
    "timedelta": timedelta(days=3, seconds=7, microseconds=11),
    "timedelta_negative": timedelta(days=-1, seconds=5),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "list": [1, "two", 3.0, None, True],
    "list_empty": [],
    "tuple": (1, "two", (3, 4)),
    "tuple_empty": (),
    "set": {1, 2, 3},
    "set_of_str": {"a", "b"},
    "set_empty": set(),
    "frozenset": frozenset({"x", 1}),
    "dict": {"a": 1, "b": [1, 2]},
    "dict_empty": {},
    "dict_int_keys": {1: "one", 2: "two"},
    "dict_mixed_keys": {1: "int", "1": "str", 1.5: "float", (1, 2): "tuple", None: "none"},
    "dict_bool_and_int_keys_distinct": {True: "bool", 2: "int"},
    "nested": {
        "users": [
            {"id": 1, "tags": {"a", "b"}, "joined": date(2020, 1, 1), "score": Decimal("9.5")},
            {"id": 2, "tags": set(), "joined": None, "pair": (1, [2, (3,)])},
        ],
        "when": _AWARE,
        "blob": b"\x00\x01",
    },
    "deeply_nested": [[[[[[[[[["bottom"]]]]]]]]]],
}
"""Values every provider must round-trip with exact types (see :func:`assert_same`)."""


def query_values() -> dict[str, Any]:
    """Lucee query objects (``cachehub.query``), built the way CFML's queryNew builds them."""
    return {
        "query_new": query_new("id,name", "integer,varchar", [[1, "Alice"], [2, "Bob"]]),
        "query_empty": Query(("id", "name"), ()),
        "query_typed": Query(
            ("id", "price", "seen"),
            ((1, Decimal("1.50"), _AWARE), (2, None, None)),
            types=("integer", "decimal", "timestamp"),
        ),
    }


_QUERY_NAMES = ("query_new", "query_empty", "query_typed")


def _store(cache: BaseCache, how: str, key: str, value: Any) -> Any:
    """Write with one API path and read back with the matching one."""
    if how == "put/get":
        cache.put(key, value)
        return cache.get(key, MISSING)
    if how == "put_many/get_many":
        cache.put_many({key: value, "other": 0})
        return cache.get_many([key, "other"]).get(key, MISSING)
    assert how == "add/get_all"
    assert cache.add(key, value) is True
    return cache.get_all().get(key, MISSING)


_PATHS = ["put/get", "put_many/get_many", "add/get_all"]


class _Unpicklable:
    """A class defined inside a module the codec knows nothing about."""

    def __init__(self) -> None:
        self.lock = threading.Lock()


_UNSERIALISABLE: dict[str, Callable[[], Any]] = {
    "lambda": lambda: lambda: 1,
    "thread_lock": threading.Lock,
    "custom_object": _Unpicklable,
    "generator": lambda: (i for i in range(3)),
    "nested_lambda": lambda: {"ok": [1, 2, {"bad": lambda: 0}]},
}


class ValueTests(ConformanceBase):
    """Value round trips, copies, large values and unserialisable values."""

    @pytest.mark.parametrize("how", _PATHS)
    @pytest.mark.parametrize("name", list(VALUES))
    def test_roundtrip_exact_type(self, cache: BaseCache, name: str, how: str) -> None:
        value = VALUES[name]
        assert_same(value, _store(cache, how, "v", value))

    @pytest.mark.parametrize("how", _PATHS)
    @pytest.mark.parametrize("name", _QUERY_NAMES)
    def test_roundtrip_query(self, cache: BaseCache, name: str, how: str) -> None:
        value = query_values()[name]
        got = _store(cache, how, "q", value)
        assert type(got) is type(value)
        assert got == value
        assert got.columns == value.columns
        assert_same(list(value.rows), list(got.rows))

    def test_all_values_in_one_dict(self, cache: BaseCache) -> None:
        cache.put("all", VALUES)
        assert_same(VALUES, cache.get("all"))

    @pytest.mark.parametrize(
        "value",
        [
            pytest.param(os.urandom(300_000), id="random_bytes"),
            pytest.param("x" * 300_000, id="repetitive_str"),
            pytest.param(
                "".join(chr(0x400 + (i * 7919) % 0x500) for i in range(150_000)), id="unicode_str"
            ),
            pytest.param(
                [{"id": i, "name": f"user {i}"} for i in range(10_000)], id="list_of_dicts"
            ),
        ],
    )
    def test_large_value(self, cache: BaseCache, value: Any) -> None:
        self.needs_value_bytes(len(SafeCodec().dumps(value)))
        cache.put("big", value)
        assert_same(value, cache.get("big"))
        assert cache.get_many(["big"]) == {"big": value}

    def test_returned_list_is_a_copy(self, cache: BaseCache) -> None:
        cache.put("k", [1, 2])
        got = cache.get("k")
        got.append(3)
        assert cache.get("k") == [1, 2]

    def test_returned_dict_is_a_copy(self, cache: BaseCache) -> None:
        cache.put("k", {"a": {"b": 1}})
        got = cache.get("k")
        got["a"]["b"] = 2
        got["c"] = 3
        assert cache.get("k") == {"a": {"b": 1}}

    def test_mutating_the_original_after_put(self, cache: BaseCache) -> None:
        original = {"items": [1]}
        cache.put("k", original)
        original["items"].append(2)
        assert cache.get("k") == {"items": [1]}

    def test_get_many_and_get_all_return_copies(self, cache: BaseCache) -> None:
        cache.put("k", [1])
        cache.get_many(["k"])["k"].append(2)
        cache.get_all()["k"].append(3)
        assert cache.get("k") == [1]

    def test_two_reads_are_distinct_objects(self, cache: BaseCache) -> None:
        cache.put("k", {"a": [1]})
        first, second = cache.get("k"), cache.get("k")
        assert first == second
        assert first is not second

    @pytest.mark.parametrize("make", list(_UNSERIALISABLE.values()), ids=list(_UNSERIALISABLE))
    def test_unserialisable_put_stores_nothing(
        self, cache: BaseCache, make: Callable[[], Any]
    ) -> None:
        with pytest.raises(SerializationError):
            cache.put("bad", make())
        assert cache.exists("bad") is False
        assert cache.count() == 0

    def test_unserialisable_put_keeps_previous_value(self, cache: BaseCache) -> None:
        cache.put("k", "old")
        with pytest.raises(SerializationError):
            cache.put("k", threading.Lock())
        assert cache.get("k") == "old"

    def test_unserialisable_add_stores_nothing(self, cache: BaseCache) -> None:
        with pytest.raises(SerializationError):
            cache.add("k", threading.Lock())
        assert cache.exists("k") is False
        assert cache.add("k", 1) is True

    def test_unserialisable_put_many_stores_nothing(self, cache: BaseCache) -> None:
        # Every value is encoded before anything is written.
        with pytest.raises(SerializationError):
            cache.put_many({"a": 1, "b": threading.Lock(), "c": 3})
        assert cache.count() == 0

    def test_serialization_error_is_a_type_error(self, cache: BaseCache) -> None:
        with pytest.raises(TypeError):
            cache.put("k", threading.Lock())
