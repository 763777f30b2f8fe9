"""cachehub.codec: exact round trips, poisoned data, signing, compression, error messages."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime as dt
import decimal
import enum
import hmac
import json
import math
import pathlib
import pickle
import random
import struct
import uuid
import zlib
import zoneinfo
from typing import Any

import msgpack
import ormsgpack
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cachehub import codec as codec_module
from cachehub.codec import (
    FORMAT_PICKLE,
    FORMAT_PICKLE_ZLIB,
    FORMAT_SAFE,
    FORMAT_SAFE_ZLIB,
    FORMAT_SIGNED,
    FORMAT_SIGNED_ZLIB,
    MAX_DECOMPRESSED_SIZE,
    MAX_DEPTH,
    MAX_EXTENSION_DEPTH,
    PickleCodec,
    SafeCodec,
    _count_body,
    _count_value,
    _sign,
    make_codec,
)
from cachehub.errors import (
    ConfigError,
    CorruptEntryError,
    SerializationError,
    UnknownSigningKeyError,
)
from cachehub.query import Query, query_new

KEY = "correct horse battery staple"  # a test signing key (>= 16 characters)
OTHER_KEY = "another-signing-key-0123456789"
PARIS = zoneinfo.ZoneInfo("Europe/Paris")
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
PLUS_0530 = dt.timezone(dt.timedelta(hours=5, minutes=30))
NAMED = dt.timezone(dt.timedelta(hours=-3, seconds=7, microseconds=11), "Odd")

# --------------------------------------------------------------------------- exact equality


def _set_key(item: Any) -> Any:
    """A hashable stand-in for a set item under which equal items, NaN included, match."""
    if isinstance(item, float) and math.isnan(item):
        return ("nan", type(item))
    if isinstance(item, decimal.Decimal) and item.is_nan():
        return ("nan", type(item), item.as_tuple())
    if isinstance(item, tuple | frozenset):
        keys = map(_set_key, item)
        return (type(item), tuple(keys) if isinstance(item, tuple) else frozenset(keys))
    return (type(item), item)


def assert_exact(got: Any, want: Any, path: str = "value") -> None:
    """``got`` equals ``want`` down to every type; nan equals nan, -0.0 differs from 0.0."""
    assert type(got) is type(want), f"{path}: {type(got).__name__} != {type(want).__name__}"
    if isinstance(want, float):
        if math.isnan(want):
            assert math.isnan(got), path
        else:
            assert got == want, path
            assert math.copysign(1, got) == math.copysign(1, want), path  # -0.0 vs 0.0
    elif isinstance(want, decimal.Decimal):
        assert got.as_tuple() == want.as_tuple(), path  # sign, digits, exponent, NaN kind
    elif isinstance(want, dt.datetime | dt.time):
        assert (got.replace(tzinfo=None), got.fold) == (want.replace(tzinfo=None), want.fold), path
        assert_same_zone(got.tzinfo, want.tzinfo, path)
    elif isinstance(want, list | tuple):
        assert len(got) == len(want), path
        for index, (a, b) in enumerate(zip(got, want, strict=True)):
            assert_exact(a, b, f"{path}[{index}]")
    elif isinstance(want, dict):
        assert len(got) == len(want), path
        for (got_key, got_value), (key, value) in zip(got.items(), want.items(), strict=True):
            assert_exact(got_key, key, f"{path}<key {key!r}>")
            assert_exact(got_value, value, f"{path}[{key!r}]")
    elif isinstance(want, set | frozenset):
        # Items are matched by a key in which every NaN is one value: two NaN objects are
        # not equal, so a set holding one never equals its decoded copy under ==.
        by_key = {_set_key(item): item for item in got}
        assert len(by_key) == len(got) == len(want), path
        for item in want:
            key = _set_key(item)
            assert key in by_key, f"{path}: {item!r} missing"
            assert_exact(by_key[key], item, f"{path}<item {item!r}>")
    elif isinstance(want, Query):
        assert (got.columns, got.types) == (want.columns, want.types), path
        assert_exact(got.rows, want.rows, f"{path}.rows")
    else:
        assert got == want, path


def assert_same_zone(got: dt.tzinfo | None, want: dt.tzinfo | None, path: str) -> None:
    assert type(got) is type(want), f"{path}: tzinfo {got!r} != {want!r}"
    if isinstance(want, zoneinfo.ZoneInfo):
        assert got is want, path  # ZoneInfo(key) is cached: the same zone object
    elif want is not None:
        assert repr(got) == repr(want), path  # offset and explicit name


def roundtrip(codec: Any, value: Any) -> Any:
    data = codec.dumps(value)
    assert isinstance(data, bytes)
    return codec.loads(data)


def test_assert_exact_catches_type_changes() -> None:
    with pytest.raises(AssertionError):
        assert_exact([1], (1,))
    with pytest.raises(AssertionError):
        assert_exact({"a": 1.0}, {"a": 1})
    with pytest.raises(AssertionError):
        assert_exact(0.0, -0.0)
    with pytest.raises(AssertionError):
        assert_exact(dt.datetime(2020, 1, 1, tzinfo=dt.UTC), dt.datetime(2020, 1, 1, tzinfo=PARIS))


# --------------------------------------------------------------------------- round trips

CASES: list[tuple[str, Any]] = [
    ("str", "héllo ✓ 𝄞"),
    ("empty str", ""),
    ("int", 42),
    ("negative int", -7),
    ("uint64 max", 2**64 - 1),
    ("int64 min", -(2**63)),
    ("beyond 64 bits", 2**64),
    ("below int64", -(2**63) - 1),
    ("huge int", 3**500),
    ("huge negative int", -(7**300)),
    ("float", 1.25),
    ("inf", math.inf),
    ("-inf", -math.inf),
    ("nan", math.nan),
    ("-0.0", -0.0),
    ("Decimal", decimal.Decimal("-12.3400")),
    ("Decimal exponent", decimal.Decimal("1.20E+7")),
    ("Decimal -0", decimal.Decimal("-0")),
    ("Decimal NaN", decimal.Decimal("NaN")),
    ("Decimal sNaN", decimal.Decimal("-sNaN123")),
    ("Decimal Infinity", decimal.Decimal("-Infinity")),
    ("True", True),
    ("False", False),
    ("None", None),
    ("bytes", b"\x00\xffbin"),
    ("bytearray", bytearray(b"\x00mutable")),
    ("naive datetime", dt.datetime(2024, 2, 29, 23, 59, 59, 999_999)),
    ("naive datetime fold", dt.datetime(2024, 11, 3, 1, 30, fold=1)),
    ("UTC datetime", dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC)),
    ("UTC datetime fold", dt.datetime(2024, 1, 2, tzinfo=dt.UTC, fold=1)),
    ("UTC datetime year 1", dt.datetime(1, 1, 1, tzinfo=dt.UTC)),
    ("UTC datetime year 9999", dt.datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=dt.UTC)),
    ("UTC before 1970", dt.datetime(1969, 12, 31, 23, 59, 59, 1, tzinfo=dt.UTC)),
    ("fixed offset", dt.datetime(2024, 5, 6, 7, 8, tzinfo=PLUS_0530)),
    ("named offset", dt.datetime(2024, 5, 6, 7, 8, tzinfo=NAMED)),
    ("ZoneInfo", dt.datetime(2024, 7, 1, 12, tzinfo=PARIS)),
    ("ZoneInfo ambiguous fold", dt.datetime(2024, 11, 3, 1, 30, tzinfo=NEW_YORK, fold=1)),
    ("ZoneInfo UTC", dt.datetime(2024, 1, 1, tzinfo=zoneinfo.ZoneInfo("UTC"))),
    ("date", dt.date(2024, 2, 29)),
    ("time", dt.time(23, 59, 59, 999_999)),
    ("time fold", dt.time(1, 30, fold=1)),
    ("time fixed offset", dt.time(8, 0, tzinfo=PLUS_0530)),
    ("time ZoneInfo", dt.time(8, 0, tzinfo=PARIS)),
    ("timedelta", dt.timedelta(days=-3, seconds=5, microseconds=7)),
    ("timedelta max", dt.timedelta.max),
    ("UUID", uuid.UUID("12345678-1234-5678-1234-567812345678")),
    ("list", [1, "a", None]),
    ("tuple", (1, "a", None)),
    ("empty tuple", ()),
    ("set", {1, "a", (2, 3)}),
    ("frozenset", frozenset({1, frozenset({2})})),
    ("empty set", set()),
    ("dict", {"a": 1, "b": [2, 3]}),
    ("non-str keys", {1: "int", (1, 2): "tuple", frozenset({3}): "frozenset", None: 0}),
    ("mixed keys", {"a": 1, 2: "b", 2.5: "c", b"k": "bytes", True: "bool"}),
    ("datetime keys", {dt.datetime(2020, 1, 1, tzinfo=PARIS): 1, dt.date(2020, 1, 1): 2}),
    ("nested tuples", (1, (2, (3, [4, (5,)])))),
    ("bytearray deep", {"a": [1, (2, {"b": bytearray(b"x")})]}),
    (
        "mixed zones",
        [dt.datetime(2020, 1, 1, tzinfo=dt.UTC), dt.datetime(2020, 1, 1, tzinfo=PARIS)],
    ),
    ("Query", query_new("id,name", "integer,varchar", [[1, "Alice"], [2, "Bob"]])),
    ("Query untyped", query_new("a", rows=[[(1, 2)], [bytearray(b"q")], [{"x": {1}}]])),
    ("Query empty", query_new("")),
    (
        "mixed",
        {
            "users": [
                {"id": 1, "seen": dt.datetime(2024, 1, 1, tzinfo=dt.UTC), "tags": ("a", "b")},
                {
                    "id": 2,
                    "seen": None,
                    "score": decimal.Decimal("9.50"),
                    "ids": {uuid.UUID(int=1)},
                },
            ],
            (1, "composite"): [dt.timedelta(hours=1), dt.date(2000, 1, 1), b"raw"],
        },
    ),
]


@pytest.mark.parametrize(("label", "value"), CASES, ids=[label for label, _ in CASES])
@pytest.mark.parametrize("threshold", [0, 1])
def test_safe_codec_round_trips_exactly(label: str, value: Any, threshold: int) -> None:
    assert_exact(roundtrip(make_codec("safe", compress_threshold=threshold), value), value)


@pytest.mark.parametrize(("label", "value"), CASES, ids=[label for label, _ in CASES])
def test_pickle_codec_round_trips_exactly(label: str, value: Any) -> None:
    assert_exact(roundtrip(make_codec("pickle", signing_key=KEY), value), value)


def test_safe_payloads_start_with_their_format_byte() -> None:
    assert make_codec("safe").dumps([1, 2])[0] == FORMAT_SAFE
    assert make_codec("safe", compress_threshold=10).dumps("x" * 100)[0] == FORMAT_SAFE_ZLIB
    assert make_codec("pickle", signing_key=KEY).dumps(1)[0] == FORMAT_SIGNED
    pickled = make_codec("pickle", signing_key=KEY, compress_threshold=10).dumps("x" * 100)
    assert pickled[0] == FORMAT_SIGNED_ZLIB


# 2024-01-02 03:04:05.000006 in timezone.utc as the encoder wrote it before it wrote
# Timestamps: extension 7 (ext 8 header c7 13 07), the 10-byte state, zone kind 1, offset 0.
UTC_AS_EXTENSION_7 = bytes.fromhex("01c71307" + "07e8010203040500000601" + "00" * 8)


def test_utc_datetimes_are_timestamps_and_older_forms_still_decode() -> None:
    codec = make_codec("safe")
    utc = dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC)
    data = codec.dumps(utc)
    assert data == bytes([FORMAT_SAFE]) + b"\xc7\x0c\xff" + struct.pack(">Iq", 6000, 1704164645)
    assert msgpack.unpackb(data[1:], timestamp=3) == utc  # msgpack's own Timestamp (-1)
    assert_exact(codec.loads(data), utc)
    # fold=1 keeps extension 7, which carries fold; so do other zones at offset 0
    folded = utc.replace(fold=1)
    assert msgpack.unpackb(codec.dumps(folded)[1:]).code == 7
    assert_exact(codec.loads(codec.dumps(folded)), folded)
    named = utc.replace(tzinfo=dt.timezone(dt.timedelta(0), "UTC"))
    assert msgpack.unpackb(codec.dumps(named)[1:]).code == 7
    assert_exact(codec.loads(codec.dumps(named)), named)
    # entries written between ormsgpack and Timestamps: extension 7 with a zero offset
    assert_exact(codec.loads(UTC_AS_EXTENSION_7), utc)
    assert_exact(make_codec("pickle", signing_key=KEY).loads(UTC_AS_EXTENSION_7), utc)
    # entries written before ormsgpack hold msgpack's Timestamp (-1) for UTC datetimes
    for value in (utc, [utc, {"at": utc}], (utc,), dt.datetime(1969, 1, 1, tzinfo=dt.UTC)):
        old = bytes([FORMAT_SAFE]) + msgpack.packb(value, datetime=True, strict_types=False)
        assert b"\xff" in old  # the Timestamp extension
        got = codec.loads(old)
        want = list(value) if isinstance(value, tuple) else value  # msgpack lost the tuple
        assert_exact(got, want)
        assert_exact(make_codec("pickle", signing_key=KEY).loads(old), want)


PAYLOADS_BEFORE_ORMSGPACK: dict[str, str] = json.loads(
    (pathlib.Path(__file__).parent / "codec_payloads_msgpack.json").read_text()
)["payloads"]
UTC_AS_TIMESTAMP = {  # their UTC datetimes: written as Timestamps (-1), but not the same ones
    "mixed zones",  # the msgpack encoder wrote extension 7 for UTC beside other zones
    "UTC datetime",
    "UTC datetime year 1",
    "UTC datetime year 9999",
    "UTC before 1970",
    "mixed",
}


@pytest.mark.parametrize(("label", "value"), CASES, ids=[label for label, _ in CASES])
def test_payloads_are_byte_identical_to_the_msgpack_encoder(label: str, value: Any) -> None:
    if label not in PAYLOADS_BEFORE_ORMSGPACK:
        pytest.skip("its order depends on str hashing")
    old = bytes.fromhex(PAYLOADS_BEFORE_ORMSGPACK[label])
    codec = make_codec("safe")
    assert_exact(codec.loads(old), value)  # entries written before ormsgpack stay readable
    if label not in UTC_AS_TIMESTAMP:
        assert codec.dumps(value) == old


def test_datetime_state_layout_is_the_documented_one() -> None:
    # docs/codec.md documents the 10-byte state; the encoder takes it from __reduce_ex__
    value = dt.datetime(2024, 11, 3, 1, 30, 59, 123_456, fold=1)
    year, month, day, hour, minute, second = value.timetuple()[:6]
    expected = struct.pack(">HBBBBB", year, month | 0x80, day, hour, minute, second)
    expected += value.microsecond.to_bytes(3, "big")
    data = make_codec("safe").dumps(value)
    assert msgpack.unpackb(data[1:]) == msgpack.ExtType(7, expected)


# --------------------------------------------------------------------------- hypothesis

_ZONES = st.sampled_from([None, dt.UTC, PLUS_0530, NAMED, PARIS, NEW_YORK])
_hashable_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
    | st.decimals(allow_nan=False)
    | st.datetimes(timezones=_ZONES)
    | st.dates()
    | st.times(timezones=_ZONES)
    | st.timedeltas()
    | st.uuids()
)
_hashables = st.recursive(
    _hashable_leaves,
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3),
    max_leaves=6,
)
_leaves = (
    _hashable_leaves
    | st.floats()
    | st.decimals()
    | st.binary().map(bytearray)
    | st.integers(min_value=2**64)
)
_queries = st.lists(st.tuples(_leaves, _leaves), max_size=3).map(
    lambda rows: Query(("a", "b"), tuple(rows), ("object", "object"))
)
values = st.recursive(
    _leaves | _queries,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.sets(_hashables, max_size=4)
        | st.frozensets(_hashables, max_size=4)
        | st.dictionaries(_hashables | st.text(), inner, max_size=4)
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=values, threshold=st.sampled_from([0, 1, 64]))
def test_safe_codec_round_trip_property(value: Any, threshold: int) -> None:
    assert_exact(roundtrip(make_codec("safe", compress_threshold=threshold), value), value)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=values)
def test_pickle_codec_reads_safe_payloads(value: Any) -> None:
    safe = make_codec("safe").dumps(value)
    assert_exact(make_codec("pickle", signing_key=KEY).loads(safe), value)


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=200))
def test_random_bytes_decode_or_raise_corrupt_entry(data: bytes) -> None:
    for codec in (make_codec("safe"), make_codec("pickle", signing_key=KEY)):
        with contextlib.suppress(CorruptEntryError):
            codec.loads(data)


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=200), marker=st.sampled_from([FORMAT_SAFE, FORMAT_SAFE_ZLIB]))
def test_random_bodies_behind_a_valid_marker_never_escape(body: bytes, marker: int) -> None:
    with contextlib.suppress(CorruptEntryError):
        make_codec("safe").loads(bytes([marker]) + body)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=values, threshold=st.sampled_from([0, 1]), cut=st.integers(min_value=1))
def test_truncated_payloads_raise_corrupt_entry(value: Any, threshold: int, cut: int) -> None:
    for codec in (
        make_codec("safe", compress_threshold=threshold),
        make_codec("pickle", signing_key=KEY, compress_threshold=threshold),
    ):
        data = codec.dumps(value)
        with pytest.raises(CorruptEntryError):
            codec.loads(data[: len(data) - 1 - cut % len(data)])


@pytest.mark.parametrize(("label", "value"), CASES[:20], ids=[label for label, _ in CASES[:20]])
def test_every_prefix_of_a_payload_is_rejected(label: str, value: Any) -> None:
    codec = make_codec("safe")
    data = codec.dumps(value)
    for end in range(len(data)):
        with pytest.raises(CorruptEntryError):
            codec.loads(data[:end])


# --------------------------------------------------------------------------- poisoned data


class Exploit:
    """Unpickling this creates the marker file: proof that code from the bytes ran."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (pathlib.Path.touch, (self.marker,))


