"""The safe codec's fast paths (issue #17): bytes blobs, short strings, datetimes, and the
compression probe. Each path must give exactly what the general path gives (same bytes
written, same value and type read back) and refuse exactly what it refuses.

No timing here: the work the compression probe saves is counted in bytes fed to zlib.
"""

from __future__ import annotations

import datetime as dt
import decimal
import itertools
import math
import random
import struct
import tracemalloc
import zlib
import zoneinfo
from typing import Any, Final

import msgpack
import ormsgpack
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from test_codec import KEY, NAMED, PARIS, PLUS_0530, assert_exact

from cachehub import codec as codec_module
from cachehub.codec import (
    FORMAT_SAFE,
    FORMAT_SAFE_ZLIB,
    FORMAT_SIGNED,
    FORMAT_SIGNED_ZLIB,
    PickleCodec,
    SafeCodec,
    make_codec,
)
from cachehub.errors import CorruptEntryError, SerializationError

NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
SAFE = bytes([FORMAT_SAFE])
SAFE_ZLIB = bytes([FORMAT_SAFE_ZLIB])


def noise(size: int, seed: int = 7) -> bytes:
    """Deterministic bytes that zlib cannot shrink."""
    return random.Random(seed).randbytes(size)


def text(size: int) -> bytes:
    """Deterministic bytes that zlib shrinks a lot (and that repeat pairs)."""
    words = b"cache entry value record customer order item "
    return (words * (size // len(words) + 1))[:size]


# --------------------------------------------------------------------------- bytes blobs

# Sizes around every msgpack bin header change and around the fast path's threshold.
BLOB_SIZES = [0, 1, 255, 256, 4095, 4096, 4097, 65535, 65536, 70_000, 1 << 20]


@pytest.mark.parametrize("size", BLOB_SIZES)
def test_bytes_payloads_are_the_bytes_ormsgpack_writes(size: int) -> None:
    blob = noise(size)
    data = make_codec("safe").dumps(blob)
    assert data == SAFE + ormsgpack.packb(blob)
    got = make_codec("safe").loads(data)
    assert type(got) is bytes
    assert got == blob


@pytest.mark.parametrize("size", BLOB_SIZES)
@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_blob_payloads_read_back_from_any_buffer_type(size: int, kind: Any) -> None:
    """Backends hand back bytes, but loads also takes a bytearray or memoryview."""
    blob = noise(size)
    data = make_codec("safe").dumps(blob)
    got = make_codec("safe").loads(kind(data))
    assert type(got) is bytes
    assert got == blob


@pytest.mark.parametrize("size", [5000, 1 << 20])
def test_bytearrays_and_nested_blobs_keep_their_types(size: int) -> None:
    codec = make_codec("safe", compress_threshold=4096)
    for value in (
        bytearray(noise(size)),
        [noise(size)],
        {"blob": bytearray(text(size)), "raw": noise(size)},
        (b"", noise(size)),
    ):
        assert_exact(codec.loads(codec.dumps(value)), value)


def bin_header(size: int) -> bytes:
    return b"\xc6" + struct.pack(">I", size)


@pytest.mark.parametrize(
    "body",
    [
        bin_header(10_000) + bytes(9_999),  # one byte short
        bin_header(10_000) + bytes(10_001),  # one byte after the blob
        bin_header(0xFFFF_FFFF) + bytes(8192),  # a length lie far beyond the data
        b"\xc5" + struct.pack(">H", 5000) + bytes(5000) + b"\xc0",  # a second item
        b"\xc4\x10" + bytes(8192),  # bin 8 whose length covers a fraction
    ],
    ids=["short", "extra-byte", "length-lie", "second-item", "bin8-short"],
)
@pytest.mark.parametrize("zipped", [False, True])
def test_blob_payloads_that_are_not_exactly_one_item_are_corrupt(body: bytes, zipped: bool) -> None:
    data = SAFE_ZLIB + zlib.compress(body) if zipped else SAFE + body
    for codec in (make_codec("safe"), make_codec("pickle", signing_key=KEY)):
        with pytest.raises(CorruptEntryError):
            codec.loads(data)
        with pytest.raises(CorruptEntryError):
            codec.loads(memoryview(data))


def test_a_blob_beyond_max_value_size_is_refused_both_ways() -> None:
    codec = SafeCodec(max_value_size=8192)
    with pytest.raises(SerializationError, match="more than maxValueSize"):
        codec.dumps(bytes(8192))  # 8192 + a 3-byte header
    assert codec.loads(codec.dumps(bytes(8189))) == bytes(8189)  # exactly the limit
    planted = SAFE + bin_header(9000) + bytes(9000)
    with pytest.raises(CorruptEntryError, match="more than maxValueSize"):
        codec.loads(planted)
    with pytest.raises(CorruptEntryError, match="more than 8192 bytes"):
        codec.loads(SAFE_ZLIB + zlib.compress(bin_header(9000) + bytes(9000)))


# --------------------------------------------------------------------------- short strings


@settings(max_examples=300, deadline=None)
@given(value=st.text(max_size=40))
def test_short_strings_round_trip_and_match_ormsgpack(value: str) -> None:
    codec = make_codec("safe")
    try:
        expected = SAFE + ormsgpack.packb(value)
    except TypeError:  # unpaired surrogates: refused by both
        with pytest.raises(SerializationError, match="unpaired surrogates"):
            codec.dumps(value)
        return
    data = codec.dumps(value)
    assert data == expected
    assert_exact(codec.loads(data), value)


@pytest.mark.parametrize(
    "body",
    [
        b"\xa2\xff\xfe",  # not UTF-8
        b"\xa3\xed\xa0\x80",  # an encoded surrogate: not valid UTF-8 either
        b"\xa2\xc3",  # a truncated sequence inside the declared length
        b"\xa5abc",  # the length claims more than there is
        b"\xa1ab",  # a byte after the string
    ],
    ids=["invalid", "surrogate", "truncated-sequence", "length-lie", "trailing"],
)
def test_short_strings_that_are_not_valid_are_corrupt(body: bytes) -> None:
    with pytest.raises(CorruptEntryError):
        make_codec("safe").loads(SAFE + body)


def test_short_strings_still_honour_the_compression_threshold() -> None:
    value = "a" * 31  # body: a 1-byte header and 31 bytes; zlib shrinks it to 11
    assert make_codec("safe", compress_threshold=32).dumps(value) == SAFE + b"\xbf" + b"a" * 31
    for threshold in (1, 31):
        data = make_codec("safe", compress_threshold=threshold).dumps(value)
        assert data[0] == FORMAT_SAFE_ZLIB
        assert make_codec("safe").loads(data) == value


def test_a_lone_format_byte_is_corrupt() -> None:
    with pytest.raises(CorruptEntryError):
        make_codec("safe").loads(SAFE)


# --------------------------------------------------------------------------- datetimes

DATETIMES = [
    dt.datetime(2024, 5, 1, 12, 0, 0, 123_456),
    dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC),
    dt.datetime(1, 1, 1),
    dt.datetime(9999, 12, 31, 23, 59, 59, 999_999),
    dt.datetime(2024, 10, 27, 2, 30, fold=1),  # naive with fold
    dt.datetime(2024, 10, 27, 2, 30, tzinfo=PARIS, fold=0),
    dt.datetime(2024, 10, 27, 2, 30, tzinfo=PARIS, fold=1),  # the repeated hour
    dt.datetime(2024, 11, 3, 1, 30, tzinfo=NEW_YORK, fold=1),
    dt.datetime(2024, 2, 29, tzinfo=PLUS_0530),
    dt.datetime(2000, 1, 1, tzinfo=NAMED),
]


@pytest.mark.parametrize("value", DATETIMES, ids=[repr(v) for v in DATETIMES])
def test_datetimes_round_trip_with_zone_and_fold(value: dt.datetime) -> None:
    codec = make_codec("safe")
    assert_exact(codec.loads(codec.dumps(value)), value)
    many = [value] * 50 + [{"at": value, "id": 1}]  # the zone cache, hit after the first
    assert_exact(codec.loads(codec.dumps(many)), many)


def test_datetime_subclasses_are_still_refused() -> None:
    class Stamp(dt.datetime):
        pass

    with pytest.raises(SerializationError, match=r"value\[1\] is a .*Stamp"):
        make_codec("safe").dumps([1, Stamp(2024, 1, 1)])


@pytest.mark.parametrize("tz", [None, dt.UTC, PLUS_0530, NAMED, PARIS], ids=str)
@pytest.mark.parametrize("fold", [0, 1])
def test_the_datetime_state_is_protocol_4s_with_or_without_fold(tz: Any, fold: int) -> None:
    # The encoder takes protocol 2's state when fold is 0 (the same bytes, cheaper to get)
    # and protocol 4's otherwise: either way the payload holds protocol 4's state.
    codec = make_codec("safe")
    for value in (
        dt.datetime(2024, 10, 27, 2, 30, 0, 999_999, tzinfo=tz, fold=fold),
        dt.datetime.min.replace(tzinfo=tz, fold=fold),
        dt.datetime.max.replace(tzinfo=tz, fold=fold),
    ):
        data = codec.dumps(value)
        assert_exact(codec.loads(data), value)
        assert codec.loads(data).fold == fold
        if tz is dt.UTC and not fold:  # msgpack's Timestamp (-1) instead: no state
            assert msgpack.unpackb(data[1:]).to_datetime() == value
            continue
        ext = msgpack.unpackb(data[1:])
        assert ext.code == 7
        assert ext.data[:10] == value.__reduce_ex__(4)[1][0]
        assert (ext.data[2] >> 7) == fold


def _ext7(payload: bytes) -> bytes:
    return SAFE + b"\xc7" + bytes([len(payload), 7]) + payload


@pytest.mark.parametrize(
    "payload",
    [
        b"\x07\xe8\x02\x1e" + bytes(6),  # 30 February
        b"\x07\xe8\x01\x01\x00\x3c" + bytes(4),  # minute 60
        b"\x07\xe8\x01\x01\x00\x00\x00\x0f\x42\x40",  # microsecond 1,000,000
        b"\x00\x00\x01\x01" + bytes(6),  # year 0
        b"\x07\xe8\x01\x01" + bytes(6) + b"\x09",  # an unknown zone kind
        b"\x07\xe8\x01\x01" + bytes(6) + b"\x01\x00",  # a truncated offset
        b"\x07\xe8\x01\x01" + bytes(6) + b"\x03\xff",  # a zone key that is not UTF-8
        b"\x07\xe8\x01\x01" + bytes(6) + b"\x03No/Such_Zone",
        b"\x07\xe8\x01",  # a truncated state
    ],
    ids=[
        "feb-30",
        "minute-60",
        "micro-1e6",
        "year-0",
        "zone-kind",
        "offset",
        "zone-utf8",
        "zone-key",
        "short",
    ],
)
def test_poisoned_datetime_states_are_corrupt(payload: bytes) -> None:
    codec = make_codec("safe")
    for data in (_ext7(payload), SAFE + b"\x91" + _ext7(payload)[1:]):
        with pytest.raises(CorruptEntryError):
            codec.loads(data)


_DAY: Final = 86_400 * 10**6  # µs


@pytest.mark.parametrize(
    "offset",
    [_DAY, -_DAY, _DAY + 1, 2**63 - 1, -(2**63)],
    ids=["24h", "-24h", "24h+1us", "max", "min"],
)
def test_datetime_offsets_of_24_hours_or_more_are_corrupt(offset: int) -> None:
    # timezone() takes strictly less than 24 hours either way: beyond, the zone is refused
    codec = make_codec("safe")
    for kind, name in ((b"\x01", b""), (b"\x02", b"named")):
        payload = b"\x07\xe8\x01\x01" + bytes(6) + kind + struct.pack(">q", offset) + name
        for data in (_ext7(payload), SAFE + b"\x81\xa1k" + _ext7(payload)[1:]):
            with pytest.raises(CorruptEntryError):
                codec.loads(data)
            with pytest.raises(CorruptEntryError):
                codec.loads_local(data)


def _stamp96(nanoseconds: int, seconds: int) -> bytes:
    return b"\xc7\x0c\xff" + struct.pack(">Iq", nanoseconds, seconds)


# msgpack Timestamps (-1) hold UTC datetimes; ormsgpack reads them without the hook.
# Whatever the fields, a read gives the instant they name or CorruptEntryError.
@pytest.mark.parametrize(
    ("stamp", "want"),
    [
        (_stamp96(0, 2**62), None),  # far beyond year 9999
        (_stamp96(0, -(2**62)), None),  # far before year 1
        (_stamp96(0, 253_402_300_800), None),  # 10000-01-01: one second too late
        (_stamp96(0, -62_135_596_801), None),  # one second before year 1
        (_stamp96(10**9, 0), None),  # nanoseconds out of range
        (_stamp96(2**32 - 1, 0), None),
        (b"\xd7\xff" + struct.pack(">Q", (10**9 << 34) | 1), None),  # 64-bit, bad ns
        (b"\xd6\xff" + struct.pack(">I", 2**32 - 1), dt.datetime(2106, 2, 7, 6, 28, 15)),
        (_stamp96(999_999_999, 253_402_300_799), dt.datetime(9999, 12, 31, 23, 59, 59, 999_999)),
        (_stamp96(0, -62_135_596_800), dt.datetime(1, 1, 1)),
        (_stamp96(1_999, 0), dt.datetime(1970, 1, 1, 0, 0, 0, 1)),  # ns below a µs: cut
        (b"\xc7\x0b\xff" + bytes(11), None),  # a length no Timestamp has
        (b"\xd5\xff\x00\x00", None),
    ],
    ids=[
        "year-huge",
        "year-negative",
        "year-10000",
        "year-0",
        "ns-1e9",
        "ns-max",
        "ts64-ns",
        "ts32-max",
        "last-instant",
        "first-instant",
        "sub-microsecond",
        "length-11",
        "length-2",
    ],
)
def test_hostile_timestamps_decode_to_their_instant_or_are_corrupt(
    stamp: bytes, want: dt.datetime | None
) -> None:
    codec = make_codec("safe")
    for data in (SAFE + stamp, SAFE + b"\x92\x01" + stamp, SAFE + b"\x81\xa1k" + stamp):
        for read in (codec.loads, codec.loads_local):
            if want is None:
                with pytest.raises(CorruptEntryError):
                    read(data)
                continue
            value = read(data)
            got = (
                value
                if type(value) is dt.datetime
                else value[1]
                if type(value) is list
                else value["k"]
            )
            assert_exact(got, want.replace(tzinfo=dt.UTC))
        assert codec_module._state.failure is None


def test_a_huge_count_of_timestamps_is_refused_before_it_is_read() -> None:
    # an array 32 claiming 2**31 Timestamps in a few bytes: a length lie, refused whole
    codec = make_codec("safe", max_value_size=1024)
    lie = SAFE + b"\xdd\x7f\xff\xff\xff" + _stamp96(0, 0) * 200
    with pytest.raises(CorruptEntryError):
        codec.loads(lie)
    # and a real array of them beyond maxValueSize // 8 objects is refused by the count
    many = make_codec("safe").dumps([dt.datetime(2024, 1, 1, tzinfo=dt.UTC)] * 200)
    with pytest.raises(CorruptEntryError):
        codec.loads(many)


def test_utc_datetimes_round_trip_over_the_whole_range() -> None:
    codec = make_codec("safe")
    values = [
        dt.datetime.min.replace(tzinfo=dt.UTC),
        dt.datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=dt.UTC),
        dt.datetime(1970, 1, 1, tzinfo=dt.UTC),
        dt.datetime(2106, 2, 7, 6, 28, 16, tzinfo=dt.UTC),  # past 32-bit seconds
        dt.datetime(2514, 5, 30, 1, 53, 4, tzinfo=dt.UTC),  # past 34-bit seconds
        dt.datetime.max.replace(tzinfo=dt.UTC),
    ]
    for value in values:
        for shaped in (value, [value], {"at": value}, (value,), {value: 1}):
            assert_exact(codec.loads(codec.dumps(shaped)), shaped)
            assert_exact(codec.loads_local(codec.dumps(shaped)), shaped)


