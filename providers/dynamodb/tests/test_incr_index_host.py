"""incr on a fractional Number written by another client, a missing index, Lucee's host;
planted number sets."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cachehub_dynamodb import DynamoDBCache
from cachehub_dynamodb.client import normalize_host

from cachehub.errors import CacheValueError, CorruptEntryError

from .conftest import RequestCounter


def _write_number(cache: DynamoDBCache, key: str, number: str) -> None:
    """What the Lucee extension or DynamoDBCommand leaves: a native Number value."""
    cache.client.update_item(
        TableName=cache.table_name,
        Key={cache.key_name: {"S": key}},
        UpdateExpression="SET #v = :v",
        ExpressionAttributeNames={"#v": "value"},
        ExpressionAttributeValues={":v": {"N": number}},
    )


def _stored(cache: DynamoDBCache, key: str) -> object:
    item = cache.client.get_item(TableName=cache.table_name, Key={cache.key_name: {"S": key}})
    return item["Item"]["value"]


@pytest.mark.parametrize("number", ["1.5", "-0.25", "12345678901234567890.5"])
def test_incr_on_a_foreign_fraction_is_typed_and_writes_nothing(
    make: Callable[..., DynamoDBCache], number: str
) -> None:
    cache = make()
    cache.put("k", 1)
    _write_number(cache, "k", number)
    with pytest.raises(CacheValueError, match="not an int"):
        cache.incr("k", 3)
    with pytest.raises(CacheValueError):
        cache.decr("k")
    assert _stored(cache, "k") == {"N": number}


@pytest.mark.parametrize("number", ["1.5", "-0.25"])
def test_a_refused_incr_on_a_fraction_leaves_the_whole_item_as_it_was(
    make: Callable[..., DynamoDBCache], number: str
) -> None:
    # On main the value was put back but this incr's updatedTime, requestId and (on an item
    # that had none) createdTime stayed: the item's version changed under a refusal.
    cache = make()
    cache.connect()
    item = {cache.key_name: {"S": "k"}, "value": {"N": number}, "createdTime": {"N": "17"}}
    cache.client.put_item(TableName=cache.table_name, Item=item)
    with pytest.raises(CacheValueError, match="not an int"):
        cache.incr("k", 3)
    stored = cache.client.get_item(TableName=cache.table_name, Key={cache.key_name: {"S": "k"}})
    assert stored["Item"] == item
    bare = {cache.key_name: {"S": "b"}, "value": {"N": number}}  # another writer's, no stamps
    cache.client.put_item(TableName=cache.table_name, Item=bare)
    with pytest.raises(CacheValueError):
        cache.decr("b")
    again = cache.client.get_item(TableName=cache.table_name, Key={cache.key_name: {"S": "b"}})
    assert again["Item"] == bare


def test_incr_on_integers_sends_one_request(
    counted: Callable[..., tuple[DynamoDBCache, RequestCounter]],
) -> None:
    cache, counter = counted()
    cache.put("n", 5)
    counter.reset()
    assert cache.incr("n", 2) == 7
    assert counter.total == 1


def test_a_missing_index_is_not_reported_as_a_missing_table(
    make: Callable[..., DynamoDBCache],
) -> None:
    cache = make()
    cache.put("k", 1)
    with pytest.raises(CacheValueError) as info:
        cache.command(
            "query",
            {
                "IndexName": "byOwner",
                "KeyConditionExpression": "o = :o",
                "ExpressionAttributeValues": {":o": "x"},
            },
        )
    message = str(info.value)
    assert "index" in message
    assert "byOwner" in message
    assert "CreateTable" not in message
    assert "was not found" not in message


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("localhost:8000", "https://localhost:8000"),
        (" dynamodb.eu-west-1.amazonaws.com ", "https://dynamodb.eu-west-1.amazonaws.com"),
        ("http://localhost:8000", "http://localhost:8000"),
        ("dynamodb.amazonaws.com", None),
        ("https://dynamodb.amazonaws.com/", None),
        ("", None),
        (None, None),
    ],
)
def test_host_is_read_as_lucee_reads_it(given: str | None, used: str | None) -> None:
    assert normalize_host(given) == used


def test_scheme_less_host_and_its_url_are_one_backend() -> None:
    base = {"tableName": "t", "region": "us-east-1"}
    one = DynamoDBCache.backend_identity({**base, "host": "localhost:8000"})
    two = DynamoDBCache.backend_identity({**base, "host": "https://LOCALHOST:8000/"})
    assert one == two


def test_a_planted_number_set_of_one_hash_is_corrupt_not_slow(
    make: Callable[..., DynamoDBCache],
) -> None:
    # Every k * (2**61 - 1) hashes to 0 as a Decimal: boto3 built the NS in quadratic time
    # (8,000 numbers, 1.7 s a read; an item holds ~16,000). Now refused before it is built.
    cache = make()
    cache.connect()
    numbers = [str((k + 10**5) * ((1 << 61) - 1)) for k in range(2_000)]
    for key, item in (
        ("value", {cache.key_name: {"S": "v"}, "value": {"NS": numbers}}),
        ("dual", {cache.key_name: {"S": "d"}, "tags": {"M": {"n": {"NS": numbers}}}}),
    ):
        cache.client.put_item(TableName=cache.table_name, Item=item)
        with pytest.raises(CorruptEntryError, match="hash flooding"):
            cache.get(key[0])
    cache.client.put_item(
        TableName=cache.table_name,
        Item={cache.key_name: {"S": "ok"}, "value": {"NS": ["-1", "-2", "3"]}},
    )
    assert cache.get("ok") == {-1, -2, 3}