@pytest.fixture
def exploit(tmp_path: pathlib.Path) -> tuple[bytes, pathlib.Path]:
    marker = tmp_path / "pwned"
    blob = pickle.dumps(Exploit(marker), protocol=5)
    pickle.loads(blob)  # the blob really is armed...
    assert marker.exists()
    marker.unlink()  # ...and disarmed again for the test
    return blob, marker


def test_safe_codec_never_unpickles_a_planted_pickle(exploit: tuple[bytes, pathlib.Path]) -> None:
    blob, marker = exploit
    codec = make_codec("safe")
    planted = [
        blob,
        bytes([FORMAT_SAFE]) + blob,
        bytes([FORMAT_SAFE_ZLIB]) + zlib.compress(blob),
        bytes([FORMAT_PICKLE]) + b"\x00" * 32 + blob,
        make_codec("pickle", signing_key=KEY).dumps(Exploit(marker)),  # validly signed, too
    ]
    for data in planted:
        with contextlib.suppress(CorruptEntryError):
            codec.loads(data)
        assert not marker.exists()
    with pytest.raises(CorruptEntryError, match="raw pickle"):
        codec.loads(blob)
    with pytest.raises(CorruptEntryError, match="never unpickles"):
        codec.loads(planted[-1])


def test_pickle_codec_rejects_unsigned_or_foreign_pickles(
    exploit: tuple[bytes, pathlib.Path],
) -> None:
    blob, marker = exploit
    codec = make_codec("pickle", signing_key=KEY)
    forged = [
        blob,  # no envelope at all
        bytes([FORMAT_PICKLE]) + b"\x00" * 32 + blob,  # zero signature
        bytes([FORMAT_PICKLE]) + blob,  # no signature
        make_codec("pickle", signing_key=OTHER_KEY).dumps(Exploit(marker)),  # another key
        make_codec("pickle", signing_key=OTHER_KEY, compress_threshold=1).dumps(Exploit(marker)),
    ]
    for data in forged:
        with pytest.raises(CorruptEntryError):
            codec.loads(data)
        assert not marker.exists()


