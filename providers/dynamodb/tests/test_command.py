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


# ------------------------------------------- parameters are checked, never dropped


def test_nested_key_form_refuses_every_other_unknown_entry(dynamo: DynamoDBCache) -> None:
    """With ``{"key": {...}}`` the other top-level entries were never looked at (failed
    on main): a misspelled ConditionExpression made a guarded delete or update
    unconditional, and a flat partition key beside the nested one was dropped."""
    dynamo.command("putItem", {"pk": "acct", "balance": 100})
    with pytest.raises(
        CacheValueError,
        match=r"deleteItem: unknown parameter 'ConditionExpresion'\. "
        r"Did you mean 'ConditionExpression'",
    ):
        dynamo.command(
            "deleteItem",
            {
                "key": {"pk": "acct"},
                "ConditionExpresion": "balance = :z",
                "ExpressionAttributeValues": {":z": 0},
            },
        )
    assert dynamo.command("getItem", {"pk": "acct"}) == {"pk": "acct", "balance": 100}
    with pytest.raises(CacheValueError, match="Did you mean 'ConditionExpression'"):
        dynamo.command(
            "updateItem",
            {
                "key": {"pk": "ghost"},
                "UpdateExpression": "SET n = :one",
                "ExpressionAttributeValues": {":one": 1},
                "ConditionExpresion": "attribute_exists(pk)",
            },
        )
    assert dynamo.command("getItem", {"pk": "ghost"}) is None
    dynamo.command("putItem", {"pk": "a", "v": "A"})
    dynamo.command("putItem", {"pk": "b", "v": "B"})
    with pytest.raises(CacheValueError, match="partition key 'pk' is given twice"):
        dynamo.command("deleteItem", {"key": {"pk": "a"}, "pk": "b"})
    assert dynamo.command("getItem", {"key": {"pk": "a"}}) == {"pk": "a", "v": "A"}
    # Hostile: a write control on a read, a key spelled twice, a key that is no dict, a
    # typo inside the nested key, an unrelated top-level entry.
    with pytest.raises(CacheValueError, match="getItem: unknown parameter 'ReturnValues'"):
        dynamo.command("getItem", {"key": {"pk": "a"}, "ReturnValues": "ALL_OLD"})
    with pytest.raises(CacheValueError, match="'key' and 'KEY' both name"):
        dynamo.command("deleteItem", {"key": {"pk": "a"}, "KEY": {"pk": "b"}})
    with pytest.raises(CacheValueError, match="'key' must be a struct/dict"):
        dynamo.command("deleteItem", {"key": "a"})
    with pytest.raises(CacheValueError, match="Did you mean the parameter 'ConditionExpression'"):
        dynamo.command("deleteItem", {"key": {"pk": "a", "ConditionExpresion": "v = :x"}})
    with pytest.raises(CacheValueError, match="unknown parameter 'note'"):
        dynamo.command(
            "updateItem", {"Key": {"pk": "a"}, "UpdateExpression": "SET v = :x", "note": 1}
        )
    # The flat form names the parameter a stray entry may have meant, too.
    with pytest.raises(CacheValueError, match="Did you mean the parameter 'ConditionExpression'"):
        dynamo.command("deleteItem", {"pk": "a", "ConditionExpresion": "v = :x"})
    assert dynamo.command("getItem", {"pk": "a"}) == {"pk": "a", "v": "A"}
    assert dynamo.command("getItem", {"pk": "b"}) == {"pk": "b", "v": "B"}
    # The nested form with known parameters still works, in any case.
    old = dynamo.command("deleteItem", {"KEY": {"pk": "a"}, "returnvalues": "ALL_OLD"})
    assert old == {"pk": "a", "v": "A"}


