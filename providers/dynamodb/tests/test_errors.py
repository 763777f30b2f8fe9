"""AWS failures surface as typed cachehub errors with the spec's advice; secrets never leak."""

from __future__ import annotations

import logging
import socket
from typing import Any

import pytest
from cachehub_dynamodb import DynamoDBCache, client

from cachehub.errors import (
    CacheBackendError,
    CachePermissionError,
    CacheThrottledError,
    CacheUnavailableError,
    CacheValueError,
    ConfigError,
)

from .conftest import CREDENTIALS

ACCESS_KEY = "AKIASECRETKEYID12345"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_endpoint_down_is_unavailable_with_advice() -> None:
    cache = DynamoDBCache(
        tableName="t",
        host=f"http://127.0.0.1:{_closed_port()}",
        liveTimeout=1000,
        maxAttempts=1,
        **CREDENTIALS,
    )
    with pytest.raises(CacheUnavailableError) as info:
        cache.get("k")
    assert "check host and region" in str(info.value)
    assert "http://localhost:8000" in str(info.value)
    assert isinstance(info.value, ConnectionError)


def test_on_error_miss_degrades_to_a_miss() -> None:
    cache = DynamoDBCache(
        tableName="t",
        host=f"http://127.0.0.1:{_closed_port()}",
        liveTimeout=1000,
        maxAttempts=1,
        onError="miss",
        **CREDENTIALS,
    )
    assert cache.get("k", "fallback") == "fallback"


def test_throttling_is_retried_transparently(injected: Any) -> None:
    cache, counter, inject = injected(settings={"maxAttempts": 2})
    cache.connect()
    inject.fail("PutItem", "ThrottlingException", times=1)
    counter.reset()
    cache.put("k", "v")
    assert counter.calls == ["PutItem", "PutItem"]
    assert cache.get("k") == "v"


def test_throttling_after_every_retry(injected: Any) -> None:
    cache, _, inject = injected(settings={"maxAttempts": 1})
    cache.connect()
    inject.fail("GetItem", "ProvisionedThroughputExceededException")
    with pytest.raises(CacheThrottledError, match="on-demand"):
        cache.get("k")


