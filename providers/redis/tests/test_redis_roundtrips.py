"""Round trips and commands, counted (never timed): one per single-key operation, SCAN not KEYS."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from cachehub_redis import RedisCache
from cachehub_redis.entry import HEADER
from cachehub_redis.server import RedisServer
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
    cache.put_many({"warm": 1, "warm2": 2})
    cache.put_many({"warm3": 3}, time_span=60)  # MSET takes no TTL: the SET_MANY script
    cache.delete_many(["warm2"])
    list(cache.keys())
    cache.count()
    cache.clear()  # also runs the delete script's scan check
    cache.put("warm", 1)
    cache.delete("warm")
    cache.put("warm", 1, idle_time=60)
    cache.get("warm")  # an idle read: the RECORD_READS script
    cache.delete("warm")
    with cache.lock("warm"):
        pass


@pytest.mark.parametrize(
    ("name", "operation"),
    [
        ("get", lambda c: c.get("k")),
        ("get missing", lambda c: c.get("absent")),
        ("get idle", lambda c: c.get("idle")),  # GET, then its new deadline: see below
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
    cache = make_cache(hitFlushInterval=0)
    _warm(cache)
    cache.put("k", "value", time_span=60)
    cache.put("idle", "value", idle_time=60)
    before = trips.count
    operation(cache)
    # Reading an idle entry moves the deadline every client sees: one more round trip.
    assert trips.count - before == (2 if name == "get idle" else 1), name


@pytest.mark.parametrize(
    ("name", "operation", "command"),
    [
        # GETRANGE: a GET that stops past maxValueSize (test_redis_value_bounds.py).
        ("get", lambda c: c.get("k"), "getrange"),
        ("get missing", lambda c: c.get("absent"), "getrange"),
        ("put", lambda c: c.put("k", {"a": 1}, time_span=60), "set"),
        ("put forever", lambda c: c.put("k", "v"), "set"),
        ("exists", lambda c: c.exists("k"), "getrange"),
        ("put_many", lambda c: c.put_many({f"k{i}": i for i in range(100)}), "mset"),
    ],
)
def test_hot_operations_are_one_native_command_no_script(
    make_cache: Callable[..., RedisCache],
    plain: Redis,
    name: str,
    operation: Callable[[RedisCache], object],
    command: str,
) -> None:
    cache = make_cache(hitFlushInterval=0)
    _warm(cache)
    cache.put_many({f"k{i}": i for i in range(100)})
    cache.put("k", "v", time_span=60)
    before = _commandstats(plain)
    operation(cache)
    # The client sent exactly that command (and the INFO of the first snapshot).
    assert _delta(before, _commandstats(plain)) == {command: 1, "info": 1}, name


def test_get_many_is_one_bounded_read_script(
    make_cache: Callable[..., RedisCache], plain: Redis, trips: RoundTrips
) -> None:
    """MGET cannot stop at maxValueSize: READ_MANY runs a GETRANGE per key instead, in
    one EVALSHA, one round trip (test_redis_value_bounds.py)."""
    cache = make_cache(hitFlushInterval=0)
    _warm(cache)
    keys = [f"k{i}" for i in range(100)]
    cache.put_many(dict.fromkeys(keys, "v"))
    before, sent = _commandstats(plain), trips.count
    assert cache.get_many(keys) == dict.fromkeys(keys, "v")
    assert trips.count - sent == 1
    assert _delta(before, _commandstats(plain)) == {"evalsha": 1, "getrange": 100, "info": 1}


def test_metadata_reads_the_entry_and_its_server_ttl_in_one_script(
    make_cache: Callable[..., RedisCache], plain: Redis
) -> None:
    """The server's clock decides expiry, so metadata() reads the TTL Redis applies (and
    the server's time, which an idle entry's cap is on)."""
    cache = make_cache(hitFlushInterval=0)
    _warm(cache)
    cache.put("k", "v", time_span=60)
    cache.metadata("k")
    before = _commandstats(plain)
    cache.metadata("k")
    changed = _delta(before, _commandstats(plain))
    assert changed == {"evalsha": 1, "getrange": 1, "pttl": 1, "time": 1, "info": 1}


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


def test_counted_reads_are_written_back_by_one_script_call(
    make_cache: Callable[..., RedisCache], plain: Redis, trips: RoundTrips
) -> None:
    cache = make_cache(hitCounts=True, hitFlushInterval=0)
    _warm(cache)
    cache.flush_hits()
    cache.put_many({f"k{i}": i for i in range(100)})
    cache.get_many([f"k{i}" for i in range(100)])
    cache.get("k1")
    before, sent = _commandstats(plain), trips.count
    assert cache.flush_hits() == 100
    assert trips.count - sent == 1
    changed = _delta(before, _commandstats(plain))
    assert changed["evalsha"] == 1
    # get/set: the call's request record (read, then written: lost replies).
    assert not set(changed) - {"evalsha", "info", "getrange", "setrange", "get", "set"}
    assert cache.metadata("k1").hit_count == 2


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


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


@pytest.mark.parametrize(
    ("name", "operation"),
    [
        ("get_many idle", lambda c, keys: c.get_many(keys)),  # the new deadlines: a script
        ("put_many", lambda c, keys: c.put_many(dict.fromkeys(keys, "v"), idle_time=60)),
        ("delete_many", lambda c, keys: c.delete_many(keys)),
    ],
)
def test_a_batch_of_100_is_one_evalsha_on_the_server(
    make_cache: Callable[..., RedisCache],
    plain: Redis,
    name: str,
    operation: Callable[[RedisCache, list[str]], object],
) -> None:
    cache = make_cache()
    _warm(cache)
    keys = [f"k{i}" for i in range(100)]
    cache.put_many(dict.fromkeys(keys, "v"), idle_time=60)
    before = _commandstats(plain)
    operation(cache, keys)
    changed = _delta(before, _commandstats(plain))
    # One EVALSHA for the whole batch (a read's and its slide's for get_many); every
    # other command ran inside that script.
    assert changed["evalsha"] == (2 if name == "get_many idle" else 1), name
    inside = {"getrange", "setrange", "get", "set", "unlink", "pexpire", "pexpireat"}
    assert not set(changed) - {"evalsha", "info", "mget", *inside}


def test_batches_beyond_one_script_call_stay_one_round_trip(
    make_cache: Callable[..., RedisCache], plain: Redis, trips: RoundTrips
) -> None:
    cache = make_cache()
    _warm(cache)
    items = {f"k{i}": i for i in range(1200)}  # three calls of at most 500 keys
    cache.put_many(items)
    stats = _commandstats(plain)
    before = trips.count
    assert cache.get_many(list(items)) == items
    assert trips.count - before == 1
    assert _delta(stats, _commandstats(plain))["evalsha"] == 3
    stats = _commandstats(plain)
    before = trips.count
    assert cache.delete_many(list(items)) == 1200
    assert trips.count - before == 1
    assert _delta(stats, _commandstats(plain))["evalsha"] == 3


@pytest.mark.flushes_scripts
def test_lost_scripts_are_reloaded_inside_pipelined_batches(
    make_cache: Callable[..., RedisCache], plain: Redis
) -> None:
    cache = make_cache()
    items = {f"k{i}": f"v{i}" for i in range(1200)}
    cache.put_many(items)
    plain.script_flush()  # what a server restart without persistence does
    assert cache.get_many(list(items)) == items
    plain.script_flush()
    assert cache.delete_many(list(items)) == 1200


def test_count_and_clear_scan_inside_the_server_one_call_per_page(
    make_cache: Callable[..., RedisCache], plain: Redis, trips: RoundTrips
) -> None:
    cache = make_cache()
    _warm(cache)
    cache.put_many({f"k{i}": i for i in range(2500)})
    before, sent = _commandstats(plain), trips.count
    assert cache.count() == 2500
    sent = trips.count - sent
    changed = _delta(before, _commandstats(plain))
    # Each script call runs one SCAN page itself: the keys never reach the client.
    assert changed["evalsha"] == changed["scan"] == sent
    # Small values: 100 keys per MGET, after a STRLEN per key (O(1), copies nothing), the
    # check that keeps long strings out of MGET; never a GETRANGE per key.
    assert changed["mget"] >= 25
    assert changed["strlen"] >= 2500
    assert "getrange" not in changed
    assert "unlink" not in changed  # counting changes nothing
    assert "del" not in changed
    before = _commandstats(plain)
    assert cache.clear("k*") == 2500
    changed = _delta(before, _commandstats(plain))
    assert changed["evalsha"] == changed["scan"]
    assert changed["unlink"] >= 5  # at most 500 keys per UNLINK
    assert cache.count() == 0


def test_scans_read_large_values_by_header_only(
    make_cache: Callable[..., RedisCache], plain: Redis, redis_server: RedisServer
) -> None:
    # A database of its own: only this test's keys are scanned and counted.
    url = f"redis://{redis_server.host}:{redis_server.port}/7"
    own = Redis.from_url(url)
    try:
        own.flushdb()
    finally:
        own.close()
    cache = make_cache(url=url)
    _warm(cache)
    cache.put_many({f"big{i}": os.urandom(4096) for i in range(300)})  # incompressible
    before = _commandstats(plain)
    assert cache.count("big*") == 300
    changed = _delta(before, _commandstats(plain))
    # STRLEN tells a page's first 100 values are over 1 KiB: they and the rest of the page
    # are read by their 50-byte header (GETRANGE), none copied whole by MGET (before, the
    # first MGET of every page copied 100).
    assert "mget" not in changed
    assert changed["getrange"] == 300
    assert changed["strlen"] <= 100 * changed["scan"]
    assert cache.clear("big*") == 300
    assert cache.count() == 0


def test_filters_with_a_question_mark_are_checked_by_the_client_per_scan_batch(
    make_cache: Callable[..., RedisCache], plain: Redis
) -> None:
    cache = make_cache()
    _warm(cache)
    cache.put_many({f"k{i}": i for i in range(2500)})
    before = _commandstats(plain)
    # Redis' ? is one byte, the filter's one character: the client decides, per batch.
    assert cache.count("k?*") == 2500
    changed = _delta(before, _commandstats(plain))
    scans = changed["scan"]
    # SCAN's COUNT is a hint: batches of 1000 keys, each checked by one script call, and
    # one script call per SCAN page (SCAN_NAMES: the page's names that fit a key).
    assert changed["evalsha"] - scans == len(range(0, 2500, 1000)) <= scans
    before = _commandstats(plain)
    assert cache.clear("k?*") == 2500
    changed = _delta(before, _commandstats(plain))
    assert changed["evalsha"] - changed["scan"] == 3
    assert changed["mget"] == 25  # 100 small entries per MGET
    assert changed["unlink"] == 2 + 2 + 1  # batches of 1000, 1000, 500: UNLINKs of <= 500 keys


@pytest.mark.flushes_scripts
def test_a_lost_script_costs_one_extra_round_trip_once(
    make_cache: Callable[..., RedisCache], plain: Redis, trips: RoundTrips
) -> None:
    cache = make_cache()
    _warm(cache)
    cache.put("k", "v")
    plain.script_flush()  # what a server restart without persistence does
    before = trips.count
    assert cache.delete("k")
    assert trips.count - before == 2  # EVALSHA (NOSCRIPT), EVAL (3 with SCRIPT LOAD before)
    cache.put("k", "v")
    before = trips.count
    assert cache.delete("k")
    assert trips.count - before == 1


def test_plain_reads_never_write_by_default(
    make_cache: Callable[..., RedisCache], plain: Redis
) -> None:
    """#17: without hitCounts a read sends its one read command and nothing else - not
    later, when the flush interval has passed, nor on close()."""
    cache = make_cache(hitFlushInterval=0.000001)
    assert cache.counts_hits is False
    _warm(cache)
    cache.put_many({f"k{i}": i for i in range(100)})
    before = _commandstats(plain)
    for _ in range(3):
        assert cache.get("k1") == 1
        assert cache.exists("k2") is True
        assert cache.get_many([f"k{i}" for i in range(100)])["k99"] == 99
    assert cache.pending_hits() == 0
    cache.put("other", 1)  # a write after the interval: nothing pending to flush
    assert cache.flush_hits() == 0
    cache.close()
    assert _delta(before, _commandstats(plain)) == {
        "getrange": 3 + 3 + 300,  # get, exists, and get_many's script per key
        "evalsha": 3,
        "set": 1,
        "info": 1,
    }
    raw = plain.get(f"{cache.namespace}k1")
    assert raw is not None
    assert HEADER.unpack_from(raw)[5] == 0.0  # the stored hit count was never written