def test_transact_write_items_sends_its_token_and_refuses_unknown_entries(
    dynamo: DynamoDBCache,
) -> None:
    """ClientRequestToken (the idempotency token) and any other top-level entry were
    silently ignored (failed on main); Item/Key were matched case-sensitively."""
    sent: list[dict[str, Any]] = []
    dynamo.client.meta.events.register(
        "before-parameter-build.dynamodb.TransactWriteItems",
        lambda params, **_: sent.append(dict(params)),
    )
    put = {"Put": {"Item": {"pk": "t", "n": 1}}}
    dynamo.command("transactWriteItems", {"items": [put], "ClientRequestToken": "once-only"})
    assert sent[-1]["ClientRequestToken"] == "once-only"
    dynamo.command("transactWriteItems", {"TransactItems": [put], "clientrequesttoken": "again"})
    assert sent[-1]["ClientRequestToken"] == "again"
    count = len(sent)
    other = {"Put": {"Item": {"pk": "u"}}}
    refused: list[tuple[dict[str, Any], str]] = [
        ({"items": [other], "ClientRequestTokn": "x"}, "Did you mean 'ClientRequestToken'"),
        ({"items": [other], "ReturnConsumedCapacity": "TOTAL"}, "unknown parameter"),
        ({"items": [other], "ClientRequestToken": "x" * 37}, "1 to 36 characters"),
        ({"items": [other], "ClientRequestToken": 7}, "ClientRequestToken must be"),
        ({"items": [other], "TransactItems": [other]}, "both 'items' and 'TransactItems'"),
        ({"items": [other], "ITEMS": [put]}, "'items' and 'ITEMS' both name"),
    ]
    for data, match in refused:
        with pytest.raises(CacheValueError, match=match):
            dynamo.command("transactWriteItems", data)
    assert len(sent) == count  # nothing was sent
    assert dynamo.command("getItem", {"pk": "u"}) is None
    # Item, Key and TableName in any case, as every other parameter name.
    dynamo.command(
        "transactWriteItems",
        {
            "items": [
                {"put": {"item": {"pk": "u", "n": 2}, "tablename": dynamo.table_name}},
                {"DELETE": {"KEY": {"pk": "t"}}},
                {
                    "Update": {
                        "key": {"pk": "w"},
                        "updateexpression": "SET n = :one",
                        "expressionattributevalues": {":one": 1},
                    }
                },
            ]
        },
    )
    assert dynamo.command("getItem", {"pk": "u"}) == {"pk": "u", "n": 2}
    assert dynamo.command("getItem", {"pk": "t"}) is None
    assert dynamo.command("getItem", {"pk": "w"}) == {"pk": "w", "n": 1}
    with pytest.raises(CacheValueError, match="'Item' and 'item' both name"):
        dynamo.command(
            "transactWriteItems", {"items": [{"Put": {"Item": {"pk": "x"}, "item": {"pk": "y"}}}]}
        )
    with pytest.raises(CacheValueError, match="the items name 1 key"):
        dynamo.command(
            "transactWriteItems",
            {"items": [{"Put": {"Item": {"pk": "x"}}}, {"Delete": {"Key": {"pk": "x"}}}]},
        )
    assert dynamo.command("getItem", {"pk": "x"}) is None


class _StuckScan:
    """Answers every Scan with one item and a LastEvaluatedKey from ``keys``, cycling;
    after ``cap`` requests it answers an error, so a loop without end fails the test."""

    def __init__(self, cache: DynamoDBCache, keys: list[str], cap: int = 50) -> None:
        self.keys, self.cap, self.calls = keys, cap, 0
        cache.client.meta.events.register("before-send.dynamodb", self._answer)

    def _answer(self, request: Any, **_: Any) -> Any:
        import json

        from botocore.awsrequest import AWSResponse

        from .conftest import _Raw

        target = request.headers.get("X-Amz-Target", b"")
        if not (target.decode() if isinstance(target, bytes) else target).endswith(".Scan"):
            return None
        self.calls += 1
        headers = {"x-amzn-RequestId": "t", "Content-Type": "application/x-amz-json-1.0"}
        if self.calls > self.cap:
            body: dict[str, Any] = {
                "__type": "com.amazonaws.dynamodb.v20120810#LoopedException",
                "message": "x",
            }
            return AWSResponse(request.url, 400, headers, _Raw(json.dumps(body).encode()))
        last = self.keys[(self.calls - 1) % len(self.keys)]
        body = {
            "Items": [{"pk": {"S": f"i{self.calls}"}}],
            "Count": 1,
            "ScannedCount": 1,
            "LastEvaluatedKey": {"pk": {"S": last}},
        }
        return AWSResponse(request.url, 200, headers, _Raw(json.dumps(body).encode()))


def test_a_scan_whose_server_does_not_advance_is_a_typed_error(dynamo: DynamoDBCache) -> None:
    """A LastEvaluatedKey that never changed made command('scan') read the same page for
    ever, collecting it each time (failed on main: here, the 51st request fails)."""
    from cachehub.errors import CacheBackendError

    stuck = _StuckScan(dynamo, ["same"])
    with pytest.raises(CacheBackendError, match=r"scan on table '.*': the server did not advance"):
        dynamo.command("scan", {})
    assert stuck.calls == 2
    # Hostile: a cycle of two keys, and a server answering the start key it was given.
    cycle = _StuckScan(dynamo, ["a", "b"])
    dynamo.client.meta.events.unregister("before-send.dynamodb", stuck._answer)
    with pytest.raises(CacheBackendError, match="did not advance"):
        dynamo.command("scan", {"FilterExpression": "attribute_exists(pk)"})
    assert cycle.calls == 3
    dynamo.client.meta.events.unregister("before-send.dynamodb", cycle._answer)
    echo = _StuckScan(dynamo, ["start"])
    with pytest.raises(CacheBackendError, match="did not advance"):
        dynamo.command("scan", {"ExclusiveStartKey": {"pk": "start"}, "Limit": 500})
    assert echo.calls == 1


