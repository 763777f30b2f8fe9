"""Items other writers put in a shared table: expiry attributes and lock deadlines of the
wrong type, the internal-item marker on an ordinary entry, and an ``originalKey`` that names
another key.

Each rule is documented in docs/dynamodb.md ("Items other programs write"); every path
that reads an entry must apply it the same way, on the client and in the conditions and
filters DynamoDB evaluates.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from cachehub_dynamodb import DynamoDBCache
from cachehub_dynamodb.items import (
    DEADLINE,
    ENTRY,
    EXPIRED,
    LIVE,
    LUCEE_TTL,
    TTL,
    deadline_of,
    internal_key,
    is_live,
)

from cachehub.api import LOCK_HORIZON
from cachehub.errors import CacheKeyError, LockLostError
from cachehub.testing import FakeClock

Make = Callable[..., DynamoDBCache]
NOW = 1_800_000_000.0
FUTURE = {"N": str(int(NOW) + 86_400)}

NOT_NUMBERS: list[tuple[str, dict[str, Any]]] = [
    (DEADLINE, {"S": str(int(NOW) + 86_400)}),
    (TTL, {"S": "4102444800"}),
    (LUCEE_TTL, {"S": "4102444800"}),
    (DEADLINE, {"B": b"\x00"}),
    (TTL, {"BOOL": True}),
    (LUCEE_TTL, {"NULL": True}),
]
IDS = ["deadline-S", "timeToLive-S", "ttl-S", "deadline-B", "timeToLive-BOOL", "ttl-NULL"]


def _plant(cache: DynamoDBCache, key: str, **attrs: dict[str, Any]) -> None:
    cache.connect()
    item = {cache.key_name: {"S": cache.namespace + key}, "value": {"N": "5"}, **attrs}
    cache.client.put_item(TableName=cache.table_name, Item=item)


# -- 1. an expiry attribute that is not a Number ------------------------------------------


@pytest.mark.parametrize(("name", "attr"), NOT_NUMBERS, ids=IDS)
def test_a_non_number_expiry_is_expired_client_side(name: str, attr: dict[str, Any]) -> None:
    # On main it read as "no expiry": the entry was served forever, while DynamoDB's
    # TTL process ignores it too - so it was never going away.
    item = {name: attr}
    assert deadline_of(item) == -math.inf
    assert not is_live(item, 0.0)
    assert not is_live(item, -1e300)
    # A Number deadline still decides alone, whatever the ttls hold.
    assert is_live({DEADLINE: FUTURE, TTL: {"S": "x"}, LUCEE_TTL: {"S": "y"}}, NOW)
    if name != DEADLINE:  # a ttl of another type beside a Number one: past all the same
        other = LUCEE_TTL if name == TTL else TTL
        assert not is_live({name: attr, other: FUTURE}, NOW)


def test_expired_is_the_exact_complement_of_live() -> None:
    # On main EXPIRED was "#dl <= :now OR ...": false for a String deadline, as LIVE is,
    # so add() refused to take the entry over (and incr() could not restart it) that
    # every read treated as dead. moto evaluates both; this keeps the shape.
    assert f"NOT {LIVE}" == EXPIRED
    assert "attribute_type(#dl, :n) AND #dl > :now" in LIVE
    assert "attribute_not_exists(#int)" in ENTRY
    assert "contains(#ok, :nul)" in ENTRY


@pytest.mark.parametrize(("name", "attr"), NOT_NUMBERS, ids=IDS)
def test_every_read_path_treats_a_non_number_expiry_as_expired(
    make: Make, name: str, attr: dict[str, Any]
) -> None:
    cache = make(namespace="x:", clock=FakeClock(NOW))
    cache.put("live", 1)
    _plant(cache, "k", **{name: attr})
    assert cache.get("k") is None
    assert cache.get_many(["k", "live"]) == {"live": 1}
    assert cache.get_all() == {"live": 1}
    assert not cache.exists("k")
    with pytest.raises(CacheKeyError):
        cache.metadata("k")
    assert sorted(cache.keys()) == ["live"]
    assert list(cache.keys("k")) == []
    assert cache.count() == 1  # Select=COUNT: DynamoDB's own filter
    assert cache.count("k*") == 0
    assert cache.count("?") == 0  # counted from listed keys
    assert not cache.touch("k", 60)
    assert cache.delete_many(["k"]) == 0
    assert cache.incr("k", 3) == 3  # the counter restarts, as after any expiry
    _plant(cache, "k", **{name: attr})
    assert cache.add("k", "mine")  # taken over, as an expired entry is
    assert cache.get("k") == "mine"


def test_a_number_deadline_beside_a_string_ttl_stays_live(make: Make) -> None:
    cache = make(namespace="y:", clock=FakeClock(NOW))
    _plant(cache, "k", **{DEADLINE: FUTURE, TTL: {"S": "soon"}})
    assert cache.get("k") == 5
    assert list(cache.keys()) == ["k"]
    assert cache.count() == 1
    assert not cache.add("k", "other")
    assert cache.incr("k") == 6


# -- 2. a lock item whose lockUntil another writer set ------------------------------------


def _plant_lock(cache: DynamoDBCache, name: str, **attrs: dict[str, Any]) -> None:
    cache.connect()
    pk, original = internal_key(cache.namespace, cache.namespace + "lock:" + name)
    item = {
        cache.key_name: {"S": pk},
        "originalKey": {"S": original},
        "cachehubInternal": {"S": "lock"},
        "lockHolder": {"S": "someone else"},
        "lockFence": {"N": "7"},
        **attrs,
    }
    cache.client.put_item(TableName=cache.table_name, Item=item)


@pytest.mark.parametrize(
    "until",
    [
        {"S": "2999-01-01"},  # DynamoDB compares across types as false: held forever
        {"N": "9.9e125"},  # no cachehub writer goes beyond LOCK_HORIZON
        {"N": str(NOW + LOCK_HORIZON + 1)},
        {"N": "-1e30"},
        {"BOOL": True},
        None,  # a holder without any lockUntil
    ],
    ids=["string", "huge", "just-beyond-horizon", "negative", "bool", "missing"],
)
def test_a_lock_deadline_no_writer_sets_is_free_to_take(
    make: Make, until: dict[str, Any] | None
) -> None:
    # On main a String, huge or missing lockUntil blocked acquire() forever.
    cache = make(namespace="l:", clock=FakeClock(NOW))
    _plant_lock(cache, "job", **({} if until is None else {"lockUntil": until}))
    assert not cache.lock("job").busy
    lock = cache.lock("job", ttl=30)
    assert lock.acquire(blocking=False)
    assert lock.fence == 8  # the fence goes on growing
    assert lock.held
    lock.extend(60)
    lock.release()
    assert not cache.lock("job").busy


def test_a_live_lock_just_inside_the_horizon_is_not_taken(make: Make) -> None:
    cache = make(namespace="h:", clock=FakeClock(NOW))
    _plant_lock(cache, "job", lockUntil={"N": str(NOW + LOCK_HORIZON - 1)})
    assert cache.lock("job").busy
    assert not cache.lock("job").acquire(blocking=False)
    _plant_lock(cache, "job", lockUntil={"N": str(NOW + 30)})
    assert not cache.lock("job").acquire(blocking=False)


@pytest.mark.parametrize("call", ["extend", "release"])
def test_release_and_extend_of_a_lock_whose_deadline_was_replaced_fail_typed(
    make: Make, call: str
) -> None:
    # moto failed the comparison of a String lockUntil with a 500 (CacheBackendError);
    # DynamoDB fails the condition: either way the holder must learn it lost the lock.
    cache = make(namespace="r:", clock=FakeClock(NOW))
    lock = cache.lock("job", ttl=30)
    assert lock.acquire(blocking=False)
    pk, _ = internal_key("r:", "r:lock:job")
    cache.client.update_item(
        TableName=cache.table_name,
        Key={cache.key_name: {"S": pk}},
        UpdateExpression="SET lockUntil = :s",
        ExpressionAttributeValues={":s": {"S": "forever"}},
    )
    with pytest.raises(LockLostError):
        lock.extend(30) if call == "extend" else lock.release()
    assert cache.lock("job").acquire(blocking=False)


# -- 3. the internal marker on an ordinary entry -------------------------------------------


@pytest.mark.parametrize("marker", [{"S": "lock"}, {"S": "x"}, {"N": "1"}])
def test_the_internal_marker_on_an_entry_hides_it_from_nothing(
    make: Make, marker: dict[str, Any]
) -> None:
    # On main keys()/count() skipped it and clear() left it in place: another writer
    # could hide data from clear(). Only a real lock item (marker + the NUL originalKey
    # only locks have) is internal.
    cache = make(namespace="i:")
    cache.put("plain", 1)
    _plant(cache, "marked", cachehubInternal=marker)
    with cache.lock("job", timeout=0):
        assert sorted(cache.keys()) == ["marked", "plain"]
        assert cache.count() == 2  # Select=COUNT
        assert cache.count("m*") == 1
        assert cache.count("?arked") == 1  # listed keys, counted
        assert cache.clear() == 2
        assert cache.get("marked") is None
        assert cache.lock("job").busy  # the real lock item is no entry: kept
    assert cache.count() == 0


def test_the_lucee_layout_lists_and_clears_a_marked_entry(make: Make) -> None:
    cache = make(itemFormat="lucee")
    cache.put("plain", 1)
    cache.connect()
    cache.client.put_item(
        TableName=cache.table_name,
        Item={
            cache.key_name: {"S": "MARKED"},
            "value": {"N": "2"},
            "cachehubInternal": {"S": "lock"},
        },
    )
    with cache.lock("job", timeout=0):
        assert sorted(cache.keys()) == ["MARKED", "PLAIN"]
        assert cache.count() == 2
        assert cache.clear() == 2
        assert cache.lock("job").busy


# -- 4. an originalKey that names another key, at a key's own partition key ----------------


def _plant_foreign(cache: DynamoDBCache, key: str, owner: str = "other") -> None:
    _plant(cache, key, originalKey={"S": cache.namespace + owner})


def _raw(cache: DynamoDBCache, key: str) -> dict[str, Any] | None:
    found = cache.client.get_item(
        TableName=cache.table_name, Key={cache.key_name: {"S": cache.namespace + key}}
    )
    return found.get("Item")


def test_a_foreign_owner_is_a_miss_to_every_listing(make: Make) -> None:
    # On main count() counted it (Select=COUNT has no client-side check) while keys(),
    # get_all() and clear() skipped it: count() stayed 1 after clear().
    cache = make(namespace="f:")
    cache.put("mine", 1)
    _plant_foreign(cache, "k1")
    _plant_foreign(cache, "k2", owner="k1")  # names a key of this very namespace
    assert cache.get("k1") is None
    assert not cache.exists("k1")
    assert sorted(cache.keys()) == ["mine"]
    assert cache.get_all() == {"mine": 1}
    assert cache.count() == 1  # Select=COUNT, filtered on the server
    assert cache.count("k*") == 0  # listed keys, counted
    assert cache.count("?ine") == 1
    assert cache.clear() == 1
    assert cache.count() == 0
    assert _raw(cache, "k1") is not None  # another program's: never cleared


@pytest.mark.parametrize("namespace", ["", "f:"])
@pytest.mark.parametrize("key", ["report-sha256:2024", "xsha256:" + "0" * 64, "a-sha256:b"])
def test_a_foreign_key_that_merely_contains_sha256_is_not_counted(
    make: Make, namespace: str, key: str
) -> None:
    """Any partition key containing ``sha256:`` passed the server-side owner filter as a
    possible hashed item: count() counted another program's ``report-sha256:2024``, which
    keys() and clear() skip (count() was 1 after clear())."""
    cache = make(namespace=namespace)
    cache.put("mine", 1)
    _plant_foreign(cache, key)
    assert sorted(cache.keys()) == ["mine"]
    assert cache.count() == 1
    assert cache.clear() == 1
    assert cache.count() == 0
    long_key = "L" * 2_000  # a real hashed item is still counted, listed and cleared
    cache.put(long_key, 2)
    assert cache.count() == 1
    assert list(cache.keys()) == [long_key]
    assert cache.clear() == 1


def test_touch_and_delete_leave_a_foreign_item_alone(make: Make) -> None:
    # On main touch() answered True and rewrote its deadline, delete() and delete_many()
    # removed it: acting on an item every read calls a miss.
    cache = make(namespace="g:")
    _plant_foreign(cache, "k")
    before = _raw(cache, "k")
    assert not cache.touch("k", 60)
    assert not cache.delete("k")
    assert cache.delete_many(["k", "absent"]) == 0
    assert not cache._delete_if_equal(cache.namespace + "k", 5, cache._clock())
    assert _raw(cache, "k") == before


@pytest.mark.parametrize("write", ["incr", "add", "put", "put_many", "get_or_set"])
def test_a_write_replaces_a_foreign_item_as_a_miss(make: Make, write: str) -> None:
    # On main incr() added to its value (5 + 10 = 15, revealing it) and add() answered
    # False for a key every read calls a miss.
    cache = make(namespace="h:")
    _plant_foreign(cache, "k")
    if write == "incr":
        assert cache.incr("k", 10) == 10  # a fresh counter, as after a miss
    elif write == "add":
        assert cache.add("k", 10)
    elif write == "put":
        cache.put("k", 10)
    elif write == "put_many":
        cache.put_many({"k": 10, "j": 1})
    else:
        assert cache.get_or_set("k", lambda: 10) == 10
    assert cache.get("k") == 10
    assert "originalKey" not in (_raw(cache, "k") or {})
    assert cache.count() == len(list(cache.keys()))


def test_a_forged_hashed_item_is_counted_as_documented(make: Make) -> None:
    """The one case a server-side count cannot tell (docs/dynamodb.md, "Items other
    programs write"): a partition key shaped like a hashed key's, whose originalKey does
    not hash to it. Listing, reads and a count of listed keys skip it; a count by prefix
    (``Select=COUNT``) does not."""
    cache = make(namespace="q:")
    _plant(cache, "sha256:" + "0" * 64, originalKey={"S": "q:elsewhere"})
    assert list(cache.keys()) == []
    assert cache.get("sha256:" + "0" * 64) is None
    assert cache.count("?ha256*") == 0
    assert cache.count() == cache.count("s*") == 1
