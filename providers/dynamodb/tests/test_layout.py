"""Item layout and read shape: one stamp per fresh item, projected batch reads, old items.

The request budget is counted in test_budget.py; these tests check what the requests ask
for, what comes back, and that metadata (created, modified, hits, last access) stays exact.
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from cachehub_dynamodb.items import read_attributes

from cachehub.errors import CacheBackendError, CacheError, CacheValueError
from cachehub.testing import FakeClock

from .conftest import RequestCounter

START = 1_700_000_000.25
HITS = {"hitCounts": True}
"""Settings of a cache that keeps per-entry hit counts (off by default)."""
"""A FakeClock start with a fractional part: stamps are stored with microseconds."""


def _raw(cache: Any, key: str) -> dict[str, Any]:
    item = cache.command("getItem", {cache.key_name: cache.namespace + key})
    assert item is not None
    return item  # type: ignore[no-any-return]


def _utc(stamp: float) -> datetime:
    return datetime.fromtimestamp(stamp, UTC)


def _bodies(cache: Any, operation: str) -> list[dict[str, Any]]:
    """The JSON bodies of every ``operation`` request the cache sends from now on."""
    bodies: list[dict[str, Any]] = []
    cache.client.meta.events.register(
        f"before-send.dynamodb.{operation}",
        lambda request, **_: bodies.append(json.loads(request.body)),
    )
    return bodies


def _responses(cache: Any, operation: str) -> list[dict[str, Any]]:
    """The parsed responses of every ``operation`` call from now on."""
    parsed: list[dict[str, Any]] = []
    cache.client.meta.events.register(
        f"after-call.dynamodb.{operation}", lambda **kw: parsed.append(kw["parsed"])
    )
    return parsed


# ---------------------------------------------------------------------- layout


def test_put_writes_one_stamp(make: Any) -> None:
    clock = FakeClock(START)
    cache = make(clock=clock)
    cache.put("k", "v")
    cache.put_many({"a": 1, "b": "two"})
    for key in ("k", "a", "b"):
        raw = _raw(cache, key)
        assert raw["createdTime"] == Decimal("1700000000.250000")
        assert not {"updatedTime", "lastAccessed", "hitCount"} & raw.keys()
    meta = cache.metadata("k")
    assert meta.created == meta.last_modified == _utc(START)
    assert meta.hit_count == 0


def test_incr_and_touch_set_updated_and_keep_created(make: Any) -> None:
    clock = FakeClock(START)
    cache = make(clock=clock)
    cache.put("n", 1)
    clock.advance(10)
    assert cache.incr("n", 2) == 3
    raw = _raw(cache, "n")
    assert raw["createdTime"] == Decimal("1700000000.250000")
    assert raw["updatedTime"] == Decimal("1700000010.250000")
    meta = cache.metadata("n")
    assert meta.created == _utc(START)
    assert meta.last_modified == _utc(START + 10)

    clock.advance(5)
    assert cache.touch("n", time_span=60)
    meta = cache.metadata("n")
    assert meta.created == _utc(START)
    assert meta.last_modified == _utc(START + 15)

    clock.advance(1)
    assert cache.incr("fresh") == 1  # a new counter: created and modified now
    meta = cache.metadata("fresh")
    assert meta.created == meta.last_modified == _utc(START + 16)


def test_items_of_the_previous_layout_read_the_same(make: Any) -> None:
    """Items written before: both stamps always, plus flushed read statistics."""
    clock = FakeClock(START + 100)
    cache = make(clock=clock, settings=HITS)
    cache.connect()
    old = {
        "value": cache.codec.dumps({"x": 1}),
        "createdTime": Decimal("1700000000.250000"),
        "updatedTime": Decimal("1700000050.500000"),
        "lastAccessed": Decimal("1700000060.000000"),
        "hitCount": 4,
    }
    for key in ("old", "old2"):
        cache.command("putItem", {cache.key_name: key, **old})
    assert cache.get("old") == {"x": 1}
    assert cache.get_many(["old", "old2"]) == {"old": {"x": 1}, "old2": {"x": 1}}
    meta = cache.metadata("old")
    assert meta.created == _utc(START)
    assert meta.last_modified == _utc(START + 50.25)
    assert meta.hit_count == 4 + 2  # stored hits + this process's pending ones
    cache.flush_hits()  # conditioned on the old item's updatedTime: applied
    assert make().metadata("old").hit_count == 6
    assert make().metadata("old2").hit_count == 5

    cache.get("old")
    make(clock=clock).put("old", "new")  # replaced by a new-layout item
    cache.flush_hits()
    assert make().metadata("old").hit_count == 0  # the old entry's hits went with it


# ---------------------------------------------------------------------- versions


def test_hits_of_an_entry_modified_elsewhere_are_dropped(make: Any) -> None:
    cache = make(settings=HITS)
    cache.put("n", 1)
    cache.get("n")
    make().incr("n")  # updatedTime appears: another version
    cache.flush_hits()
    assert make().metadata("n").hit_count == 0

    cache.put("k", "v")
    cache.get("k")
    cache.flush_hits()  # unchanged: the version is still the createdTime read
    assert make().metadata("k").hit_count == 1


def test_hits_of_foreign_items_without_stamps_are_kept(make: Any) -> None:
    cache = make(settings=HITS)
    cache.connect()
    cache.command("putItem", {cache.key_name: "tool", "value": 7})
    assert cache.get("tool") == 7
    assert cache.get_many(["tool"]) == {"tool": 7}
    assert cache.flush_hits() == 1
    assert make().metadata("tool").hit_count == 2


# ---------------------------------------------------------------------- projected reads


def test_get_many_asks_only_for_what_a_read_needs(counted: Any) -> None:
    cache, counter = counted(settings=HITS)
    keys = [f"k{i}" for i in range(30)]
    cache.put_many(dict.fromkeys(keys, "v"))
    cache.get_many(keys)
    cache.flush_hits()  # every item now also has lastAccessed and hitCount
    assert {"lastAccessed", "hitCount"} <= _raw(cache, "k0").keys()
    bodies = _bodies(cache, "BatchGetItem")
    responses = _responses(cache, "BatchGetItem")
    counter.reset()
    assert cache.get_many(keys) == dict.fromkeys(keys, "v")
    assert counter.calls == ["BatchGetItem"]
    request = bodies[-1]["RequestItems"][cache.table_name]
    assert request["AttributesToGet"] == read_attributes(cache.key_name)
    assert "ProjectionExpression" not in request  # cannot be mixed with AttributesToGet
    items = responses[-1]["Responses"][cache.table_name]
    assert len(items) == 30
    assert {name for item in items for name in item} == {cache.key_name, "value", "createdTime"}
    assert cache.metadata("k0").hit_count == 2  # metadata still reads everything


def test_get_many_without_hit_counts_leaves_the_version_stamps_on_the_server(
    counted: Any,
) -> None:
    """Only counted hits need an entry's version: a cache that does not count them reads
    key and value of a plain entry, nothing else (botocore parses every attribute)."""
    cache, counter = counted()
    keys = [f"k{i}" for i in range(30)]
    cache.put_many(dict.fromkeys(keys, "v"))
    cache.incr("n", 1)  # an entry with updatedTime too
    bodies = _bodies(cache, "BatchGetItem")
    responses = _responses(cache, "BatchGetItem")
    counter.reset()
    assert cache.get_many([*keys, "n"]) == {**dict.fromkeys(keys, "v"), "n": 1}
    assert counter.calls == ["BatchGetItem"]
    asked = bodies[-1]["RequestItems"][cache.table_name]["AttributesToGet"]
    assert asked == read_attributes(cache.key_name, versions=False)
    assert not {"createdTime", "updatedTime"} & set(asked)
    items = responses[-1]["Responses"][cache.table_name]
    assert {name for item in items for name in item} == {cache.key_name, "value"}
    assert cache.metadata("n").last_modified is not None  # metadata still reads everything


def test_an_idle_slide_read_without_versions_leaves_a_replacement_alone(counted: Any) -> None:
    """Between the batch read and its slide another process replaces the idle entry: the
    slide's condition (the deadline it read) fails, and the replacement keeps its own."""
    clock = FakeClock(START)
    cache, counter = counted(clock=clock)
    cache.put("idle", "old", idle_time=10)
    clock.advance(5)
    replaced = {**_raw(cache, "idle"), "value": "foreign", "deadline": Decimal(START + 1000)}
    slides: list[str] = []

    def replace_first(**_: Any) -> None:
        if not slides:  # once, just before the slide's UpdateItem goes out
            slides.append("replaced")
            cache.command("putItem", replaced)

    cache.client.meta.events.register("before-send.dynamodb.UpdateItem", replace_first)
    counter.reset()
    assert cache.get_many(["idle"]) == {"idle": "old"}  # what the read saw
    assert slides == ["replaced"]
    assert counter.calls.count("UpdateItem") == 1  # the slide was sent, and refused
    assert _raw(cache, "idle")["deadline"] == Decimal(START + 1000)
    assert _raw(cache, "idle")["value"] == "foreign"


