"""DynamoDB faults injected through botocore's event hooks, and a stopped endpoint.

* throttling: ``before-send`` answers with a fake ``ProvisionedThroughputExceededException``
  response instead of sending the request (botocore then retries);
* partial batches: ``before-parameter-build`` withholds part of a BatchWriteItem /
  BatchGetItem request and ``after-call`` reports it as ``UnprocessedItems`` /
  ``UnprocessedKeys``, exactly as a throttled DynamoDB does; the provider must resend;
* the endpoint stopped, hung or absent: a typed :class:`CacheUnavailableError` within
  ``liveTimeout``, and recovery of the same cache object after a restart on the same port.

botocore's retry sleeps are recorded instead of slept (``botocore.endpoint.time``), so the
tests count retries rather than time them.
"""

from __future__ import annotations

import json
import logging
import socket
import time
import types
from collections.abc import Callable, Iterator
from typing import Any, Final

import botocore.endpoint
import pytest
from botocore.awsrequest import AWSResponse
from cachehub_dynamodb import DynamoDBCache, LocalDynamoDB
from cachehub_dynamodb import batch as dynamo_batch

from cachehub.errors import CacheThrottledError, CacheUnavailableError

from .conftest import SECRET_MARK, dynamodb_settings, fresh_namespace, report

THROTTLED: Final = json.dumps(
    {
        "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
        "message": "The level of configured provisioned throughput for the table was exceeded.",
    }
).encode()
HEADERS: Final[Any] = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": "fake"}
ITEMS: Final = 60
"""More than two BatchWriteItem chunks (25) and enough for a BatchGetItem chunk."""


class _Body:
    """The ``raw`` of a fake :class:`AWSResponse`."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.data


def _operation(request: Any) -> str:
    """The DynamoDB operation of a prepared request (from its X-Amz-Target header)."""
    target = request.headers.get("X-Amz-Target", b"")
    if isinstance(target, bytes):
        target = target.decode()
    return str(target).rsplit(".", 1)[-1]


class Throttler:
    """A ``before-send`` hook: throttles requests picked by ``pick(operation, attempt)``."""

    def __init__(self, client: Any, pick: Callable[[str, int], bool]) -> None:
        self.pick = pick
        self.sent: list[str] = []
        self.throttled: list[str] = []
        client.meta.events.register("before-send.dynamodb", self)

    def __call__(self, request: Any, **_: Any) -> AWSResponse | None:
        operation = _operation(request)
        self.sent.append(operation)
        if not self.pick(operation, self.sent.count(operation)):
            return None
        self.throttled.append(operation)
        return AWSResponse(request.url, 400, HEADERS, _Body(THROTTLED))


class Unprocessed:
    """Withholds half of a batch request and reports it back, ``budget[op]`` times per op.

    DynamoDB processes part of a batch and returns the rest as UnprocessedItems /
    UnprocessedKeys; this reproduces that on moto, which always processes everything.
    """

    def __init__(self, client: Any, table: str, budget: dict[str, int]) -> None:
        self.table = table
        self.budget = budget
        self.withheld: dict[str, Any] = {}
        self.total: dict[str, int] = dict.fromkeys(budget, 0)
        events = client.meta.events
        for operation in budget:
            events.register(f"before-parameter-build.dynamodb.{operation}", self.trim)
            events.register(f"after-call.dynamodb.{operation}", self.report)

    def trim(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        name = model.name
        if self.budget[name] <= 0:
            return
        request = params["RequestItems"][self.table]
        items = request if name == "BatchWriteItem" else request["Keys"]
        keep = len(items) // 2
        if keep == 0:
            return
        self.budget[name] -= 1
        self.total[name] += len(items) - keep
        if name == "BatchWriteItem":
            self.withheld[name] = items[keep:]
            params["RequestItems"][self.table] = items[:keep]
        else:  # UnprocessedKeys repeat the request's other fields (ConsistentRead...)
            self.withheld[name] = {**request, "Keys": items[keep:]}
            params["RequestItems"][self.table] = {**request, "Keys": items[:keep]}

    def report(self, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        withheld = self.withheld.pop(model.name, None)
        if withheld is not None:
            field = "UnprocessedItems" if model.name == "BatchWriteItem" else "UnprocessedKeys"
            parsed[field] = {self.table: withheld}


class NothingProcessed:
    """A ``before-send`` hook answering every BatchWriteItem with all of it unprocessed."""

    def __init__(self, client: Any) -> None:
        self.sent = 0
        client.meta.events.register("before-send.dynamodb.BatchWriteItem", self)

    def __call__(self, request: Any, **_: Any) -> AWSResponse:
        self.sent += 1
        body = json.dumps({"UnprocessedItems": json.loads(request.body)["RequestItems"]})
        return AWSResponse(request.url, 200, HEADERS, _Body(body.encode()))


@pytest.fixture
def retry_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """botocore's retry delays, recorded instead of slept."""
    sleeps: list[float] = []
    fake_time = types.SimpleNamespace(sleep=sleeps.append)
    monkeypatch.setattr(botocore.endpoint, "time", fake_time)
    return sleeps


