"""``from-lucee`` on ordinary Lucee tables: no entry aborts the run, and the report counts
what the table held.

Before the fixes a ttl far in the future (``ValueError: year out of range``, or a
deadline beyond cachehub's 1,000-year cap), a value the target cannot store, or an
entry dying while its chunk was being copied raised out of ``convert_from_lucee``,
leaving a partial copy; and ``expired`` was always 0 (the scan hid expired items).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from cachehub_dynamodb import DynamoDBCache
from cachehub_dynamodb.lucee import LuceeDynamoDBCache, convert_from_lucee
from cachehub_memory import MemoryCache

from cachehub.testing import FakeClock

from .conftest import CREDENTIALS

T0 = 1_700_000_000.25  # 1700000000250 ms
NOW_S = 1_700_000_000

Make = Callable[..., DynamoDBCache]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def lucee(make: Make, clock: FakeClock) -> LuceeDynamoDBCache:
    cache = make(settings={"itemFormat": "lucee"}, clock=clock)
    assert isinstance(cache, LuceeDynamoDBCache)
    cache.connect()
    return cache


def _plant(cache: DynamoDBCache, pk: str, value: dict[str, Any], ttl: str | None = None) -> None:
    """An item as the extension's put leaves it (stamps in ms, ttl in epoch seconds)."""
    item: dict[str, Any] = {
        "cacheKey": {"S": pk},
        "value": value,
        "createdTime": {"N": "1700000000000"},
        "updatedTime": {"N": "1700000000000"},
    }
    if ttl is not None:
        item["ttl"] = {"N": ttl}
    cache.client.put_item(TableName=cache.table_name, Item=item)


def test_a_deadline_beyond_cachehubs_longest_expiry_never_expires(
    lucee: LuceeDynamoDBCache, clock: FakeClock
) -> None:
    """Lucee takes any span: ``cachePut(id, v, 1000000)`` (a million days, a common
    "forever") and a ttl of 10^15 s (beyond any datetime) are copied without expiry, as
    ``cachehub migrate`` copies deadlines beyond ``MAX_TIME_SPAN``."""
    _plant(lucee, "A_PLAIN", {"S": "a"})
    _plant(lucee, "B_HUGE", {"S": "b"}, ttl="1000000000000000")
    _plant(lucee, "C_MILLION_DAYS", {"S": "c"}, ttl=str(NOW_S + 86_400 * 1_000_000))
    _plant(lucee, "D_HOUR", {"S": "d"}, ttl=str(NOW_S + 3600))
    target = MemoryCache(clock=clock)
    for dry_run in (True, False):
        report = convert_from_lucee(lucee, target, dry_run=dry_run)
        assert (report.copied, report.expired, report.skipped_count) == (4, 0, 0)
    assert report.unwritable_count == 0
    assert target.get_all() == {"A_PLAIN": "a", "B_HUGE": "b", "C_MILLION_DAYS": "c", "D_HOUR": "d"}
    assert target.metadata("B_HUGE").expires is None
    assert target.metadata("C_MILLION_DAYS").expires is None
    assert target.metadata("D_HOUR").expires == datetime.fromtimestamp(NOW_S + 3600, UTC)