@pytest.mark.parametrize(
    ("idle", "span"),
    [(5, None), (10, 5)],
    ids=["a shorter idle time", "a time span ending at the same deadline"],
)
def test_an_idle_slide_read_without_versions_leaves_a_replacement_with_the_same_deadline(
    counted: Any, idle: float, span: float | None
) -> None:
    """A replacement whose deadline happens to equal the one the read saw (another idle
    time or a time span, written 5 s after the old entry's last access) keeps its own
    expiry: the slide, computed from the old entry's, must not extend it. On main the
    slide's condition (the deadline alone) held, and the new entry, never read, got the
    old one's slide: 5 s more than its idle time, or past its time span."""
    clock = FakeClock(START)
    cache, _ = counted(clock=clock)
    cache.put("idle", "old", idle_time=10)  # deadline START + 10
    clock.advance(5)
    slides: list[str] = []

    def replace_first(**_: Any) -> None:
        if not slides:  # once, just before the slide's UpdateItem goes out
            slides.append("replaced")
            cache.put("idle", "new", idle_time=idle, time_span=span)  # deadline START + 10
            assert _raw(cache, "idle")["deadline"] == Decimal(str(START + 10))

    cache.client.meta.events.register("before-send.dynamodb.UpdateItem", replace_first)
    assert cache.get_many(["idle"]) == {"idle": "old"}  # what the read saw
    assert slides == ["replaced"]
    assert _raw(cache, "idle")["deadline"] == Decimal(str(START + 10))
    clock.advance(5.5)  # past the replacement's own deadline, never read since
    assert cache.get("idle") is None