def _unprocessed(cache: Any, operation: str, field: str) -> list[Any]:
    """Make the first ``operation`` leave half of its work unprocessed; return what was held."""
    held: list[Any] = []

    def shrink(params: dict[str, Any], **_: Any) -> None:
        if held:
            return
        table, request = next(iter(params["RequestItems"].items()))
        entries = request["Keys"] if field == "UnprocessedKeys" else request
        half = entries[len(entries) // 2 :]
        del entries[len(entries) // 2 :]
        held.append((table, half, request))

    def report(parsed: dict[str, Any], **_: Any) -> None:
        if held and held[0][-1] != "reported":
            table, half, request = held[0][:3]
            if field == "UnprocessedKeys":
                parsed[field] = {table: {**request, "Keys": half}}
            else:
                parsed[field] = {table: half}
            held[0] = (*held[0][:3], "reported")

    events = cache.client.meta.events
    events.register(f"before-parameter-build.dynamodb.{operation}", shrink)
    events.register(f"after-call.dynamodb.{operation}", report)
    return held


def test_unprocessed_items_are_retried_nothing_lost(counted: Any) -> None:
    cache, counter = counted()
    held = _unprocessed(cache, "BatchWriteItem", "UnprocessedItems")
    cache.put_many({f"k{i}": i for i in range(20)})
    assert len(held[0][1]) == 10
    assert counter.calls == ["BatchWriteItem", "BatchWriteItem"]
    assert cache.get_many([f"k{i}" for i in range(20)]) == {f"k{i}": i for i in range(20)}


def test_unprocessed_keys_are_retried_nothing_lost(counted: Any) -> None:
    cache, counter = counted()
    cache.put_many({f"k{i}": i for i in range(30)})
    held = _unprocessed(cache, "BatchGetItem", "UnprocessedKeys")
    counter.reset()
    assert cache.get_many([f"k{i}" for i in range(30)]) == {f"k{i}": i for i in range(30)}
    assert len(held[0][1]) == 15
    assert counter.calls == ["BatchGetItem", "BatchGetItem"]


@pytest.mark.parametrize(
    "code", ["UnrecognizedClientException", "InvalidSignatureException", "ExpiredTokenException"]
)
def test_invalid_token(injected: Any, code: str) -> None:
    cache, _, inject = injected()
    inject.fail("DescribeTable", code)
    with pytest.raises(CachePermissionError) as info:
        cache.get("k")
    text = str(info.value)
    for advice in ("security token", "verify", "set host"):
        assert advice in text


def test_access_denied_names_the_action(injected: Any) -> None:
    cache, _, inject = injected()
    cache.connect()
    inject.fail("DeleteItem", "AccessDeniedException")
    with pytest.raises(CachePermissionError, match=r"dynamodb:DeleteItem"):
        cache.delete("k")


def test_an_index_keyed_on_a_cache_attribute_is_named_not_the_partition_key(
    injected: Any,
) -> None:
    # DynamoDB refuses an item whose attribute has another type than a secondary index
    # keyed on it says (moto does not check, so the answer is injected). On main the hint
    # said to pass the partition key with exactly its name and case.
    cache, _, inject = injected()
    cache.connect()
    inject.fail(
        "PutItem",
        "ValidationException",
        message="One or more parameter values were invalid: Type mismatch for Index Key "
        "value Expected: S Actual: B IndexName: byValue",
    )
    with pytest.raises(CacheValueError, match="secondary index") as info:
        cache.put("k", [1, 2])
    assert "IndexName: byValue" in str(info.value)
    assert "does not write" in (info.value.hint or "")
    assert "partition key" not in (info.value.hint or "")


def test_resource_not_found_has_the_create_table_hint(injected: Any) -> None:
    cache, _, inject = injected()
    cache.connect()
    inject.fail("GetItem", "ResourceNotFoundException", times=1)
    with pytest.raises(CacheBackendError, match="CreateTable"):
        cache.get("k")


def test_value_too_large_is_a_clear_error(make: Any) -> None:
    import os

    cache = make(settings={"compressThreshold": 0})
    big = os.urandom(450 * 1024)
    with pytest.raises(CacheValueError) as info:
        cache.put("big", big)
    assert "409600" in str(info.value)
    assert "400 KB" in str(info.value)
    with pytest.raises(CacheValueError, match="400 KB"):
        cache.put_many({"a": 1, "big": big})
    assert cache.get("big") is None


def test_only_one_credential_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'accessKeyId' is set but 'secretkey' is not") as info:
        DynamoDBCache(tableName="t", region="us-east-1", accessKeyId=ACCESS_KEY)
    assert ACCESS_KEY not in str(info.value)
    with pytest.raises(ConfigError, match="'secretkey' is set but 'accessKeyId' is not") as info:
        DynamoDBCache(tableName="t", region="us-east-1", secretkey=SECRET)
    assert SECRET not in str(info.value)


def test_no_region_and_no_host(monkeypatch: Any, tmp_path: Any) -> None:
    empty = tmp_path / "config"
    empty.write_text("")
    for var in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setattr(client, "_SESSION", None)  # a session that sees the empty config
    with pytest.raises(ConfigError, match="no AWS region") as info:
        DynamoDBCache(tableName="t")
    assert "set region" in str(info.value)
    assert DynamoDBCache(tableName="t", host="http://localhost:8000").region == "us-east-1"


def test_secrets_never_leak(injected: Any, caplog: Any) -> None:
    settings = {"accessKeyId": ACCESS_KEY, "secretkey": SECRET, "log": "dyn-secret"}
    cache, _, inject = injected(settings=settings)
    assert ACCESS_KEY not in repr(cache)
    assert SECRET not in repr(cache)
    inject.fail("DescribeTable", "UnrecognizedClientException", times=1)
    messages = []
    with caplog.at_level(logging.DEBUG, logger="dyn-secret"):
        with pytest.raises(CachePermissionError) as info:
            cache.get("k")
        messages.append(str(info.value))
        inject.fail("UpdateTimeToLive", "AccessDeniedException")
        cache.put("k", 1)
        inject.fail("GetItem", "AccessDeniedException")
        with pytest.raises(CachePermissionError) as info:
            cache.get("k")
        messages.append(str(info.value))
    messages.append(caplog.text)
    for text in messages:
        assert ACCESS_KEY not in text
        assert SECRET not in text
    down = DynamoDBCache(
        tableName="t",
        host=f"http://127.0.0.1:{_closed_port()}",
        maxAttempts=1,
        accessKeyId=ACCESS_KEY,
        secretkey=SECRET,
    )
    with pytest.raises(CacheUnavailableError) as info:
        down.put("k", 1)
    assert ACCESS_KEY not in str(info.value)
    assert SECRET not in str(info.value)
