"""DynamoDB locks: marked internal items, writer-clock deadlines and fencing under skew."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from cachehub_dynamodb import DynamoDBCache
from cachehub_dynamodb.cache import LOCK_GRACE
from cachehub_dynamodb.items import internal_key

from cachehub.errors import CorruptEntryError, InvalidKeyError, LockLostError
from cachehub.testing import FakeClock

from .conftest import RequestCounter

Make = Callable[..., DynamoDBCache]
T0 = 1_800_000_000.0
TTL = 8.0


def _pair(make: Make, skew: float) -> tuple[DynamoDBCache, DynamoDBCache, FakeClock, FakeClock]:
    """Two "processes" on one table whose clocks differ by ``skew`` seconds."""
    mine, theirs = FakeClock(T0), FakeClock(T0 + skew)
    return make(namespace="p:", clock=mine), make(namespace="p:", clock=theirs), mine, theirs


def _advance(seconds: float, *clocks: FakeClock) -> None:
    for clock in clocks:
        clock.advance(seconds)


@pytest.mark.parametrize(
    ("skew", "early", "on_time"),
    [
        # The documented bound: with clocks S seconds apart, a lock of ttl T may be
        # taken over after T - S seconds of real time, never earlier; a lagging rival
        # waits T + S.
        (5.0, 2.9, 3.0),
        (-5.0, 12.9, 13.0),
        (0.0, 7.9, 8.0),
        (9.0, None, 0.0),  # skew beyond the ttl: the lock protects nothing
    ],
)
def test_takeover_under_skew_obeys_the_documented_bound(
    make: Make, skew: float, early: float | None, on_time: float
) -> None:
    holder, rival, mine, theirs = _pair(make, skew)
    first = holder.lock("job", ttl=TTL)
    assert first.acquire(blocking=False)
    if early is not None:
        _advance(early, mine, theirs)
        assert rival.lock("job", ttl=TTL).acquire(blocking=False) is False
        _advance(on_time - early, mine, theirs)
    else:
        _advance(on_time, mine, theirs)
    taker = rival.lock("job", ttl=TTL)
    assert taker.acquire(blocking=False)
    # The stale holder finds out, and its fence is older than the taker's.
    assert taker.fence is not None
    assert first.fence is not None
    assert taker.fence > first.fence
    # By its own clock the stale holder's ttl has not run out, yet held asks the
    # table, which names the taker: the loss is visible before any release.
    assert first.locked
    assert not first.held
    with pytest.raises(LockLostError):
        first.release()
    assert taker.release() is True


def test_a_fenced_resource_refuses_the_stale_holder(make: Make) -> None:
    holder, rival, mine, theirs = _pair(make, 5.0)
    highest = {"fence": 0}
    writes: list[str] = []

    def write(fence: int | None, what: str) -> bool:  # the resource the lock guards
        assert fence is not None
        if fence < highest["fence"]:
            return False
        highest["fence"] = fence
        writes.append(what)
        return True

    stale = holder.lock("job", ttl=TTL)
    assert stale.acquire(blocking=False)
    _advance(3.0, mine, theirs)  # the rival's clock says the lock expired
    fresh = rival.lock("job", ttl=TTL)
    assert fresh.acquire(blocking=False)
    assert write(fresh.fence, "fresh") is True
    assert write(stale.fence, "stale") is False
    assert writes == ["fresh"]


def test_item_layout(make: Make) -> None:
    clock = FakeClock(T0)
    cache = make(namespace="lay:", clock=clock)
    with cache.lock("job", ttl=30, timeout=0) as lock:
        pk, original = internal_key("lay:", "lay:lock:job")
        item = cache.client.get_item(TableName=cache.table_name, Key={"cacheKey": {"S": pk}})[
            "Item"
        ]
        assert pk.startswith("lay:sha256:")
        assert original == "lay:\x00lock:job"
        assert item["cachehubInternal"] == {"S": "lock"}
        assert item["originalKey"] == {"S": original}
        assert item["lockHolder"] == {"S": lock.token}
        assert float(item["lockUntil"]["N"]) == T0 + 30
        assert int(item["lockFence"]["N"]) == lock.fence
        assert int(item["timeToLive"]["N"]) == math.ceil(T0 + 30 + LOCK_GRACE)
        assert "value" not in item


def test_request_budget(make: Make) -> None:
    cache = make(namespace="budget:")
    cache.connect()
    counter = RequestCounter(cache.client)
    lock = cache.lock("job")
    assert lock.acquire(blocking=False)
    assert lock.held
    lock.extend()
    assert lock.release()
    assert counter.calls == ["UpdateItem", "GetItem", "UpdateItem", "UpdateItem"]


def test_retried_acquire_costs_one_more_request_and_keeps_the_fence(make: Make) -> None:
    cache = make(namespace="retry:")
    name = cache._lock_name("lock:job")
    fence = cache._lock_acquire(name, "tok", 30.0, cache._clock())
    counter = RequestCounter(cache.client)
    assert cache._lock_acquire(name, "tok", 30.0, cache._clock()) == fence
    assert counter.total <= 2  # the conditional write, and at most a read of the item


def test_user_keys_cannot_reach_a_lock_item(make: Make) -> None:
    cache = make(namespace="u:")
    pk, original = internal_key("u:", "u:lock:job")
    with cache.lock("job", timeout=0) as lock:
        as_user = pk[len("u:") :]  # the user key whose storage key is the lock's pk
        assert cache.get(as_user, "miss") == "miss"
        assert cache.exists(as_user) is False
        with pytest.raises(InvalidKeyError, match="another key"):
            cache.put(as_user, "overwrite")
        with pytest.raises(InvalidKeyError, match="another key"):
            cache.add(as_user, "x")
        assert cache.delete(as_user) is False
        assert cache.delete_many([as_user]) == 0
        cache.put(original[len("u:") :], "a plain entry")  # the originalKey: its own item
        assert lock.held
        assert sorted(cache.keys()) == [original[len("u:") :]]


def test_a_foreign_item_at_the_lock_key_is_a_typed_error(make: Make) -> None:
    cache = make(namespace="f:")
    cache.connect()
    pk, _ = internal_key("f:", "f:lock:job")
    cache.client.put_item(
        TableName=cache.table_name, Item={"cacheKey": {"S": pk}, "lockHolder": {"S": "x"}}
    )
    with pytest.raises(CorruptEntryError, match="not a cachehub lock"):
        cache.lock("job").acquire(blocking=False)
    with pytest.raises(CorruptEntryError):
        _ = cache.lock("job").busy


def test_clear_include_internal_keeps_other_namespaces_locks(make: Make) -> None:
    # "n" and "n\0lock:" share the originalKey prefix "n\0"; each clears only its own.
    short, tricky = make(namespace="n"), make(namespace="n\x00lock:")
    with short.lock("x", timeout=0) as mine, tricky.lock("y", timeout=0) as theirs:
        short.clear(include_internal=True)
        assert not mine.held
        assert theirs.held
        mine.token = None  # cleared: nothing left to release
    assert tricky.lock("y").acquire(blocking=False)


def test_count_and_keys_skip_lock_items_server_side(make: Make) -> None:
    cache = make(namespace="c:")
    cache.put("a", 1)
    with cache.lock("job", timeout=0), cache.lock("a", timeout=0):
        counter = RequestCounter(cache.client)
        assert cache.count() == 1
        assert cache.count("a*") == 1
        assert counter.calls == ["Scan", "Scan"]  # Select=COUNT: filtered in the table
        assert list(cache.keys()) == ["a"]
        assert cache.clear() == 1
        assert cache.lock("job").busy


def test_hostile_lock_names_are_stored_safely(make: Make) -> None:
    cache = make(namespace="h:")
    names: list[Any] = ["x" * 16_384, "\x00", "sha256:" + "0" * 64, "ключ" * 600]
    for name in names:
        with cache.lock(name, timeout=0) as lock:
            assert lock.held
    assert list(cache.keys()) == []


def _plant_lock(cache: DynamoDBCache, name: str, **attrs: dict[str, Any]) -> None:
    """Another program's lock item for ``name``: marked and keyed as cachehub's."""
    pk, original = internal_key(cache.namespace, cache.namespace + "lock:" + name)
    item = {
        "cacheKey": {"S": pk},
        "originalKey": {"S": original},
        "cachehubInternal": {"S": "lock"},
        **attrs,
    }
    cache.client.put_item(TableName=cache.table_name, Item=item)


CLOCK_US = int(T0 * 1_000_000)
"""The writer's clock in microseconds: where a restarted fence starts."""