def test_get_many_reads_items_without_value_in_full(counted: Any) -> None:
    """Dual access: the projected read shows no ``value``; those items are read again."""
    cache, counter = counted()
    kn = cache.key_name
    cache.put_many({f"k{i}": i for i in range(150)})
    cache.command("putItem", {kn: "user_001", "name": "Urs", "age": 30})
    cache.command("putItem", {kn: "user_002", "name": "Ada", "tags": {"x", "y"}})
    bodies = _bodies(cache, "BatchGetItem")
    counter.reset()
    keys = ["user_001", *(f"k{i}" for i in range(150)), "user_002", "absent"]
    found = cache.get_many(keys)
    assert found == {
        **{f"k{i}": i for i in range(150)},
        "user_001": {kn: "user_001", "name": "Urs", "age": 30},
        "user_002": {kn: "user_002", "name": "Ada", "tags": {"x", "y"}},
    }
    # ceil(153/100) projected reads, then one full read of the two foreign items only.
    assert counter.calls == ["BatchGetItem"] * 3
    full = bodies[-1]["RequestItems"][cache.table_name]
    assert "AttributesToGet" not in full
    assert sorted(k[kn]["S"] for k in full["Keys"]) == ["user_001", "user_002"]
    assert cache.get_all("user_*") == {
        "user_001": found["user_001"],
        "user_002": found["user_002"],
    }


