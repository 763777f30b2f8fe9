"""The item layout's rules, function by function, without a server.

What docs/dynamodb.md says an item holds and how a read judges it: the expiry attributes
a write stores, which attribute decides liveness (``deadline``, else ``timeToLive``, else
Lucee's ``ttl``, the earlier of the last two when both are there) and at which instant,
how Lucee's millisecond stamps are told from seconds, which stamp is an item's version,
and which key an item belongs to. Exact values and both sides of every boundary, so that
an off-by-one or a swapped branch in items.py fails here in milliseconds (the cosmic-ray
run of items.py runs these first; see docs/conformance.md).
"""

from __future__ import annotations

from typing import Any

import pytest
from cachehub_dynamodb.items import (
    ACCESSED,
    CREATED,
    DEADLINE,
    EXPIRES,
    HASH_PREFIX,
    HITS,
    IDLE,
    LUCEE_TTL,
    MODIFIED,
    MS_STAMPS,
    ORIGINAL_KEY,
    TTL,
    deadline_of,
    expiry_attrs,
    expiry_of,
    fresh_attrs,
    is_live,
    needs_owner_check,
    num,
    number,
    owner_condition,
    owns,
    same_version,
    stamp,
    to_entry,
    version_of,
)

from cachehub.api import Expiry
from cachehub.errors import CorruptEntryError

T = 1_700_000_000.25
"""A deadline with a fractional second, as the cache writes them (microseconds)."""
HEX = "ab" * 32


def n(value: float) -> dict[str, str]:
    return {"N": repr(value)}


# -- numbers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (5, "5"),
        (-3, "-3"),
        (0, "0"),
        (2**60, str(2**60)),  # an int stays exact, never through a float
        (1.5, "1.500000"),
        (T, "1700000000.250000"),
        (-0.25, "-0.250000"),
        (999_999_999_999_999.9, "999999999999999.875000"),  # just below 1e15: microseconds
        (1e15, "1000000000000000"),  # from 1e15 on: whole numbers
        (-1e15, "-1000000000000000"),
        (2.5e15, "2500000000000000"),
    ],
)
def test_num_writes_ints_exactly_and_floats_to_the_microsecond(value: float, text: str) -> None:
    assert num(value) == {"N": text}


def test_number_reads_a_number_and_treats_other_types_as_absent() -> None:
    item = {"a": {"N": "12.5"}, "b": {"S": "12.5"}, "c": {"N": "-0"}}
    assert number(item, "a") == 12.5
    assert number(item, "b") is None
    assert number(item, "missing") is None
    assert number(item, "c") == 0.0
    with pytest.raises(CorruptEntryError, match="'d' is not a finite Number"):
        number({"d": {"N": "Infinity"}}, "d")


# -- liveness and the deadline ----------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "deadline"),
    [
        ({}, None),
        ({DEADLINE: n(T)}, T),
        # The exact deadline decides alone, even beside an earlier ttl of either kind.
        ({DEADLINE: n(T), TTL: n(T - 100), LUCEE_TTL: n(T - 200)}, T),
        ({TTL: n(T)}, T),
        ({LUCEE_TTL: n(T)}, T),
        ({TTL: n(T), LUCEE_TTL: n(T + 5)}, T),  # both: whichever comes first
        ({TTL: n(T + 5), LUCEE_TTL: n(T)}, T),
        # not a Number: already past, -inf (test_shared_table.py)
    ],
    ids=[
        "none",
        "deadline",
        "deadline-beats-ttls",
        "ttl",
        "lucee-ttl",
        "ttl-first",
        "lucee-first",
    ],
)
def test_the_deadline_and_liveness_follow_one_rule(
    item: dict[str, Any], deadline: float | None
) -> None:
    assert deadline_of(item) == deadline
    if deadline is None:
        assert is_live(item, T)
        assert is_live(item, 1e12)
        return
    # Alive strictly before the deadline, dead at the instant itself and after.
    assert is_live(item, deadline - 0.001)
    assert is_live(item, deadline - 1)
    assert not is_live(item, deadline)
    assert not is_live(item, deadline + 0.001)
    assert not is_live(item, deadline + 1e6)


def test_a_deadline_of_nan_is_never_alive_and_garbage_is_corrupt() -> None:
    assert not is_live({TTL: {"N": "NaN"}}, 0.0)
    with pytest.raises(CorruptEntryError, match="not a Number"):
        is_live({TTL: {"N": "tomorrow"}}, T)


# -- what a write stores ----------------------------------------------------------------


def test_an_entry_that_never_expires_stores_no_expiry_attribute() -> None:
    assert expiry_attrs(Expiry(), T) == {}
    assert fresh_attrs(Expiry(), T) == {CREATED: num(T)}