# --------------------------------------------------------------------------- compression


class Deflated:
    """Counts the bytes cachehub.codec feeds to zlib (compressobj and compress)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.fed = 0
        real_obj, real_compress = zlib.compressobj, zlib.compress
        counter = self

        class Counting:
            def __init__(self, *args: Any) -> None:
                self._inner = real_obj(*args)

            def compress(self, data: Any) -> bytes:
                counter.fed += len(data)
                return self._inner.compress(data)

            def flush(self, *args: Any) -> bytes:
                return self._inner.flush(*args)

        def compress(data: Any, *args: Any) -> bytes:
            counter.fed += len(data)
            return real_compress(data, *args)

        fake = type(
            "zlib",
            (),
            {
                "compressobj": Counting,
                "compress": staticmethod(compress),
                "decompressobj": staticmethod(zlib.decompressobj),
                "error": zlib.error,
                "Z_SYNC_FLUSH": zlib.Z_SYNC_FLUSH,
                "Z_FINISH": zlib.Z_FINISH,
            },
        )
        monkeypatch.setattr(codec_module, "zlib", fake)


@pytest.fixture
def deflated(monkeypatch: pytest.MonkeyPatch) -> Deflated:
    return Deflated(monkeypatch)


@pytest.mark.parametrize("value", [noise(1 << 20), [noise(300_000)], {"k": noise(10_000)}])
def test_random_data_is_never_deflated(deflated: Deflated, value: Any) -> None:
    codec = make_codec("safe", compress_threshold=4096)
    data = codec.dumps(value)
    assert data[0] == FORMAT_SAFE
    assert deflated.fed == 0
    assert_exact(codec.loads(data), value)


def test_random_data_is_never_deflated_by_the_pickle_codec_either(deflated: Deflated) -> None:
    codec = PickleCodec(KEY, compress_threshold=4096)
    value = noise(1 << 20)
    data = codec.dumps(value, "k")
    assert data[0] == FORMAT_SIGNED
    assert deflated.fed == 0
    assert codec.loads(data, "k") == value
    zipped = codec.dumps(text(1 << 20), "k")
    assert zipped[0] == FORMAT_SIGNED_ZLIB
    assert codec.loads(zipped, "k") == text(1 << 20)


@pytest.mark.parametrize("size", [5000, 40_000, 300_000, 3_000_000])
def test_compressible_data_is_deflated_once(deflated: Deflated, size: int) -> None:
    codec = make_codec("safe", compress_threshold=4096)
    value = text(size)
    data = codec.dumps(value)
    assert data[0] == FORMAT_SAFE_ZLIB
    body = len(ormsgpack.packb(value))
    assert deflated.fed == body  # every byte exactly once, none twice
    assert codec.loads(data) == value
    assert zlib.decompress(data[1:]) == ormsgpack.packb(value)  # one plain zlib stream


def test_a_head_that_fools_the_sample_costs_one_probe(deflated: Deflated) -> None:
    """Repeating pairs in the sampled head, then noise: given up after the probe."""
    value = text(2048) + noise(2_000_000)
    data = make_codec("safe", compress_threshold=4096).dumps(value)
    assert data[0] == FORMAT_SAFE
    assert deflated.fed == codec_module._PROBE


def test_a_compressible_head_then_noise_stops_after_one_chunk_of_noise(
    deflated: Deflated,
) -> None:
    head = codec_module._PROBE + 2 * codec_module._CHUNK
    value = text(head) + noise(6_000_000)  # deflating all of it would save 1/12
    codec = make_codec("safe", compress_threshold=4096)
    data = codec.dumps(value)
    assert data[0] == FORMAT_SAFE
    # The first chunk that is all noise projects the rest as noise: not worth it.
    assert deflated.fed == head + codec_module._CHUNK
    assert codec.loads(data) == value


def test_a_mostly_compressible_value_with_some_noise_is_still_compressed() -> None:
    value = {"log": text(1_000_000).decode(), "token": noise(50_000)}
    codec = make_codec("safe", compress_threshold=4096)
    data = codec.dumps(value)
    assert data[0] == FORMAT_SAFE_ZLIB
    assert len(data) < 200_000
    assert_exact(codec.loads(data), value)


def test_the_sample_test_tells_random_from_compressible() -> None:
    looks_random = codec_module._looks_random
    rng = random.Random(11)
    # A verdict of "random" skips zlib: it must (nearly) never hit compressible data...
    import base64

    for _ in range(200):
        blob = rng.randbytes(8192)
        assert not looks_random(base64.b64encode(blob))  # deflate saves 1/4
        assert not looks_random(blob.hex().encode())
    assert not looks_random(ormsgpack.packb(list(range(5000))))
    # ...and catch random data, which it misses about once in a thousand.
    misses = sum(not looks_random(rng.randbytes(8192)) for _ in range(500))
    assert misses <= 5
    assert not looks_random(noise(1023))  # too short to sample: zlib decides


@settings(max_examples=60, deadline=None)
@given(
    parts=st.lists(
        st.one_of(st.binary(max_size=9000), st.sampled_from([b"ab" * 3000, bytes(20_000)])),
        max_size=6,
    ),
    threshold=st.sampled_from([1, 4096]),
)
# 25 bytes deflated to 22 save 3, 1/8 rounded down as _worth_it rounds it (7/8 of 25 is 21)
@example(parts=[bytes([0, 0, 0, 1, 0, 0, 0, 0, 0, 2]), bytes(13)], threshold=1)
def test_whatever_the_probe_decides_the_value_comes_back(
    parts: list[bytes], threshold: int
) -> None:
    value = b"".join(parts)
    codec = make_codec("safe", compress_threshold=threshold)
    data = codec.dumps(value)
    assert codec.loads(data) == value
    if data[0] == FORMAT_SAFE_ZLIB:  # compressed only when that saved 1/8 (rounded down)
        plain = len(ormsgpack.packb(value))
        assert len(data) - 1 <= plain - (plain >> 3)
    assert_exact(codec.loads(codec.dumps([value, bytearray(value)])), [value, bytearray(value)])


class Reads(bytes):
    """Bytes that record the slices taken of them: what the probe reads."""

    spans: list[tuple[int, int]]

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            start, stop, _ = index.indices(len(self))
            self.spans.append((start, stop))
            return bytes(self)[index]  # a plain copy: what a slice of bytes is
        return super().__getitem__(index)


def reads(data: bytes) -> Reads:
    out = Reads(data)
    out.spans = []
    return out


@pytest.mark.parametrize("size", [1024, 1025, 4097, 65_537, 1 << 20, 16 << 20])
def test_the_probe_reads_a_few_windows_whatever_the_size(size: int) -> None:
    body = reads(noise(size))
    assert codec_module._looks_random(body)
    window, count = codec_module._WINDOW, codec_module._WINDOWS
    assert len(body.spans) == count  # every window of a random body, none twice
    assert all(stop - start == window for start, stop in body.spans)
    assert sum(stop - start for start, stop in body.spans) == count * window  # 1 KiB
    starts = [start for start, _ in body.spans]
    assert starts == sorted(set(starts))  # spread, not overlapping: head, middle, tail
    assert all(b - a >= window for a, b in itertools.pairwise(starts))
    assert starts[0] == 0
    assert size - body.spans[-1][1] < count  # the last one ends at the tail


def test_the_probe_stops_at_the_first_compressible_window() -> None:
    body = reads(text(1 << 20))
    assert not codec_module._looks_random(body)
    assert body.spans == [(0, codec_module._WINDOW)]


def test_bodies_too_short_for_the_windows_are_left_to_zlib(deflated: Deflated) -> None:
    short = codec_module._WINDOWS * codec_module._WINDOW - 1
    assert not codec_module._looks_random(noise(short))
    assert not codec_module._looks_random(b"")
    codec = make_codec("safe", compress_threshold=1)
    for size in (0, 1, 100, short - 3):  # bodies up to `short` bytes with their bin header
        deflated.fed = 0
        data = codec.dumps(noise(size))
        assert data[0] == FORMAT_SAFE  # zlib could not save 1/8
        assert deflated.fed == len(ormsgpack.packb(noise(size)))  # what zlib read: all of it
        assert codec.loads(data) == noise(size)


def _prices(count: int) -> list[float]:
    rng = random.Random(5)
    return [round(rng.uniform(1, 100), 2) for _ in range(count)]


def _records(count: int) -> list[dict[str, Any]]:
    return [
        {"id": i, "name": f"customer {i}", "balance": i * 1.25, "tags": ["eu", f"t{i % 4}"]}
        for i in range(count)
    ]


def _datetimes(count: int) -> list[dict[str, Any]]:
    base = dt.datetime(2024, 5, 1, 12, 0)
    return [
        {"id": i, "at": base + dt.timedelta(minutes=i), "due": base.replace(tzinfo=PARIS)}
        for i in range(count)
    ]


# Every shape that deflate shrinks by 1/8 or more, among them the ones the benchmarks and the
# suite store: the probe must leave each to zlib. Floats and ints look random-ish byte by byte.
COMPRESSIBLE = {
    "text": lambda: text(100_000).decode(),
    "repeated bytes": lambda: b"\x00\x01\x02\x03" * 50_000,
    "one random token repeated": lambda: noise(100) * 2000,
    "records": lambda: _records(2000),
    "datetime records": lambda: _datetimes(1000),
    "float prices": lambda: _prices(20_000),
    "float64 array of prices": lambda: struct.pack("<20000d", *_prices(20_000)),
    "10k small ints": lambda: [random.Random(2).randrange(100_000) for _ in range(10_000)],
    "10k ints in order": lambda: list(range(10_000)),
    "base64 of noise": lambda: __import__("base64").b64encode(noise(60_000)),
    "hex of noise": lambda: noise(40_000).hex(),
}


@pytest.mark.parametrize("shape", COMPRESSIBLE)
def test_every_compressible_shape_is_compressed(shape: str) -> None:
    value = COMPRESSIBLE[shape]()
    codec = make_codec("safe", compress_threshold=4096)
    data = codec.dumps(value)
    plain = len(make_codec("safe").dumps(value))
    assert data[0] == FORMAT_SAFE_ZLIB
    assert len(data) <= plain - plain // 8
    assert_exact(codec.loads(data), value)


def _floats64(count: int) -> bytes:
    rng = random.Random(9)
    return struct.pack(f"<{count}d", *(rng.random() for _ in range(count)))


# Shapes deflate cannot shrink by 1/8: the probe skips zlib on these altogether.
INCOMPRESSIBLE = {
    "noise": lambda: noise(1 << 20),
    "already deflated": lambda: zlib.compress(noise(100_000).hex().encode(), 6),
    "float64 array of random floats": lambda: _floats64(100_000),
    "noise in a list": lambda: [noise(300_000)],
    "noise under a key": lambda: {"k": noise(10_000)},
    "noise in records": lambda: [{"id": i, "blob": noise(4000, seed=i)} for i in range(20)],
}


@pytest.mark.parametrize("shape", INCOMPRESSIBLE)
def test_incompressible_shapes_cost_the_probe_only(deflated: Deflated, shape: str) -> None:
    value = INCOMPRESSIBLE[shape]()
    codec = make_codec("safe", compress_threshold=4096)
    data = codec.dumps(value)
    assert data[0] == FORMAT_SAFE
    assert deflated.fed == 0
    assert_exact(codec.loads(data), value)


@pytest.mark.parametrize("prefix", [100, 2000, 10_000])
def test_a_random_prefix_does_not_stop_compression(prefix: int) -> None:
    """The head window is noise, the others are not: zlib decides, and it saves."""
    value = noise(prefix) + text(20_000)
    codec = make_codec("safe", compress_threshold=4096)
    data = codec.dumps(value)
    assert data[0] == FORMAT_SAFE_ZLIB
    assert len(data) < prefix + 2000
    assert codec.loads(data) == value


def test_a_compressible_tail_behind_noise_still_compresses_a_large_value() -> None:
    value = {"token": noise(3000), "log": text(1 << 20).decode()}
    codec = make_codec("safe", compress_threshold=4096)
    data = codec.dumps(value)
    assert data[0] == FORMAT_SAFE_ZLIB
    assert len(data) < 50_000
    assert_exact(codec.loads(data), value)


def _windows(size: int) -> list[int]:
    window, count = codec_module._WINDOW, codec_module._WINDOWS
    step = (size - window) // (count - 1)
    return [i * step for i in range(count)]


def test_noise_planted_where_the_probe_looks_only_costs_compression(
    deflated: Deflated,
) -> None:
    """A writer who knows the windows can make a compressible value look random: the
    value is then stored plain (larger), read back intact, and zlib never runs."""
    value = bytearray(1 << 20)
    body_size = len(ormsgpack.packb(bytes(value)))
    for start in _windows(body_size):  # the windows over the body, bin header included
        begin = max(0, start - 5)
        value[begin : start - 5 + codec_module._WINDOW] = noise(
            start - 5 + codec_module._WINDOW - begin, seed=start
        )
    data = make_codec("safe", compress_threshold=4096).dumps(bytes(value))
    assert data[0] == FORMAT_SAFE
    assert deflated.fed == 0
    assert make_codec("safe").loads(data) == bytes(value)


def test_text_planted_where_the_probe_looks_costs_one_zlib_probe(deflated: Deflated) -> None:
    """The reverse: noise everywhere but the windows, so the probe says "compressible";
    zlib gives up after its first _PROBE bytes and the value is stored plain."""
    value = bytearray(noise(1 << 20))
    body_size = len(ormsgpack.packb(bytes(value)))
    for start in _windows(body_size):
        begin = max(0, start - 5)
        value[begin : start - 5 + codec_module._WINDOW] = bytes(start - 5 + 256 - begin)
    data = make_codec("safe", compress_threshold=4096).dumps(bytes(value))
    assert data[0] == FORMAT_SAFE
    assert deflated.fed == codec_module._PROBE
    assert make_codec("safe").loads(data) == bytes(value)


# --------------------------------------------------------------------------- the buffer survey

# Numeric levels skip the type walk when sum() succeeds (see _numbers_only): in every
# shape where sum() might succeed, fail late, or raise something else, the survey (which
# a buffer's own bin header always starts) must still find the buffer.
FILLERS = {
    "ints": [0xC4C5C6 + i for i in range(200)],
    "floats": [1.5e-300 * i for i in range(200)],
    "mixed": [i if i % 2 else float(i) + 0.196 for i in range(200)],
    "big-and-float": [2**70, 0xC4C5C6, 1e308, 1e308],  # OverflowError in sum()
    "decimal-and-float": [decimal.Decimal("1.5"), 0xC4C5, 2.5] * 30,  # TypeError late
    "bools-nan-inf": [True, math.nan, -math.inf, 0xC5] * 50,
}


@pytest.mark.parametrize("filler", list(FILLERS), ids=list(FILLERS))
@pytest.mark.parametrize("where", ["end", "nested", "dict", "tuple"])
def test_buffers_among_many_numbers_are_still_found(filler: str, where: str) -> None:
    numbers = FILLERS[filler]
    buffer = bytearray(b"\xc4buffer")
    value: Any = {
        "end": [*numbers, buffer],
        "nested": [numbers, [[*numbers, buffer]]],
        "dict": {"a": numbers, "b": dict.fromkeys(map(str, range(100)), 7) | {"x": buffer}},
        "tuple": [*numbers, (1, buffer)],
    }[where]
    codec = make_codec("safe")
    data = codec.dumps(value)
    assert_exact(codec.loads(data), value)
    with pytest.raises(SerializationError, match="memoryview"):
        codec.dumps([*numbers, memoryview(b"\xc5view")])


def test_numbers_only_is_true_only_for_numbers() -> None:
    numbers_only = codec_module._numbers_only
    assert numbers_only([1, 2.5, True, 2**80, -0.0])
    for odd in (
        bytearray(b"x"),
        memoryview(b"x"),
        [1],
        (1,),
        {1},
        "s",
        b"b",
        None,
        dt.date.today(),
        decimal.Decimal("1E+999999"),
    ):
        assert not numbers_only([1, 2.0, odd])
        assert not numbers_only([odd, 1])
    assert not numbers_only([1.0, 2**1100])  # beyond a float: walked, not trusted


class Sneaky(float):
    """A float subclass with its own arithmetic (0.0 + it would call it): refused, and
    never added up."""

    calls = 0

    def __radd__(self, other: Any) -> Any:
        Sneaky.calls += 1
        return NotImplemented


def test_the_survey_never_runs_arithmetic_of_a_refused_value() -> None:
    """A dict with a non-str key makes ormsgpack give up before it meets the subclass;
    the survey then walks the value without sum()."""
    Sneaky.calls = 0
    codec = make_codec("safe")
    for value in (
        {1: "non-str key", "x": [Sneaky(5)] * 100},
        [{1: 2}, *[Sneaky(5)] * 100],
        [*[Sneaky(5)] * 100, bytearray(b"\xc4")],
        {"x": [Sneaky(5)] * 100, "y": {2: 3}},
    ):
        with pytest.raises(SerializationError, match="Sneaky"):
            codec.dumps(value)
    assert Sneaky.calls == 0


# Arrays whose numbers all take one encoded width skip the survey (_fixed_width_numbers):
# the body alone proves that no bin item (no buffer) is in it.

INT32 = [0x40C4C5C6 + i if i % 2 else -0x40C4C5C6 - i for i in range(10_000)]  # 5 bytes each
_rng = random.Random(17)
FLOATS = [_rng.uniform(-1e9, 1e9) for _ in range(500)]  # float 64: 9 bytes each
UINT64 = [2**63 + 0xC4C5C6 * i for i in range(100)]  # uint 64: 9 bytes each


def uses_survey(value: Any, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Whether encoding ``value`` walks it for buffers (counts the survey's calls)."""
    calls: list[Any] = []
    survey = codec_module._survey

    def counted(*args: Any, **kwargs: Any) -> set[type]:
        calls.append(args)
        return survey(*args, **kwargs)

    monkeypatch.setattr(codec_module, "_survey", counted)
    codec = make_codec("safe")
    assert_exact(codec.loads(codec.dumps(value)), value)
    return bool(calls)


