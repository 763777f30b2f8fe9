"""``cachehub migrate`` where the report was not the truth: a target that does not
outlive the command, copies that read back as errors, its own copies taken for the
application's, dry runs that promise what the run refuses, foreign time stamps."""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cachehub_dynamodb import DynamoDBCache
from cachehub_memory import MemoryCache
from cachehub_redis import RedisCache
from click.testing import CliRunner
from rich.console import Console

import cachehub
from cachehub.api import Entry
from cachehub.cli import cli
from cachehub.cli.app import State
from cachehub.cli.migrate import _render
from cachehub.migration import MigrationReport
from cachehub.registry import Caches
from cachehub.testing import FakeClock

CREDENTIALS = {"accessKeyId": "AKIAMIGRATEHOSTILE01", "secretkey": "migrate-hostile-secret"}
_tables = itertools.count()

MakeTable = Callable[..., DynamoDBCache]


@pytest.fixture
def table(dynamodb_endpoint: str) -> Iterator[MakeTable]:
    """A DynamoDB cache on a table of this test's own (``itemFormat="lucee"`` etc. pass on)."""
    made: list[DynamoDBCache] = []
    name = f"migrate_hostile_{next(_tables)}_{uuid.uuid4().hex[:6]}"

    def make(**kwargs: Any) -> DynamoDBCache:
        settings = {"tableName": name, "host": dynamodb_endpoint, **CREDENTIALS}
        cache = DynamoDBCache(settings, **kwargs)
        made.append(cache)
        return cache

    yield make
    for cache in made:
        cache.close()


@pytest.fixture
def redis_cache(redis_url: str) -> Iterator[RedisCache]:
    cache = RedisCache(url=redis_url, namespace=f"t{uuid.uuid4().hex[:10]}:", name="r")
    yield cache
    cache.close()


def _shown(report: MigrationReport) -> str:
    console = Console(record=True, width=200)
    _render(report)(console)
    return console.export_text()


# -- 1. a process-local target ----------------------------------------------------------


@pytest.mark.parametrize("dry_run", [False, True])
def test_the_cli_refuses_a_memory_target(
    dynamodb_endpoint: str, tmp_path: Path, dry_run: bool
) -> None:
    """The copies would live in the command's process and end with it: on main the run
    said "✓ migration verified" (exit 0), and the resume file listed the lost keys as
    copied, so a rerun into a real target skipped them."""
    custom = {"tableName": f"migrate_hostile_cli_{dry_run}", "host": dynamodb_endpoint}
    dyn = {"class": "dynamodb", "custom": {**custom, **CREDENTIALS}}
    caches = Caches({"dyn": dyn, "mem": {"class": "memory"}})
    caches["dyn"].put_many({"a": 1, "b": 2})
    state = State()
    state._caches = caches
    resume = tmp_path / "resume.json"
    args = ["migrate", "dyn", "mem", "--resume-file", str(resume)]
    result = CliRunner().invoke(cli, [*args, "--dry-run"] if dry_run else args, obj=state)
    assert result.exit_code == 1, result.output
    assert "'mem' (MemoryCache) lives inside each process" in result.output
    assert "cachehub.migrate(caches['dyn'], caches['mem'])" in result.output
    assert "verified" not in result.output
    assert not resume.exists()
    assert caches["mem"].count() == 0
    # In process the memory target is the caller's own: still allowed.
    assert cachehub.migrate(caches["dyn"], caches["mem"]).succeeded


# -- 2. a copy that reads back as an error --------------------------------------------


def test_a_copy_the_target_cannot_read_back_is_that_keys_verdict(
    table: MakeTable, tmp_path: Path
) -> None:
    """Bytes starting like gzip are what Lucee's layout writes for its own encodings: the
    copy of such a value reads back as a ForeignEntryError. On main that error escaped
    the verification, the report was lost, and every rerun crashed the same way."""
    source = MemoryCache(name="src")
    source.put_many({"a": "fine", "blob": b"\x1f\x8b not gzip", "z": "fine"})
    target = table(itemFormat="lucee")
    resume = tmp_path / "resume.json"
    for run in range(2):
        report = cachehub.migrate(source, target, resume_file=resume)
        assert report.complete
        assert (report.copied, report.unchanged) == ((3, 0) if run == 0 else (0, 3))
        assert (report.checked, report.missing, report.different) == (3, 0, 1)
        assert report.first_different == ["blob"]
        [unreadable] = report.first_unreadable_copies
        assert unreadable["key"] == "blob"
        assert unreadable["error"].startswith("ForeignEntryError")
        assert report.verified is False
        assert not report.succeeded
        shown = _shown(report)
        assert "unreadable in target: 'blob' (ForeignEntryError" in shown
        assert "verification failed" in shown
    assert target.get_many(["a", "z"]) == {"a": "fine", "z": "fine"}


