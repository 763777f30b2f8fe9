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
