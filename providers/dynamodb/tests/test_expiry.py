"""Expiry on DynamoDB: native ``timeToLive`` plus exact deadlines enforced on every read."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from cachehub.testing import FakeClock


def _raw(cache: Any, key: str) -> dict[str, Any]:
    item = cache.command("getItem", {cache.key_name: cache.namespace + key})
    assert item is not None
    return item  # type: ignore[no-any-return]


def test_time_span_sets_native_ttl_and_expires_exactly(make: Any) -> None:
    clock = FakeClock()
    cache = make(clock=clock)
    cache.put("k", "v", time_span=10.5)
    item = _raw(cache, "k")
    assert item["timeToLive"] == math.ceil(clock() + 10.5)
    assert abs(item["deadline"] - (clock() + 10.5)) < 1e-3
    assert "expiresAt" not in item
    assert "idleTime" not in item
    clock.advance(10.4)
    assert cache.get("k") == "v"
    clock.advance(0.2)
    assert cache.get("k") is None
    assert not cache.exists("k")


def test_until_sets_the_deadline(make: Any) -> None:
    clock = FakeClock()
    cache = make(clock=clock)
    until = datetime.fromtimestamp(clock() + 3600, UTC)
    cache.put("job", {"id": 1}, until=until)
    assert _raw(cache, "job")["timeToLive"] == math.ceil(until.timestamp())
    clock.advance(3599)
    assert cache.get("job") == {"id": 1}
    clock.advance(2)
    assert cache.get("job") is None


def test_idle_time_slides_for_every_process(make: Any) -> None:
    clock = FakeClock()
    cache = make(clock=clock)
    other = make(clock=clock)  # another process on the same table
    cache.put("idle", "s", idle_time=timedelta(minutes=30))
    for _ in range(3):
        clock.advance(20 * 60)
        assert cache.get("idle") == "s"  # each read pushes the deadline
    assert other.get("idle") == "s"
    item = _raw(cache, "idle")
    assert item["idleTime"] == 1800
    assert item["timeToLive"] == math.ceil(clock() + 1800)
    clock.advance(31 * 60)
    assert other.get("idle") is None


def test_idle_time_capped_by_absolute_expiry(make: Any) -> None:
    clock = FakeClock()
    cache = make(clock=clock)
    cache.put("k", 1, time_span=100, idle_time=60)
    clock.advance(50)
    assert cache.get("k") == 1
    clock.advance(40)
    assert cache.get("k") == 1  # idle would allow 110, the absolute expiry says 100
    clock.advance(11)
    assert cache.get("k") is None


def test_expired_items_still_in_the_table_are_excluded_everywhere(make: Any) -> None:
    clock = FakeClock()
    cache = make(clock=clock, namespace="ns:")
    cache.put_many({"a": 1, "b": 2}, time_span=5)
    cache.put("c", 3)
    clock.advance(6)  # DynamoDB has not deleted a and b: only the clock moved
    assert cache.command("getItem", {cache.key_name: "ns:a"}) is not None
    assert sorted(cache.keys()) == ["c"]
    assert cache.count() == 1
    assert cache.count("?") == 1
    assert cache.get_all() == {"c": 3}
    assert cache.get_many(["a", "b", "c"]) == {"c": 3}
    assert cache.delete("a") is False
    assert cache.add("b", 20) is True  # add takes over an expired entry
    assert cache.get("b") == 20


def test_touch_replaces_the_expiry(make: Any) -> None:
    clock = FakeClock()
    cache = make(clock=clock)
    cache.put("k", "v", time_span=10)
    assert cache.touch("k") is True  # now never expires
    item = _raw(cache, "k")
    assert "timeToLive" not in item
    assert "deadline" not in item
    clock.advance(100)
    assert cache.get("k") == "v"
    assert cache.touch("k", idle_time=5)
    clock.advance(6)
    assert cache.get("k") is None
    assert cache.touch("k", time_span=5) is False


def test_incr_keeps_the_expiry(make: Any) -> None:
    clock = FakeClock()
    cache = make(clock=clock)
    cache.put("n", 1, time_span=10)
    assert cache.incr("n", 5) == 6
    clock.advance(11)
    assert cache.get("n") is None
    assert cache.incr("n") == 1  # an expired counter starts again from 0


def test_foreign_time_to_live_is_respected(make: Any) -> None:
    clock = FakeClock()
    cache = make(clock=clock)
    cache.connect()
    cache.command("putItem", {cache.key_name: "token", "v": "x", "timeToLive": int(clock()) + 60})
    assert cache.get("token") == {
        cache.key_name: "token",
        "v": "x",
        "timeToLive": int(clock()) + 60,
    }
    clock.advance(61)
    assert cache.get("token") is None
    assert list(cache.keys()) == []
