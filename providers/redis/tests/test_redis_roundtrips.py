"""Round trips and commands, counted (never timed): one per single-key operation, SCAN not KEYS."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from cachehub_redis import RedisCache
from redis import Redis
from redis.connection import AbstractConnection


class RoundTrips:
    """Counts every packet of commands redis-py writes: one write = one round trip."""

    def __init__(self) -> None:
        self.count = 0


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> RoundTrips:
    counter = RoundTrips()
    original = AbstractConnection.send_packed_command

    def counting(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        counter.count += 1
        original(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    return counter


def _commandstats(client: Redis) -> dict[str, int]:
    stats: dict[str, Any] = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def _warm(cache: RedisCache) -> None:
    """Connect and load every script, so counts below measure steady state."""
    cache.put("warm", 1)
    cache.get("warm")
    cache.add("warm", 1)
    cache.incr("warm")
    cache.touch("warm", time_span=60)
    cache.exists("warm")
    cache.metadata("warm")
    cache.get_many(["warm"])
    cache.delete("warm")
    with cache.lock("warm"):
        pass


@pytest.mark.parametrize(
    ("name", "operation"),
    [
        ("get", lambda c: c.get("k")),
        ("get missing", lambda c: c.get("absent")),
        ("put", lambda c: c.put("k", {"a": [1, 2]}, time_span=60)),
        ("put int", lambda c: c.put("k", 7)),
        ("add", lambda c: c.add("new", "v", idle_time=30)),
        ("incr", lambda c: c.incr("counter", 5)),
        ("delete", lambda c: c.delete("k")),
        ("touch", lambda c: c.touch("k", time_span=10)),
        ("exists", lambda c: c.exists("k")),
        ("metadata", lambda c: c.metadata("k")),
    ],
)
def test_single_key_operations_take_one_round_trip(
    make_cache: Callable[..., RedisCache],
    trips: RoundTrips,
    name: str,
    operation: Callable[[RedisCache], object],
) -> None:
    cache = make_cache()
    _warm(cache)
    cache.put("k", "value", idle_time=60)
    before = trips.count
    operation(cache)
    assert trips.count - before == 1, name


def test_batches_take_one_round_trip_on_a_single_node(
    make_cache: Callable[..., RedisCache], trips: RoundTrips
) -> None:
    cache = make_cache()
    _warm(cache)
    items = {f"k{i}": i if i % 2 else f"v{i}" for i in range(100)}

    before = trips.count
    cache.put_many(items, time_span=60)
    assert trips.count - before == 1

    before = trips.count
    assert cache.get_many(list(items)) == items
    assert trips.count - before == 1

    before = trips.count
    assert cache.delete_many(list(items)) == 100
    assert trips.count - before == 1


def test_get_is_one_evalsha_on_the_server(
    make_cache: Callable[..., RedisCache], plain: Redis
) -> None:
    cache = make_cache()
    _warm(cache)
    cache.put("k", "v")
    before = _commandstats(plain)
    assert cache.get("k") == "v"
    after = _commandstats(plain)
    changed = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    # Redis also counts the commands the script runs; the client sent only EVALSHA (and the
    # INFO of the first snapshot, counted by the second one).
    inside_script = {"type", "hmget", "hincrby", "hset"}
    assert changed["evalsha"] == 1
    assert set(changed) - inside_script == {"evalsha", "info"}


def test_listing_uses_scan_never_keys_or_flush(
    make_cache: Callable[..., RedisCache], plain: Redis
) -> None:
    cache = make_cache()
    cache.put_many({f"k{i}": i for i in range(30)})
    plain.config_resetstat()
    assert sorted(cache.keys("k1*")) == ["k1", *(f"k1{i}" for i in range(10))]
    assert cache.count() == 30
    assert len(cache.get_all("k2?")) == 10
    assert cache.clear("k*") == 30
    stats = _commandstats(plain)
    assert stats["scan"] >= 4
    for forbidden in ("keys", "flushdb", "flushall"):
        assert forbidden not in stats