def test_an_absolute_expiry_stores_the_deadline_and_its_ceiling() -> None:
    assert expiry_attrs(Expiry(T + 10, None), T) == {
        DEADLINE: num(T + 10),
        TTL: {"N": "1700000011"},  # rounded up: DynamoDB never deletes it early
    }
    # A whole second stays that second.
    assert expiry_attrs(Expiry(1_700_000_010.0, None), T)[TTL] == {"N": "1700000010"}


def test_an_idle_time_stores_the_sliding_deadline_and_the_idle_seconds() -> None:
    assert expiry_attrs(Expiry(None, 30.0), T) == {
        DEADLINE: num(T + 30),
        TTL: {"N": "1700000031"},
        IDLE: num(30.0),
    }


def test_idle_time_and_absolute_expiry_store_both_and_the_earlier_deadline() -> None:
    expiry = Expiry(T + 10, 30.0)
    assert expiry_attrs(expiry, T) == {
        DEADLINE: num(T + 10),
        TTL: {"N": "1700000011"},
        IDLE: num(30.0),
        EXPIRES: num(T + 10),
    }
    assert fresh_attrs(expiry, T) == {CREATED: num(T), **expiry_attrs(expiry, T)}
    # Each alone is enough to store expiry attributes on a fresh item.
    assert IDLE in fresh_attrs(Expiry(None, 30.0), T)
    assert DEADLINE in fresh_attrs(Expiry(T + 10, None), T)


@pytest.mark.parametrize(
    "expiry", [Expiry(), Expiry(T + 10, None), Expiry(None, 30.0), Expiry(T + 10, 30.0)]
)
def test_a_stored_expiry_reads_back_as_the_same_policy(expiry: Expiry) -> None:
    item = fresh_attrs(expiry, T)
    assert expiry_of(item) == expiry


def test_a_bare_time_to_live_reads_as_an_absolute_expiry() -> None:
    assert expiry_of({TTL: n(T)}) == Expiry(T, None)
    assert expiry_of({LUCEE_TTL: n(T), TTL: n(T + 1)}) == Expiry(T, None)
    assert expiry_of({IDLE: n(30.0)}) == Expiry(None, 30.0)


# -- stamps and metadata ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("stored", "seconds"),
    [
        (T, T),
        (0.0, 0.0),
        (MS_STAMPS, MS_STAMPS),  # the bound itself is seconds (the year 5138)
        (MS_STAMPS + 1000, (MS_STAMPS + 1000) / 1000),
        (1_700_000_000_250.0, T),  # Lucee's epoch milliseconds
        (MS_STAMPS * 1000 - 1000, (MS_STAMPS * 1000 - 1000) / 1000),
        (MS_STAMPS * 1000, MS_STAMPS * 1000),  # beyond: left for from_entry to refuse
        (MS_STAMPS * 10_000, MS_STAMPS * 10_000),
        (-5.0, -5.0),
    ],
)
def test_millisecond_stamps_are_told_from_seconds(stored: float, seconds: float) -> None:
    assert stamp({CREATED: n(stored)}, CREATED) == seconds


def test_a_missing_stamp_stays_missing() -> None:
    assert stamp({}, CREATED) is None
    assert stamp({CREATED: {"S": "1"}}, CREATED) is None


def test_an_entry_as_written_by_put_was_modified_and_accessed_when_created() -> None:
    entry = to_entry({CREATED: n(T)}, "v")
    assert (entry.value, entry.created, entry.modified, entry.accessed, entry.hits) == (
        "v",
        T,
        T,
        T,
        0,
    )
    assert (entry.expires_at, entry.idle) == (None, None)


def test_an_entry_modified_and_read_later_keeps_each_stamp() -> None:
    item = {CREATED: n(T), MODIFIED: n(T + 5), ACCESSED: n(T + 9), HITS: {"N": "3"}}
    entry = to_entry(item, 1)
    assert (entry.created, entry.modified, entry.accessed, entry.hits) == (T, T + 5, T + 9, 3)


def test_a_last_access_before_the_last_modification_reads_as_the_modification() -> None:
    # A write-back of hits that lost a race with a touch: the entry was used when touched.
    entry = to_entry({CREATED: n(T), MODIFIED: n(T + 5), ACCESSED: n(T + 1)}, 1)
    assert entry.accessed == T + 5


def test_missing_stamps_fall_back_on_each_other_and_then_on_zero() -> None:
    only_modified = to_entry({MODIFIED: n(T)}, 1)
    assert (only_modified.created, only_modified.modified, only_modified.accessed) == (T, T, T)
    bare = to_entry({}, 1)
    assert (bare.created, bare.modified, bare.accessed, bare.hits) == (0.0, 0.0, 0.0, 0)