@pytest.mark.parametrize(
    ("planted", "expected", "updates"),
    [
        # Shapes no cachehub writer produces: the fence restarts from the clock.
        ({"N": "9.9E+125"}, CLOCK_US + 1, 2),  # + 1 overflowed DynamoDB's 38 digits
        ({"N": "99999999999999999999999999999999999999"}, CLOCK_US + 1, 2),  # 38 nines
        ({"N": str(CLOCK_US + (LOCK_GRACE + 1) * 1_000_000)}, CLOCK_US + 1, 2),  # beyond clock
        ({"N": "-5"}, CLOCK_US + 1, 2),
        ({"N": "0"}, CLOCK_US + 1, 2),
        ({"N": "1.5"}, CLOCK_US + 1, 2),
        ({"N": "-0.5"}, CLOCK_US + 1, 2),
        ({"N": "12345678901234567890.25"}, CLOCK_US + 1, 2),
        ({"S": "7"}, CLOCK_US + 1, 2),
        ({"SS": ["1", "2"]}, CLOCK_US + 1, 2),
        ({"BOOL": True}, CLOCK_US + 1, 2),
        (None, CLOCK_US + 1, 1),  # missing
        # A fraction a little ahead of the clock: the restart stays above it.
        ({"N": f"{CLOCK_US + 1000}.5"}, CLOCK_US + 1002, 2),
        # A whole fence within reach of the clock is cachehub's: it grows by one.
        ({"N": "7"}, 8, 1),
        ({"N": str(CLOCK_US + 1000)}, CLOCK_US + 1001, 1),
    ],
    ids=repr,
)
@pytest.mark.parametrize("held", [False, True], ids=["free", "expired"])
def test_a_planted_fence_never_blocks_the_lock(
    make: Make, planted: dict[str, Any] | None, expected: int, updates: int, held: bool
) -> None:
    clock = FakeClock(T0)
    cache = make(namespace="pf:", clock=clock)
    cache.connect()
    attrs: dict[str, Any] = {} if planted is None else {"lockFence": planted}
    if held:  # another holder's lock whose deadline has passed
        attrs |= {"lockHolder": {"S": "gone"}, "lockUntil": {"N": str(T0 - 1)}}
    _plant_lock(cache, "job", **attrs)
    counter = RequestCounter(cache.client)
    lock = cache.lock("job", ttl=TTL)
    assert lock.acquire(blocking=False) is True
    assert lock.fence == expected
    assert counter.calls == ["UpdateItem"] * updates  # one more only for a planted fence
    assert lock.held
    item = _lock_item(cache, "job")
    assert item["lockFence"] == {"N": str(expected)}
    assert item["lockHolder"]["S"]
    # The fence goes on growing from there, by one per holder.
    lock.extend(TTL)  # raises LockLostError when lost
    lock.release()
    again = cache.lock("job", ttl=TTL)
    assert again.acquire(blocking=False) is True
    assert again.fence == expected + 1
    again.release()