@pytest.mark.parametrize(
    "value",
    [INT32, FLOATS, UINT64, [math.nan, math.inf, -0.0, *FLOATS], [*INT32, -(2**31)]],
    ids=["int32", "float64", "uint64", "nan-inf-negzero", "int32-min"],
)
def test_arrays_of_one_number_width_skip_the_survey(
    value: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    body = ormsgpack.packb(value)
    assert 0xC4 in body or 0xC5 in body or 0xC6 in body  # the old test would walk them
    assert not uses_survey(value, monkeypatch)


@pytest.mark.parametrize(
    "value",
    [
        [*INT32[:100], 2**64 + 0xC4],  # a big int (extension 1) after them
        [*INT32[:100], True, *INT32[:100]],  # a bool (one byte) among them
        [*INT32[:100], 7, *INT32[:100]],  # a fixint among them
        [*INT32[:100], 1.5, *INT32[:100]],  # a float (9 bytes) among them
        [INT32, INT32],  # nested lists of 10k ints
        {"ints": INT32},
        [*INT32[:100], (1, 2)],
    ],
    ids=["big-int", "bool", "fixint", "float", "nested", "dict", "tuple"],
)
def test_arrays_of_several_widths_are_still_surveyed(
    value: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert uses_survey(value, monkeypatch)


@pytest.mark.parametrize(
    ("numbers", "buffer"),
    [
        (INT32[:100], bytearray(b"\xce\xd2\xc4")),  # bin 8 of 3 bytes: 5 bytes, as an int32
        (FLOATS[:100], bytearray(b"\xcb" * 7)),  # bin 8 of 7 bytes: 9 bytes, as a float
        (UINT64[:100], memoryview(b"\xcf" * 7)),
        ([0xC4C5 + i for i in range(100)], bytearray(b"\xcd")),  # 3 bytes, as a uint16
    ],
    ids=["int32-bytearray", "float-bytearray", "uint64-memoryview", "uint16-bytearray"],
)
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_a_buffer_as_wide_as_the_numbers_is_still_found(
    numbers: list[Any], buffer: Any, where: str
) -> None:
    """A bin item of exactly the numbers' width keeps the body's length and stride: its
    header byte (0xc4) is what gives it away."""
    position = {"first": 0, "middle": len(numbers) // 2, "last": len(numbers)}[where]
    value = [*numbers[:position], buffer, *numbers[position:]]
    body = ormsgpack.packb(value)
    width = len(ormsgpack.packb(numbers[0]))
    assert len(body) == 3 + width * len(value)  # the same length as numbers alone
    codec = make_codec("safe")
    if type(buffer) is memoryview:
        with pytest.raises(SerializationError, match="memoryview"):
            codec.dumps(value)
    else:
        assert_exact(codec.loads(codec.dumps(value)), value)


def test_int_subclasses_among_many_ints_are_refused() -> None:
    class Id(int):
        pass

    with pytest.raises(SerializationError, match=r"value\[5000\].*Id"):
        make_codec("safe").dumps([*INT32[:5000], Id(0x40C4C5C6), *INT32[:5000]])


@pytest.mark.parametrize(
    ("body", "fixed"),
    [
        (b"\xdc\x00\x02\xce\xc4\xc4\xc4\xc4\xd2\xc5\xc5\xc5\xc5", True),
        (b"\xdd\x00\x00\x00\x01\xcb" + b"\xc6" * 8, True),
        (b"\xdc\x00\x02\xce\xc4\xc4\xc4\xc4\xc4\x03\xc5\xc5\xc5", False),  # bin 8
        (b"\xdc\x00\x02\xce\xc4\xc4\xc4\xc4\xd2\xc5\xc5\xc5", False),  # truncated
        (b"\xdc\x00\x01\xce\xc4\xc4\xc4\xc4\xd2\xc5\xc5\xc5\xc5", False),  # extra item
        (b"\xdc\x00\x03\xce\xc4\xc4\xc4\xc4\xd2\xc5\xc5\xc5\xc5", False),  # count lie
        (b"\xdc\x00", False),  # a header alone
        (b"\xdc\x00\x00", False),  # no items
        (b"\x92\xce\xc4\xc4\xc4\xc4\xd2\xc5\xc5\xc5\xc5", False),  # fixarray: left alone
        (b"\xde\x00\x01\xa1k\xce\xc4\xc4\xc4\xc4", False),  # a map
        (b"\xdc\x00\x02\xc4\x03\xc4\xc4\xc4\xc4\x03\xc5\xc5\xc5", False),  # bins only
    ],
)
def test_fixed_width_numbers_reads_only_well_formed_number_arrays(body: bytes, fixed: bool) -> None:
    assert codec_module._fixed_width_numbers(body) is fixed


# --------------------------------------------------------------------------- numeric arrays

NUMERIC_ARRAYS = [
    list(range(16)),
    list(range(-40_000, 40_000, 7)),
    [0.5, *range(100)],
    [2**63, -(2**63), *range(20)],  # a big int (extension 1) among them
    [1, "two", {"three": 3}, (4,), bytearray(b"5"), *range(20)],  # a number first, then not
    [dt.datetime(2024, 1, 1, tzinfo=PARIS), *range(20)],
]


@pytest.mark.parametrize("value", NUMERIC_ARRAYS, ids=range(len(NUMERIC_ARRAYS)))
def test_arrays_starting_with_a_number_read_back_exactly(value: list[Any]) -> None:
    codec = make_codec("safe")
    assert_exact(codec.loads(codec.dumps(value)), value)


@pytest.mark.parametrize(
    "body",
    [
        b"\xdc\x00\x11" + b"\x01" * 16,  # one item short
        b"\xdc\x00\x10" + b"\x01" * 17,  # one item too many
        b"\xdc\x00\x10" + b"\x01" * 15 + b"\xc1",  # the never-used byte
        b"\xdd\xff\xff\xff\xff" + b"\x01" * 20,  # a length lie
        b"\xdc\x00\x10" + b"\x01" * 15 + b"\xc7\x01\x63x",  # an unknown extension
    ],
    ids=["short", "extra", "invalid-byte", "length-lie", "unknown-extension"],
)
def test_bad_numeric_arrays_are_corrupt(body: bytes) -> None:
    with pytest.raises(CorruptEntryError):
        make_codec("safe").loads(SAFE + body)


# --------------------------------------------------------------------------- in-process reads

# loads_local reads what a codec of this process wrote (the memory provider's store): maps
# and short arrays unframed; anything else, and every failure, goes to loads and its verdict.
LOCAL_VALUES = [
    {"id": 42, "name": "Alice", "roles": ["admin", "editor"], "score": 3.5, "on": True},
    {"when": dt.datetime(2024, 5, 1, 12, tzinfo=PARIS), "t": (1, 2), "s": {3}, "b": b"\xc4"},
    {1: "int key", (2, 3): "tuple key", "x": None},  # non-str keys: ormsgpack refuses
    {f"k{i}": i for i in range(40)},  # map 16
    [1, "two", 3.0, None, [4, {"five": 5}]],  # fixarray
    [],
    {},
    list(range(10_000)),  # array 16 of numbers
    "short",
    "long " * 100,
    b"blob" * 2000,
    bytearray(b"\xc5" * 10),
    2**100,
    None,
    math.nan,
    # long maps (read through a view): UTC Timestamps, zoned and naive datetimes, a blob
    {
        "rows": [
            {"at": dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=i), "i": i}
            for i in range(300)
        ],
        "zoned": [dt.datetime(2024, 5, 1, 12, i % 60, tzinfo=PARIS) for i in range(100)],
        "naive": [dt.datetime(2024, 5, 1, 12, i % 60, fold=i % 2) for i in range(100)],
        "blob": b"\xc4" * 5000,
    },
]


@pytest.mark.parametrize("name", ["safe", "pickle"])
@pytest.mark.parametrize("value", LOCAL_VALUES, ids=range(len(LOCAL_VALUES)))
def test_loads_local_reads_what_dumps_wrote_as_loads_does(name: str, value: Any) -> None:
    codec = make_codec(name, signing_key=KEY)
    data = codec.dumps(value, "k")
    assert_exact(codec.loads_local(data, "k"), value)
    assert_exact(codec.loads_local(data, "k"), codec.loads(data, "k"))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        SAFE,
        b"\x80\x05pickle",
        "a str",
        None,
        [FORMAT_SAFE, 0x80],  # a list that looks like a map payload
        bytearray(b"\x01\x81"),  # truncated map, in a bytearray
        SAFE + b"\x81",  # a map header without its items
        SAFE + b"\x81\xa1k\xc1",  # the never-used byte as a value
        SAFE + b"\x81\xa1k" + _ext7(b"\x07\xe8\x02\x1e" + bytes(6))[1:],  # 30 February
        SAFE + b"\x91" + b"\xc7\x01\x63x",  # an unknown extension in an array
        SAFE + b"\x81\xa1k\xda\x20\x00" + b"x" * 5000,  # long, truncated: read via a view
        SAFE + b"\x82\xa1k\xda\x10\x00" + b"x" * 4096 + b"\xa1j\xc1",  # long, invalid byte
    ],
    ids=[
        "empty",
        "format-byte",
        "pickle",
        "str",
        "none",
        "list",
        "bytearray",
        "truncated",
        "invalid-byte",
        "feb-30",
        "unknown-ext",
        "long-truncated",
        "long-invalid-byte",
    ],
)
def test_loads_local_refuses_what_loads_refuses(data: Any) -> None:
    codec = make_codec("safe")
    with pytest.raises(CorruptEntryError) as expected:
        codec.loads(data)
    with pytest.raises(CorruptEntryError) as got:
        codec.loads_local(data)
    assert str(got.value) == str(expected.value)
    assert codec_module._state.failure is None  # no hook failure left for a later read


