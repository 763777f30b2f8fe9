"""Request budgets, counted on the wire with a botocore ``before-send`` hook."""

from __future__ import annotations

import json
import math
import threading
import time
from typing import Any

import pytest

from cachehub.errors import CachePermissionError, ConfigError
from cachehub.testing import FakeClock

HITS = {"hitCounts": True}
"""Settings of a cache that keeps per-entry hit counts (off by default)."""


def test_single_key_operations_cost_one_request(counted: Any) -> None:
    cache, counter = counted()
    for operation, expected in [
        (lambda: cache.put("k", "v"), ["PutItem"]),
        (lambda: cache.get("k"), ["GetItem"]),
        (lambda: cache.get("missing"), ["GetItem"]),
        (lambda: cache.exists("k"), ["GetItem"]),
        (lambda: cache.add("k", "other"), ["PutItem"]),
        (lambda: cache.add("fresh", 1), ["PutItem"]),
        (lambda: cache.incr("fresh", 2), ["UpdateItem"]),
        (lambda: cache.incr("brand-new"), ["UpdateItem"]),
        (lambda: cache.delete("k"), ["DeleteItem"]),
        (lambda: cache.delete("k"), ["DeleteItem"]),
        (lambda: cache.touch("fresh", time_span=60), ["UpdateItem"]),
        (lambda: cache.metadata("fresh"), ["GetItem"]),
    ]:
        counter.reset()
        operation()
        assert counter.calls == expected
    assert cache.get("fresh") == 3


_STATISTICS = {"lastAccessed", "hitCount"}


def test_plain_reads_never_write_by_default(counted: Any, make: Any) -> None:
    """#17: a read is one read request and zero writes - now, after the flush interval
    has passed, on later writes and on close()."""
    clock = FakeClock()
    # A tiny interval: with counting on, the put below would flush the reads.
    cache, counter = counted(clock=clock, settings={"hitFlushInterval": 0.000001})
    assert cache.counts_hits is False
    keys = [f"k{i}" for i in range(100)]
    cache.put_many(dict.fromkeys(keys, "v"))
    counter.reset()
    for _ in range(3):
        assert cache.get("k0") == "v"
        assert cache.exists("k1") is True
        assert cache.get("absent") is None
    assert counter.calls == ["GetItem"] * 9
    counter.reset()
    assert cache.get_many(keys) == dict.fromkeys(keys, "v")
    assert counter.calls == ["BatchGetItem"]
    assert cache.pending_hits() == 0
    time.sleep(0.01)  # the flush interval has passed
    clock.advance(120)
    counter.reset()
    cache.put("other", 1)
    cache.delete("other")
    assert counter.calls == ["PutItem", "DeleteItem"]
    counter.reset()
    assert cache.flush_hits() == 0
    cache.close()
    assert counter.calls == []
    raw = make().command("getItem", {cache.key_name: "k0"})
    assert not _STATISTICS & raw.keys()  # no write ever reached the item


def test_metadata_without_hit_counts_shows_the_last_write(counted: Any) -> None:
    clock = FakeClock()
    cache, _ = counted(clock=clock)
    cache.put("k", "v")
    written = clock()
    clock.advance(30)
    for _ in range(4):
        cache.get("k")
    cache.get_many(["k"])
    meta = cache.metadata("k")
    assert meta.hit_count == 0
    assert meta.last_accessed is not None
    assert meta.last_accessed.timestamp() == pytest.approx(written, abs=1e-3)
    assert meta.last_modified.timestamp() == pytest.approx(written, abs=1e-3)


def test_idle_reads_slide_without_counting_by_default(counted: Any) -> None:
    """idleTime needs its write (the deadline moves for every process); it carries no count."""
    clock = FakeClock()
    cache, counter = counted(clock=clock)
    cache.put("idle", "v", idle_time=10)
    clock.advance(5)
    counter.reset()
    assert cache.get("idle") == "v"
    assert cache.get_many(["idle"]) == {"idle": "v"}
    assert counter.calls == ["GetItem", "UpdateItem", "BatchGetItem", "UpdateItem"]
    clock.advance(8)  # 13 s after the put, 8 s after the last read: still alive
    meta = cache.metadata("idle")
    assert meta.hit_count == 0
    assert meta.last_accessed is not None
    assert meta.last_accessed.timestamp() == pytest.approx(clock() - 8, abs=1e-3)
    assert cache.get("idle") == "v"


