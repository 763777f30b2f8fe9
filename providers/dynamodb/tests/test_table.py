"""Table bootstrap: creation with native TTL, Primary Key Discovery, least privilege."""

from __future__ import annotations

import logging
from typing import Any

import boto3
import pytest
from cachehub_dynamodb import DynamoDBCache

from cachehub.errors import CachePermissionError, CacheValueError, ConfigError

from .conftest import CREDENTIALS


def _client(endpoint: str) -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=CREDENTIALS["accessKeyId"],
        aws_secret_access_key=CREDENTIALS["secretkey"],
    )


def _create(endpoint: str, table: str, keys: list[tuple[str, str, str]], **extra: Any) -> None:
    _client(endpoint).create_table(
        TableName=table,
        KeySchema=[{"AttributeName": n, "KeyType": k} for n, _, k in keys],
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": t} for n, t, _ in keys],
        BillingMode="PAY_PER_REQUEST",
        **extra,
    )


def test_missing_table_is_created_on_demand_with_ttl(
    make: Any, endpoint: str, table_name: str
) -> None:
    cache = make(settings={"primaryKey": "id"})
    cache.put("k", "v")
    described = _client(endpoint).describe_table(TableName=table_name)["Table"]
    assert described["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert described["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    ttl = _client(endpoint).describe_time_to_live(TableName=table_name)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "timeToLive"}


def test_existing_table_key_is_adopted(make: Any, endpoint: str, table_name: str) -> None:
    _create(endpoint, table_name, [("pk", "S", "HASH")])
    cache = make()  # primaryKey defaults to cacheKey: the table's own key wins
    cache.put("user_001", {"n": 1})
    assert cache.key_name == "pk"
    assert cache.get("user_001") == {"n": 1}
    assert cache.command("getItem", {"pk": "user_001"})["pk"] == "user_001"
    ttl = _client(endpoint).describe_time_to_live(TableName=table_name)["TimeToLiveDescription"]
    assert ttl["TimeToLiveStatus"] == "ENABLED"  # enabled on the existing table too


def test_table_with_sort_key_is_refused(make: Any, endpoint: str, table_name: str) -> None:
    _create(endpoint, table_name, [("pk", "S", "HASH"), ("sk", "S", "RANGE")])
    with pytest.raises(ConfigError, match="sort key 'sk'") as info:
        make().get("k")
    assert "partition key only" in str(info.value)


def test_table_with_numeric_key_is_refused(make: Any, endpoint: str, table_name: str) -> None:
    _create(endpoint, table_name, [("id", "N", "HASH")])
    with pytest.raises(ConfigError, match="type N"):
        make().put("k", 1)


@pytest.mark.parametrize("name", ["value", "deadline", "createdTime", "ttl", "until", "lockUntil"])
@pytest.mark.parametrize("existing", [True, False], ids=["existing", "created"])
def test_a_partition_key_named_like_an_item_attribute_is_refused(
    make: Any, endpoint: str, table_name: str, name: str, existing: bool
) -> None:
    # On main the attribute replaced the key in every item: 'value' or 'createdTime' made
    # put() fail with a KeyError, 'deadline' or 'ttl' made it "succeed" and get() miss.
    if existing:
        _create(endpoint, table_name, [(name, "S", "HASH")])
    cache = make(settings={"primaryKey": name})
    with pytest.raises(ConfigError, match=f"partition key name '{name}' is also an attribute"):
        cache.put("k", 5)
    # Every page: ListTables returns 100 names at most, and the worker's server holds the
    # tables of every test it ran.
    pages = _client(endpoint).get_paginator("list_tables").paginate()
    tables = {name for page in pages for name in page["TableNames"]}
    assert (table_name in tables) is existing  # nothing created for a refused name


def test_missing_table_and_create_denied(injected: Any) -> None:
    cache, _, inject = injected()
    inject.fail("CreateTable", "AccessDeniedException")
    with pytest.raises(CachePermissionError, match="CreateTable") as info:
        cache.get("k")
    assert "IAM policy includes dynamodb:CreateTable" in str(info.value)