# -- 3. the migration's own copies ------------------------------------------------------


def _pair() -> tuple[FakeClock, MemoryCache, MemoryCache]:
    """A source and a target on one clock that never stands still between writes."""
    clock = FakeClock(math.floor(time.time()) + 0.25)
    return clock, MemoryCache(name="src", clock=clock), MemoryCache(name="dst", clock=clock)


def test_copies_written_but_not_recorded_are_recognised_on_resume(tmp_path: Path) -> None:
    """Ctrl-C after a batch reached the target, before the checkpoint recorded it. A
    copy's modification time is its write time, after the source's: on main the rerun
    counted those copies as "newer in the target, kept", never recorded nor verified them
    (7 of 10 checked), and so did every rerun after it."""
    clock, source, target = _pair()
    source.put_many({f"k{i:03d}": i for i in range(5)})
    source.put_many({f"k{i:03d}": i for i in range(5, 10)}, time_span=600)
    real = target.put_many
    writes: list[int] = []

    def put_many_then_ctrl_c(items: Any, **kwargs: Any) -> None:
        clock.advance(1)  # copies are written after the source's versions
        real(items, **kwargs)
        writes.append(1)
        if len(writes) == 3:  # batch 2 is two groups: k003-k004, and k005 with a TTL
            raise KeyboardInterrupt  # lands after the 2nd batch reached the target

    target.put_many = put_many_then_ctrl_c  # type: ignore[method-assign,assignment]
    resume = tmp_path / "resume.json"
    with pytest.raises(KeyboardInterrupt):
        cachehub.migrate(source, target, batch=3, resume_file=resume)
    del target.put_many
    assert target.count() == 6
    assert len(json.loads(resume.read_text())["done"]) == 3
    clock.advance(1)
    report = cachehub.migrate(source, target, batch=3, resume_file=resume)
    assert (report.unchanged, report.copied, report.kept_newer) == (6, 4, 0)
    assert (report.checked, report.verified, report.succeeded) == (10, True, True)
    assert len(json.loads(resume.read_text())["done"]) == 10
    again = cachehub.migrate(source, target, batch=3, resume_file=resume)
    assert (again.unchanged, again.copied, again.kept_newer, again.checked) == (10, 0, 0, 10)


def test_a_rerun_without_resume_file_finds_its_copies_and_keeps_the_applications() -> None:
    """Equal value and deadline: our copy (a concurrent or earlier run's). A different
    value, or the same value with another lifetime, written later: the application's."""
    clock, source, target = _pair()
    source.put_many({"plain": "v", "other": "v"})
    source.put("ttl", "v", time_span=600)
    source.put("relived", "v", time_span=600)
    clock.advance(5)
    assert cachehub.migrate(source, target).succeeded
    clock.advance(5)
    target.put("other", "written by the app")
    target.put("relived", "v", time_span=60)  # same value, the application's own expiry
    clock.advance(5)
    report = cachehub.migrate(source, target)
    assert (report.unchanged, report.copied, report.kept_newer) == (2, 0, 2)
    assert (report.checked, report.verified) == (2, True)
    assert target.get_many(["other", "relived"]) == {"other": "written by the app", "relived": "v"}
    dry = cachehub.migrate(source, target, dry_run=True)
    assert (dry.unchanged, dry.would_copy_count, dry.kept_newer) == (2, 0, 2)


# -- 5. dry runs ------------------------------------------------------------------------


def _counts(report: MigrationReport) -> dict[str, Any]:
    return {
        "copied": report.would_copy_count if report.dry_run else report.copied,
        "with_ttl": report.with_ttl,
        "idle": report.idle,
        "skipped_expired": report.skipped_expired,
        "refused": sorted(item["key"] for item in report.first_unwritable),
    }


def _far_source() -> MemoryCache:
    """A memory source whose ``far`` entry expires beyond the cap (written before it
    existed, as another store may hold): no put can make one."""
    source = MemoryCache(name="src")
    far = time.time() + timedelta(days=400_000).total_seconds()
    reads = source.peek

    def peek(key: str) -> Entry | None:
        if key == "far":
            now = time.time()
            return Entry("FAR", now, now, now, expires_at=far)
        return reads(key)

    source.peek = peek  # type: ignore[method-assign]
    source.put("far", "placeholder")
    return source