def test_tampering_with_a_signed_payload_is_detected() -> None:
    codec = make_codec("pickle", signing_key=KEY)
    data = bytearray(codec.dumps({"amount": 10}))
    for index in range(len(data)):
        tampered = data.copy()
        tampered[index] ^= 0x01
        with pytest.raises(CorruptEntryError):
            codec.loads(bytes(tampered))
    with pytest.raises(CorruptEntryError, match="signature does not match"):
        codec.loads(bytes(data[:-1]) + b"\x00")


def test_marker_swap_between_compressed_and_plain_is_detected() -> None:
    codec = make_codec("pickle", signing_key=KEY, compress_threshold=1)
    data = codec.dumps("x" * 200)
    assert data[0] == FORMAT_SIGNED_ZLIB
    with pytest.raises(CorruptEntryError, match="signature"):
        codec.loads(bytes([FORMAT_SIGNED]) + data[1:])


def _ext(code: int, payload: bytes) -> bytes:
    """A safe-codec body holding one extension value (format byte 0x01)."""
    return b"\x01" + msgpack.packb(msgpack.ExtType(code, payload))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"\x80\x05K\x01.", "raw pickle"),
        (b"\x78\x9c\x03\x00", "bare zlib"),
        (b"\x7fjunk", "format byte 0x7f is unknown"),
        (b"\x01", "msgpack body is invalid"),
        (b"\x01\x92\x01", "msgpack body is invalid"),
        (b"\x01\x01\x02", "msgpack body is invalid"),  # trailing data
        (b"\x02not zlib", "compressed body is invalid"),
        (b"\x02" + zlib.compress(b"\x01")[:-2], "truncated"),
        (b"\x02" + zlib.compress(b"\x01") + b"tail", "extra bytes"),
        (b"\x01" + msgpack.packb(msgpack.ExtType(99, b"")), "unknown extension type 99"),
        (b"\x01" + msgpack.packb(msgpack.ExtType(7, b"\x07\xe8\x02\x1e" + bytes(6))), "invalid"),
        (b"\x01" + msgpack.packb(msgpack.ExtType(7, b"\x07\xe8\x02\x01\x19" + bytes(5))), "inv"),
        (b"\x01" + msgpack.packb(msgpack.ExtType(7, b"\x07\xe8\x0d\x01" + bytes(6))), "invalid"),
        (b"\x01" + msgpack.packb(msgpack.ExtType(7, bytes(10) + b"\x09")), "invalid"),
        (b"\x01" + msgpack.packb(msgpack.ExtType(7, bytes(10) + b"\x03../x")), "invalid"),
        (b"\x01" + msgpack.packb(msgpack.ExtType(6, b"not a number")), "invalid"),
        (b"\x01" + msgpack.packb(msgpack.ExtType(11, b"short")), "invalid"),
        (b"\x01" + msgpack.packb(msgpack.ExtType(3, msgpack.packb([[1]]))), "unhashable"),
        (b"\x01" + msgpack.packb(msgpack.ExtType(2, msgpack.packb({"a": 1}))), "expected a list"),
        (
            b"\x01" + msgpack.packb(msgpack.ExtType(12, msgpack.packb([["a"], [[1, 2]], None]))),
            "row",
        ),
        (b"\x01" + msgpack.packb({(1,): 2}, use_bin_type=True, strict_types=False), "unhashable"),
        # Fields outside timedelta's normal form: timedelta() folded them into days and
        # read a value no writer produced (4e9 seconds).
        (_ext(10, struct.pack(">iII", 0, 2**32 - 1, 2**32 - 1)), "timedelta has out-of-range"),
        (_ext(10, struct.pack(">iII", 0, 86_400, 0)), "timedelta has out-of-range"),
        (_ext(10, struct.pack(">iII", 1, 0, 1_000_000)), "timedelta has out-of-range"),
        # A big int padded past its minimal length (200,000 bytes of 0xff read as -1).
        (_ext(1, b"\xff" * 200_000), "not in its minimal length"),
        (_ext(1, (2**70).to_bytes(9, "little", signed=True) + b"\x00"), "not in its minimal"),
        (_ext(1, b""), "not in its minimal length"),
    ],
)
def test_corrupt_payloads_raise_with_a_clear_reason(data: bytes, message: str) -> None:
    for codec in (make_codec("safe"), make_codec("pickle", signing_key=KEY)):
        with pytest.raises(CorruptEntryError, match=message):
            codec.loads(data)