@pytest.mark.parametrize(
    "planted", [{"N": "9.9E+125"}, {"N": "-5"}, {"N": "1.5"}, {"S": "x"}], ids=repr
)
def test_a_fence_planted_under_a_live_holder_keeps_the_lock_its_holders(
    make: Make, planted: dict[str, Any]
) -> None:
    clock = FakeClock(T0)
    cache = make(namespace="pf:", clock=clock)
    holder = cache.lock("job", ttl=TTL)
    assert holder.acquire(blocking=False) is True
    first = holder.fence
    assert first is not None
    pk, _ = internal_key("pf:", "pf:lock:job")
    cache.client.update_item(
        TableName=cache.table_name,
        Key={"cacheKey": {"S": pk}},
        UpdateExpression="SET lockFence = :f",
        ExpressionAttributeValues={":f": planted},
    )
    rival = cache.lock("job", ttl=TTL)
    assert rival.acquire(blocking=False) is False  # busy, no error
    assert holder.held
    assert not rival.held
    holder.extend(TTL)
    holder.release()
    assert not holder.held
    clock.advance(1.0)
    assert rival.acquire(blocking=False) is True
    assert rival.fence is not None
    assert rival.fence > first  # the fencing guarantee survives the planted fence
    rival.release()


def _lock_item(cache: DynamoDBCache, name: str) -> dict[str, Any]:
    pk, _ = internal_key(cache.namespace, cache.namespace + "lock:" + name)
    reply = cache.client.get_item(
        TableName=cache.table_name, Key={"cacheKey": {"S": pk}}, ConsistentRead=True
    )
    item: dict[str, Any] = reply["Item"]
    return item


@pytest.mark.parametrize("planted", [{"N": "1.5"}, {"N": "9.9E+125"}, {"S": "x"}], ids=repr)
def test_a_retried_acquire_over_a_fence_planted_meanwhile_keeps_the_lock(
    make: Make, planted: dict[str, Any]
) -> None:
    """The re-sent acquire of a lost reply finds its own lock with a planted fence: it
    answers with a restarted fence instead of an error (the lock would stay held)."""
    clock = FakeClock(T0)
    cache = make(namespace="rp:", clock=clock)
    cache.connect()
    name = cache._lock_name("lock:job")
    first = cache._lock_acquire(name, "tok", 30.0, cache._clock())
    assert first is not None
    key, _ = cache._lock_item(name)
    cache.client.update_item(
        TableName=cache.table_name,
        Key=key,
        UpdateExpression="SET lockFence = :f",
        ExpressionAttributeValues={":f": planted},
    )
    fence = cache._lock_acquire(name, "tok", 30.0, cache._clock())
    assert fence == CLOCK_US + 1
    item = cache.client.get_item(TableName=cache.table_name, Key=key, ConsistentRead=True)
    assert item["Item"]["lockFence"] == {"N": str(fence)}
    assert cache._lock_holder(name, cache._clock()) == "tok"
