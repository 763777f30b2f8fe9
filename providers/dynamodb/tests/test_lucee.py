"""Lucee interop (issue #18): items in the Lucee extension's exact shape, both directions.

Expected items are written out by hand from the extension's layout (Lucee documentation,
"Cache Entry Structure" and "Data Types and Serialization"), in DynamoDB's low-level
JSON, and compared with what lands in the table; Lucee-written items are put into the
table with the low-level client exactly as the extension writes them.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import math
import struct
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from cachehub_dynamodb import DynamoDBCache
from cachehub_dynamodb.errors import ForeignEntryError
from cachehub_dynamodb.lucee import LuceeDynamoDBCache, convert_from_lucee, lucee_key
from cachehub_dynamodb.lucee_values import (
    MAX_DEPTH,
    MAX_EXPANDED,
    LuceeValueError,
    decode_attr,
    decode_binary,
    encode_attr,
    read_bson,
)
from cachehub_memory import MemoryCache

from cachehub.errors import (
    CacheError,
    CacheValueError,
    ConfigError,
    CorruptEntryError,
    InvalidKeyError,
    SerializationError,
)
from cachehub.testing import FakeClock
from cachehub.testing.asyncshell import count_hops

from .conftest import CREDENTIALS

T0 = 1_700_000_000.25  # a fixed "now": 1700000000250 ms
T0_MS = "1700000000250"

Make = Callable[..., DynamoDBCache]


# ---------------------------------------------------------------------- hand-built bytes


def _jutf(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">H", len(raw)) + raw


def _java_date_stream(ms: int, classes: tuple[str, ...] = ("java.util.Date",)) -> bytes:
    """A Java object stream as ObjectOutputStream writes a Date (or a subclass chain
    without fields, such as Lucee's DateTimeImpl -> DateTime -> java.util.Date)."""
    out = b"\xac\xed\x00\x05\x73"
    for name in classes:
        if name == "java.util.Date":
            out += b"\x72" + _jutf(name) + bytes.fromhex("686a81014b597419") + b"\x03\x00\x00\x78"
        else:
            out += b"\x72" + _jutf(name) + bytes(8) + b"\x02\x00\x00\x78"
    out += b"\x70"  # no further superclass
    out += b"\x77\x08" + struct.pack(">q", ms) + b"\x78"  # Date.writeObject's block
    return out


def _java_object_stream(cls: str) -> bytes:
    """An object of ``cls`` with one object-typed field (e.g. a query's columns)."""
    return (
        b"\xac\xed\x00\x05\x73\x72"
        + _jutf(cls)
        + bytes(8)
        + b"\x02\x00\x01"
        + b"L"
        + _jutf("columns")
        + b"\x74"
        + _jutf("Ljava/util/Map;")
        + b"\x78\x70\x70"
    )


def _cstr(text: str) -> bytes:
    return text.encode() + b"\x00"


def _bson(elements: list[bytes]) -> bytes:
    body = b"".join(elements) + b"\x00"
    return struct.pack("<i", len(body) + 4) + body


def _b_int64(name: str, value: int) -> bytes:
    return b"\x12" + _cstr(name) + struct.pack("<q", value)


def _b_str(name: str, value: str) -> bytes:
    raw = value.encode() + b"\x00"
    return b"\x02" + _cstr(name) + struct.pack("<i", len(raw)) + raw


def _b_double(name: str, value: float) -> bytes:
    return b"\x01" + _cstr(name) + struct.pack("<d", value)


def _b_doc(name: str, doc: bytes, kind: bytes = b"\x03") -> bytes:
    return kind + _cstr(name) + doc


def _b_date(name: str, ms: int) -> bytes:
    return b"\x09" + _cstr(name) + struct.pack("<q", ms)


def _session_bson() -> bytes:
    """A Lucee session scope as the extension's BSON coder writes an IKStorageValue."""
    cfid = _bson([_b_int64("0", 1_700_000_000_000), _b_str("1", "c0ffee")])
    cart = _bson(
        [
            _b_int64("0", 1_700_000_000_001),
            _b_doc("1", _bson([_b_double("total", 9.5), _b_date("at", 1_700_000_000_000)])),
        ]
    )
    return _bson(
        [
            _b_int64("iksvk", 1_700_000_000_002),
            _b_doc("cfid", cfid, b"\x04"),
            _b_doc("cart", cart, b"\x04"),
        ]
    )


# ---------------------------------------------------------------------- fixtures


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def lucee(make: Make, clock: FakeClock) -> LuceeDynamoDBCache:
    cache = make(settings={"itemFormat": "lucee"}, clock=clock)
    assert isinstance(cache, LuceeDynamoDBCache)
    cache.connect()
    return cache


def _plant(cache: DynamoDBCache, item: dict[str, Any]) -> None:
    cache.client.put_item(TableName=cache.table_name, Item=item)


def _raw(cache: DynamoDBCache, pk: str) -> dict[str, Any] | None:
    reply = cache.client.get_item(
        TableName=cache.table_name, Key={cache.key_name: {"S": pk}}, ConsistentRead=True
    )
    item: dict[str, Any] | None = reply.get("Item")
    return item


def _lucee_item(pk: str, value: dict[str, Any], **extra: str) -> dict[str, Any]:
    """An item as the extension's put leaves it (stamps in ms, spans in ms, ttl in s)."""
    item = {
        "cacheKey": {"S": pk},
        "value": value,
        "createdTime": {"N": "1700000000000"},
        "updatedTime": {"N": "1700000000000"},
    }
    item.update({name: {"N": number} for name, number in extra.items()})
    return item


# ---------------------------------------------------------------------- cachehub -> Lucee


def test_put_writes_the_extension_item_byte_for_byte(lucee: LuceeDynamoDBCache) -> None:
    lucee.put(
        "user_session_123",
        {"name": "Ada", "age": 36, "score": 1.5, "whole": 3.0, "ok": True, "none": None},
        time_span=timedelta(minutes=30),
    )
    lucee.put("  tags ", ["a", 2, [b"\x00\x01"]], idle_time=60)
    lucee.put("plain", "text")
    assert _raw(lucee, "USER_SESSION_123") == {
        "cacheKey": {"S": "USER_SESSION_123"},
        "value": {
            "M": {
                "name": {"S": "Ada"},
                "age": {"N": "36"},
                "score": {"N": "1.5"},
                "whole": {"N": "3"},
                "ok": {"BOOL": True},
                "none": {"NULL": True},
            }
        },
        "createdTime": {"N": T0_MS},
        "updatedTime": {"N": T0_MS},
        "ttl": {"N": "1700001800"},  # (now_ms + until) // 1000
        "until": {"N": "1800000"},
    }
    assert _raw(lucee, "TAGS") == {
        "cacheKey": {"S": "TAGS"},
        "value": {"L": [{"S": "a"}, {"N": "2"}, {"L": [{"B": b"\x00\x01"}]}]},
        "createdTime": {"N": T0_MS},
        "updatedTime": {"N": T0_MS},
        "ttl": {"N": "1700000060"},
        "idle": {"N": "60000"},
    }
    assert _raw(lucee, "PLAIN") == {
        "cacheKey": {"S": "PLAIN"},
        "value": {"S": "text"},
        "createdTime": {"N": T0_MS},
        "updatedTime": {"N": T0_MS},
    }


def test_datetimes_are_written_as_lucee_reads_dates(lucee: LuceeDynamoDBCache) -> None:
    ms = 1_714_564_800_123
    lucee.put("when", datetime.fromtimestamp(ms / 1000, UTC))
    raw = _raw(lucee, "WHEN")
    assert raw is not None
    blob = bytes(raw["value"]["B"])
    # GZIPOutputStream's fixed header (no name, mtime 0, OS 0), then Java serialization.
    assert blob[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x00"
    assert gzip.decompress(blob) == _java_date_stream(ms)
    assert lucee.get("when") == datetime.fromtimestamp(ms / 1000, UTC)


def test_put_is_a_merge_that_keeps_created_time_and_older_expiry(
    lucee: LuceeDynamoDBCache, clock: FakeClock
) -> None:
    lucee.put("k", 1, time_span=100)
    clock.advance(10)
    lucee.put("k", 2)  # no span: the extension keeps ttl/until
    raw = _raw(lucee, "K")
    assert raw is not None
    assert raw["createdTime"] == {"N": T0_MS}
    assert raw["updatedTime"] == {"N": "1700000010250"}
    assert raw["ttl"] == {"N": "1700000100"}
    assert raw["until"] == {"N": "100000"}
    meta = lucee.metadata("k")
    assert meta.created == datetime.fromtimestamp(T0, UTC).replace(microsecond=250000)
    assert meta.hit_count == 0


def test_put_without_expiry_over_an_expired_entry_is_live(
    lucee: LuceeDynamoDBCache, clock: FakeClock
) -> None:
    """The merge kept the expired ttl, so the new value was dead on arrival: put, then
    get, returned None (failed on main). The expired item is replaced by a fresh one."""
    lucee.put("k", 1, time_span=5)
    _plant(lucee, _lucee_item("OLD", {"S": "lucee"}, ttl="1600000000", until="1000", idle="9"))
    clock.advance(10)
    lucee.put("k", 2)
    lucee.put_many({"old": "new", "other": 3})
    assert lucee.get("k") == 2
    assert lucee.get_many(["old", "other"]) == {"old": "new", "other": 3}
    assert sorted(lucee.keys()) == ["K", "OLD", "OTHER"]
    now_ms = {"N": "1700000010250"}
    for pk, value in [("K", {"N": "2"}), ("OLD", {"S": "new"})]:
        # A fresh Lucee item: no ttl/until/idle left over, so Lucee reads it as live too.
        assert _raw(lucee, pk) == {
            "cacheKey": {"S": pk},
            "value": value,
            "createdTime": now_ms,
            "updatedTime": now_ms,
        }
    clock.advance(10**6)
    assert lucee.get("old") == "new"  # never expires


def test_add_incr_touch_and_delete_keep_the_layout(
    lucee: LuceeDynamoDBCache, clock: FakeClock
) -> None:
    assert lucee.add("c", 5, time_span=5)
    assert not lucee.add("C", 6)
    clock.advance(6)  # expired: add replaces it, as a fresh entry
    assert lucee.add("c", 7)
    assert _raw(lucee, "C") == {
        "cacheKey": {"S": "C"},
        "value": {"N": "7"},
        "createdTime": {"N": "1700000006250"},
        "updatedTime": {"N": "1700000006250"},
    }
    assert lucee.incr("c", 3) == 10
    assert lucee.touch("c", time_span=10)
    raw = _raw(lucee, "C")
    assert raw is not None
    assert raw["ttl"] == {"N": "1700000016"}
    assert lucee.touch("c")  # no expiry: ttl/until/idle removed
    raw = _raw(lucee, "C")
    assert raw is not None
    assert "ttl" not in raw
    assert "until" not in raw
    lucee.put("s", "text")
    with pytest.raises(CacheValueError, match="holds no Number"):
        lucee.incr("s")
    assert not lucee._delete_if_equal("S", "other", clock())
    assert lucee._delete_if_equal("S", "text", clock())
    assert lucee.get("s") is None
    assert lucee.delete("c")
    assert not lucee.delete("c")


# ---------------------------------------------------------------------- Lucee -> cachehub


def test_lucee_written_items_read_back(lucee: LuceeDynamoDBCache) -> None:
    ms = 1_714_564_800_000
    date_blob = gzip.compress(
        _java_date_stream(
            ms,
            (
                "lucee.runtime.type.dt.DateTimeImpl",
                "lucee.runtime.type.dt.DateTime",
                "java.util.Date",
            ),
        )
    )
    planted = {
        "STR": {"S": "hello"},
        "NUM": {"N": "42"},
        "DEC": {"N": "0.1"},
        "BIG": {"N": "12345678901234567890.123"},
        "YES": {"BOOL": True},
        "NIL": {"NULL": True},
        "STRUCT": {"M": {"a": {"L": [{"N": "1"}, {"S": "x"}]}}},
        "BIN": {"B": b"\x00\x01\x02"},
        "DATE": {"B": date_blob},
        "JAVADATE": {"B": _java_date_stream(ms)},
        "SESSION": {"B": _session_bson()},
    }
    for pk, value in planted.items():
        _plant(lucee, _lucee_item(pk, value))
    _plant(lucee, {"cacheKey": {"S": "NOVALUE"}, "other": {"S": "x"}})  # DynamoDBCommand's
    assert lucee.get("str") == "hello"
    assert lucee.get("num") == 42
    assert lucee.get("dec") == 0.1
    assert lucee.get("big") == Decimal("12345678901234567890.123")
    assert lucee.get("yes") is True
    assert lucee.get("nil", "absent") is None
    assert lucee.get("struct") == {"a": [1, "x"]}
    assert lucee.get("bin") == b"\x00\x01\x02"
    assert lucee.get("date") == datetime.fromtimestamp(ms / 1000, UTC)
    assert lucee.get("javadate") == datetime.fromtimestamp(ms / 1000, UTC)
    assert lucee.get("session") == {
        "cfid": "c0ffee",
        "cart": {"total": 9.5, "at": datetime.fromtimestamp(1_700_000_000, UTC)},
    }
    assert lucee.get("novalue", "absent") is None
    assert sorted(lucee.keys()) == sorted([*planted, "NOVALUE"])
    meta = lucee.metadata("str")  # ms stamps
    assert meta.created == datetime.fromtimestamp(1_700_000_000, UTC)


def test_keys_are_uppercased_trimmed_and_filters_ignore_case(lucee: LuceeDynamoDBCache) -> None:
    _plant(lucee, _lucee_item("USER_1", {"S": "a"}))
    _plant(lucee, _lucee_item("USER_2", {"S": "b"}))
    _plant(lucee, _lucee_item("ORDER_1", {"S": "c"}))
    assert lucee.get(" user_1\t") == "a"
    assert sorted(lucee.keys("user_*")) == ["USER_1", "USER_2"]
    assert sorted(lucee.get_all("User_?")) == ["USER_1", "USER_2"]
    assert lucee.count("*_1") == 2
    assert lucee.get_many(["user_1", "USER_1", "nope"]) == {"user_1": "a", "USER_1": "a"}
    assert lucee.clear("USER*") == 2
    assert list(lucee.keys()) == ["ORDER_1"]
    assert lucee_key(" \x00ab c\n") == "AB C"
    assert lucee_key("stra\u00dfe") == "STRASSE"  # as Java's toUpperCase


def test_expired_lucee_entries_are_misses(lucee: LuceeDynamoDBCache) -> None:
    _plant(lucee, _lucee_item("OLD", {"S": "x"}, ttl="1700000000", until="1000"))
    _plant(lucee, _lucee_item("NEW", {"S": "y"}, ttl="1700000001", until="1000"))
    assert lucee.get("old") is None
    assert not lucee.exists("old")
    assert lucee.get("new") == "y"
    assert list(lucee.keys()) == ["NEW"]
    assert lucee.count() == 1
    assert lucee.get_all() == {"NEW": "y"}


# ---------------------------------------------------------------------- default layout (#18.2)


def test_default_layout_honours_lucee_ttl_and_ms_stamps(make: Make, clock: FakeClock) -> None:
    cache = make(clock=clock)
    cache.connect()
    _plant(cache, _lucee_item("GONE", {"S": "x"}, ttl="1700000000", until="1000"))
    _plant(cache, _lucee_item("LIVE", {"S": "y"}, ttl="1700000100", until="100000"))
    assert cache.get("GONE") is None
    assert not cache.exists("GONE")
    assert sorted(cache.keys()) == ["LIVE"]
    assert cache.count() == 1
    assert cache.get_many(["GONE", "LIVE"]) == {"LIVE": "y"}
    meta = cache.metadata("LIVE")  # ms stamps, not a year-55000 crash
    assert meta.created == datetime.fromtimestamp(1_700_000_000, UTC)
    assert meta.expires == datetime.fromtimestamp(1_700_000_100, UTC)
    assert cache.add("GONE", "new")  # an expired Lucee entry may be replaced


def test_default_get_all_skips_unreadable_entries_and_reports_them(
    make: Make, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    cache = make(clock=clock)
    cache.put_many({f"good{i}": i for i in range(5)})
    _plant(
        cache,
        _lucee_item(
            "QUERY", {"B": gzip.compress(_java_object_stream("lucee.runtime.type.QueryImpl"))}
        ),
    )
    with caplog.at_level(logging.WARNING):
        assert cache.get_all() == {f"good{i}": i for i in range(5)}
    assert "QUERY" in caplog.text
    assert "skipped" in caplog.text
    seen: list[ForeignEntryError] = []
    cache.on_foreign_entry = seen.append
    assert len(cache.get_all("*")) == 5
    assert [e.key for e in seen] == ["QUERY"]
    assert "value:B" in seen[0].found
    assert "1f8b" in seen[0].found
    with pytest.raises(CorruptEntryError):
        cache.get("QUERY")  # a single read still says so, typed


def test_lucee_get_all_skips_entries_it_cannot_read(lucee: LuceeDynamoDBCache) -> None:
    _plant(lucee, _lucee_item("OK", {"S": "fine"}))
    _plant(
        lucee,
        _lucee_item(
            "QUERY", {"B": gzip.compress(_java_object_stream("lucee.runtime.type.QueryImpl"))}
        ),
    )
    seen: list[ForeignEntryError] = []
    lucee.on_foreign_entry = seen.append
    assert lucee.get_all() == {"OK": "fine"}
    assert [e.key for e in seen] == ["QUERY"]
    with pytest.raises(ForeignEntryError, match="QueryImpl") as raised:
        lucee.get("query")
    assert raised.value.key == "query"
    assert "value:B" in raised.value.found


# ---------------------------------------------------------------------- hostile items


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ({"B": gzip.compress(b"not java")}, "not a Java object stream"),
        ({"B": b"\x1f\x8b\x08garbage"}, "damaged|truncated"),
        ({"B": gzip.compress(_java_date_stream(0))[:-12]}, "damaged|truncated"),
        ({"B": _java_date_stream(0)[:-5]}, "truncated"),
        ({"B": _java_date_stream(2**62)}, "datetime range"),
        ({"B": gzip.compress(_java_object_stream("lucee.runtime.type.QueryImpl"))}, "QueryImpl"),
        ({"N": "not-a-number"}, "not a number"),
        ({"N": "NaN"}, "not a finite number"),
        ({"S": 5}, "holding int"),
        ({"XX": "?"}, "type 'XX'"),
    ],
)
def test_malformed_values_are_typed_per_entry_errors(
    lucee: LuceeDynamoDBCache, value: dict[str, Any], match: str
) -> None:
    item = _lucee_item("BAD", value)
    with pytest.raises(LuceeValueError, match=match):
        decode_attr(item["value"])
    if "B" not in value:
        return  # DynamoDB itself refuses to store these
    _plant(lucee, item)
    with pytest.raises(ForeignEntryError, match=match):
        lucee.get("bad")
    assert lucee.get_all() == {}


def test_hostile_ttls_and_keys(lucee: LuceeDynamoDBCache, make: Make, clock: FakeClock) -> None:
    _plant(lucee, _lucee_item("NEG", {"S": "x"}, ttl="-1e20"))
    _plant(lucee, _lucee_item("FAR", {"S": "y"}, ttl="1e100"))
    _plant(lucee, {**_lucee_item("TXT", {"S": "z"}), "ttl": {"S": "soon"}})
    _plant(lucee, _lucee_item("lower", {"S": "hidden"}))  # not a key Lucee could write
    _plant(lucee, _lucee_item(" PADDED", {"S": "hidden"}))
    _plant(lucee, _lucee_item("USER", {"S": "upper"}))
    assert lucee.get("neg") is None
    assert lucee.get("far") == "y"
    with pytest.raises(ForeignEntryError, match="beyond any date"):
        lucee.metadata("far")
    with pytest.raises(ForeignEntryError, match="ttl that is not a finite Number"):
        lucee.get("txt")
    # (moto cannot compare an S ttl in a scan filter, which DynamoDB answers as false)
    lucee.client.delete_item(TableName=lucee.table_name, Key={"cacheKey": {"S": "TXT"}})
    assert sorted(lucee.keys()) == ["FAR", "USER"]
    assert lucee.get("lower") is None
    assert lucee.get(" padded") is None
    assert lucee.get("user") == lucee.get("User") == "upper"  # one Lucee entry
    lucee.put("User", "replaced")
    assert lucee.get("USER") == "replaced"
    # The default layout also never crashes on them.
    plain = make(clock=clock)
    assert plain.get("NEG") is None
    with pytest.raises(CacheError):
        plain.metadata("FAR")
    with pytest.raises(InvalidKeyError, match="empty once uppercased"):
        lucee.put(" \t ", 1)
    with pytest.raises(InvalidKeyError, match="partition key limit"):
        lucee.put("k" * 3000, 1)


def test_a_ttl_that_is_no_number_is_expired_to_lists_and_add_alike(
    lucee: LuceeDynamoDBCache,
) -> None:
    """A single read names the entry (ForeignEntryError); everything else reads it as
    expired, DynamoDB's conditions included. On main add() answered False (its condition
    "ttl <= now" is false for an S ttl) for a key exists() denied, and moto answered the
    scan filter with a 500."""
    _plant(lucee, _lucee_item("LIVE", {"S": "x"}))
    _plant(lucee, {**_lucee_item("TXT", {"S": "z"}), "ttl": {"S": "soon"}})
    with pytest.raises(ForeignEntryError, match="ttl that is not a finite Number"):
        lucee.get("txt")
    assert not lucee.exists("txt")
    assert sorted(lucee.keys()) == ["LIVE"]
    assert lucee.count() == 1
    assert not lucee.touch("txt", 60)
    assert lucee.add("txt", "mine")
    assert lucee.get("txt") == "mine"


def test_incr_of_an_item_whose_ttl_is_no_number_names_it(
    lucee: LuceeDynamoDBCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DynamoDB evaluates ``ttl > :now`` and ``ttl <= :now`` as false for an S ttl, so
    both of incr's conditions fail (moto cannot compare across types, so the test plays
    DynamoDB's part). On main incr retried every round and then blamed "concurrent
    writes"; it is the entry's fault, a ForeignEntryError naming it, after one read."""
    from cachehub_dynamodb.errors import ConditionFailedError

    _plant(lucee, {**_lucee_item("TXT", {"N": "1"}), "ttl": {"S": "soon"}})
    sent: list[str] = []
    real = lucee._request

    def dynamodb(operation: str, params: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        sent.append(operation)
        if "ConditionExpression" in params and "#ttl" in params["ConditionExpression"]:
            raise ConditionFailedError("The conditional request failed")
        return real(operation, params, *args, **kwargs)

    monkeypatch.setattr(lucee, "_request", dynamodb)
    with pytest.raises(ForeignEntryError, match="ttl that is not a finite Number"):
        lucee.incr("txt")
    assert sent == ["UpdateItem", "GetItem"]


@pytest.mark.parametrize(
    "when",
    [
        datetime(9999, 12, 31, 23, 59, 59, 999000, UTC),
        datetime(2500, 1, 1, 0, 0, 0, 1000, UTC),
        datetime(3000, 6, 1, 12, 0, 0, 123000, UTC),
        datetime(1, 1, 1, 0, 0, 0, 1000, UTC),
    ],
)
def test_far_dates_keep_every_millisecond(lucee: LuceeDynamoDBCache, when: datetime) -> None:
    """Dates went through ``ms / 1000`` as a float: beyond about 2242 (and long before
    1970) they came back microseconds off (9999-12-31 23:59:59.999 as .998993), from
    cachehub's own writes, Lucee's Java dates and BSON dates alike (failed on main)."""
    ms = (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    lucee.put("when", when)
    assert lucee.get("when") == when
    raw = _raw(lucee, "WHEN")
    assert raw is not None
    assert gzip.decompress(bytes(raw["value"]["B"])) == _java_date_stream(ms)
    assert (
        decode_binary(
            _java_date_stream(ms, ("lucee.runtime.type.dt.DateTimeImpl", "java.util.Date"))
        )
        == when
    )
    assert read_bson(_bson([b"\x09" + _cstr("d") + struct.pack("<q", ms)])) == {"d": when}


def test_a_naive_datetime_beyond_the_range_is_a_typed_error(lucee: LuceeDynamoDBCache) -> None:
    """``datetime.min`` without a zone raised a raw ValueError ("year 0 is out of range")
    from ``timestamp()`` (failed on main)."""
    with pytest.raises(CacheValueError, match="out of range"):
        lucee.put("min", datetime.min)
    assert lucee.get("min") is None


@pytest.mark.parametrize(
    "value",
    ["\ud800", "ok \udfff", {"\udc00": 1}, ["fine", {"deep": ["\ud83d"]}]],
    ids=["lone", "trailing", "struct-key", "nested"],
)
def test_lone_surrogates_are_refused_before_sending(counted: Any, value: Any) -> None:
    """A str DynamoDB cannot store (not UTF-8) failed inside the cache with a
    UnicodeEncodeError reported as "a bug", or was sent and refused by the server
    (failed on main): a CacheValueError naming it, and no request."""
    cache, counter = counted(settings={"itemFormat": "lucee"})
    with pytest.raises(CacheValueError, match="lone surrogate"):
        cache.put("k", value)
    assert counter.total == 0
    cache.put("k", "\U0001f600 \u00df")  # astral and non-ASCII text are fine
    assert cache.get("k") == "\U0001f600 \u00df"


def test_bson_reader_is_bounded() -> None:
    deep = _bson([])
    for _ in range(MAX_DEPTH + 5):
        deep = _bson([_b_doc("d", deep)])
    assert decode_binary(deep) == deep  # too deep to be Lucee's: the bytes, unread
    with pytest.raises(LuceeValueError, match="deeper"):
        read_bson(deep)
    lying = struct.pack("<i", 10_000_000) + b"\x02a\x00" + struct.pack("<i", 2**30) + b"\x00"
    with pytest.raises(LuceeValueError):
        read_bson(lying)
    assert decode_binary(lying) == lying
    odd_session = _bson([_b_int64("iksvk", 1), _b_str("x", "not a pair")])
    with pytest.raises(LuceeValueError, match="not \\[time, value\\]"):
        decode_binary(odd_session)


def test_gzip_bomb_stops_at_the_cap() -> None:
    bomb = gzip.compress(b"\x00" * (MAX_EXPANDED * 8))
    assert len(bomb) < 20_000
    with pytest.raises(LuceeValueError, match="expands beyond"):
        decode_binary(bomb)


# ---------------------------------------------------------------------- writing refusals


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ({1, 2}, SerializationError),
        (object(), SerializationError),
        ({1: "int key"}, SerializationError),
        (datetime(2024, 1, 1).date(), SerializationError),
        (10**40, CacheValueError),
        (float("nan"), CacheValueError),
        (Decimal("Infinity"), CacheValueError),
    ],
)
def test_values_lucee_cannot_hold_are_refused(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        encode_attr(value)


class _Early(datetime):
    """A datetime claiming a time before the year 1 (a hostile subclass)."""

    def timestamp(self) -> float:
        return -1e13

    def __sub__(self, other: Any) -> Any:
        return timedelta(days=-999_999_999)


def test_dates_beyond_the_datetime_range_are_refused() -> None:
    with pytest.raises(CacheValueError, match="out of range"):
        encode_attr(_Early(2000, 1, 1, tzinfo=UTC))


def test_deep_values_are_refused(lucee: LuceeDynamoDBCache) -> None:
    value: Any = "leaf"
    for _ in range(MAX_DEPTH + 2):
        value = [value]
    with pytest.raises(CacheValueError, match="deeper than"):
        lucee.put("deep", value)
    assert lucee.get("deep") is None


def test_tuples_come_back_as_lists_and_floats_stay_exact(lucee: LuceeDynamoDBCache) -> None:
    lucee.put("t", (1, 0.1, 2.5e-7, 10**37))
    assert lucee.get("t") == [1, 0.1, 2.5e-7, 10**37]


def test_namespace_must_survive_uppercasing(make: Make) -> None:
    with pytest.raises(ConfigError, match="namespace"):
        make(settings={"itemFormat": "lucee", "namespace": "app:"})
    cache = make(settings={"itemFormat": "lucee", "namespace": "APP:"})
    cache.put("x", 1)
    _plant(cache, _lucee_item("OTHER:Y", {"S": "not ours"}))
    assert list(cache.keys()) == ["X"]
    assert cache.get_all("*") == {"X": 1}
    assert _raw(cache, "APP:X") is not None


def test_itemformat_is_validated(make: Make) -> None:
    with pytest.raises(ConfigError):
        make(settings={"itemFormat": "java"})
    assert type(make()) is DynamoDBCache


# ---------------------------------------------------------------------- conversion


def test_convert_from_lucee_copies_readable_entries(
    lucee: LuceeDynamoDBCache, clock: FakeClock
) -> None:
    _plant(lucee, _lucee_item("A", {"S": "a"}))
    _plant(lucee, _lucee_item("B", {"M": {"n": {"N": "1"}}}, ttl="1700000100"))
    _plant(lucee, _lucee_item("OLD", {"S": "x"}, ttl="1700000000"))
    _plant(
        lucee,
        _lucee_item("Q", {"B": gzip.compress(_java_object_stream("lucee.runtime.type.QueryImpl"))}),
    )
    target = MemoryCache(clock=clock)
    dry = convert_from_lucee(lucee, target, dry_run=True)
    assert (dry.copied, len(dry.skipped)) == (2, 1)
    assert list(target.keys()) == []
    report = convert_from_lucee(lucee, target)
    assert report.copied == 2
    assert [e.key for e in report.skipped] == ["Q"]
    assert target.get_all() == {"A": "a", "B": {"n": 1}}
    meta = target.metadata("B")
    assert meta.expires == datetime.fromtimestamp(1_700_000_100, UTC)  # Lucee's ttl
    assert lucee.on_foreign_entry is None  # restored


def test_convert_from_lucee_keeps_what_the_target_holds_newer(
    lucee: LuceeDynamoDBCache, make: Make, clock: FakeClock
) -> None:
    """The application, switched to the target, wrote ``A`` after Lucee last did: the
    conversion must not put Lucee's older value over it (on main it did); an older target
    entry is replaced, and another program's unreadable item is never overwritten."""
    for pk in ("A", "B", "C", "D"):
        _plant(lucee, _lucee_item(pk, {"S": f"lucee {pk}"}))  # updatedTime T0 - 0.25 s
    app_clock = FakeClock(T0 - 100)
    target = make(clock=app_clock, settings={"tableName": lucee.table_name + "_target"})
    target.put("B", "older than Lucee's")
    app_clock.advance(200)
    target.put("A", "written by the app")
    junk = {target.key_name: {"S": "C"}, "value": {"B": b"\x99junk"}}
    _plant(target, junk)
    dry = convert_from_lucee(lucee, target, dry_run=True)
    assert (dry.copied, dry.kept_newer, dry.skipped_count) == (2, 1, 1)
    report = convert_from_lucee(lucee, target)
    assert (report.copied, report.kept_newer, report.skipped_count) == (2, 1, 1)
    assert report.skipped[0].key == "C"
    assert "cannot read" in report.skipped[0].message
    assert target.get_many(["A", "B", "D"]) == {
        "A": "written by the app",
        "B": "lucee B",
        "D": "lucee D",
    }
    assert _raw(target, "C") == junk


def test_a_migrated_idle_entry_never_outlives_its_original(make: Make) -> None:
    """An entry with a live span of an hour and an idle span of a minute dies a minute
    after its last read. Lucee's ttl follows the live span and never slides, so the copy
    lived the whole hour (failed on main): its ttl is the earlier deadline."""
    from cachehub.migration import migrate

    target = make(settings={"itemFormat": "lucee"})
    source = MemoryCache(name="mem")
    source.put("both", "b", time_span=3600, idle_time=60)
    source.put("idle", "i", idle_time=60)
    source.put("short_live", "l", time_span=30, idle_time=600)
    accessed = {k: math.floor(source.peek(k).accessed) for k in ("both", "idle")}  # type: ignore[union-attr]
    report = migrate(source, target)
    assert (report.copied, report.idle) == (3, 3)

    def ttl(pk: str) -> int:
        raw = _raw(target, pk)
        assert raw is not None
        return int(raw["ttl"]["N"])

    assert ttl("BOTH") == accessed["both"] + 60
    assert ttl("IDLE") == accessed["idle"] + 60
    expires = source.peek("short_live").expires_at  # type: ignore[union-attr]
    assert ttl("SHORT_LIVE") == math.floor(expires)  # the live span ends first: kept
    assert _raw(target, "BOTH")["idle"] == {"N": "60000"}  # type: ignore[index]


def test_migrating_into_a_lucee_table_refuses_entries_one_by_one(make: Make, tmp_path: Any) -> None:
    """Keys and values the Lucee layout cannot hold are refused per entry, reported and
    retried by a rerun; the rest is copied. On main the first such key aborted the whole
    migration (every rerun too), and a refused value in a group with a TTL made the whole
    group count as 'expired before copy'."""
    from cachehub.migration import migrate

    target = make(settings={"itemFormat": "lucee"})
    source = MemoryCache(name="mem")
    source.put_many({"good": 1, "  ": "blank key", "k" * 3000: "long key"})
    source.put_many({"soon": "a", "set": {1, 2}, "later": "b"}, time_span=3600)
    source.put("idle", "c", idle_time=600)
    source.put("\t", "d", idle_time=600)
    resume = tmp_path / "resume.json"
    report = migrate(source, target, resume_file=resume, batch=100)
    assert report.complete
    assert report.copied == 4
    assert report.skipped_expired == 0
    assert report.unwritable == 4
    assert not report.succeeded
    refused = {item["key"]: item["error"] for item in report.first_unwritable}
    assert sorted(refused) == sorted(["  ", "k" * 3000, "set", "\t"])
    assert refused["  "].startswith("InvalidKeyError: key '  ' is empty once uppercased")
    assert refused["set"].startswith("SerializationError: a set cannot be stored")
    assert target.get_many(["good", "soon", "later", "idle"]) == {
        "good": 1,
        "soon": "a",
        "later": "b",
        "idle": "c",
    }
    assert target.metadata("soon").expires is not None
    assert report.verified is True  # the copies are right; the refused ones are listed
    # A rerun copies nothing again and tries the refused entries again.
    source.delete_many(["  ", "k" * 3000, "\t"])
    source.put("set", [1, 2], time_span=3600)
    again = migrate(source, target, resume_file=resume)
    assert (again.unchanged, again.copied, again.unwritable) == (4, 1, 0)
    assert again.succeeded
    assert target.get("set") == [1, 2]


def test_java_gzip_header_matches_python_zlib() -> None:
    # The writer's deflate stream is plain zlib: any inflater reads it.
    blob = encode_attr(datetime(2024, 1, 1, tzinfo=UTC))["B"]
    assert zlib.decompress(blob[10:-8], -15) == _java_date_stream(1_704_067_200_000)


def test_from_lucee_command_converts_and_reports(endpoint: str, table_name: str) -> None:
    from click.testing import CliRunner

    from cachehub.cli import cli
    from cachehub.cli.app import State
    from cachehub.registry import Caches

    custom = {"tableName": table_name, "host": endpoint, **CREDENTIALS, "itemFormat": "lucee"}
    target = {**custom, "tableName": table_name + "_target", "itemFormat": "cachehub"}
    config = {
        "lucee": {"class": "dynamodb", "custom": custom},
        "plain": {"class": "dynamodb", "custom": target},
    }

    def invoke(*args: str) -> Any:
        state = State()
        state._caches = Caches(config)  # closed by the command line when it ends
        return CliRunner().invoke(cli, list(args), obj=state)

    seed = Caches(config)
    try:
        source = seed["lucee"]
        assert isinstance(source, LuceeDynamoDBCache)
        source.connect()
        _plant(source, _lucee_item("USER_1", {"S": "a"}))
        _plant(source, _lucee_item("USER_2", {"N": "2"}))
        _plant(source, _lucee_item("OTHER", {"S": "o"}))
        query = gzip.compress(_java_object_stream("lucee.runtime.type.QueryImpl"))
        _plant(source, _lucee_item("USER_Q", {"B": query}))
        dry = invoke("from-lucee", "lucee", "plain", "--dry-run", "--json")
        assert dry.exit_code == 0, dry.output
        assert json.loads(dry.stdout)["copied"] == 3
        assert seed["plain"].get_all() == {}
        done = invoke("from-lucee", "lucee", "plain", "--filter", "user_*", "--json")
        assert done.exit_code == 0, done.output
        doc = json.loads(done.stdout)
        assert (doc["copied"], doc["skipped"]) == (2, 1)
        assert doc["unreadable"][0]["key"] == "USER_Q"
        assert "QueryImpl" in doc["unreadable"][0]["error"]
        assert seed["plain"].get_all() == {"USER_1": "a", "USER_2": 2}
        wrong = invoke("from-lucee", "plain", "lucee")
        assert wrong.exit_code != 0
        assert "itemFormat" in wrong.output
    finally:
        seed.close()


def test_values_beyond_the_item_limit_are_refused_before_sending(counted: Any) -> None:
    cache, counter = counted(settings={"itemFormat": "lucee"})
    cache.connect()
    counter.reset()
    with pytest.raises(CacheValueError, match="item limit"):
        cache.put("big", {"text": "x" * 420_000})
    with pytest.raises(CacheValueError, match="item limit"):
        cache.put("big", b"\x00" * 420_000)
    assert counter.calls == []


def test_request_budget(counted: Any) -> None:
    cache, counter = counted(settings={"itemFormat": "lucee"})
    cache.connect()
    counter.reset()
    cache.put("a", 1, time_span=60)
    assert cache.get("A") == 1
    assert cache.get_many(["a", "b"]) == {"a": 1}
    assert list(cache.keys()) == ["A"]
    assert cache.exists("a")
    assert cache.delete("a")
    assert counter.calls == [
        "UpdateItem",  # the put: one merge
        "GetItem",
        "BatchGetItem",
        "Scan",
        "GetItem",
        "DeleteItem",
    ]


def test_number_subclasses_are_written_as_their_numbers() -> None:
    class Sneaky(int):
        def __str__(self) -> str:
            return "not a number"

    class Flo(float):
        def __repr__(self) -> str:
            return "nope"

    assert encode_attr(Sneaky(7)) == {"N": "7"}
    assert encode_attr(Flo(0.5)) == {"N": "0.5"}
    assert encode_attr([True, 1]) == {"L": [{"BOOL": True}, {"N": "1"}]}


def test_scans_select_the_prefix_on_the_server(counted: Any) -> None:
    cache, _ = counted(settings={"itemFormat": "lucee", "namespace": "APP:"})
    cache.put("user_1", 1)
    sent: list[dict[str, Any]] = []
    cache.client.meta.events.register(
        "provide-client-params.dynamodb.Scan", lambda params, **_: sent.append(dict(params))
    )
    assert list(cache.keys("user*")) == ["USER_1"]
    assert sent[-1]["ExpressionAttributeValues"][":p"] == {"S": "APP:USER"}
    assert sent[-1]["FilterExpression"].startswith("begins_with(#pk, :p)")


def test_a_large_lucee_value_is_encoded_and_decoded_off_the_loop(
    lucee: LuceeDynamoDBCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: the Lucee layout encoded and decoded every value on the loop (5,000 rows:
    # 0 hops; now one per encode and per decode). Small values still cause none.
    rows = [{"id": i, "name": f"n{i}"} for i in range(5_000)]
    hops = count_hops(monkeypatch)

    async def scenario() -> list[Any]:
        shell = lucee.aio()
        await shell.put("small", {"a": 1})
        got: list[Any] = [await shell.get("small")]
        assert hops == []
        await shell.put("big", rows)
        await shell.add("big2", rows)
        got.append(await shell.get("big"))
        got.append(await shell.get_many(["big", "small"]))
        entry = await shell.peek("big2")
        got.append(None if entry is None else entry.value)
        await lucee._aclose()
        return got

    got = asyncio.run(scenario())
    assert got == [{"a": 1}, rows, {"big": rows, "small": {"a": 1}}, rows]
    assert hops == ["_encode", "_encode", "_decode", "_decode", "_decode"]


@pytest.mark.parametrize(
    ("stored", "delta"),
    [
        (str(2**63 - 1), 1),
        (str(-(2**63)), -1),
        ("9" * 38, 1),  # a Number of 38 digits: DynamoDB's own limit, far past 64 bits
        ("1E+30", 1),
        (str(2**62), 2**62),  # each fits, the sum does not
    ],
)
def test_incr_is_held_to_signed_64_bits_as_in_the_default_layout(
    lucee: LuceeDynamoDBCache, stored: str, delta: int
) -> None:
    # On main the Lucee layout added past 2**63 - 1 (and 10**38 - 1 to 10**38), where the
    # default layout refuses: counters are signed 64-bit on every provider.
    _plant(lucee, _lucee_item("C", {"N": stored}))
    with pytest.raises(CacheValueError, match="signed 64-bit"):
        lucee.incr("c", delta)
    item = _raw(lucee, "C")
    assert item is not None
    assert item["value"] == {"N": stored}  # nothing was written
    assert item["updatedTime"] == {"N": "1700000000000"}


def test_incr_within_the_range_still_adds(lucee: LuceeDynamoDBCache) -> None:
    _plant(lucee, _lucee_item("C", {"N": str(2**63 - 2)}))
    assert lucee.incr("c") == 2**63 - 1
    assert lucee.decr("c", 2**63 - 1) == 0
    assert lucee.incr("fresh", -(2**63)) == -(2**63)