def test_the_edges_of_the_normal_forms_still_read() -> None:
    codec = make_codec("safe")
    assert codec.loads(_ext(10, struct.pack(">iII", -1, 86_399, 999_999))) == dt.timedelta(
        days=-1, seconds=86_399, microseconds=999_999
    )
    for value in (2**64, -(2**64) - 1, 2**71 - 1, -(2**71)):
        size = (value.bit_length() + 8) // 8
        assert codec.loads(_ext(1, value.to_bytes(size, "little", signed=True))) == value


def test_deeply_nested_extension_bytes_are_corrupt_not_a_crash() -> None:
    inner = msgpack.packb([])
    for _ in range(5000):  # tuples inside tuples, deeper than Python's recursion limit
        inner = msgpack.packb(msgpack.ExtType(2, msgpack.packb([msgpack.ExtType(2, inner)])))
    with pytest.raises(CorruptEntryError):
        make_codec("safe").loads(b"\x01" + inner)


def test_non_bytes_input_is_corrupt() -> None:
    with pytest.raises(CorruptEntryError, match="expected bytes"):
        make_codec("safe").loads("text")  # type: ignore[arg-type]
    assert make_codec("safe").loads(memoryview(make_codec("safe").dumps([1]))) == [1]


# --------------------------------------------------------------------------- pickle codec


class Point:
    """A user class the safe codec refuses and the pickle codec stores."""

    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

    __hash__ = None  # type: ignore[assignment]


def test_signed_pickle_round_trips_a_user_class() -> None:
    codec = make_codec("pickle", signing_key=KEY, compress_threshold=16)
    for value in (Point(1, 2), [Point(i, -i) for i in range(50)], collections.OrderedDict(a=1)):
        assert_exact(roundtrip(codec, value), value)


def test_enabling_pickle_keeps_safe_entries_readable() -> None:
    value = {"when": dt.datetime(2024, 1, 1, tzinfo=PARIS), "ids": (1, 2)}
    for threshold in (0, 1):
        old = make_codec("safe", compress_threshold=threshold).dumps(value)
        assert_exact(make_codec("pickle", signing_key=KEY).loads(old), value)


@pytest.mark.parametrize("key", [None, "", "short-key", "x" * 15])
def test_pickle_codec_requires_a_long_signing_key(key: str | None) -> None:
    with pytest.raises(ConfigError, match="signingKey") as caught:
        make_codec("pickle", signing_key=key)
    assert "custom settings" in str(caught.value)
    if key:
        assert key not in str(caught.value)


def test_pickle_codec_refuses_a_non_string_key() -> None:
    with pytest.raises(ConfigError, match="must be a string"):
        PickleCodec(b"0123456789abcdef0123")  # type: ignore[arg-type]


def test_the_signing_key_never_appears_in_messages_or_repr() -> None:
    codec = make_codec("pickle", signing_key=KEY, compress_threshold=10)
    texts = [repr(codec), str(codec)]
    for action in (
        lambda: codec.loads(make_codec("pickle", signing_key=OTHER_KEY).dumps(1)),
        lambda: codec.loads(b"\x03" + b"\x00" * 40),
        lambda: codec.loads(b"\x03short"),
        lambda: codec.loads(b"\x80junk"),
        lambda: codec.dumps(lambda: None),
    ):
        with pytest.raises((CorruptEntryError, SerializationError)) as caught:
            action()
        texts.append(str(caught.value))
        texts.append(repr(caught.value))
    assert "<hidden>" in repr(codec)
    for text in texts:
        assert KEY not in text
        assert KEY.encode().hex() not in text


def test_pickle_codec_reports_unpicklable_values() -> None:
    codec = make_codec("pickle", signing_key=KEY)
    with pytest.raises(SerializationError, match="pickle codec cannot store this function"):
        codec.dumps(lambda: None)


def test_signed_pickle_of_a_vanished_class_is_corrupt() -> None:
    codec = make_codec("pickle", signing_key=KEY)
    data = codec.dumps(Point(1, 2), "k")
    body = data[41:].replace(b"Point", b"Pnint")  # as if the class had been renamed
    forged = data[:9] + _sign(KEY.encode(), data[:9], "k", body) + body
    with pytest.raises(CorruptEntryError, match="renamed or removed"):
        codec.loads(forged, "k")


# --------------------------------------------------------------------------- compression