def test_an_unrecorded_access_is_unknown_zero_even_beside_stamps_before_1970() -> None:
    # 0 is "unknown" for a foreign item's stamps (to_entry); a stamp before the epoch
    # never makes the last access earlier than that.
    entry = to_entry({CREATED: n(-5.0)}, 1)
    assert (entry.created, entry.modified, entry.accessed) == (-5.0, -5.0, 0.0)


def test_an_entry_carries_the_stored_expiry_and_lucee_stamps_in_seconds() -> None:
    item = {
        CREATED: n(1_700_000_000_250.0),
        ACCESSED: n(1_700_000_009_000.0),
        DEADLINE: n(T + 40),
        IDLE: n(30.0),
        EXPIRES: n(T + 60),
    }
    entry = to_entry(item, 1)
    assert (entry.created, entry.modified, entry.accessed) == (T, T, 1_700_000_009.0)
    assert (entry.expires_at, entry.idle) == (T + 60, 30.0)


# -- versions ---------------------------------------------------------------------------


def test_the_version_is_the_modification_stamp_else_the_creation_stamp() -> None:
    assert version_of({CREATED: n(T), MODIFIED: n(T + 1)}) == (MODIFIED, n(T + 1))
    assert version_of({CREATED: n(T)}) == (CREATED, n(T))
    assert version_of({}) is None


def test_each_version_has_its_own_condition() -> None:
    assert same_version((MODIFIED, n(T))) == ("#up = :seen", {":seen": n(T)})
    assert same_version((CREATED, n(T))) == (
        "#cr = :seen AND attribute_not_exists(#up)",
        {":seen": n(T)},
    )
    assert same_version(None) == (
        "attribute_exists(#pk) AND attribute_not_exists(#up) AND attribute_not_exists(#cr)",
        {},
    )


# -- whose item -------------------------------------------------------------------------


def test_an_item_belongs_to_its_original_key_else_to_its_partition_key() -> None:
    assert owns({"pk": {"S": "ns:a"}}, "ns:a", "pk")
    assert not owns({"pk": {"S": "ns:b"}}, "ns:a", "pk")
    assert not owns({}, "ns:a", "pk")
    hashed = {"pk": {"S": "ns:" + HASH_PREFIX + HEX}, ORIGINAL_KEY: {"S": "ns:long"}}
    assert owns(hashed, "ns:long", "pk")
    assert not owns(hashed, "ns:other", "pk")
    # The original key decides even when the partition key happens to be the key asked.
    assert not owns({"pk": {"S": "ns:a"}, ORIGINAL_KEY: {"S": "ns:b"}}, "ns:a", "pk")


@pytest.mark.parametrize(
    ("storage_key", "pk", "check"),
    [
        ("ns:a", "ns:a", False),
        ("ns:long", "ns:" + HASH_PREFIX + HEX, True),  # hashed
        ("ns:" + HASH_PREFIX + HEX, "ns:" + HASH_PREFIX + HEX, True),  # shaped like a hash
        (HASH_PREFIX + HEX, HASH_PREFIX + HEX, True),
        ("ns:" + HASH_PREFIX + HEX + "x", "ns:" + HASH_PREFIX + HEX + "x", False),
        ("ns:" + HASH_PREFIX + HEX[:-1], "ns:" + HASH_PREFIX + HEX[:-1], False),
        ("ns:" + HASH_PREFIX + HEX.upper(), "ns:" + HASH_PREFIX + HEX.upper(), False),
    ],
)
def test_which_writes_check_the_owner(storage_key: str, pk: str, check: bool) -> None:
    assert needs_owner_check(storage_key, pk) is check


def test_the_owner_condition_fits_hashed_and_plain_keys() -> None:
    values = {":sk": {"S": "ns:long"}}
    assert owner_condition("ns:long", "ns:" + HASH_PREFIX + HEX) == (
        "(attribute_not_exists(#pk) OR #ok = :sk)",
        values,
    )
    assert owner_condition("ns:long", "ns:long") == (
        "(attribute_not_exists(#ok) OR #ok = :sk)",
        values,
    )


@pytest.mark.parametrize(
    "read",
    [lambda item: is_live(item, T), lambda item: number(item, DEADLINE)],
    ids=["is_live", "number"],
)
def test_a_long_bad_number_is_quoted_to_its_first_40_characters(read: Any) -> None:
    # Bounded messages: a planted attribute of any length shows 40 characters of itself.
    text = "9" * 39 + "xyz" + "9" * 10_000
    with pytest.raises(CorruptEntryError) as info:
        read({DEADLINE: {"N": text}})
    assert repr(text[:40]) in str(info.value)
    assert repr(text[:41]) not in str(info.value)
    assert repr(text[:39]) + ")" not in str(info.value)