def test_a_dry_run_into_a_lucee_table_counts_what_the_run_refuses(table: MakeTable) -> None:
    """On main the dry run listed a set, an int of 40 digits and NaN as "would copy", an
    entry with under a second left too, and a TTL beyond the cap as "with an expiry": the
    run refuses the first three, skips the fourth and copies the last as never expiring."""
    source = _far_source()
    source.put_many({"ok": "fine", "tags": {"a", "b"}, "big": 10**40, "ratio": float("nan")})
    source.put("session", "x", idle_time=600)
    source.put("later", "x", time_span=600)
    source.put("soon", "x", time_span=1)  # under a second left once read: not copied
    target = table(itemFormat="lucee")
    dry = cachehub.migrate(source, target, dry_run=True)
    assert target.count() == 0
    expected = {
        "copied": 4,  # ok, session, later, far
        "with_ttl": 1,
        "idle": 1,
        "skipped_expired": 1,
        "refused": ["big", "ratio", "tags"],
    }
    assert _counts(dry) == expected
    assert {item["key"]: item["ttl"] for item in dry.would_copy}["far"] is None
    shown = _shown(dry)
    assert re.search(r"of which with TTL / idle\s+│ 1 / 1 ", shown)
    assert "refused: 'tags' (SerializationError" in shown
    report = cachehub.migrate(source, target)
    assert _counts(report) == expected
    assert target.get("far") == "FAR"
    assert target.metadata("far").time_to_live is None


def test_a_dry_run_into_a_default_table_counts_an_item_over_its_limit(table: MakeTable) -> None:
    source = MemoryCache(name="src")
    source.put_many({"small": b"x" * 10, "huge": os.urandom(512 * 1024)})  # incompressible
    target = table()
    dry = cachehub.migrate(source, target, dry_run=True)
    assert (dry.would_copy_count, dry.unwritable) == (1, 1)
    assert dry.first_unwritable[0]["key"] == "huge"
    report = cachehub.migrate(source, target)
    assert (report.copied, report.unwritable) == (1, 1)


def test_a_dry_run_into_redis_counts_a_value_its_codec_refuses(redis_cache: RedisCache) -> None:
    source = MemoryCache(name="src")
    source.put_many({"ok": 1, "gen": "placeholder"})
    reads = source.peek

    def peek(key: str) -> Entry | None:
        entry = reads(key)
        if key == "gen" and entry is not None:  # a value no codec can encode
            entry.value = (n for n in range(3))
        return entry

    source.peek = peek  # type: ignore[method-assign]
    dry = cachehub.migrate(source, redis_cache, dry_run=True)
    assert (dry.would_copy_count, dry.unwritable) == (1, 1)
    report = cachehub.migrate(source, redis_cache)
    assert (report.copied, report.unwritable) == (1, 1)
    assert report.first_unwritable[0]["key"] == dry.first_unwritable[0]["key"] == "gen"


# -- 6. a foreign last-access stamp ---------------------------------------------------


def test_an_idle_item_last_read_in_the_year_1e100_is_really_copied(
    table: MakeTable, redis_cache: RedisCache
) -> None:
    """Another writer's item: lastAccessed 1e100, idleTime 10. 1e100 + 10 == 1e100 in a
    float, so the copy's span from that stamp was 0: on main it was written dead (Redis
    PX 1) and counted as copied. It counts from now instead: dies within its idle time."""
    source = table()
    source.put("plain", 1)
    now = time.time()
    item = {
        source.key_name: {"S": "la_huge"},
        "value": {"N": "1"},
        "idleTime": {"N": "10"},
        "lastAccessed": {"N": "1e100"},
        "createdTime": {"N": str(now)},
    }
    source.client.put_item(TableName=source.table_name, Item=item)
    entry = source.peek("la_huge")
    assert entry is not None
    assert entry.idle == 10
    report = cachehub.migrate(source, redis_cache)
    assert (report.copied, report.idle, report.verified) == (2, 1, True)
    copy = redis_cache.peek("la_huge")
    assert copy is not None
    assert copy.value == 1
    deadline = copy.deadline()
    assert deadline is not None
    assert now < deadline <= time.time() + 10


def test_a_value_holding_nan_is_verified_and_recognised_as_copied() -> None:
    # On main NaN != NaN made the copy "different" (verification failed), and a rerun
    # took the copy for the application's newer write (kept_newer, never recorded).
    source, target = MemoryCache(name="src"), MemoryCache(name="dst")
    source.put("withnan", {"reading": [1.5, math.nan], "ok": True})
    source.put("plain", 1)
    first = cachehub.migrate(source, target)
    assert (first.copied, first.different, first.verified) == (2, 0, True)
    again = cachehub.migrate(source, target)
    assert (again.unchanged, again.kept_newer, again.copied) == (2, 0, 0)
    assert again.verified