def test_local_reads_of_a_long_body_make_no_copy_of_it() -> None:
    # Read through a view: what is allocated is the value (its one long str), not a copy
    # of the 1 MB body beside it as well (tracemalloc sees every Python allocation).
    codec = make_codec("safe")
    assert isinstance(codec, SafeCodec)
    text_value = "x" * 1_000_000
    data = codec.dumps({"blob": text_value})
    for read in (codec.loads_local, lambda raw: codec.loads_local_many({"k": raw})["k"]):
        tracemalloc.start()
        try:
            value = read(data)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert value == {"blob": text_value}
        assert len(data) < peak < 1.5 * len(data)


def test_loads_local_many_reads_a_batch_as_loads_local_reads_each() -> None:
    codec = make_codec("safe", compress_threshold=4096)
    stored = {f"k{i}": codec.dumps(value, f"k{i}") for i, value in enumerate(LOCAL_VALUES)}
    stored["big"] = codec.dumps(text(50_000).decode())  # compressed
    stored["blob"] = codec.dumps(noise(70_000))  # one bin item
    assert isinstance(codec, SafeCodec)
    got = codec.loads_local_many(stored)
    assert list(got) == list(stored)  # every key, in the batch's order
    for key, data in stored.items():
        assert_exact(got[key], codec.loads_local(data, key))


@pytest.mark.parametrize(
    "bad",
    [b"", SAFE + b"\x81", SAFE + b"\x81\xa1k\xc1", b"\x80\x05pickle", SAFE + b"\x91\xc7\x01\x63x"],
    ids=["empty", "truncated", "invalid-byte", "pickle", "unknown-ext"],
)
def test_loads_local_many_refuses_a_bad_value_as_loads_local_does(bad: bytes) -> None:
    """One bad entry fails the batch with loads_local's own error, and leaves no hook
    failure behind for a later read."""
    codec = make_codec("safe")
    assert isinstance(codec, SafeCodec)
    stored = {"good": codec.dumps({"a": 1}), "bad": bad, "after": codec.dumps([1, 2])}
    with pytest.raises(CorruptEntryError) as expected:
        codec.loads_local(bad, "bad")
    with pytest.raises(CorruptEntryError) as got:
        codec.loads_local_many(stored)
    assert str(got.value) == str(expected.value)
    assert codec_module._state.failure is None
    assert codec.loads_local_many({"good": stored["good"]}) == {"good": {"a": 1}}