@pytest.fixture
def batch_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The provider's own batch-retry backoff, recorded and made instant."""
    attempts: list[int] = []

    def no_wait(attempt: int) -> float:
        attempts.append(attempt)
        return 0.0

    monkeypatch.setattr(dynamo_batch, "backoff", no_wait)
    return attempts


@pytest.fixture
def dynamo(
    local_dynamodb: LocalDynamoDB,
    shared_table: str,
    retry_sleeps: list[float],
    batch_sleeps: list[int],
) -> Iterator[Callable[..., Any]]:
    """Bootstrapped caches on the shared table (the bootstrap requests are not counted).

    Depends on the sleep fixtures so that closing the caches (which flushes hit counts
    through any injector still registered) never sleeps for real.
    """
    made: list[DynamoDBCache] = []

    def build(namespace: str | None = None, **settings: Any) -> DynamoDBCache:
        cache = DynamoDBCache(
            dynamodb_settings(local_dynamodb.endpoint, **settings),
            namespace=namespace or fresh_namespace(),
        )
        cache.connect()
        made.append(cache)
        return cache

    yield build
    for cache in made:
        cache.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def _data() -> dict[str, Any]:
    return {f"item{i}": {"n": i, "blob": bytes([i]) * 100} for i in range(ITEMS)}


def test_throttling_is_retried_until_every_item_is_written_and_read(
    dynamo: Callable[..., DynamoDBCache], retry_sleeps: list[float]
) -> None:
    cache = dynamo(maxAttempts=3)
    throttler = Throttler(cache.client, lambda _op, attempt: attempt % 2 == 1)
    data = _data()
    cache.put_many(data)
    assert cache.get_many(list(data)) == data
    cache.put("single", "value")
    assert cache.get("single") == "value"
    assert cache.incr("count", 5) == 5

    # Every first attempt was throttled and retried once: twice as many requests.
    assert len(throttler.throttled) * 2 == len(throttler.sent)
    assert len(retry_sleeps) == len(throttler.throttled)
    assert throttler.throttled.count("BatchWriteItem") == 3  # ceil(60 / 25) chunks
    checker = dynamo(namespace=cache.namespace)
    assert checker.get_many(list(data)) == data
    report(
        f"dynamodb throttling: {len(throttler.throttled)} throttled responses retried by "
        f"botocore ({len(throttler.sent)} requests), all {ITEMS} batch items written and read"
    )


def test_persistent_throttling_gives_a_typed_error(
    dynamo: Callable[..., DynamoDBCache], retry_sleeps: list[float]
) -> None:
    cache = dynamo(maxAttempts=2)
    throttler = Throttler(cache.client, lambda _op, _attempt: True)
    operations: list[Callable[[], object]] = [
        lambda: cache.put("k", 1),
        lambda: cache.put_many({"a": 1, "b": 2}),
    ]
    for operation in operations:
        throttler.sent.clear()
        with pytest.raises(CacheThrottledError) as info:
            operation()
        message = str(info.value)
        assert "throttled" in message
        assert "ProvisionedThroughputExceededException" in message
        assert "PAY_PER_REQUEST" in message  # the fix
        assert SECRET_MARK not in message
        assert SECRET_MARK not in repr(info.value)
        assert len(throttler.sent) >= 2


@pytest.mark.parametrize("attempts", [1, 2])
def test_max_attempts_counts_the_first_attempt(
    dynamo: Callable[..., DynamoDBCache], attempts: int
) -> None:
    cache = dynamo(maxAttempts=attempts)
    throttler = Throttler(cache.client, lambda _op, _attempt: True)
    with pytest.raises(CacheThrottledError):
        cache.get("k")
    assert len(throttler.sent) == attempts  # "attempts per request, first one included"