def test_compression_threshold_below_and_above() -> None:
    codec = make_codec("safe", compress_threshold=100)
    small, large = "a" * 50, "a" * 10_000
    assert codec.dumps(small)[0] == FORMAT_SAFE
    compressed = codec.dumps(large)
    assert compressed[0] == FORMAT_SAFE_ZLIB
    assert len(compressed) < len(make_codec("safe").dumps(large)) / 20  # highly repetitive
    assert codec.loads(compressed) == large
    assert make_codec("safe").dumps(large)[0] == FORMAT_SAFE  # 0 disables


def test_threshold_is_exclusive_and_compares_the_encoded_size() -> None:
    value = "b" * 300
    size = len(make_codec("safe").dumps(value)) - 1  # minus the format byte
    assert make_codec("safe", compress_threshold=size).dumps(value)[0] == FORMAT_SAFE
    assert make_codec("safe", compress_threshold=size - 1).dumps(value)[0] == FORMAT_SAFE_ZLIB


def test_incompressible_payloads_are_stored_plain() -> None:
    noise = random.Random(7).randbytes(4096)  # deterministic, and zlib cannot shrink it
    codec = make_codec("safe", compress_threshold=1)
    data = codec.dumps(noise)
    assert data[0] == FORMAT_SAFE
    assert codec.loads(data) == noise


def test_decompression_bomb_is_refused() -> None:
    bomb = bytes([FORMAT_SAFE_ZLIB]) + zlib.compress(b"\x00" * (MAX_DECOMPRESSED_SIZE + 1), 9)
    assert len(bomb) < 100_000
    for codec in (make_codec("safe"), make_codec("pickle", signing_key=KEY)):
        with pytest.raises(CorruptEntryError, match="decompression"):
            codec.loads(bomb)


def test_decompression_limit_applies_to_signed_pickles_too() -> None:
    writer = PickleCodec(KEY, compress_threshold=1)
    reader = PickleCodec(KEY, max_decompressed_size=1000)
    data = writer.dumps("z" * 5000)
    assert data[0] == FORMAT_SIGNED_ZLIB
    with pytest.raises(CorruptEntryError, match="decompression"):
        reader.loads(data)


def test_values_beyond_the_limit_are_refused_when_written_so_all_written_stays_readable() -> None:
    codec = SafeCodec(compress_threshold=10, max_value_size=1000)
    with pytest.raises(SerializationError, match=r"5003 bytes, more than maxValueSize \(1000"):
        codec.dumps("y" * 5000)
    assert codec.loads(codec.dumps("y" * 990)) == "y" * 990


# --------------------------------------------------------------------------- error messages


class Foo:
    """Not storable by the safe codec."""


class Color(enum.IntEnum):
    RED = 1


class Tag(str):
    """A str subclass: would come back as a plain str."""


@pytest.mark.parametrize(
    ("value", "where", "what", "fix"),
    [
        ({"a": [0, 1, 2, Foo()]}, "value['a'][3]", "test_codec.Foo", "codec 'pickle'"),
        (Foo(), "value", "test_codec.Foo", "convert it to supported types"),
        ([lambda: None], "value[0]", "function", "codec 'pickle'"),
        ({"k": (1, Color.RED)}, "value['k'][1]", "Color", "plain int"),
        ([collections.OrderedDict(a=1)], "value[0]", "OrderedDict", "plain dict"),
        ({"name": Tag("x")}, "value['name']", "Tag", "plain str"),
        ({1: {Foo()}}, "value[1]<set item>", "Foo", "codec 'pickle'"),
        ({(1, Foo()): 1}, "value<key", "Foo", "codec 'pickle'"),
        (query_new("a", rows=[[1], [Foo()]]), "value.rows[1][0]", "Foo", "codec 'pickle'"),
        ({"v": memoryview(b"x")}, "value['v']", "memoryview", "bytes(view)"),
        ({"s": "\udc80"}, "value['s']", "unpaired surrogates", "surrogatepass"),
    ],
)
def test_unsupported_values_name_type_path_and_fix(
    value: Any, where: str, what: str, fix: str
) -> None:
    with pytest.raises(SerializationError) as caught:
        make_codec("safe").dumps(value)
    message = str(caught.value)
    assert where in message
    assert what in message
    assert fix in message
    assert "safe codec" in message or "UTF-8" in message


def test_unsupported_tzinfo_is_reported_on_its_datetime() -> None:
    class Local(dt.tzinfo):
        def utcoffset(self, when: dt.datetime | None) -> dt.timedelta:
            return dt.timedelta(hours=1)

    value = {"at": [dt.datetime(2024, 1, 1, tzinfo=Local())]}
    with pytest.raises(SerializationError, match=r"value\['at'\]\[0\] is a datetime with a tz"):
        make_codec("safe").dumps(value)
    utc_file = next(path for path in map(pathlib.Path, zoneinfo.TZPATH) if (path / "UTC").exists())
    with open(utc_file / "UTC", "rb") as tzif:
        keyless = zoneinfo.ZoneInfo.from_file(tzif)  # a zone without a key cannot be named
    with pytest.raises(SerializationError, match=r"value is a datetime with a tzinfo"):
        make_codec("safe").dumps(dt.datetime(2024, 1, 1, tzinfo=keyless))


def test_cycles_and_excessive_nesting_are_serialization_errors() -> None:
    cyclic: list[Any] = [1]
    cyclic.append(cyclic)
    deep: Any = []
    for _ in range(2000):
        deep = [deep]
    deep_tuple: Any = ()
    for _ in range(2000):
        deep_tuple = (deep_tuple,)
    for value in (cyclic, deep, deep_tuple, {"a": cyclic}):
        with pytest.raises(SerializationError, match="nested"):
            make_codec("safe").dumps(value)


def test_a_failed_encode_leaves_the_codec_usable() -> None:
    codec = make_codec("safe")
    with pytest.raises(SerializationError):
        codec.dumps([1, Foo()])
    assert codec.loads(codec.dumps([1, 2])) == [1, 2]


# --------------------------------------------------------------------------- make_codec


def test_make_codec_validates_its_arguments() -> None:
    assert make_codec("safe").name == "safe"
    assert make_codec("pickle", signing_key=KEY).name == "pickle"
    assert repr(make_codec("safe", compress_threshold=5)) == (
        "SafeCodec(compress_threshold=5, max_value_size=16777216)"
    )
    with pytest.raises(ConfigError, match="unknown codec 'json'"):
        make_codec("json")
    with pytest.raises(ConfigError, match="0 or more"):
        make_codec("safe", compress_threshold=-1)
    with pytest.raises(ConfigError, match="must be an integer"):
        make_codec("safe", compress_threshold=True)


# --------------------------------------------------------------------------- ormsgpack's own ways
# ormsgpack packs some types natively where msgpack called the hook, and reads less than
# msgpack. Each case below is one such difference, and how the safe codec keeps its rules.


@dataclasses.dataclass
class Record:
    """ormsgpack would pack a dataclass as a map: it must be refused, like any class."""

    x: int = 1


class Size(enum.Enum):
    SMALL = "s"


