"""dynamodb_command: every example of the spec's DynamoDBCommand and Use Cases sections."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from cachehub_dynamodb import ConditionFailedError, DynamoDBCache, dynamodb_command

from cachehub.errors import CacheValueError, ConfigError, LockTimeoutError, ReadOnlyCacheError
from cachehub.testing import FakeClock

from .conftest import CREDENTIALS
from .test_table import _client


@pytest.fixture
def dynamo(endpoint: str, table_name: str, monkeypatch: Any) -> Iterator[DynamoDBCache]:
    """The spec's cache "dynamo" (a table with partition key "pk" and two GSIs), registered."""
    _client(endpoint).create_table(
        TableName=table_name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "email", "AttributeType": "S"},
            {"AttributeName": "status", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "email-index",
                "KeySchema": [{"AttributeName": "email", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            },
            {
                "IndexName": "status-index",
                "KeySchema": [{"AttributeName": "status", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            },
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    from cachehub import registry

    monkeypatch.setattr(registry, "_current", None)
    caches = registry.configure(
        {
            "dynamo": {
                "class": "org.lucee.extension.aws.dynamodb.DynamoDBCache",
                "storage": False,
                "custom": {
                    "tableName": table_name,
                    "primaryKey": "pk",
                    "host": endpoint,
                    "region": "us-east-1",
                    "liveTimeout": 5000,
                    "log": "dynamodb",
                    **CREDENTIALS,
                },
                "default": "",
            }
        }
    )
    cache = caches.get("dynamo")
    assert isinstance(cache, DynamoDBCache)
    yield cache
    caches.close()


def test_put_item_and_return_values(dynamo: DynamoDBCache) -> None:
    assert (
        dynamodb_command(
            "putItem", {"pk": "user_001", "name": "Urs", "age": 30, "active": True}, "dynamo"
        )
        is None
    )
    previous = dynamodb_command(
        "putItem",
        {"pk": "user_001", "name": "Urs", "age": 31, "ReturnValues": "ALL_OLD"},
        "dynamo",
    )
    assert previous == {"pk": "user_001", "name": "Urs", "age": 30, "active": True}
    user = dynamodb_command("getItem", {"pk": "user_001"}, "dynamo")
    assert user == {"pk": "user_001", "name": "Urs", "age": 31}
    assert dynamodb_command("getItem", {"pk": "nobody"}, "dynamo") is None


def test_update_item_examples(dynamo: DynamoDBCache) -> None:
    dynamodb_command("putItem", {"pk": "user_001", "name": "Urs", "age": 31}, "dynamo")
    result = dynamodb_command(
        "updateItem",
        {
            "key": {"pk": "user_001"},
            "UpdateExpression": "SET age = age + :inc",
            "ExpressionAttributeValues": {":inc": 1},
            "ReturnValues": "UPDATED_NEW",
        },
        "dynamo",
    )
    assert result == {"age": 32}
    result = dynamodb_command(
        "updateItem",
        {
            "key": {"pk": "user_001"},
            "UpdateExpression": "SET #n = :name, active = :status",
            "ExpressionAttributeNames": {"#n": "name"},
            "ExpressionAttributeValues": {":name": "Urs Updated", ":status": True},
            "ReturnValues": "UPDATED_NEW",
        },
        "dynamo",
    )
    assert result == {"name": "Urs Updated", "active": True}


def test_delete_item_examples(dynamo: DynamoDBCache) -> None:
    dynamodb_command("putItem", {"pk": "user_001", "name": "Urs"}, "dynamo")
    assert dynamodb_command("deleteItem", {"pk": "user_001"}, "dynamo") is None
    assert dynamodb_command("getItem", {"pk": "user_001"}, "dynamo") is None
    dynamodb_command("putItem", {"pk": "user_001", "name": "Urs"}, "dynamo")
    deleted = dynamodb_command(
        "deleteItem", {"pk": "user_001", "ReturnValues": "ALL_OLD"}, "dynamo"
    )
    assert deleted == {"pk": "user_001", "name": "Urs"}


def _users() -> None:
    for i, (age, active, status) in enumerate(
        [(30, True, "gold"), (17, False, "gold"), (40, True, "basic")]
    ):
        dynamodb_command(
            "putItem",
            {
                "pk": f"user_00{i + 1}",
                "name": f"user {i + 1}",
                "email": "urs@example.com" if i == 0 else f"u{i}@example.com",
                "age": age,
                "active": active,
                "status": status,
            },
            "dynamo",
        )


def test_query_examples(dynamo: DynamoDBCache) -> None:
    _users()
    results = dynamodb_command(
        "query",
        {
            "KeyConditionExpression": "pk = :userId",
            "ExpressionAttributeValues": {":userId": "user_001"},
        },
        "dynamo",
    )
    assert [r["pk"] for r in results] == ["user_001"]
    results = dynamodb_command(
        "query",
        {
            "KeyConditionExpression": "pk = :userId",
            "FilterExpression": "age > :minAge",
            "ExpressionAttributeValues": {":userId": "user_001", ":minAge": 18},
        },
        "dynamo",
    )
    assert [r["age"] for r in results] == [30]
    results = dynamodb_command(
        "query",
        {
            "KeyConditionExpression": "pk = :userId",
            "FilterExpression": "age > :minAge",
            "ExpressionAttributeValues": {":userId": "user_002", ":minAge": 18},
        },
        "dynamo",
    )
    assert results == []
    results = dynamodb_command(
        "query",
        {
            "IndexName": "email-index",
            "KeyConditionExpression": "email = :email",
            "ExpressionAttributeValues": {":email": "urs@example.com"},
        },
        "dynamo",
    )
    assert [r["pk"] for r in results] == ["user_001"]


def test_scan_examples(dynamo: DynamoDBCache) -> None:
    _users()
    all_items = dynamodb_command("scan", {}, "dynamo")
    assert sorted(i["pk"] for i in all_items) == ["user_001", "user_002", "user_003"]
    active_users = dynamodb_command(
        "scan",
        {"FilterExpression": "active = :status", "ExpressionAttributeValues": {":status": True}},
        "dynamo",
    )
    assert sorted(i["pk"] for i in active_users) == ["user_001", "user_003"]
    sample = dynamodb_command("scan", {"Limit": 10}, "dynamo")
    assert len(sample) == 3
    assert len(dynamodb_command("scan", {"Limit": 2}, "dynamo")) == 2
    results = dynamodb_command(
        "scan",
        {
            "IndexName": "status-index",
            "FilterExpression": "age > :minAge",
            "ExpressionAttributeValues": {":minAge": 25},
        },
        "dynamo",
    )
    assert sorted(i["pk"] for i in results) == ["user_001", "user_003"]


def test_scan_follows_pagination_up_to_limit(dynamo: DynamoDBCache) -> None:
    dynamo.command("batchWriteItem", {"put": [{"pk": f"p{i}", "n": i} for i in range(30)]})
    pages: list[int] = []
    dynamo.client.meta.events.register(
        "after-call.dynamodb.Scan", lambda parsed, **_: pages.append(1)
    )
    assert len(dynamo.command("scan", {"Limit": 25})) == 25
    assert len(dynamo.command("scan", {})) == 30
    dynamo.command("scan", {"Limit": 25})
    assert len(pages) >= 3


def test_values_are_plain_python(dynamo: DynamoDBCache) -> None:
    item = {
        "pk": "types",
        "f": 12345.67,
        "i": 2**62,
        "d": Decimal("1.0000000000000000000000001"),
        "b": b"\x00\x01",
        "none": None,
        "list": [1, "two", 3.5, True],
        "map": {"nested": {"x": 1.25}},
        "set": {"a", "b"},
        "nums": {1, 2},
    }
    dynamo.command("putItem", item)
    got = dynamo.command("getItem", {"pk": "types"})
    assert got == item
    assert type(got["f"]) is float
    assert type(got["i"]) is int
    assert type(got["d"]) is Decimal


def test_dual_access_mode(dynamo: DynamoDBCache) -> None:
    dynamodb_command("putItem", {"pk": "user_001", "name": "Urs", "age": 30}, "dynamo")
    assert dynamo.get("user_001") == {"pk": "user_001", "name": "Urs", "age": 30}
    assert "user_001" in list(dynamo.keys("user_*"))
    dynamo.put("counter", 5)
    raw = dynamodb_command("getItem", {"pk": "counter"}, "dynamo")
    assert raw["value"] == 5
    assert "createdTime" in raw
    dynamodb_command(
        "updateItem",
        {
            "key": {"pk": "counter"},
            "UpdateExpression": "SET #v = #v + :d",
            "ExpressionAttributeNames": {"#v": "value"},
            "ExpressionAttributeValues": {":d": 10},
        },
        "dynamo",
    )
    assert dynamo.incr("counter") == 16
    dynamodb_command("putItem", {"pk": "plain", "value": "hello"}, "dynamo")
    assert dynamo.get("plain") == "hello"
    with pytest.raises(CacheValueError, match="not an int"):
        dynamo.incr("user_001")


def test_batch_and_transactions(dynamo: DynamoDBCache) -> None:
    counts = dynamo.command(
        "batchWriteItem",
        {"put": [{"pk": f"b{i}", "n": i} for i in range(30)], "delete": [{"pk": "none"}]},
    )
    assert counts == {"put": 30, "delete": 1}
    found = dynamo.command(
        "batchGetItem", {"keys": [{"pk": f"b{i}"} for i in range(30)] + [{"pk": "x"}]}
    )
    assert sorted(i["n"] for i in found) == list(range(30))
    dynamo.command(
        "transactWriteItems",
        {
            "items": [
                {
                    "Put": {
                        "Item": {"pk": "t1", "n": 1},
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
                {
                    "Update": {
                        "Key": {"pk": "b0"},
                        "UpdateExpression": "SET n = n + :one",
                        "ExpressionAttributeValues": {":one": 1},
                    }
                },
                {"Delete": {"Key": {"pk": "b1"}}},
            ]
        },
    )
    assert dynamo.command("getItem", {"pk": "b0"})["n"] == 1
    assert dynamo.command("getItem", {"pk": "b1"}) is None
    with pytest.raises(ConditionFailedError):
        dynamo.command(
            "transactWriteItems",
            {
                "items": [
                    {
                        "Put": {
                            "Item": {"pk": "t1"},
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    }
                ]
            },
        )
    with pytest.raises(ConditionFailedError, match="ConditionExpression"):
        dynamo.command("putItem", {"pk": "t1", "ConditionExpression": "attribute_not_exists(pk)"})


def test_typed_errors_name_the_fix(dynamo: DynamoDBCache) -> None:
    with pytest.raises(
        CacheValueError, match="getItem needs the partition key 'pk'; the table's key is 'pk'"
    ):
        dynamo.command("getItem", {"cacheKey": "x"})
    with pytest.raises(CacheValueError, match="case-sensitive"):
        dynamo.command("putItem", {"PK": "x"})
    with pytest.raises(CacheValueError, match="Did you mean 'getItem'"):
        dynamo.command("getItems", {"pk": "x"})
    with pytest.raises(CacheValueError, match="Did you mean 'FilterExpression'"):
        dynamo.command("scan", {"FilterExpresion": "a = :b"})
    with pytest.raises(CacheValueError, match="KeyConditionExpression"):
        dynamo.command("query", {})
    with pytest.raises(CacheValueError, match="only hold the partition key"):
        dynamo.command("getItem", {"pk": "x", "other": 1})
    with pytest.raises(CacheValueError, match="UpdateExpression"):
        dynamo.command("updateItem", {"key": {"pk": "x"}})
    with pytest.raises(CacheValueError):
        dynamo.command("updateItem", {"key": {"pk": "x"}, "UpdateExpression": "SET a = :missing"})
    with pytest.raises(ConfigError, match="not a DynamoDB cache"):
        _other_cache_command()


def test_transactions_stay_on_the_cache_table(
    dynamo: DynamoDBCache, make: Any, table_name: str
) -> None:
    """A transaction item naming another table is refused before anything is sent: the
    command must not reach other tables through the cache's credentials (it did)."""
    victim = make(settings={"tableName": table_name + "_victim"})
    victim.put("kept", "original")
    victim_pk = victim.key_name
    for kind, body in [
        ("Put", {"Item": {"pk": victim_pk, victim_pk: "kept", "value": "pwned"}}),
        ("Delete", {"Key": {"pk": "kept"}}),
        ("Update", {"Key": {"pk": "kept"}, "UpdateExpression": "SET x = :one"}),
    ]:
        for spelling in ("TableName", "tablename"):
            with pytest.raises(CacheValueError, match=r"works on the cache's table .* only"):
                dynamo.command(
                    "transactWriteItems",
                    {"items": [{kind: {**body, spelling: victim.table_name}}]},
                )
    assert victim.get("kept") == "original"
    # Its own table's name is accepted; unknown parameters are named, not sent.
    dynamo.command(
        "transactWriteItems",
        {"items": [{"Put": {"Item": {"pk": "own"}, "TableName": dynamo.table_name}}]},
    )
    assert dynamo.command("getItem", {"pk": "own"}) == {"pk": "own"}
    with pytest.raises(CacheValueError, match="unknown parameter 'ConditionExpresion'"):
        dynamo.command(
            "transactWriteItems",
            {"items": [{"Delete": {"Key": {"pk": "own"}, "ConditionExpresion": "x"}}]},
        )
    assert dynamo.command("getItem", {"pk": "own"}) == {"pk": "own"}


def _other_cache_command() -> Any:
    from cachehub import registry

    registry.configure({"mem": {"class": "memory"}})
    return dynamodb_command("getItem", {"pk": "x"}, "mem")


def test_read_only_cache_refuses_write_actions(make: Any) -> None:
    cache = make(read_only=True, settings={"primaryKey": "pk"})
    assert cache.command("getItem", {"pk": "x"}) is None
    with pytest.raises(ReadOnlyCacheError):
        cache.command("putItem", {"pk": "x"})


# ---------------------------------------------------------------- the spec's use cases


def check_rate_limit(
    cache: DynamoDBCache, api_key: str, max_requests: int = 100, time_window: int = 3600
) -> bool:
    cache_key = "ratelimit_" + hashlib.md5(api_key.encode()).hexdigest()
    requests = cache.get(cache_key)
    if requests is None:
        cache.put(cache_key, 1, time_span=time_window)
        return True
    if requests >= max_requests:
        return False
    cache.put(cache_key, requests + 1, time_span=time_window)
    return True


def test_use_case_rate_limiting(make: Any) -> None:
    clock = FakeClock()
    cache = make(clock=clock)
    assert all(check_rate_limit(cache, "key-1", max_requests=3, time_window=60) for _ in range(3))
    assert check_rate_limit(cache, "key-1", max_requests=3, time_window=60) is False
    assert check_rate_limit(cache, "key-2", max_requests=3, time_window=60) is True
    clock.advance(61)
    assert check_rate_limit(cache, "key-1", max_requests=3, time_window=60) is True


def test_use_case_query_result_caching(make: Any) -> None:
    cache = make()
    executed: list[str] = []

    def query_execute(sql: str) -> list[dict[str, Any]]:
        executed.append(sql)
        return [{"id": 1, "name": "Alice"}, {"id": 2, "name": "Bob"}]

    def get_cached_query_results(sql: str, cache_minutes: int = 15) -> Any:
        cache_key = "query_" + hashlib.md5(sql.encode()).hexdigest()
        results = cache.get(cache_key)
        if results is not None:
            return results
        results = query_execute(sql)
        cache.put(cache_key, results, time_span=cache_minutes * 60)
        return results

    first = get_cached_query_results("SELECT * FROM users")
    assert get_cached_query_results("SELECT * FROM users") == first
    assert executed == ["SELECT * FROM users"]


def test_use_case_atomic_page_view_counter(dynamo: DynamoDBCache) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def increment_page_view(page_id: str) -> Any:
        return dynamodb_command(
            "updateItem",
            {
                "key": {"pk": "pageviews_" + page_id},
                "UpdateExpression": "SET hits = if_not_exists(hits, :zero) + :inc",
                "ExpressionAttributeValues": {":inc": 1, ":zero": 0},
                "ReturnValues": "UPDATED_NEW",
            },
            "dynamo",
        )

    assert increment_page_view("home")["hits"] == 1
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: increment_page_view("home"), range(19)))
    assert increment_page_view("home")["hits"] == 21
    assert dynamo.get("pageviews_home") == {"pk": "pageviews_home", "hits": 21}


def test_use_case_distributed_lock_as_written(make: Any) -> None:
    cache = make()

    def acquire_lock(resource_name: str, timeout: int = 30) -> str | None:
        lock_key = "lock_" + resource_name
        lock_value = str(uuid.uuid4())
        try:
            cache.put(lock_key, lock_value, time_span=timeout)
            return lock_value
        except Exception:
            return None

    def release_lock(resource_name: str, lock_value: str) -> bool:
        lock_key = "lock_" + resource_name
        current_value = cache.get(lock_key)
        if current_value is not None and current_value == lock_value:
            cache.delete(lock_key)
            return True
        return False

    token = acquire_lock("report")
    assert token is not None
    assert release_lock("report", "somebody-else") is False
    assert release_lock("report", token) is True
    assert release_lock("report", token) is False


def test_use_case_distributed_lock_exclusive(make: Any) -> None:
    # The spec's acquireLock uses cachePut, which always succeeds; add() is the atomic
    # put-if-absent that makes a lock exclusive across processes (docs/dynamodb.md).
    cache, other = make(), make()
    assert cache.add("lock_report", "a", time_span=30) is True
    assert other.add("lock_report", "b", time_span=30) is False
    with (
        cache.lock("job", ttl=30),
        pytest.raises(LockTimeoutError, match="could not acquire"),
        other.lock("job", ttl=30, timeout=0.2),
    ):
        pytest.fail("a second owner acquired the lock")


def test_hostile_values_are_typed_errors_before_sending(dynamo: DynamoDBCache) -> None:
    """A value nested thousands deep, or containing itself, raised a raw RecursionError
    (failed on main); a 40-digit int said only "[<class 'decimal.Rounded'>]"."""
    deep: Any = 1
    for _ in range(5000):
        deep = [deep]
    looped: list[Any] = []
    looped.append(looped)
    ok: Any = "leaf"
    for _ in range(30):
        ok = {"m": ok}
    for value in (deep, looped, {"a": deep}):
        with pytest.raises(CacheValueError, match="nests deeper than 32 levels"):
            dynamo.command("putItem", {"pk": "deep", "v": value})
    with pytest.raises(CacheValueError, match="38 significant digits"):
        dynamo.command("putItem", {"pk": "big", "v": 10**40})
    with pytest.raises(CacheValueError, match="nests deeper"):
        dynamo.command(
            "updateItem",
            {
                "key": {"pk": "deep"},
                "UpdateExpression": "SET v = :v",
                "ExpressionAttributeValues": {":v": deep},
            },
        )
    assert dynamo.command("scan", {}) == []
    dynamo.command("putItem", {"pk": "ok", "v": ok})
    assert dynamo.command("getItem", {"pk": "ok"})["v"] == ok


def test_lone_surrogates_are_refused_before_sending(dynamo: DynamoDBCache) -> None:
    """They were sent and failed on the server (or in the client) (failed on main)."""
    for data in (
        {"pk": "s", "v": "\ud800"},
        {"pk": "s", "m": {"\udc00": 1}},
        {"pk": "s", "\udc00": 1},
        {"pk": "s", "set": {"a", "\ud800"}},
    ):
        with pytest.raises(CacheValueError, match="lone surrogate"):
            dynamo.command("putItem", data)
    assert dynamo.command("scan", {}) == []


def test_a_batch_naming_a_key_twice_names_the_duplicates(dynamo: DynamoDBCache) -> None:
    # DynamoDB answers "Provided list of item keys contains duplicates", naming none, and
    # the old hint blamed the partition key's name; 100 apart, in two requests, the
    # duplicate was not refused at all and its item came back twice.
    dynamo.command("putItem", {"pk": "a", "n": 1})
    keys = [{"pk": k} for k in ("a", "b", "a", "c", "c", "c")]
    with pytest.raises(CacheValueError, match=r"2 key\(s\) more than once: 'a', 'c'\.") as err:
        dynamo.command("batchGetItem", {"keys": keys})
    assert "pass each key once" in (err.value.hint or "")
    apart = [{"pk": "a"}] + [{"pk": f"k{i}"} for i in range(100)] + [{"pk": "a"}]
    with pytest.raises(CacheValueError, match=r"1 key\(s\) more than once: 'a'\."):
        dynamo.command("batchGetItem", {"keys": apart})
    many = [{"pk": f"d{i}"} for i in range(8)] * 2
    with pytest.raises(CacheValueError, match=r"8 key\(s\).*'d4' and 3 more\."):
        dynamo.command("batchGetItem", {"keys": many})
    with pytest.raises(CacheValueError, match=r"put and delete name 1 key\(s\).*'a'"):
        dynamo.command("batchWriteItem", {"put": [{"pk": "a", "n": 2}], "delete": [{"pk": "a"}]})
    assert dynamo.command("getItem", {"pk": "a"})["n"] == 1  # nothing was written


# A DynamoDB-compatible server (moto here) stores a Number of 39 digits that another
# program wrote, or that an ADD pushed past 38; boto3's decimal context then raised a raw
# decimal.Rounded out of every action that returns items. Now a CorruptEntryError names
# the attribute (and the cache API names it too, not 'value', for an item without one).
_DIGITS_39 = "9" * 39


@pytest.mark.parametrize(
    ("action", "data"),
    [
        ("getItem", {"cacheKey": "wide"}),
        ("scan", {}),
        (
            "query",
            {
                "KeyConditionExpression": "cacheKey = :k",
                "ExpressionAttributeValues": {":k": "wide"},
            },
        ),
        ("batchGetItem", {"keys": [{"cacheKey": "wide"}]}),
        (
            "updateItem",
            {
                "key": {"cacheKey": "wide"},
                "UpdateExpression": "SET extra = :o",
                "ExpressionAttributeValues": {":o": 1},
                "ReturnValues": "ALL_NEW",
            },
        ),
        ("deleteItem", {"cacheKey": "wide", "ReturnValues": "ALL_OLD"}),
    ],
)
def test_a_number_wider_than_38_digits_is_a_corrupt_entry_naming_it(
    make: Any, endpoint: str, action: str, data: dict[str, Any]
) -> None:
    from cachehub_dynamodb.command import run_command

    from cachehub.errors import CorruptEntryError

    cache = make()
    cache.put("seed", 1)
    _client(endpoint).put_item(
        TableName=cache.settings["tableName"],
        Item={"cacheKey": {"S": "wide"}, "count": {"N": _DIGITS_39}},
    )
    with pytest.raises(CorruptEntryError, match="attribute 'count' cannot be read"):
        run_command(cache, action, data)
    if action == "getItem":
        with pytest.raises(CorruptEntryError, match="attribute 'count' cannot be read"):
            cache.get("wide")