def test_a_value_the_target_refuses_is_reported_and_the_run_goes_on(
    lucee: LuceeDynamoDBCache, make: Make, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A string set (another tool's; cachehub reads it as a set) has no Lucee
    counterpart, so a Lucee-format target refuses it: one entry unwritable, with its key."""
    _plant(lucee, "A_OK", {"S": "a"})
    _plant(lucee, "M_SET", {"SS": ["x", "y"]})
    _plant(lucee, "Z_OK", {"S": "z"})
    target = make(
        settings={"itemFormat": "lucee", "tableName": lucee.table_name + "_t"}, clock=clock
    )
    with caplog.at_level(logging.WARNING):
        report = convert_from_lucee(lucee, target)
    assert (report.copied, report.unwritable_count, report.skipped_count) == (2, 1, 0)
    assert report.unwritable[0]["key"] == "M_SET"
    assert report.unwritable[0]["error"].startswith("SerializationError: ")
    assert "'M_SET' could not be written" in caplog.text
    assert target.get_all() == {"A_OK": "a", "Z_OK": "z"}


def test_an_entry_that_dies_during_its_chunk_is_expired_not_an_error(
    lucee: LuceeDynamoDBCache, clock: FakeClock
) -> None:
    """Sessions with a second left: the clock moves on while the chunk is copied. Every
    entry after the first is dead by the time it is read, so it is expired (the chunk's
    single ``now`` had them all live, and the target refused the past deadline)."""
    for i in range(10):
        _plant(lucee, f"S{i}", {"S": "x"}, ttl=str(NOW_S + 1))
    target = MemoryCache(clock=clock)

    def tick(_: str) -> None:
        clock.advance(1)

    report = convert_from_lucee(lucee, target, on_entry=tick)
    assert (report.copied, report.expired, report.unwritable_count) == (1, 9, 0)
    assert target.count() == 0  # the one copy died with its original


def test_an_entry_that_dies_before_its_copy_is_written_is_expired(
    lucee: LuceeDynamoDBCache,
) -> None:
    """The target's clock is past the entry's ttl when the copy is written (the entry
    died between read and write): the target refuses the deadline, and the entry counts
    as expired, not as unwritable."""
    _plant(lucee, "DYING", {"S": "x"}, ttl=str(NOW_S + 5))
    _plant(lucee, "LIVE", {"S": "y"})
    target = MemoryCache(clock=FakeClock(T0 + 10))
    report = convert_from_lucee(lucee, target)
    assert (report.copied, report.expired, report.unwritable_count) == (1, 1, 0)
    assert target.get_all() == {"LIVE": "y"}


def test_expired_entries_the_scan_sees_are_counted(lucee: LuceeDynamoDBCache) -> None:
    """Expired Lucee items stay in the table until overwritten: the report counts those
    the filter selects (a ttl that is no Number is expired too, as for every listing)."""
    for i in range(3):
        _plant(lucee, f"OLD{i}", {"S": "x"}, ttl=str(NOW_S - 60))
    lucee.client.put_item(
        TableName=lucee.table_name,
        Item={"cacheKey": {"S": "OLD_ODD"}, "value": {"S": "x"}, "ttl": {"S": "soon"}},
    )
    _plant(lucee, "OTHER_OLD", {"S": "x"}, ttl=str(NOW_S - 60))
    _plant(lucee, "OLD_LIVE", {"S": "y"}, ttl=str(NOW_S + 60))
    _plant(lucee, "lowercase", {"S": "x"}, ttl=str(NOW_S - 60))  # no Lucee key: no entry
    target = MemoryCache(clock=FakeClock(T0))
    for dry_run in (True, False):
        report = convert_from_lucee(lucee, target, filter="old*", dry_run=dry_run)
        assert (report.copied, report.expired, report.skipped_count) == (1, 4, 0)
    everything = convert_from_lucee(lucee, MemoryCache(clock=FakeClock(T0)))
    assert (everything.copied, everything.expired) == (1, 5)


def test_a_rerun_finds_its_own_copies_and_keeps_the_applications(
    lucee: LuceeDynamoDBCache, clock: FakeClock
) -> None:
    # On main a second conversion counted every copy of the first as "newer in the
    # target (kept)": a copy's modification time is when it was written.
    _plant(lucee, "A", {"S": "a"})
    _plant(lucee, "B", {"S": "b"}, ttl=str(NOW_S + 3600))
    _plant(lucee, "C", {"S": "c"})
    target = MemoryCache(clock=clock)
    first = convert_from_lucee(lucee, target)
    assert (first.copied, first.unchanged, first.kept_newer) == (3, 0, 0)
    clock.advance(5)
    target.put("C", "the application's")  # written after Lucee's version
    again = convert_from_lucee(lucee, target)
    assert (again.copied, again.unchanged, again.kept_newer) == (0, 2, 1)
    assert target.get("C") == "the application's"


def test_the_command_lists_refused_entries_and_exits_1(endpoint: str, table_name: str) -> None:
    # The report counted them, but the command printed nothing of them and exited 0.
    import json

    from click.testing import CliRunner

    from cachehub.cli import cli
    from cachehub.cli.app import State
    from cachehub.registry import Caches

    custom = {"tableName": table_name, "host": endpoint, **CREDENTIALS, "itemFormat": "lucee"}
    config = {
        "lucee": {"class": "dynamodb", "custom": custom},
        "other": {"class": "dynamodb", "custom": {**custom, "tableName": table_name + "_t"}},
    }
    seed = Caches(config)
    try:
        source = seed["lucee"]
        assert isinstance(source, LuceeDynamoDBCache)
        source.connect()
        _plant(source, "OK", {"S": "a"})
        _plant(source, "SET", {"SS": ["x", "y"]})
        state = State()
        state._caches = Caches(config)
        done = CliRunner().invoke(cli, ["from-lucee", "lucee", "other", "--json"], obj=state)
        assert done.exit_code == 1, done.output
        doc = json.loads(done.stdout)
        assert (doc["copied"], doc["unwritable_count"]) == (1, 1)
        assert doc["unwritable"][0]["key"] == "SET"
    finally:
        seed.close()
