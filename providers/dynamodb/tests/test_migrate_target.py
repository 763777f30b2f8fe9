"""``cachehub.migrate`` into a DynamoDB table other writers use: what the target already
holds is never overwritten by an older copy, nor another program's item by a copy."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cachehub_dynamodb import DynamoDBCache
from cachehub_memory import MemoryCache

from cachehub.api import Entry
from cachehub.migration import migrate
from cachehub.testing import FakeClock

Make = Callable[..., DynamoDBCache]


def test_a_value_written_to_the_target_during_the_migration_is_kept(
    make: Make, tmp_path: Path
) -> None:
    """The application, switched to the target, writes ``k3`` while the migration copies:
    the older source value must not replace it (on main it did, and the report said
    "verified")."""
    clock = FakeClock(1_700_000_000.0)
    source = MemoryCache(name="src", clock=clock)
    source.put_many({f"k{i}": f"old{i}" for i in range(5)})
    target = make(clock=clock)
    clock.advance(60)
    target.put("k1", "stale target copy")  # older than ...
    clock.advance(60)
    source.put("k1", "newest at source")  # ... the source's version: replaced
    clock.advance(60)
    reads = source.peek

    def peek(key: str) -> Entry | None:
        entry = reads(key)
        if key == "k3":  # the application writes while the migration runs
            target.put("k3", "written by the app")
        return entry

    source.peek = peek  # type: ignore[method-assign]
    dry = migrate(source, target, dry_run=True)
    assert (dry.would_copy_count, dry.kept_newer) == (4, 1)
    report = migrate(source, target, batch=2, resume_file=tmp_path / "resume.json")
    assert target.get("k3") == "written by the app"
    assert target.get("k1") == "newest at source"
    assert (report.copied, report.kept_newer, report.unwritable) == (4, 1, 0)
    assert report.succeeded
    assert report.verified
    del source.peek  # type: ignore[method-assign]
    # A rerun keeps it again; the source's newer writes still win.
    clock.advance(60)
    source.put("k3", "changed at the source later")
    again = migrate(source, target, resume_file=tmp_path / "resume.json")
    assert (again.unchanged, again.copied, again.kept_newer) == (4, 1, 0)
    assert target.get("k3") == "changed at the source later"


def test_another_programs_item_in_the_target_is_never_overwritten(make: Make) -> None:
    source = MemoryCache(name="src")
    source.put_many({"theirs": "copy", "mine": "copy", "plain": "copy"})
    target = make()
    foreign: dict[str, Any] = {target.key_name: {"S": "theirs"}, "value": {"B": b"\x99junk"}}
    target.client.put_item(TableName=target.table_name, Item=foreign)
    report = migrate(source, target)
    assert report.copied == 2
    assert report.unwritable == 1
    assert not report.succeeded
    assert report.first_unwritable[0]["key"] == "theirs"
    assert report.first_unwritable[0]["error"].startswith("CorruptEntryError")
    raw = target.client.get_item(
        TableName=target.table_name, Key={target.key_name: {"S": "theirs"}}, ConsistentRead=True
    )
    assert raw["Item"] == foreign
    assert target.get_many(["mine", "plain"]) == {"mine": "copy", "plain": "copy"}


def test_a_key_copied_before_is_copied_again_when_the_source_changes(
    make: Make, tmp_path: Path
) -> None:
    """The resume file says this run's copy is in the target: a change at the source wins
    even when the target's clock runs ahead of the source's (its copy looks newer)."""
    source_clock = FakeClock(1_700_000_000.0)
    source = MemoryCache(name="src", clock=source_clock)
    target = make(clock=FakeClock(1_700_090_000.0))  # a day ahead
    source.put("k", "v1")
    resume = tmp_path / "resume.json"
    assert migrate(source, target, resume_file=resume).copied == 1
    source_clock.advance(60)
    source.put("k", "v2")
    again = migrate(source, target, resume_file=resume)
    assert (again.copied, again.recopied, again.kept_newer) == (1, 1, 0)
    assert target.get("k") == "v2"


def test_keys_that_are_one_entry_in_a_lucee_target_are_reported_not_overwritten(
    make: Make,
) -> None:
    """Lucee's layout upper-cases keys (``CacheUtil.key``): ``user`` and ``USER`` are one
    item. On main the copy wrote both and the last replaced the first: the report said
    "copied", and only a sampled value check (50 of all keys) could notice it, as a "value
    different" - with more keys, silently lost."""
    source = MemoryCache(name="src")
    source.put_many({"user": "lower", "USER": "upper", " User ": "spaced", "plain": 1})
    source.put_many({f"dup{i}": i for i in range(25)} | {f"DUP{i}": i for i in range(25)})
    target = make(itemFormat="lucee")
    dry = migrate(source, target, dry_run=True)
    assert (dry.would_copy_count, dry.colliding) == (1, 53)
    assert len(dry.first_colliding) == 20  # bounded: the count is complete
    assert [" User ", "USER", "user"] in dry.first_colliding
    report = migrate(source, target)
    assert (report.total, report.copied, report.colliding) == (54, 1, 53)
    assert not report.succeeded
    assert target.get("user") is None  # none of them replaced another
    assert target.get("plain") == 1