def test_ttl_update_denied_warns_once_and_works(injected: Any, caplog: Any) -> None:
    cache, counter, inject = injected(settings={"log": "dyn-test"})
    inject.fail("UpdateTimeToLive", "AccessDeniedException")
    with caplog.at_level(logging.WARNING, logger="dyn-test"):
        cache.put("k", "v")
        assert cache.get("k") == "v"
        cache.put("k2", "v")
    warnings = [r for r in caplog.records if "UpdateTimeToLive" in r.getMessage()]
    assert len(warnings) == 1
    assert "keeps working" in warnings[0].getMessage()
    assert counter.count("UpdateTimeToLive") == 1


def test_describe_ttl_unsupported_on_existing_table_warns_once(
    injected: Any, endpoint: str, table_name: str, caplog: Any
) -> None:
    _create(endpoint, table_name, [("cacheKey", "S", "HASH")])
    cache, counter, inject = injected(settings={"log": "dyn-test2"})
    inject.fail("DescribeTimeToLive", "UnknownOperationException")
    with caplog.at_level(logging.WARNING, logger="dyn-test2"):
        cache.put("k", 1)
        assert cache.incr("k") == 2
    assert sum("DescribeTimeToLive" in r.getMessage() for r in caplog.records) == 1
    assert counter.count("UpdateTimeToLive") == 0


@pytest.mark.parametrize(
    ("attribute", "says"),
    [
        ("createdTime", "deletes LIVE entries"),
        ("idleTime", "deletes LIVE entries"),
        ("value", "deletes LIVE entries"),
        ("expires", "may not delete them"),
    ],
)
def test_ttl_on_another_attribute_warns_what_dynamodb_will_do(
    make: Any, endpoint: str, table_name: str, caplog: Any, attribute: str, says: str
) -> None:
    # On main every such table got "DynamoDB will not delete them" - for createdTime it
    # deletes every entry within about 48 hours of its writing.
    _create(endpoint, table_name, [("cacheKey", "S", "HASH")])
    _client(endpoint).update_time_to_live(
        TableName=table_name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": attribute},
    )
    with caplog.at_level(logging.WARNING, logger="dyn-ttl-attr"):
        make(settings={"log": "dyn-ttl-attr"}).put("k", 1)
    warned = [r.getMessage() for r in caplog.records if "has TTL on attribute" in r.getMessage()]
    assert len(warned) == 1
    assert f"'{attribute}'" in warned[0]
    assert says in warned[0]


def test_bootstrap_happens_once_per_table(make: Any, injected: Any) -> None:
    make().connect()
    cache, counter, _ = injected()
    cache.put("k", 1)
    assert counter.calls == ["PutItem"]  # the table is known to this process already


def test_table_deleted_behind_our_back_is_recreated(
    make: Any, endpoint: str, table_name: str
) -> None:
    cache = make()
    cache.put("k", 1)
    _client(endpoint).delete_table(TableName=table_name)
    with pytest.raises(Exception, match="not found"):
        cache.get("k")
    cache.put("k", 2)  # bootstraps again: the table is created anew
    assert cache.get("k") == 2


def test_a_table_recreated_with_another_key_is_checked_again(
    make: Any, endpoint: str, table_name: str
) -> None:
    """Another program drops the table and creates it with another partition key: the key
    this process found was kept for good, so every later call failed with advice naming
    the old key, keys() answered [] beside a count() of 1, and new caches inherited it.
    The call that meets the new schema fails; the next one reads the table again."""
    cache = make()
    cache.put("k", 1)
    client = _client(endpoint)
    client.delete_table(TableName=table_name)
    _create(endpoint, table_name, [("id", "S", "HASH")])
    with pytest.raises(CacheValueError):
        cache.put("k", 2)
    cache.put("k", 2)  # the table's key, 'id', adopted
    assert cache.key_name == "id"
    assert cache.get("k") == 2
    assert list(cache.keys()) == ["k"]
    assert cache.count() == 1
    assert make().key_name == "id"  # and for a new cache of this process
    client.delete_table(TableName=table_name)
    _create(endpoint, table_name, [("n", "N", "HASH")])
    with pytest.raises(CacheValueError):
        cache.get("k")
    with pytest.raises(ConfigError, match="string"):
        cache.get("k")  # a key the cache cannot use: refused as any such table is


def test_empty_table_name_is_refused(endpoint: str) -> None:
    with pytest.raises(ConfigError, match="tableName"):
        DynamoDBCache(tableName="  ", host=endpoint, **CREDENTIALS)
    with pytest.raises(ConfigError, match="tableName"):
        DynamoDBCache(host=endpoint, **CREDENTIALS)
