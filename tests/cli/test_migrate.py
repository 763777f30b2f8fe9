"""``cachehub migrate``: values and remaining TTL preserved, resumable, dry run."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from cachehub.registry import Caches

from .conftest import RunCli, dynamo_entry

VALUES: dict[str, Any] = {
    "user_1": {"name": "Ada", "tags": ["a", "b"], "score": 1.5},
    "user_2": Decimal("99.99"),
    "user_3": datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
    "user_4": [1, "two", 3.0, True, None],
    "plain": "no expiry",
}
TTLS = {"user_1": 300, "user_2": 120, "user_3": 600}


def fill(cache: Any) -> None:
    for key, value in VALUES.items():
        cache.put(key, value, time_span=TTLS.get(key))


def assert_copied(target: Any, keys: list[str]) -> None:
    for key in keys:
        assert target.get(key) == VALUES[key]
        ttl = target.metadata(key).time_to_live
        if key in TTLS:
            # The copy never outlives the original and keeps (almost) all its lifetime.
            assert ttl is not None
            assert 0 < ttl.total_seconds() <= TTLS[key]
            assert ttl.total_seconds() > TTLS[key] - 60
        else:
            assert ttl is None


def test_memory_to_dynamodb_in_process_preserves_values_and_ttl(
    dynamodb_endpoint: str, namespace: str
) -> None:
    import cachehub

    config = {
        "mem": {"class": "memory"},
        "dynamo": dynamo_entry(dynamodb_endpoint, "cli_migrate", namespace=namespace),
    }
    caches = Caches(config)
    fill(caches["mem"])
    seen: list[tuple[str, int, int]] = []
    report = cachehub.migrate(
        caches["mem"], caches["dynamo"], batch=2, progress=lambda *p: seen.append(p)
    )
    assert report.copied == len(VALUES)
    assert report.with_ttl == len(TTLS)
    assert report.batches == 3
    assert report.verified is True
    assert (report.missing, report.different) == (0, 0)
    assert seen[-1] == ("verify", len(VALUES), len(VALUES))
    assert_copied(Caches(config)["dynamo"], list(VALUES))


def test_the_cli_refuses_a_memory_source_and_names_the_api(
    run_cli: RunCli, write_config: Any, dynamodb_endpoint: str, namespace: str
) -> None:
    config = write_config(
        {
            "mem": {"class": "memory"},
            "dynamo": dynamo_entry(dynamodb_endpoint, "cli_migrate", namespace=namespace),
        }
    )
    result = run_cli("--config", str(config), "migrate", "mem", "dynamo")
    assert result.code == 1
    assert "cachehub.migrate(caches['mem'], caches['dynamo'])" in result.stderr
    assert "verified" not in result.output


def test_redis_to_dynamodb_end_to_end_with_resume(
    run_cli: RunCli,
    write_config: Any,
    redis_url: str,
    dynamodb_endpoint: str,
    namespace: str,
    tmp_path: Path,
) -> None:
    config = write_config(
        {
            "redis": {"class": "redis", "custom": {"url": redis_url, "namespace": namespace}},
            "dynamo": dynamo_entry(dynamodb_endpoint, "cli_migrate", namespace=namespace),
        }
    )
    source = Caches(server_config=config)
    fill(source["redis"])
    target = Caches(server_config=config)["dynamo"]
    checkpoint = tmp_path / "migrate.checkpoint"
    base = ["--config", str(config), "migrate", "redis", "dynamo", "--filter", "user_*"]

    dry = run_cli(*base, "--dry-run", "--json")
    assert dry.code == 0, dry.output
    planned = dry.json()["would_copy"]
    assert sorted(item["key"] for item in planned) == ["user_1", "user_2", "user_3", "user_4"]
    assert {item["key"]: item["ttl"] is None for item in planned}["user_4"] is True
    assert target.count() == 0  # a dry run copies nothing

    # "Interrupted" run: one batch of two keys, then stop.
    first = run_cli(*base, "--batch", "2", "--resume-file", str(checkpoint), "--max-batches", "1")
    assert first.code == 0, first.output
    assert "resume" in first.stdout
    assert sorted(target.keys()) == ["user_1", "user_2"]
    assert sorted(json.loads(checkpoint.read_text())["done"]) == ["user_1", "user_2"]
    assert json.loads(checkpoint.read_text())["complete"] is False

    resumed = run_cli(*base, "--batch", "2", "--resume-file", str(checkpoint), "--json")
    assert resumed.code == 0, resumed.output
    report = resumed.json()
    assert (report["unchanged"], report["copied"], report["complete"]) == (2, 2, True)
    assert report["verified"] is True
    assert sorted(target.keys()) == ["user_1", "user_2", "user_3", "user_4"]
    assert_copied(target, ["user_1", "user_2", "user_3", "user_4"])

    # Idempotent: running again copies nothing new and still verifies.
    again = run_cli(*base, "--resume-file", str(checkpoint), "--json")
    assert (again.code, again.json()["copied"], again.json()["verified"]) == (0, 0, True)

    # A change at the source after completion is copied by the next run, not skipped.
    source["redis"].put("user_4", "changed")
    changed = run_cli(*base, "--resume-file", str(checkpoint), "--json")
    assert changed.code == 0, changed.output
    assert (changed.json()["copied"], changed.json()["recopied"]) == (1, 1)
    assert changed.json()["unchanged"] == 3
    assert target.get("user_4") == "changed"

    # A checkpoint of another migration is refused, not silently reused.
    other = run_cli(
        "--config", str(config), "migrate", "dynamo", "redis", "--resume-file", str(checkpoint)
    )
    assert other.code == 1
    assert "belongs to another migration" in other.stderr


def test_migrate_keeps_entries_that_outlive_the_expiry_cap() -> None:
    """Not reported as expired (silently dropped), nor refused by the target: kept."""
    from datetime import timedelta

    from cachehub.api import MAX_TIME_SPAN, Entry
    from cachehub.migration import MigrationReport, _plan, _write

    now = datetime.now(UTC).timestamp()
    far = timedelta(days=400_000).total_seconds()  # ~1,095 years: beyond the cap
    entries = {
        "far": Entry("FAR", now, now, now, expires_at=now + far),
        "idle": Entry("IDLE", now, now, now, idle=far),
    }
    plan, dying = _plan(entries, now)
    assert dying == 0
    assert plan.forever == {"far": "FAR"}
    assert plan.idle["idle"].idle == MAX_TIME_SPAN.total_seconds()
    target = Caches({"m": {"class": "memory"}})["m"]
    report = MigrationReport("s", "m", None, False)
    assert _write(target, plan, report) == (set(), set())
    assert report.unwritable == 0
    assert target.get_many(["far", "idle"]) == {"far": "FAR", "idle": "IDLE"}


def test_a_deeply_nested_resume_file_is_a_config_error(tmp_path: Path) -> None:
    import pytest

    from cachehub.cli.migrate import Checkpoint
    from cachehub.errors import ConfigError

    path = tmp_path / "resume.json"
    path.write_text('{"source": "a", "target": "b", "done": ' + "[" * 100_000)
    with pytest.raises(ConfigError, match="not a cachehub migrate checkpoint"):
        Checkpoint.load(path, "a", "b", None)
