"""The core's expiry contract at its exact edges, without a cache.

tests/test_api.py checks the expiry arguments and metadata by example; these pin the
limits themselves (the longest span as an int, an ``until`` exactly 1,000 years ahead),
what a fresh or default entry holds, and that an entry without expiry never dies. They
are the first stage of the cosmic-ray run of api.py's expiry pieces (docs/conformance.md).
"""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from datetime import UTC, datetime, timedelta

import pytest

from cachehub.api import (
    MAX_TIME_SPAN,
    NO_EXPIRY,
    CacheMetadata,
    Entry,
    Expiry,
    make_expiry,
)
from cachehub.errors import CacheValueError

NOW = 1_700_000_000.5
LONGEST = int(MAX_TIME_SPAN.total_seconds())


def test_the_longest_span_as_an_int_is_accepted_and_one_more_second_is_not() -> None:
    assert make_expiry(LONGEST, LONGEST, None, NOW) == Expiry(NOW + LONGEST, float(LONGEST))
    for which in ("time_span", "idle_time"):
        args = {"time_span": None, "idle_time": None, which: LONGEST + 1}
        with pytest.raises(CacheValueError, match=f"{which} must be .*at most 365,250 days"):
            make_expiry(args["time_span"], args["idle_time"], None, NOW)
        args[which] = -LONGEST - 1  # too long and negative: refused either way
        with pytest.raises(CacheValueError, match=which):
            make_expiry(args["time_span"], args["idle_time"], None, NOW)


def test_an_until_exactly_the_longest_span_ahead_is_accepted() -> None:
    until = datetime.fromtimestamp(NOW, UTC) + MAX_TIME_SPAN
    assert make_expiry(None, None, until, NOW).expires_at == NOW + LONGEST


def test_the_smallest_positive_span_is_a_span() -> None:
    assert make_expiry(1e-6, None, None, NOW) == Expiry(NOW + 1e-6, None)
    assert make_expiry(None, 1e-6, None, NOW) == Expiry(None, 1e-6)
    assert make_expiry(1, None, None, NOW) == Expiry(NOW + 1, None)


def test_only_idle_time_or_only_until_is_not_no_expiry() -> None:
    assert make_expiry(None, 5, None, NOW) is not NO_EXPIRY
    until = datetime.fromtimestamp(NOW + 1, UTC)
    assert make_expiry(None, None, until, NOW) == Expiry(NOW + 1, None)


def test_a_fresh_entry_holds_its_write_instant_and_no_hits() -> None:
    entry = Entry.new("v", Expiry(NOW + 10, 5.0), NOW)
    assert (entry.value, entry.created, entry.modified, entry.accessed, entry.hits) == (
        "v",
        NOW,
        NOW,
        NOW,
        0,
    )
    assert entry.expiry == Expiry(NOW + 10, 5.0)
    assert entry.deadline() == NOW + 5
    default = Entry("v", NOW, NOW, NOW)
    assert (default.hits, default.expires_at, default.idle) == (0, None, None)


def test_an_entry_without_expiry_never_dies() -> None:
    entry = Entry.new("v", NO_EXPIRY, NOW)
    assert entry.deadline() is None
    assert entry.alive(NOW + LONGEST * 10)
    assert NO_EXPIRY.deadline(NOW) is None


@pytest.mark.parametrize(
    ("expiry", "accessed", "deadline"),
    [
        (Expiry(NOW + 10, None), NOW + 3, NOW + 10),
        (Expiry(None, 4.0), NOW + 3, NOW + 7),
        (Expiry(NOW + 10, 4.0), NOW + 3, NOW + 7),  # the idle deadline comes first
        (Expiry(NOW + 5, 4.0), NOW + 3, NOW + 5),  # the absolute one comes first
    ],
)
def test_the_deadline_of_a_policy_and_of_an_entry_agree(
    expiry: Expiry, accessed: float, deadline: float
) -> None:
    assert expiry.deadline(accessed) == deadline
    entry = Entry("v", NOW, NOW, accessed, 0, expiry.expires_at, expiry.idle)
    assert entry.deadline() == deadline
    assert entry.alive(deadline - 1e-3)
    assert not entry.alive(deadline)


def test_metadata_of_an_entry_that_never_expires_and_of_an_idle_one() -> None:
    meta = CacheMetadata.from_entry(Entry("v", NOW, NOW + 1, NOW + 2, 7), NOW + 3)
    assert (meta.time_to_live, meta.expires, meta.idle_time, meta.hit_count) == (
        None,
        None,
        None,
        7,
    )
    idle = CacheMetadata.from_entry(Entry("v", NOW, NOW, NOW + 2, 0, None, 4.0), NOW + 3)
    assert idle.time_to_live == timedelta(seconds=3)
    assert idle.idle_time == timedelta(seconds=4)
    assert idle.expires == datetime.fromtimestamp(NOW + 6, UTC)
    at_deadline = CacheMetadata.from_entry(Entry("v", NOW, NOW, NOW, 0, NOW + 1), NOW + 1)
    assert at_deadline.time_to_live == timedelta(0)


def test_an_expiry_and_metadata_are_immutable_hashable_values() -> None:
    # metadata() hands CacheMetadata to callers, and an Expiry is shared between entries
    # (NO_EXPIRY by every put without one): neither may change under its holders.
    expiry = Expiry(NOW + 1, 2.0)
    with pytest.raises(FrozenInstanceError):
        expiry.idle = 3.0  # type: ignore[misc]
    assert hash(expiry) == hash(Expiry(NOW + 1, 2.0))
    meta = CacheMetadata.from_entry(Entry.new("v", expiry, NOW), NOW)
    with pytest.raises(FrozenInstanceError):
        meta.hit_count = 5  # type: ignore[misc]
    assert meta in {CacheMetadata.from_entry(Entry.new("v", expiry, NOW), NOW)}
