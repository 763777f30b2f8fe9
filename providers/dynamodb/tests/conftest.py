"""Fixtures: one moto server (``LocalDynamoDB``) per session, reached over HTTP via ``host``."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cachehub_dynamodb import DynamoDBCache, LocalDynamoDB

try:
    import moto.server  # noqa: F401  (the server extra is what the tests need)
except ImportError:  # pragma: no cover - depends on the environment
    if os.environ.get("CI"):
        raise
    pytest.skip("moto[server] is not installed", allow_module_level=True)

_tables = itertools.count()

CREDENTIALS = {"accessKeyId": "AKIADUMMYTESTKEY0001", "secretkey": "dummy-secret-for-tests"}


@pytest.fixture(scope="session")
def local_dynamodb() -> Iterator[LocalDynamoDB]:
    """moto's ThreadedMotoServer on 127.0.0.1 and a free port, for the whole session."""
    with LocalDynamoDB() as local:
        yield local


@pytest.fixture(scope="session")
def process_endpoint() -> Iterator[str]:
    """moto in a process of its own (``cachehub local-dynamodb``), for the async tests: in
    this process its request handling holds the GIL while the event loop waits, which the
    loop-blocking checks would blame on the loop."""
    server = subprocess.Popen(
        [sys.executable, "-m", "cachehub", "local-dynamodb", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.append(server.stdout.readline()))  # type: ignore[union-attr]
        reader.start()
        reader.join(60)
        found = re.search(r"http://[\w.:]+", lines[0]) if lines else None
        assert found, f"local-dynamodb did not start: {lines}"
        yield found.group(0)
    finally:
        server.terminate()
        server.wait(30)


@pytest.fixture(scope="session")
def endpoint(local_dynamodb: LocalDynamoDB) -> str:
    return local_dynamodb.endpoint


@pytest.fixture
def table_name() -> str:
    """A table name no other test uses."""
    return f"cachehub_test_{os.getpid()}_{next(_tables)}"


@pytest.fixture
def make(endpoint: str, table_name: str) -> Iterator[Callable[..., DynamoDBCache]]:
    """Build caches on the test's own table (override ``tableName`` to share another)."""
    created: list[DynamoDBCache] = []

    def build(**kwargs: Any) -> DynamoDBCache:
        settings = {"tableName": table_name, "host": endpoint, **CREDENTIALS}
        settings.update(kwargs.pop("settings", {}))
        cache = DynamoDBCache(settings, **kwargs)
        created.append(cache)
        return cache

    yield build
    for cache in created:
        cache.close()


class RequestCounter:
    """Counts HTTP requests (retries included) a client sends, per operation."""

    def __init__(self, client: Any) -> None:
        self.calls: list[str] = []
        client.meta.events.register("before-send.dynamodb", self._count)

    def _count(self, request: Any, **_: Any) -> None:
        target = request.headers.get("X-Amz-Target", b"")
        if isinstance(target, bytes):
            target = target.decode()
        self.calls.append(target.rsplit(".", 1)[-1])

    def reset(self) -> None:
        self.calls.clear()

    @property
    def total(self) -> int:
        return len(self.calls)

    def count(self, operation: str) -> int:
        return self.calls.count(operation)


@pytest.fixture
def counted(
    make: Callable[..., DynamoDBCache],
) -> Callable[..., tuple[DynamoDBCache, RequestCounter]]:
    """A bootstrapped cache and a counter of its requests (bootstrap not counted)."""

    def build(**kwargs: Any) -> tuple[DynamoDBCache, RequestCounter]:
        cache = make(**kwargs)
        cache.connect()
        counter = RequestCounter(cache.client)
        return cache, counter

    return build


class _Raw:
    """The raw body of a fabricated HTTP response, as botocore reads it."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


class ErrorInjector:
    """Answers chosen DynamoDB operations with an AWS error instead of sending them.

    Registered after the RequestCounter on the same event, so injected requests are
    still counted; botocore parses, retries and raises exactly as for a real error.
    """

    def __init__(self, client: Any) -> None:
        self.rules: dict[str, tuple[str, int]] = {}
        self.messages: dict[str, str] = {}
        client.meta.events.register("before-send.dynamodb", self._answer)

    def fail(
        self,
        operation: str,
        code: str,
        times: int = 1_000_000,
        status: int = 400,
        message: str | None = None,
    ) -> None:
        self.rules[operation] = (code, times)
        self.status = status
        self.messages[operation] = message or f"injected {code}"

    def _answer(self, request: Any, **_: Any) -> Any:
        from botocore.awsrequest import AWSResponse

        target = request.headers.get("X-Amz-Target", b"")
        operation = (target.decode() if isinstance(target, bytes) else target).rsplit(".", 1)[-1]
        rule = self.rules.get(operation)
        if rule is None or rule[1] <= 0:
            return None
        code, times = rule
        self.rules[operation] = (code, times - 1)
        body = json.dumps(
            {
                "__type": f"com.amazonaws.dynamodb.v20120810#{code}",
                "message": self.messages[operation],
            }
        )
        headers = {"x-amzn-RequestId": "test", "Content-Type": "application/x-amz-json-1.0"}
        return AWSResponse(request.url, self.status, headers, _Raw(body.encode()))


@pytest.fixture
def injected(
    make: Callable[..., DynamoDBCache],
) -> Callable[..., tuple[DynamoDBCache, RequestCounter, ErrorInjector]]:
    """A cache (not yet bootstrapped) with a request counter and an error injector."""

    def build(**kwargs: Any) -> tuple[DynamoDBCache, RequestCounter, ErrorInjector]:
        cache = make(**kwargs)
        counter = RequestCounter(cache.client)
        return cache, counter, ErrorInjector(cache.client)

    return build
