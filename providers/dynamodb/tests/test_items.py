"""Items another program wrote: odd attributes read as typed errors, never as crashes."""

from __future__ import annotations

import math
from typing import Any

import pytest
from cachehub_dynamodb.items import deadline_of, decode_value, is_live, number, to_entry

from cachehub.api import CacheMetadata
from cachehub.codec import make_codec
from cachehub.errors import CorruptEntryError

CODEC = make_codec("safe")


@pytest.mark.parametrize("text", ["NaN", "nan", "inf", "-Infinity", "1e400", "abc", "", "1,5"])
def test_numbers_that_are_not_finite_are_corrupt(text: str) -> None:
    with pytest.raises(CorruptEntryError, match="'createdTime' is not a finite Number"):
        number({"createdTime": {"N": text}}, "createdTime")


@pytest.mark.parametrize("attr", [{"S": "5"}, {"B": b"5"}, {"NULL": True}, {"L": []}])
def test_attributes_of_another_type_count_as_absent(attr: dict[str, Any]) -> None:
    assert number({"deadline": attr}, "deadline") is None
    # ... except an expiry: present but no Number, it is already past (docs/dynamodb.md)
    assert deadline_of({"deadline": attr}) == -math.inf
    assert not is_live({"deadline": attr}, 1e9)


def test_a_nan_deadline_is_never_alive_and_garbage_is_corrupt() -> None:
    assert not is_live({"deadline": {"N": "NaN"}}, 1e9)
    with pytest.raises(CorruptEntryError, match="deadline that is not a Number"):
        is_live({"deadline": {"N": "soon"}}, 1e9)


@pytest.mark.parametrize(
    "value",
    [{}, {"X": "1"}, {"N": None}, {"SS": 5}, {"B": "not bytes"}, {"M": 5}],
    ids=["empty", "unknown-type", "none-number", "set-of-int", "str-as-b", "map-of-int"],
)
def test_values_no_writer_produces_are_corrupt(value: dict[str, Any]) -> None:
    with pytest.raises(CorruptEntryError, match="'value' cannot be read"):
        decode_value({"value": value}, CODEC)


def test_planted_stamps_beyond_datetime_are_corrupt_in_metadata() -> None:
    entry = to_entry({"createdTime": {"N": "9.9e125"}, "deadline": {"N": "9.9e125"}}, 1)
    with pytest.raises(CorruptEntryError, match="impossible time"):
        CacheMetadata.from_entry(entry, 1e9)


def test_huge_hit_counts_are_corrupt_never_rounded() -> None:
    """Before, 38 nines read as int(float(...)): 99999999999999997748809823456034029568,
    a count nobody made; see test_planted_hit_counts for the whole range of cases."""
    with pytest.raises(CorruptEntryError, match=r"holds hitCount '9{38}', not a whole number"):
        to_entry({"createdTime": {"N": "1"}, "hitCount": {"N": "9" * 38}}, 1, "ns:k")
    entry = to_entry({"createdTime": {"N": "1"}, "hitCount": {"N": str(2**53)}}, 1)
    assert CacheMetadata.from_entry(entry, 2.0).hit_count == 2**53  # exact, the largest
