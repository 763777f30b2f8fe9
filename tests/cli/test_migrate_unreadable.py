"""One undecodable source entry never stops a migration, and is never reported as copied."""

from __future__ import annotations

import re
from typing import Any

import pytest
import redis
from cachehub_memory import MemoryCache
from cachehub_redis.entry import HEADER_SIZE

import cachehub
from cachehub.api import Entry
from cachehub.errors import CorruptEntryError
from cachehub.migration import SHOWN_DIFFERENCES
from cachehub.registry import Caches

from .conftest import RunCli


class _Rotting(MemoryCache):
    """A memory cache whose entries named ``bad*`` cannot be decoded (as if corrupt)."""

    def _get_entry(self, key: str, now: float) -> Entry | None:
        if self._user_key(key).startswith("bad"):
            raise CorruptEntryError(f"entry {self._user_key(key)!r} is not a cachehub entry.")
        return super()._get_entry(key, now)


def _pair() -> tuple[_Rotting, MemoryCache]:
    return _Rotting(name="src"), MemoryCache(name="dst")


def test_an_unreadable_entry_is_skipped_counted_and_the_rest_is_copied() -> None:
    src, dst = _pair()
    src.put_many({"a": 1, "bad1": 2, "b": 3})
    report = cachehub.migrate(src, dst)
    assert report.complete
    assert report.copied == 2
    assert dst.get_many(["a", "b", "bad1"]) == {"a": 1, "b": 3}
    assert report.unreadable == 1
    assert report.first_unreadable == [
        {"key": "bad1", "error": "CorruptEntryError: entry 'bad1' is not a cachehub entry."}
    ]
    assert report.verified is True  # the copies are right ...
    assert not report.succeeded  # ... but the migration is not: one entry is missing


def test_unreadable_entries_are_listed_up_to_the_limit_and_counted_beyond() -> None:
    src, dst = _pair()
    many = SHOWN_DIFFERENCES * 5
    src.put_many({f"bad{i:04}": i for i in range(many)} | {"good": 1})
    report = cachehub.migrate(src, dst, batch=7)
    assert report.unreadable == many
    assert len(report.first_unreadable) == SHOWN_DIFFERENCES
    assert report.copied == 1


def test_a_dry_run_counts_unreadable_entries_too() -> None:
    src, dst = _pair()
    src.put_many({"a": 1, "bad": 2})
    report = cachehub.migrate(src, dst, dry_run=True)
    assert (report.would_copy_count, report.unreadable) == (1, 1)
    assert dst.count() == 0


def test_a_dry_run_writes_no_resume_file(tmp_path: Any) -> None:
    """``--dry-run`` copies nothing and writes nothing: it created (or rewrote) the
    resume file (failed on main); it still reads one, to report what is unchanged."""
    src, dst = _pair()
    src.put_many({"a": 1, "b": 2})
    resume = tmp_path / "resume.json"
    cachehub.migrate(src, dst, dry_run=True, resume_file=resume)
    assert not resume.exists()
    cachehub.migrate(src, dst, resume_file=resume)
    before = resume.stat().st_mtime_ns, resume.read_bytes()
    src.put("c", 3)
    dry = cachehub.migrate(src, dst, dry_run=True, resume_file=resume)
    assert (dry.unchanged, dry.would_copy_count) == (2, 1)
    assert (resume.stat().st_mtime_ns, resume.read_bytes()) == before


def test_an_entry_signed_with_a_retired_key_is_reported_not_fatal() -> None:
    # Two caches on one shared in-process store: the writer signs with a key the
    # migrating reader no longer knows.
    caches = Caches(
        {
            "old": {
                "class": "memory",
                "custom": {"store": "s", "codec": "pickle", "signingKey": "first-signing-key-0001"},
            },
            "src": {
                "class": "memory",
                "custom": {"store": "s", "codec": "pickle", "signingKey": "second-signing-key-002"},
            },
            "dst": {"class": "memory"},
        }
    )
    caches["old"].put("stale", {"v": 1})
    caches["src"].put("fresh", {"v": 2})
    report = cachehub.migrate(caches["src"], caches["dst"])
    assert caches["dst"].get_many(["fresh", "stale"]) == {"fresh": {"v": 2}}
    assert report.unreadable == 1
    assert report.first_unreadable[0]["key"] == "stale"
    assert "k1" not in str(report.first_unreadable)  # never a key in the report


@pytest.mark.timeout(120)
def test_cli_reports_planted_garbage_and_exits_non_zero(
    run_cli: RunCli, write_config: Any, redis_url: str, namespace: str
) -> None:
    target_space = namespace.rstrip(":") + "-dst:"  # beside the source's, not inside it
    config = write_config(
        {
            "src": {"class": "redis", "custom": {"url": redis_url, "namespace": namespace}},
            # A distributed target: the command refuses one that lives in its own process.
            "dst": {
                "class": "redis",
                "custom": {"url": redis_url, "namespace": target_space},
            },
        }
    )
    src = Caches.from_file(config)["src"]
    client = redis.Redis.from_url(redis_url)
    try:
        src.put("good", "v")
        # Another program's bytes behind a genuine header: listed, but not decodable.
        src.put("planted", "to be overwritten")
        src.put("<script>", "to be overwritten")
        genuine = client.get(f"{namespace}planted")
        assert genuine is not None
        client.set(f"{namespace}planted", genuine[:HEADER_SIZE] + b"\xc1" * 64)
        client.set(f"{namespace}<script>", genuine[:HEADER_SIZE] + b"\xd9\xff")
        result = run_cli("--config", str(config), "migrate", "src", "dst", "--no-verify")
    finally:
        client.delete(f"{namespace}planted", f"{namespace}<script>", f"{namespace}good")
        client.delete(f"{target_space}good")
        client.close()
    assert result.code == 1, result.output
    assert "could not be read" in result.output
    assert "planted" in result.output
    assert "<script>" in result.output  # shown as text, never interpreted
    assert "verification failed" not in result.output  # --no-verify: nothing was checked


class _Upper(MemoryCache):
    """A target that stores keys upper-cased, as a Lucee-layout DynamoDB table does."""

    def _entry_key(self, key: str) -> str:
        return key.upper()


@pytest.mark.parametrize("dry_run", [True, False])
def test_colliding_keys_are_shown_and_none_is_copied(dry_run: bool) -> None:
    from rich.console import Console

    from cachehub.cli.migrate import _render

    source, target = MemoryCache(name="src"), _Upper(name="dst")
    source.put_many({"user": 1, "USER": 2, "other": 3})
    report = cachehub.migrate(source, target, dry_run=dry_run)
    assert (report.colliding, report.first_colliding) == (2, [["USER", "user"]])
    assert not report.succeeded
    console = Console(record=True, width=200)
    _render(report)(console)
    shown = console.export_text()
    assert re.search(r"colliding in the target, not copied\s+│ 2 ", shown)
    assert "colliding: 'USER', 'user'" in shown
    assert "rename them at the source" in shown
    assert target.get("user") is None
    assert target.get("other") == (None if dry_run else 3)