def test_query_and_scan_collect_a_bounded_amount_and_hand_back_the_cursor(
    dynamo: DynamoDBCache, monkeypatch: Any
) -> None:
    """A scan read the whole table into one list, however large, and a read stopped by
    Limit gave no way to continue (failed on main: no bound, no last_evaluated_key)."""
    from cachehub_dynamodb import command

    dynamo.command(
        "batchWriteItem", {"put": [{"pk": f"p{i:02}", "n": i, "status": "s"} for i in range(30)]}
    )
    monkeypatch.setattr(command, "MAX_ITEMS", 10)
    with pytest.raises(CacheValueError, match=r"would collect more than 10 items") as err:
        dynamo.command("scan", {})
    assert "ExclusiveStartKey" in (err.value.hint or "")
    assert "pass Limit" in (err.value.hint or "")
    with pytest.raises(CacheValueError, match="more than 10 items"):
        dynamo.command("scan", {"Limit": 11})
    by_status = {
        "IndexName": "status-index",
        "KeyConditionExpression": "#s = :s",
        "ExpressionAttributeNames": {"#s": "status"},
        "ExpressionAttributeValues": {":s": "s"},
    }
    with pytest.raises(CacheValueError, match=r"query on table .* more than 10 items"):
        dynamo.command("query", by_status)
    assert len(dynamo.command("query", {**by_status, "Limit": 10})) == 10
    seen: list[str] = []
    start: Any = None
    for _ in range(10):
        page = dynamo.command(
            "scan", {"Limit": 7, **({"ExclusiveStartKey": start} if start else {})}
        )
        assert isinstance(page, command.ItemList)
        assert len(page) <= 7
        seen += [item["pk"] for item in page]
        start = page.last_evaluated_key
        if start is None:
            break
    assert sorted(seen) == [f"p{i:02}" for i in range(30)]  # each item once, all of them
    done = dynamo.command(
        "query", {"KeyConditionExpression": "pk = :k", "ExpressionAttributeValues": {":k": "p01"}}
    )
    assert done == [{"pk": "p01", "n": 1, "status": "s"}]
    assert done.last_evaluated_key is None
    # The bytes bound, with a few large items.
    monkeypatch.setattr(command, "MAX_ITEMS", 100_000)
    monkeypatch.setattr(command, "MAX_BYTES", 50_000)
    dynamo.command(
        "batchWriteItem", {"put": [{"pk": f"big{i}", "blob": "x" * 20_000} for i in range(4)]}
    )
    with pytest.raises(CacheValueError, match="would collect more than 100,000 items or 0 MiB"):
        dynamo.command("scan", {})
    assert len(dynamo.command("scan", {"ProjectionExpression": "pk"})) == 34


def test_two_spellings_of_one_parameter_are_refused(dynamo: DynamoDBCache) -> None:
    """Names are case-insensitive; with two spellings one was silently dropped - a whole
    list of puts, or ReturnValues - (failed on main)."""
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("batchWriteItem", {"put": [{"pk": "p1"}], "PUT": [{"pk": "p2"}]}, "'put' and 'PUT'"),
        ("batchWriteItem", {"delete": [{"pk": "p1"}], "Delete": []}, "'delete' and 'Delete'"),
        ("batchGetItem", {"keys": [{"pk": "p1"}], "KEYS": [{"pk": "p2"}]}, "'keys' and 'KEYS'"),
        (
            "putItem",
            {"pk": "p1", "ReturnValues": "ALL_OLD", "returnvalues": "NONE"},
            "'ReturnValues' and 'returnvalues' both name the parameter 'ReturnValues'",
        ),
        (
            "updateItem",
            {
                "key": {"pk": "p1"},
                "UpdateExpression": "SET a = :x",
                "updateexpression": "SET b = :x",
                "ExpressionAttributeValues": {":x": 1},
            },
            "'UpdateExpression' and 'updateexpression'",
        ),
        ("scan", {"FilterExpression": "n = :a", "filterExpression": "n = :b"}, "FilterExpression"),
        ("batchGetItem", {"keys": [], "ConsistentRead": True, "consistentread": False}, "Consis"),
    ]
    for action, data, match in cases:
        with pytest.raises(CacheValueError, match=match):
            dynamo.command(action, data)
    assert dynamo.command("scan", {}) == []  # nothing was written
    # An item's own attributes stay case-sensitive: two of them are not parameters.
    dynamo.command("putItem", {"pk": "p3", "Name": 1, "name": 2})
    assert dynamo.command("getItem", {"pk": "p3"}) == {"pk": "p3", "Name": 1, "name": 2}