@pytest.mark.parametrize(
    ("value", "counts"), [("false", False), ("TRUE", True), ("0", False), (True, True)]
)
def test_hit_counts_setting_spellings(make: Any, value: Any, counts: bool) -> None:
    assert make(settings={"hitCounts": value}).counts_hits is counts


@pytest.mark.parametrize("value", ["sometimes", 2, [], {"on": True}, "yes please"])
def test_hit_counts_setting_refuses_nonsense(make: Any, value: Any) -> None:
    with pytest.raises(ConfigError, match="hitCounts"):
        make(settings={"hitCounts": value})


def test_counted_reads_are_written_back_later(counted: Any) -> None:
    cache, counter = counted(settings=HITS)
    cache.put("k", "v")
    counter.reset()
    for _ in range(5):
        assert cache.get("k") == "v"
    assert counter.calls == ["GetItem"] * 5
    assert cache.metadata("k").hit_count == 5  # pending counts are merged in
    assert cache.pending_hits() == 1


def test_hit_counts_flush_on_close(counted: Any, make: Any) -> None:
    cache, counter = counted(settings=HITS)
    cache.put("k", "v")
    cache.get("k")
    cache.get("k")
    counter.reset()
    cache.close()
    assert counter.calls == ["UpdateItem"]
    assert make().metadata("k").hit_count == 2


def test_flush_sends_one_update_per_key_from_worker_threads(counted: Any, make: Any) -> None:
    cache, counter = counted(settings={"maxConnections": 8, **HITS})
    keys = [f"k{i}" for i in range(40)]
    cache.put_many(dict.fromkeys(keys, "v"))
    cache.get_many(keys)
    cache.get_many(keys[:10])
    senders: set[int] = set()
    cache.client.meta.events.register(
        "before-send.dynamodb", lambda **_: senders.add(threading.get_ident())
    )
    counter.reset()
    assert cache.flush_hits() == 40
    assert counter.calls == ["UpdateItem"] * 40  # exactly one request per key
    assert threading.get_ident() not in senders  # sent by the pool, not the caller
    assert 1 < len(senders) <= 4  # bounded: half of maxConnections
    other = make()
    assert [other.metadata(k).hit_count for k in keys[8:12]] == [2, 2, 1, 1]
    counter.reset()
    assert cache.flush_hits() == 0
    assert counter.calls == []


def test_a_failed_flush_update_does_not_stop_the_others(injected: Any, make: Any) -> None:
    cache, counter, injector = injected(settings=HITS)
    keys = [f"k{i}" for i in range(6)]
    cache.put_many(dict.fromkeys(keys, "v"))
    cache.get_many(keys)
    injector.fail("UpdateItem", "AccessDeniedException", times=1)
    counter.reset()
    with pytest.raises(CachePermissionError):
        cache.flush_hits()
    assert counter.calls == ["UpdateItem"] * 6
    assert sum(make().metadata(k).hit_count for k in keys) == 5
    assert cache.pending_hits() == 0


def test_hit_counts_flush_after_interval_on_a_later_write(counted: Any, make: Any) -> None:
    cache, counter = counted(settings={"hitFlushInterval": 0.05, **HITS})
    cache.put("k", "v")
    cache.get("k")
    time.sleep(0.1)
    counter.reset()
    cache.put("other", 1)
    assert counter.calls == ["PutItem", "UpdateItem"]
    assert make().metadata("k").hit_count == 1
    counter.reset()
    cache.put("other", 2)  # nothing pending, and the interval restarted
    assert counter.calls == ["PutItem"]


def test_hits_of_a_replaced_entry_are_dropped(counted: Any, make: Any) -> None:
    cache, _ = counted(settings=HITS)
    cache.put("k", "v")
    cache.get("k")
    make().put("k", "new")  # another process replaces the entry
    cache.flush_hits()
    assert make().metadata("k").hit_count == 0