def test_expired_foreign_items_are_not_read_again(counted: Any) -> None:
    clock = FakeClock(START)
    cache, counter = counted(clock=clock)
    kn = cache.key_name
    cache.command("putItem", {kn: "gone", "v": 1, "timeToLive": int(START) - 1})
    cache.command("putItem", {kn: "live", "v": 2, "timeToLive": int(START) + 60})
    cache.put("plain", "p")
    counter.reset()
    assert cache.get_many(["gone", "plain"]) == {"plain": "p"}
    assert counter.calls == ["BatchGetItem"]  # the expired one is known dead from its TTL
    counter.reset()
    assert cache.get_many(["gone", "live"]) == {
        "live": {kn: "live", "v": 2, "timeToLive": int(START) + 60}
    }
    assert counter.calls == ["BatchGetItem", "BatchGetItem"]


def test_projected_reads_keep_hashed_keys_and_idle_entries(counted: Any) -> None:
    clock = FakeClock(START)
    cache, counter = counted(clock=clock)
    long_key = "L" * 3000  # stored as sha256:..., with originalKey (checked on read)
    cache.put_many({long_key: 1, "short": 2})
    cache.put("idle", "i", idle_time=10, time_span=100)
    counter.reset()
    clock.advance(8)
    assert cache.get_many([long_key, "short", "idle"]) == {long_key: 1, "short": 2, "idle": "i"}
    assert counter.calls == ["BatchGetItem", "UpdateItem"]  # the idle entry slides
    clock.advance(8)  # 16 s after the put, 8 after the slide
    assert cache.get("idle") == "i"
    raw = _raw(cache, "idle")
    assert raw["deadline"] == Decimal(f"{START + 26:.6f}")
    assert raw["expiresAt"] == Decimal(f"{START + 100:.6f}")


def test_exists_and_delete_many_read_keys_and_expiry_only(counted: Any) -> None:
    cache, counter = counted()
    cache.put_many({"a": "x" * 1000, "b": 2})
    gets = _bodies(cache, "GetItem")
    batches = _bodies(cache, "BatchGetItem")
    counter.reset()
    assert cache.exists("a")
    assert cache.delete_many(["a", "b", "c"]) == 2
    assert counter.calls == ["GetItem", "BatchGetItem", "BatchWriteItem"]
    # Lucee's ``ttl`` too: a Lucee-written entry past it is no live entry (issue #18).
    expected = [cache.key_name, "deadline", "timeToLive", "ttl", "originalKey"]
    assert gets[-1]["AttributesToGet"] == expected
    assert batches[-1]["RequestItems"][cache.table_name]["AttributesToGet"] == expected


# ---------------------------------------------------------------------- validation


def test_cache_requests_skip_client_side_validation(counted: Any) -> None:
    """The provider builds its own requests: botocore does not re-check them."""
    cache, counter = counted()
    counter.reset()
    # A default client refuses this before sending (ConsistentRead must be a bool).
    with contextlib.suppress(CacheError):
        cache._send_request(
            "GetItem", TableName=cache.table_name, Key={"x": {"S": "k"}}, ConsistentRead=1
        )
    assert counter.calls == ["GetItem"]


@pytest.mark.parametrize(
    ("action", "data", "named"),
    [
        ("getItem", {"cacheKey": "k", "ConsistentRead": "yes"}, "ConsistentRead must be"),
        ("scan", {"Segment": "first", "TotalSegments": 2}, "Segment must be"),
        (
            "batchGetItem",
            {"keys": [{"cacheKey": "k"}], "ProjectionExpression": 5},
            "ProjectionExpression must be",
        ),
    ],
)
def test_commands_are_still_validated_before_sending(
    counted: Any, action: str, data: dict[str, Any], named: str
) -> None:
    cache, counter = counted()
    counter.reset()
    with pytest.raises(CacheValueError, match=named):  # the caller's input, named
        cache.command(action, data)
    assert counter.calls == []  # refused client-side, as by a default boto3 client


def test_bootstrap_parameters_are_still_validated(make: Any) -> None:
    cache = make(settings={"primaryKey": ""})  # only used for CreateTable
    counter = RequestCounter(cache.client)
    with pytest.raises(CacheBackendError, match="Invalid length for parameter KeySchema"):
        cache.put("k", "v")
    assert counter.calls == ["DescribeTable"]  # CreateTable was refused before sending
