"""Planted values whose sets or maps hold items of one hash: Python builds those in time
quadratic in their count, so the codec refuses them before building (codec.md, "Bounds")."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgpack
import pytest

from cachehub.codec import make_codec, unflooded
from cachehub.errors import CorruptEntryError

_P = (1 << 61) - 1  # CPython's numeric hash modulus: hash(k * _P) == 0 for every int k
_SAFE = make_codec("safe")
_FORMAT = _SAFE.dumps(0)[:1]  # the safe codec's format byte


def _bigint(value: int) -> msgpack.ExtType:
    return msgpack.ExtType(1, value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True))


def _colliding(count: int, start: int = 2**64) -> list[msgpack.ExtType]:
    """Big ints (beyond 64 bits, so the codec's extension type 1) that all hash to 0."""
    return [_bigint((start + k) * _P) for k in range(count)]


def _planted(body: Any) -> bytes:
    return _FORMAT + msgpack.packb(body)


def _set(items: list[Any], code: int = 3) -> msgpack.ExtType:
    return msgpack.ExtType(code, msgpack.packb(items))


@pytest.mark.parametrize(
    ("what", "body"),
    [
        ("set", _set(_colliding(2_000))),
        ("frozenset", _set(_colliding(2_000), 4)),
        ("map keys", dict.fromkeys(_colliding(2_000), 0)),
        ("set inside a list", [1, [_set(_colliding(500))]]),
        ("map inside a map", {"a": dict.fromkeys(_colliding(500), "x")}),
    ],
)
def test_a_set_or_map_of_one_hash_is_refused(what: str, body: Any) -> None:
    # On main a planted set of 16,000 such ints took 2.2 s to read, quadratic in their
    # count: maxValueSize allows ~900,000 (hours of CPU for one get).
    with pytest.raises(CorruptEntryError, match="hash flooding"):
        _SAFE.loads(_planted(body))


def test_the_bound_is_linear_not_zero() -> None:
    # A few colliding items per set (the worst case then costs a few comparisons per item)
    # and the natural collision of -1 and -2 are values, not attacks.
    small = [_set(_colliding(8, 2**64 + 100 * j)) for j in range(200)]
    assert len(_SAFE.loads(_planted(small))) == 200
    value = {-1: "a", -2: "b", frozenset({-1, -2, 2**61 - 1, 0}): {Decimal(_P), Decimal(0)}}
    assert _SAFE.loads(_SAFE.dumps(value)) == value


def test_unflooded_allows_the_square_root_of_the_count() -> None:
    # 0 and k * _P share hash 0: 40 repeats of 1,040 items pass (8 + isqrt(1,040) = 40),
    # 41 of 1,041 do not.
    assert unflooded([*range(1_000), *(k * _P for k in range(1, 41))])
    with pytest.raises(CorruptEntryError):
        unflooded([*range(1_000), *(k * _P for k in range(1, 42))])
    assert unflooded([0] * 8) == [0] * 8  # short: nothing to count


def test_decimal_sets_are_checked_like_ints() -> None:
    body = _set([msgpack.ExtType(6, str((k + 10) * _P).encode()) for k in range(500)])
    with pytest.raises(CorruptEntryError, match="hash flooding"):
        _SAFE.loads(_planted(body))


def test_maps_with_str_keys_are_built_unchecked(monkeypatch: pytest.MonkeyPatch) -> None:
    # Their hashes are seeded per process: the check's Python call per map (2 to 4 times
    # slower) is paid only by values holding another key type.
    from cachehub import codec

    calls: list[int] = []
    real = codec._map
    monkeypatch.setattr(codec, "_map", lambda pairs: calls.append(len(pairs)) or real(pairs))
    numbers_first = [1, 2, 3] * 6 + [{"a": i, "b": [{"c": i}]} for i in range(50)]
    assert _SAFE.loads(_SAFE.dumps(numbers_first)) == numbers_first
    assert calls == []
    int_keys = [1, 2, 3] * 6 + [dict.fromkeys(range(20), "x")]
    assert _SAFE.loads(_SAFE.dumps(int_keys)) == int_keys
    assert calls == [20]


@pytest.mark.parametrize("pad", ["", "pad" * 20], ids=["short payloads", "long payloads"])
def test_nested_values_with_int_keys_cost_no_more_than_the_square_of_their_depth(
    monkeypatch: pytest.MonkeyPatch, pad: str
) -> None:
    # A read (or a write) first tries the fast path, which fails at a map with an int key
    # after reading (packing) everything nested before it, then tries again: tuples
    # nested 20 deep, each holding an int-keyed map after its inner tuple, were read and
    # written 2**20 times (a planted one, 116 bytes, took hours). Counted, not timed.
    from cachehub import codec

    calls = {"read": 0, "short": 0, "pack": 0}

    def counting(name: str, real: Any) -> Any:
        def call(*args: Any) -> Any:
            calls[name] += 1
            return real(*args)

        return call

    monkeypatch.setattr(codec, "_keyed_read", counting("read", codec._keyed_read))
    monkeypatch.setattr(codec, "_unpack_short", counting("short", codec._unpack_short))
    monkeypatch.setattr(codec, "_pack_once", counting("pack", codec._pack_once))
    value: Any = ("leaf", {1: "one"})
    for level in range(30):
        value = (value, {level: "x", level + 100: "y"}, pad)
    encoded = _SAFE.dumps(value)
    assert _SAFE.loads(encoded) == value
    assert max(calls.values()) <= 2 * 32**2, calls  # about depth squared; was 2**depth