def test_idle_entries_slide_with_one_extra_write(counted: Any) -> None:
    clock = FakeClock()
    cache, counter = counted(clock=clock)
    cache.put("idle", "v", idle_time=10)
    counter.reset()
    assert cache.get("idle") == "v"
    assert counter.calls == ["GetItem", "UpdateItem"]


def test_incr_over_expired_entry_resets_with_a_second_write(counted: Any) -> None:
    clock = FakeClock()
    cache, counter = counted(clock=clock)
    cache.put("n", 40, time_span=5)
    clock.advance(6)
    counter.reset()
    assert cache.incr("n", 2) == 2
    assert counter.calls == ["UpdateItem", "PutItem"]
    assert cache.metadata("n").time_to_live is None  # a fresh counter never expires


@pytest.mark.parametrize("n", [1, 100, 250])
def test_get_many_batches_of_100(counted: Any, n: int) -> None:
    cache, counter = counted()
    cache.put_many({f"k{i}": i for i in range(n)})
    counter.reset()
    found = cache.get_many([f"k{i}" for i in range(n)] + ["absent"])
    assert found == {f"k{i}": i for i in range(n)}
    assert counter.calls == ["BatchGetItem"] * math.ceil((n + 1) / 100)


@pytest.mark.parametrize("n", [1, 25, 60])
def test_put_many_and_delete_many_batches_of_25(counted: Any, n: int) -> None:
    cache, counter = counted()
    counter.reset()
    cache.put_many({f"k{i}": i for i in range(n)})
    assert counter.calls == ["BatchWriteItem"] * math.ceil(n / 25)
    counter.reset()
    assert cache.delete_many([f"k{i}" for i in range(n)]) == n
    # Exactly: ceil(n/100) key-only BatchGetItem (for the live count), then the deletes.
    reads, writes = math.ceil(n / 100), math.ceil(n / 25)
    assert counter.calls == ["BatchGetItem"] * reads + ["BatchWriteItem"] * writes
    assert cache.count() == 0


def test_delete_many_counts_only_live_entries(counted: Any) -> None:
    clock = FakeClock()
    cache, counter = counted(clock=clock)
    cache.put_many({f"old{i}": i for i in range(30)}, time_span=5)
    clock.advance(6)
    cache.put_many({f"new{i}": i for i in range(30)})
    counter.reset()
    keys = [f"old{i}" for i in range(30)] + [f"new{i}" for i in range(30)] + ["absent"]
    assert cache.delete_many(keys) == 30
    assert counter.calls == ["BatchGetItem"] + ["BatchWriteItem"] * 3


def test_listing_is_a_key_only_prefix_scan(counted: Any) -> None:
    cache, counter = counted(namespace="ns:")
    cache.put_many({"user_1": 1, "user_2": 2, "item_1": 3})
    bodies: list[dict[str, Any]] = []
    cache.client.meta.events.register(
        "before-send.dynamodb.Scan", lambda request, **_: bodies.append(json.loads(request.body))
    )
    counter.reset()
    assert sorted(cache.keys("user_*")) == ["user_1", "user_2"]
    assert counter.calls == ["Scan"]
    scan = bodies[-1]
    assert "begins_with(#pk, :p)" in scan["FilterExpression"]
    assert scan["ExpressionAttributeValues"][":p"] == {"S": "ns:user_"}
    assert "ProjectionExpression" in scan
    assert "#v" not in scan["ProjectionExpression"]

    counter.reset()
    assert cache.count("user_*") == 2
    assert counter.calls == ["Scan"]
    assert bodies[-1]["Select"] == "COUNT"

    counter.reset()
    assert cache.count("user_?") == 2  # not a pure prefix: keys are matched client-side
    assert "Select" not in bodies[-1]

    counter.reset()
    assert cache.get_all("user_*") == {"user_1": 1, "user_2": 2}
    assert counter.calls == ["Scan", "BatchGetItem"]


def test_clear_deletes_in_batches_of_25(counted: Any) -> None:
    cache, counter = counted()
    cache.put_many({f"k{i}": i for i in range(60)})
    counter.reset()
    assert cache.clear() == 60
    assert counter.calls == ["Scan"] + ["BatchWriteItem"] * 3
    assert cache.count() == 0