@pytest.mark.parametrize(
    ("value", "what", "fix"),
    [
        ([Record()], "Record", "codec 'pickle'"),
        ({"s": Size.SMALL}, "Size", "codec 'pickle'"),  # ormsgpack packs an enum's value
        ({"m": msgpack.ExtType(5, b"x")}, "ExtType", "codec 'pickle'"),  # msgpack packed it raw
        ({"d": collections.defaultdict(int)}, "defaultdict", "plain dict"),
        ({"t": collections.namedtuple("Pair", "a b")(1, 2)}, "Pair", "plain tuple"),
        ({"f": type("Money", (float,), {})(1.5)}, "Money", "plain float"),
        ({"b": type("Blob", (bytes,), {})(b"x")}, "Blob", "plain bytes"),
        ({"l": type("Items", (list,), {})([1])}, "Items", "plain list"),
    ],
    ids=[
        "dataclass",
        "enum",
        "msgpack ExtType",
        "defaultdict",
        "namedtuple",
        "float",
        "bytes",
        "list",
    ],
)
def test_types_ormsgpack_would_convert_are_refused(value: Any, what: str, fix: str) -> None:
    with pytest.raises(SerializationError) as caught:
        make_codec("safe").dumps(value)
    message = str(caught.value)
    assert what in message
    assert fix in message
    assert "value[" in message


def test_numpy_and_pydantic_objects_are_refused() -> None:
    np = pytest.importorskip("numpy")
    for value in (np.array([1, 2]), np.float64(1.5), np.int64(3), np.str_("x"), np.bool_(True)):
        with pytest.raises(SerializationError, match=r"value\[0\] is a numpy"):
            make_codec("safe").dumps([value])
    pydantic = pytest.importorskip("pydantic")

    class Model(pydantic.BaseModel):  # type: ignore[misc, name-defined]
        x: int = 1

    with pytest.raises(SerializationError, match="Model"):
        make_codec("safe").dumps({"m": Model()})


def test_ormsgpack_ext_and_fragment_are_written_raw() -> None:
    # Like msgpack.ExtType before ormsgpack: msgpack building blocks, written as they are
    # (finding them would cost a survey of every value). They do not come back as such.
    codec = make_codec("safe")
    assert codec.loads(codec.dumps([ormsgpack.Ext(5, b"x")])) == [bytearray(b"x")]
    assert codec.loads(codec.dumps({"f": ormsgpack.Fragment(b"\x91\x01")})) == {"f": [1]}


@pytest.mark.parametrize(
    "value",
    [
        bytearray(b"lone"),
        [bytearray(b"small")],
        {"a": [1, (2, bytearray(b"x"))], "b": b"bytes too"},
        [bytearray(b"x" * 100), "y" * 2000],  # a body beyond the counted length
        query_new("a", rows=[[bytearray(b"q")]]),
        {(1, 2): [bytearray(b"under a tuple key")]},
    ],
    ids=["lone", "small", "nested", "large", "query", "non-str key"],
)
def test_bytearrays_stay_bytearrays_wherever_they_are(value: Any) -> None:
    # ormsgpack packs a bytearray as bin, like bytes, with no option to hand it to the hook
    codec = make_codec("safe")
    assert_exact(codec.loads(codec.dumps(value)), value)


@pytest.mark.parametrize(
    "value",
    [memoryview(b"x"), [memoryview(b"x")], {"a": ["y" * 2000, memoryview(b"x")]}],
    ids=["lone", "small", "large"],
)
def test_memoryviews_are_refused_wherever_they_are(value: Any) -> None:
    with pytest.raises(SerializationError, match=r"memoryview.*bytes\(view\)"):
        make_codec("safe").dumps(value)


def nested_lists(levels: int, leaf: Any = 0) -> Any:
    value = leaf
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(
    "leaf",
    [0, b"bin", "z" * 2000, (1,), bytearray(b"buf")],
    ids=["small body", "with a bin", "long body", "tuple leaf", "bytearray leaf"],
)
def test_lists_and_dicts_nest_up_to_msgpacks_limit_whatever_the_body(leaf: Any) -> None:
    # 255 levels in one msgpack structure (ormsgpack's bound, which it also reads back);
    # the survey that runs for a bin header must not impose another limit
    codec = make_codec("safe")
    top = 254 if type(leaf) is tuple else 255  # a tuple is a level too
    for levels in (63, 64, 100, top):
        value = nested_lists(levels, leaf)
        assert_exact(codec.loads(codec.dumps(value)), value)
    value = nested_lists(top - 1, {"k": leaf})  # the dict is the 255th level
    assert_exact(codec.loads(codec.dumps(value)), value)
    for levels in (top + 1, 300):
        with pytest.raises(SerializationError, match="nested more than 255 levels"):
            codec.dumps(nested_lists(levels, leaf))


def nested_tuples(levels: int, leaf: Any = 0, *, lists: int = 0) -> Any:
    value = leaf
    for _ in range(levels):
        value = (nested_lists(lists, value),)
    return value


@pytest.mark.parametrize("lists", [0, 1, 3])
@pytest.mark.parametrize("leaf", [0, b"bin", bytearray(b"buf")], ids=["int", "bin", "buffer"])
def test_extension_types_nest_up_to_the_decoders_limit(lists: int, leaf: Any) -> None:
    # each tuple is its own call: the hook counts them, with the decoder's bound
    codec = make_codec("safe")
    value = nested_tuples(MAX_EXTENSION_DEPTH, leaf, lists=lists)
    assert_exact(codec.loads(codec.dumps(value)), value)
    with pytest.raises(SerializationError, match="nested more than 32 levels"):
        codec.dumps(nested_tuples(MAX_EXTENSION_DEPTH + 1, leaf, lists=lists))
    query = query_new("a", rows=[[nested_tuples(MAX_EXTENSION_DEPTH - 1, leaf)]])
    assert_exact(codec.loads(codec.dumps(query)), query)  # the query is a level too
    with pytest.raises(SerializationError, match="nested more than 32 levels"):
        codec.dumps(query_new("a", rows=[[nested_tuples(MAX_EXTENSION_DEPTH, leaf)]]))


def test_deep_values_with_buffers_and_shared_parts_round_trip() -> None:
    # deeper in all than the level-by-level survey goes (lists between the tuples): the
    # depth-first walk finds the bytearray, and a part met twice is shared, not a cycle
    inner = nested_lists(100, bytearray(b"x"))
    value = nested_lists(150, (inner, inner))
    codec = make_codec("safe")
    assert_exact(codec.loads(codec.dumps(value)), value)


def test_wide_values_that_contain_themselves_are_refused() -> None:
    wide: dict[Any, Any] = {f"k{i}": [i, "x"] for i in range(2000)}
    wide["self"] = wide
    keyed: dict[Any, Any] = {f"k{i}": [i, b"x"] for i in range(2000)}
    keyed[1] = 2  # a non-str key: ormsgpack refuses it before it meets the cycle
    keyed["self"] = [keyed]
    with pytest.raises(SerializationError, match="contains itself"):
        make_codec("safe").dumps(wide)
    with pytest.raises(SerializationError, match="contains itself"):
        make_codec("safe").dumps(keyed)


def test_failures_deep_inside_extension_types_are_reported_in_linear_time() -> None:
    # each tuple level once retried the failed call: 2**depth calls before the fix
    value: Any = "\ud800"
    for _ in range(30):
        value = (value,)
    with pytest.raises(SerializationError, match=r"value(\[0\]){30} is a str with unpaired"):
        make_codec("safe").dumps(value)