def test_unprocessed_items_and_keys_are_resent(
    dynamo: Callable[..., DynamoDBCache], batch_sleeps: list[int]
) -> None:
    cache = dynamo()
    injector = Unprocessed(cache.client, cache.table_name, {"BatchWriteItem": 4, "BatchGetItem": 3})
    data = _data()
    cache.put_many(data)
    assert cache.get_many(list(data)) == data
    assert injector.budget == {"BatchWriteItem": 0, "BatchGetItem": 0}
    injector.budget.update({"BatchWriteItem": 2, "BatchGetItem": 2})
    assert cache.delete_many([f"item{i}" for i in range(30)]) == 30  # a read, then deletes
    assert injector.budget == {"BatchWriteItem": 0, "BatchGetItem": 0}

    remaining = {k: v for k, v in data.items() if int(k[4:]) >= 30}
    checker = dynamo(namespace=cache.namespace)
    assert checker.get_many(list(data)) == remaining
    assert checker.count() == len(remaining)
    report(
        f"dynamodb partial batches: {injector.total['BatchWriteItem']} writes and "
        f"{injector.total['BatchGetItem']} reads returned as UnprocessedItems/Keys, resent "
        f"in {len(batch_sleeps)} backoff rounds, none lost"
    )


def test_unprocessed_forever_gives_up_with_a_typed_error(
    dynamo: Callable[..., DynamoDBCache], batch_sleeps: list[int]
) -> None:
    cache = dynamo()
    refuser = NothingProcessed(cache.client)
    with pytest.raises(CacheThrottledError) as info:
        cache.put_many({"a": 1, "b": 2, "c": 3})
    message = str(info.value)
    assert "left 3 writes unprocessed" in message
    assert "PAY_PER_REQUEST" in message
    assert refuser.sent == dynamo_batch.MAX_ROUNDS + 1
    assert batch_sleeps == list(range(1, dynamo_batch.MAX_ROUNDS + 1))


def test_stopped_endpoint_is_unavailable_then_the_same_cache_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    own = LocalDynamoDB().start()
    port = own.port
    cache = DynamoDBCache(
        dynamodb_settings(own.endpoint, liveTimeout=1000, maxAttempts=1),
        namespace=fresh_namespace(),
    )
    restarted: LocalDynamoDB | None = None
    try:
        cache.put("before", "value")
        own.stop()
        started = time.perf_counter()
        with pytest.raises(CacheUnavailableError) as info:
            cache.get("before")
        failed_in = time.perf_counter() - started
        message = str(info.value)
        assert f"127.0.0.1:{port}" in message
        assert "unable to connect" in message or "did not answer" in message
        for text in (message, repr(info.value), repr(cache)):
            assert SECRET_MARK not in text
        with pytest.raises(CacheUnavailableError):
            cache.put("during", 1)

        restarted = LocalDynamoDB(port=port).start()  # the same endpoint URL
        cache.put("after", "back")  # same object: reconnects (and re-bootstraps if needed)
        assert cache.get("after") == "back"
        assert all(SECRET_MARK not in r.getMessage() for r in caplog.records)
        report(
            f"dynamodb endpoint stopped: CacheUnavailableError after {failed_in * 1e3:.0f} ms "
            "(liveTimeout 1000 ms), the same cache recovered after a restart on the same port"
        )
    finally:
        cache.close()
        own.stop()
        if restarted is not None:
            restarted.stop()


def test_hung_endpoint_times_out_within_live_timeout() -> None:
    # A socket that accepts connections (the kernel's backlog) but never answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        cache = DynamoDBCache(
            dynamodb_settings(f"http://127.0.0.1:{port}", liveTimeout=300, maxAttempts=1)
        )
        started = time.perf_counter()
        with pytest.raises(CacheUnavailableError) as info:
            cache.get("k")
        waited = time.perf_counter() - started
        cache.close()
    assert "liveTimeout" in str(info.value)
    assert SECRET_MARK not in str(info.value)
    report(
        f"dynamodb hung endpoint: CacheUnavailableError after {waited * 1e3:.0f} ms "
        "(liveTimeout 300 ms)"
    )


@pytest.mark.parametrize("policy", ["miss", "raise"])
def test_on_error_policy(policy: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    cache = DynamoDBCache(
        dynamodb_settings(f"http://127.0.0.1:{_free_port()}", maxAttempts=1, onError=policy)
    )
    if policy == "miss":
        assert cache.get("k", "fallback") == "fallback"
        assert cache.exists("k") is False
        assert cache.get_many(["k"]) == {}
        cache.put("k", 1)  # dropped, with a log line
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("put()" in m and "unavailable" in m for m in warnings)
    else:
        for operation in (
            lambda: cache.get("k", "fallback"),
            lambda: cache.put("k", 1),
            lambda: cache.exists("k"),
            lambda: cache.get_many(["k"]),
        ):
            with pytest.raises(CacheUnavailableError):
                operation()
    assert all(SECRET_MARK not in r.getMessage() for r in caplog.records)
    cache.close()