def test_listing_pages_hold_at_most_1000_items(counted: Any) -> None:
    # Bounded pages keep the client's memory flat (a 1 MB page of keys is ~25,000 items).
    cache, counter = counted()
    cache.put_many({f"k{i}": i for i in range(2500)})
    bodies: list[dict[str, Any]] = []
    cache.client.meta.events.register(
        "before-send.dynamodb.Scan", lambda request, **_: bodies.append(json.loads(request.body))
    )
    counter.reset()
    assert len(list(cache.keys())) == 2500
    assert counter.calls == ["Scan"] * 3
    assert {body["Limit"] for body in bodies} == {1000}
    counter.reset()
    assert cache.count() == 2500
    assert counter.calls == ["Scan"]  # Select=COUNT returns no items: no Limit needed
    assert "Limit" not in bodies[-1]


def test_parallel_scan_segments(counted: Any) -> None:
    cache, counter = counted(settings={"scanSegments": 3})
    cache.put_many({f"k{i}": i for i in range(40)})
    counter.reset()
    assert sorted(cache.keys(), key=lambda k: int(k[1:])) == [f"k{i}" for i in range(40)]
    assert counter.calls == ["Scan"] * 3
    assert cache.count() == 40
    assert cache.count("k1*") == 11
    assert cache.clear("k1*") == 11
    assert cache.count() == 29


def test_one_client_per_cache_shared_by_threads(make: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    cache = make()
    with ThreadPoolExecutor(8) as pool:
        clients = set(pool.map(lambda _: id(cache.client), range(32)))
    assert len(clients) == 1
    cache.put("k", 1)
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(lambda _: cache.get("k"), range(16))) == [1] * 16


def test_construction_is_lazy(make: Any) -> None:
    cache = make(settings={"host": "http://127.0.0.1:9"})  # nothing listens there
    assert cache._conn is None
    assert "DynamoDBCache" in repr(cache)


_READS = {"GetItem", "BatchGetItem", "Query", "Scan"}


class _ReadRecorder:
    """Every read request's ``ConsistentRead`` flag, as sent on the wire."""

    def __init__(self, client: Any) -> None:
        self.flags: list[tuple[str, object]] = []
        client.meta.events.register("before-send.dynamodb", self._record)

    def _record(self, request: Any, **_: Any) -> None:
        target = request.headers.get("X-Amz-Target", b"")
        operation = (target.decode() if isinstance(target, bytes) else target).rsplit(".", 1)[-1]
        if operation not in _READS:
            return
        body = json.loads(request.body)
        if operation == "BatchGetItem":
            for table in body["RequestItems"].values():
                self.flags.append((operation, table.get("ConsistentRead")))
        else:
            self.flags.append((operation, body.get("ConsistentRead")))


@pytest.mark.parametrize("item_format", ["cachehub", "lucee"])
@pytest.mark.parametrize("consistent", [True, False])
def test_consistent_read_reaches_every_read_request(
    make: Any, item_format: str, consistent: bool
) -> None:
    """``consistentRead`` is on every read request or on none (moto is always consistent,
    so the conformance suite cannot tell; the wire can)."""
    cache = make(settings={"consistentRead": consistent, "itemFormat": item_format})
    cache.connect()
    cache.put_many({f"k{i}": i for i in range(120)})
    recorder = _ReadRecorder(cache.client)
    assert cache.get("k1") == 1
    assert cache.exists("k2") is True
    cache.metadata("k3")
    assert len(cache.get_many([f"k{i}" for i in range(120)])) == 120
    assert sum(1 for _ in cache.keys("k1*")) == 31
    assert cache.count() == 120
    assert len(cache.get_all("k2*")) == 11
    assert cache.get_or_set("k4", lambda: -1) == 4
    kinds = {operation for operation, _flag in recorder.flags}
    assert {"GetItem", "BatchGetItem"} <= kinds
    assert kinds & {"Query", "Scan"}
    # Off may be sent as false or left out (DynamoDB's default is eventually consistent).
    assert {bool(flag) for _operation, flag in recorder.flags} == {consistent}