@pytest.mark.parametrize(
    ("action", "data", "match"),
    [
        ("getItem", {"pk": "a", "ConsistentRead": "false"}, "ConsistentRead must be a boolean"),
        ("scan", {"ConsistentRead": "no"}, "ConsistentRead must be a boolean"),
        ("batchGetItem", {"keys": [{"pk": "a"}], "ConsistentRead": "false"}, "must be a boolean"),
        ("batchGetItem", {"keys": [{"pk": "a"}], "ConsistentRead": 0}, "must be a boolean"),
        ("scan", {"Segment": "0", "TotalSegments": 2}, "Segment must be an integer >= 0"),
        ("scan", {"Segment": 0, "TotalSegments": 2.0}, "TotalSegments must be a positive"),
        ("putItem", {"pk": "a", "ReturnValues": 5}, "ReturnValues must be a non-empty string"),
        ("updateItem", {"key": {"pk": "a"}, "UpdateExpression": 5}, "UpdateExpression must be"),
        ("updateItem", {"key": {"pk": "a"}, "UpdateExpression": ""}, "UpdateExpression must be"),
        (
            "query",
            {
                "KeyConditionExpression": "pk = :k",
                "ExpressionAttributeValues": {":k": "a"},
                "ScanIndexForward": "yes",
            },
            "ScanIndexForward must be a boolean",
        ),
        (
            "transactWriteItems",
            {"items": [{"ConditionCheck": {"Key": {"pk": "a"}}}]},
            "each ConditionCheck needs a ConditionExpression",
        ),
        (
            "transactWriteItems",
            {"items": [{"Update": {"Key": {"pk": "a"}}}]},
            "each Update needs an UpdateExpression",
        ),
        (
            "updateItem",
            {
                "key": {"pk": "a"},
                "UpdateExpression": "SET #n = :v",
                "ExpressionAttributeNames": {"#n": 5},
                "ExpressionAttributeValues": {":v": 1},
            },
            "both must be strings",
        ),
        # botocore's own checks of what the command sends: a CacheValueError too.
        ("scan", {"IndexName": "ab"}, "IndexName"),
    ],
)
def test_wrongly_typed_parameters_are_value_errors_naming_them(
    dynamo: DynamoDBCache, action: str, data: dict[str, Any], match: str
) -> None:
    """They were a CacheBackendError advising "check host, region and credentials", and
    batchGetItem read ConsistentRead='false' as True (failed on main)."""
    dynamo.command("putItem", {"pk": "a"})
    with pytest.raises(CacheValueError, match=match):
        dynamo.command(action, data)
    assert dynamo.command("getItem", {"pk": "a"}) == {"pk": "a"}


def test_read_only_error_names_the_action(make: Any) -> None:
    """It read "dynamodb_command('putItem')() is not allowed" (failed on main)."""
    cache = make(read_only=True, settings={"primaryKey": "pk"})
    with pytest.raises(ReadOnlyCacheError) as err:
        cache.command("transactWriteItems", {"items": [{"Put": {"Item": {"pk": "x"}}}]})
    assert "dynamodb_command('transactWriteItems') writes and is not allowed" in str(err.value)
    assert "')()" not in str(err.value)
    assert cache.command("scan", {}) == []


@pytest.mark.parametrize(
    ("action", "data", "match"),
    [
        ("getItem", {"cacheKey": "k", "ConsistentRead": "yes"}, "ConsistentRead must be"),
        ("scan", {"Segment": "first", "TotalSegments": 2}, "Segment must be"),
        ("batchGetItem", {"keys": [{"cacheKey": "k"}], "ProjectionExpression": 5}, "Projection"),
        ("scan", {"IndexName": "ab"}, r"Invalid length for parameter IndexName"),
        ("deleteItem", {"key": {"cacheKey": "k"}, "ConditionExpresion": "x"}, "Did you mean"),
    ],
)
def test_wrong_parameters_are_refused_before_sending(
    counted: Any, action: str, data: dict[str, Any], match: str
) -> None:
    """test_layout's inputs: refused client-side as before, but as the caller's error
    (CacheValueError), not a CacheBackendError telling to check host and credentials."""
    cache, counter = counted()
    counter.reset()
    with pytest.raises(CacheValueError, match=match):
        cache.command(action, data)
    assert counter.calls == []