def test_cycles_through_extension_types_are_serialization_errors() -> None:
    cyclic: list[Any] = []
    cyclic.append((cyclic,))
    looped: dict[str, Any] = {}
    looped["q"] = query_new("a", rows=[[looped]])
    for value in (cyclic, looped, {1: cyclic}):
        with pytest.raises(SerializationError, match=r"nested|contains itself"):
            make_codec("safe").dumps(value)


@pytest.mark.parametrize("size", [3, 15, 16, 65_535, 65_536])
def test_dicts_with_non_str_keys_are_packed_like_msgpack(size: int) -> None:
    # ormsgpack only packs str keys (its OPT_NON_STR_KEYS would write tuple, datetime or
    # UUID keys as arrays and strings): the codec packs such maps itself, map header included
    value = {index if index % 3 else str(index): [index, None] for index in range(size)}
    value[None] = b"k" if size > 3 else 1.5  # type: ignore[index]
    data = make_codec("safe").dumps(value)
    assert data[1:] == msgpack.packb(value, strict_types=True)
    assert_exact(make_codec("safe").loads(data), value)


def test_non_str_keys_nested_anywhere_round_trip() -> None:
    when = dt.datetime(2024, 1, 1, tzinfo=PARIS)
    value = {
        "by id": {1: {"name": "a", "tags": {2: (3, {4: 5})}}},
        "rows": [{(1, "x"): {when: [dt.date(2020, 1, 1)]}}, {uuid.UUID(int=7): 1, 2**70: 2}],
        "set": {frozenset({(1, 2)})},
        "query": query_new("a", rows=[[{1: 2}]]),
        "keys": {True: 1, 2.5: 2, b"b": 3, None: 4, decimal.Decimal("1.5"): 5},
    }
    codec = make_codec("safe")
    assert_exact(codec.loads(codec.dumps(value)), value)


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({1: 1, Tag("k"): 2}, "value<key 'k'>"),
        ({"a": [{2: 1, Color.RED: 3}]}, "value['a'][0]<key"),
        ({1: {"\udc80": 1}}, "value[1]<key"),
    ],
    ids=["str subclass key", "IntEnum key", "surrogate key"],
)
def test_bad_keys_beside_non_str_keys_are_refused_with_their_path(value: Any, where: str) -> None:
    with pytest.raises(SerializationError) as caught:
        make_codec("safe").dumps(value)
    assert where in str(caught.value)


def test_hook_exceptions_keep_their_message_through_ormsgpack() -> None:
    # ormsgpack replaces what its hooks raise by a bare error: the codec keeps the original
    class Odd(dt.tzinfo):
        def utcoffset(self, when: dt.datetime | None) -> dt.timedelta:
            return dt.timedelta(0)

    value = (1, [dt.time(1, tzinfo=Odd())])
    with pytest.raises(SerializationError, match=r"value\[1\]\[0\] is a time with a tzinfo"):
        make_codec("safe").dumps(value)
    data = b"\x01" + msgpack.packb(
        [1, (msgpack.ExtType(2, msgpack.packb([msgpack.ExtType(99, b"")])))]
    )
    with pytest.raises(CorruptEntryError, match="unknown extension type 99"):
        make_codec("safe").loads(data)


@pytest.mark.parametrize(
    "data",
    [
        msgpack.packb([1, 2]) + b"\x00",
        msgpack.packb(msgpack.ExtType(2, msgpack.packb([1]) + b"\x02")),  # inside a tuple
        msgpack.packb({"a": msgpack.ExtType(3, msgpack.packb([1]) + b"\xc0")}),
    ],
    ids=["top level", "tuple items", "set items"],
)
def test_trailing_bytes_are_corrupt_though_ormsgpack_ignores_them(data: bytes) -> None:
    with pytest.raises(CorruptEntryError, match="msgpack body is invalid"):
        make_codec("safe").loads(b"\x01" + data)


def msgpack_verdict(body: bytes) -> tuple[str, Any]:
    """How the msgpack-based decoder (before ormsgpack) read ``body``."""
    codec_module._state.slow = True  # type: ignore[attr-defined]  # nested: msgpack too
    try:
        return "value", codec_module._slow_unpack(body)  # type: ignore[attr-defined]
    except Exception as exc:
        return "error", type(exc).__name__
    finally:
        codec_module._state.slow = False  # type: ignore[attr-defined]
        codec_module._state.failure = None  # type: ignore[attr-defined]


def _mutated(data: bytes, index: int, byte: int, tail: bytes) -> bytes:
    index %= len(data)
    return data[:index] + bytes([byte]) + data[index + 1 :] + tail


_int64 = st.integers(min_value=-(2**63), max_value=2**64 - 1)
_bodies = st.one_of(
    st.binary(max_size=64),
    st.builds(
        _mutated,
        values.map(lambda value: make_codec("safe").dumps(value)[1:]),
        st.integers(min_value=0),
        st.integers(min_value=0, max_value=255),
        st.sampled_from([b"", b"\x00", b"\xc0", b"\x91"]),
    ),
    st.recursive(
        st.none() | _int64 | st.text(max_size=3) | st.binary(max_size=3),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(_int64 | st.text(max_size=2) | st.none(), inner, max_size=3)
            | st.builds(msgpack.ExtType, st.integers(0, 13), st.binary(max_size=12))
            | st.builds(msgpack.Timestamp, st.integers(-(2**35), 2**35), st.integers(0, 10**9 - 1))
        ),
        max_leaves=8,
    ).map(lambda value: msgpack.packb(value, strict_types=False)),
    st.binary(max_size=13).map(lambda data: b"\xc7" + bytes([len(data)]) + b"\xff" + data),
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_bodies)
# NaN never equals itself: a set holding one must still match its decoded copy.
@example(body=make_codec("safe").dumps(frozenset({math.nan, 1.5, (math.nan,)}))[1:])
def test_ormsgpack_never_reads_what_msgpack_would_not(body: bytes) -> None:
    # ormsgpack decodes first and hands anything it cannot decide to msgpack: the result
    # must be msgpack's, value for value, error for error
    kind, want = msgpack_verdict(body)
    try:
        got = make_codec("safe").loads(b"\x01" + body)
    except CorruptEntryError:
        assert kind == "error", f"msgpack read {want!r}"
        return
    assert kind == "value", f"msgpack refused it ({want}), ormsgpack read {got!r}"
    assert_exact(got, want)


# --------------------------------------------------------------------------- issue #15: bounds


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=values)
def test_the_writer_and_the_reader_count_objects_alike(value: Any) -> None:
    # put() refuses by _count_value what loads() refuses by _count_body: they must agree
    body = make_codec("safe").dumps(value)[1:]
    assert _count_body(body, 10**9) == _count_value(value, 10**9)


def test_values_with_more_objects_than_the_reader_accepts_are_refused_when_written() -> None:
    codec = SafeCodec(max_value_size=8192)  # at most 1024 objects
    fits = [0] * 1023  # the list and its 1023 items
    assert codec.loads(codec.dumps(fits)) == fits
    with pytest.raises(SerializationError, match=r"more than 1024 objects.*raise maxValueSize"):
        codec.dumps([0] * 1024)
    with pytest.raises(SerializationError, match="more than 1024 objects"):
        codec.dumps(dict.fromkeys(range(600)))  # keys count too


@pytest.mark.parametrize(
    ("label", "body"),
    [
        ("empty maps", b"\xdd\x00\x00\x08\x00" + b"\x80" * 2048),
        ("nils in tuples", b"\xdd\x00\x00\x04\x00" + b"\xd5\x02\x91\xc0" * 1024),
        ("array lie", b"\xdd\x00\x00\x08\x00" + b"\xc0" * 100 + b"\xdd\xff\xff\xff\xff"),
        ("ext lie", b"\x92\xc4\xff" + b"\0" * 1300 + b"\xc9\xff\xff\xff\xff\x02\x90"),
    ],
)
def test_planted_bodies_beyond_the_object_bound_are_corrupt(label: str, body: bytes) -> None:
    codec = SafeCodec(max_value_size=8192)
    for data in (b"\x01" + body, b"\x02" + zlib.compress(body)):
        with pytest.raises(CorruptEntryError, match="cannot be decoded"):
            codec.loads(data)


def test_nested_payloads_are_bounded_along_a_path_when_written_and_read() -> None:
    codec = SafeCodec(max_value_size=64 * 1024)
    blob = b"x" * 20_000
    ok: Any = blob
    for _ in range(3):  # two nested payloads hold the blob: 40 KB along the path
        ok = (ok,)
    assert codec.loads(codec.dumps(ok)) == ok
    deep = ((ok,),)  # four nested payloads: 80 KB
    with pytest.raises(SerializationError, match=r"add up to .* bytes along one path"):
        codec.dumps(deep)
    # the same bytes, planted: refused when read
    planted = b"\x01" + make_codec("safe", max_value_size=1 << 20).dumps(deep)[1:]
    with pytest.raises(CorruptEntryError, match="bytes along one path"):
        codec.loads(planted)


def test_total_depth_counts_every_kind_of_container() -> None:
    codec = make_codec("safe")
    fits: Any = 1
    for level in range(MAX_DEPTH):
        fits = (fits,) if level % 10 == 0 else [fits]  # 26 tuples, 229 lists
    assert_exact(codec.loads(codec.dumps(fits)), fits)
    with pytest.raises(SerializationError, match=r"nested more than 255 levels deep \(lists"):
        codec.dumps([fits])


@pytest.mark.parametrize("size", [True, "16", 1023, 2**30 + 1, -1])
def test_max_value_size_is_validated(size: Any) -> None:
    with pytest.raises(ConfigError, match="maxValueSize must be") as caught:
        make_codec("safe", max_value_size=size)
    assert "Fix:" in str(caught.value)


# --------------------------------------------------------------------------- issue #15: signatures


def test_signatures_bind_the_storage_key() -> None:
    codec = make_codec("pickle", signing_key=KEY)
    data = codec.dumps({"a": 1}, "ns:k")
    assert codec.loads(data, "ns:k") == {"a": 1}
    for other in ("ns:k2", "other:k", "ns:", "", "ns:k\x00"):
        with pytest.raises(CorruptEntryError, match="copied from another key") as caught:
            codec.loads(data, other)
        assert not isinstance(caught.value, UnknownSigningKeyError)


def test_entries_signed_with_a_fallback_key_read_and_unknown_keys_are_misses() -> None:
    old = make_codec("pickle", signing_key=OTHER_KEY).dumps([1, 2], "k")
    rotated = make_codec("pickle", signing_key=KEY, signing_key_fallbacks=[OTHER_KEY])
    assert rotated.loads(old, "k") == [1, 2]
    assert rotated.dumps("new", "k")[1:9] != old[1:9]  # written with the new key only
    comma = make_codec(
        "pickle", signing_key=KEY, signing_key_fallbacks=f" x{OTHER_KEY}, {OTHER_KEY}"
    )
    assert comma.loads(old, "k") == [1, 2]
    plain = make_codec("pickle", signing_key=KEY)
    with pytest.raises(UnknownSigningKeyError, match="signingKeyFallbacks") as caught:
        plain.loads(old, "k")
    assert isinstance(caught.value, CorruptEntryError)
    for text in (str(caught.value), repr(caught.value), repr(rotated)):
        assert KEY not in text
        assert OTHER_KEY not in text


def test_the_previous_unbound_format_is_a_miss() -> None:
    body = pickle.dumps({"a": 1}, protocol=5)
    for marker in (FORMAT_PICKLE, FORMAT_PICKLE_ZLIB):
        tag = hmac.new(KEY.encode(), bytes([marker]) + body, "sha256").digest()
        with pytest.raises(UnknownSigningKeyError, match="earlier cachehub"):
            make_codec("pickle", signing_key=KEY).loads(bytes([marker]) + tag + body, "k")


@pytest.mark.parametrize(
    "fallbacks",
    [["short"], [""], [123], 42, {"k": "v"}],
    ids=["short", "empty", "not a str", "a number", "a dict"],
)
def test_bad_fallback_keys_are_config_errors(fallbacks: Any) -> None:
    with pytest.raises(ConfigError, match="signingKeyFallbacks") as caught:
        make_codec("pickle", signing_key=KEY, signing_key_fallbacks=fallbacks)
    assert KEY not in str(caught.value)


def test_a_cache_treats_an_entry_signed_with_an_unknown_key_as_a_miss() -> None:
    from cachehub_memory import MemoryCache

    reader = MemoryCache(codec="pickle", signingKey=OTHER_KEY, namespace="n:")
    reader.put("k", "old")
    reader.put("good", "kept")
    reader.codec = make_codec("pickle", signing_key=KEY)  # the key rotated, no fallback
    assert reader.get("k", "default") == "default"
    assert reader.get_many(["k", "good"]) == {}  # both signed with the old key
    calls: list[int] = []
    assert reader.get_or_set("k", lambda: calls.append(1) or "fresh") == "fresh"
    assert calls == [1]
    assert reader.get("k") == "fresh"
    assert reader.get_all() == {"k": "fresh"}


def test_caches_take_max_value_size_and_fallbacks_from_their_settings() -> None:
    from cachehub_memory import MemoryCache

    cache = MemoryCache(maxValueSize="4096")  # strings from ${VAR} are converted
    assert cache.codec.max_value_size == 4096
    with pytest.raises(SerializationError, match="more than maxValueSize"):
        cache.put("k", "x" * 5000)
    for bad in ("lots", 100, True):
        with pytest.raises(ConfigError, match="maxValueSize"):
            MemoryCache(maxValueSize=bad)
    store = f"rotation-{uuid.uuid4().hex}"  # one store, shared by the two caches
    old = MemoryCache(codec="pickle", signingKey=OTHER_KEY, namespace="n:", store=store)
    old.put("k", {1, 2})
    signed = MemoryCache(
        codec="pickle", signingKey=KEY, signingKeyFallbacks=OTHER_KEY, namespace="n:", store=store
    )
    assert signed.get("k") == {1, 2}
    shown = repr(signed)
    assert OTHER_KEY not in shown
    assert KEY not in shown


@pytest.mark.parametrize("key", [" " * 20, "\x00" * 16, "a" * 32, "abab" * 8, "\t\n" * 10 + "abc"])
def test_a_signing_key_that_is_no_random_secret_is_refused(key: str) -> None:
    # On main 20 spaces or 16 NULs were accepted: long enough, guessed at the first try.
    with pytest.raises(ConfigError, match="not a random secret"):
        make_codec("pickle", signing_key=key)
    assert make_codec("pickle", signing_key="3f9c0b7e1d2a4c68")  # a random hex key
