"""The DynamoDB provider passes the shared conformance suite, against moto in server mode."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from cachehub_dynamodb import DynamoDBCache

from cachehub.testing import CacheConformance, closed_port
from cachehub.testing.asyncshell import AsyncConformance
from cachehub.testing.basic import BasicTests
from cachehub.testing.batch import BatchTests
from cachehub.testing.concurrency import GetOrSetTests
from cachehub.testing.expiry import ExpiryTests, MetadataTests, UncountedReadTests
from cachehub.testing.faults import FaultProxy, Matcher
from cachehub.testing.filters import FilterTests
from cachehub.testing.lostreplies import LostReplyTests
from cachehub.testing.skew import SkewTests
from cachehub.testing.values import ValueTests

from .conftest import CREDENTIALS


@pytest.fixture(scope="module")
def conformance_table(endpoint: str) -> str:
    """One table for the whole suite; each test gets its own namespace."""
    DynamoDBCache(tableName="cachehub_conformance", host=endpoint, **CREDENTIALS).connect()
    return "cachehub_conformance"


class TestDynamoDBConformance(CacheConformance):
    # moto answers one request at a time (~10 ms each, see LocalDynamoDB), so more threads
    # add wall time but no extra interleavings; 4 threads still race on every write.
    thread_count: ClassVar[int] = 4
    incr_rounds: ClassVar[int] = 40

    @pytest.fixture
    def cache_factory(self, endpoint: str, conformance_table: str) -> Any:
        settings = {"tableName": conformance_table, "host": endpoint, **CREDENTIALS}
        return lambda **kw: DynamoDBCache(settings, **kw)

    @pytest.fixture
    def unreachable_factory(self) -> Any:
        settings = {
            "tableName": "cachehub_unreachable",
            "host": f"http://127.0.0.1:{closed_port()}",
            "liveTimeout": 1000,
            "maxAttempts": 1,
            **CREDENTIALS,
        }
        return lambda **kw: DynamoDBCache(settings, **kw)


class TestDynamoDBAsyncConformance(AsyncConformance, TestDynamoDBConformance):
    """The whole suite again through ``cache.aio()``: the native aiobotocore primitives,
    on moto in its own process (in this one it would hold the GIL while the loop waits,
    which the loop-blocking detector would blame on the loop)."""

    @pytest.fixture
    def cache_factory(self, process_endpoint: str) -> Any:
        settings = {"tableName": "cachehub_conformance", "host": process_endpoint, **CREDENTIALS}
        return lambda **kw: DynamoDBCache(settings, **kw)


class TestDynamoDBConsistentConformance(
    BasicTests,
    ValueTests,
    ExpiryTests,
    MetadataTests,
    UncountedReadTests,
    FilterTests,
    BatchTests,
    GetOrSetTests,
):
    """The read themes again with ``consistentRead: true``: every read request changes.

    moto is always consistent, so this proves the consistent requests are well formed
    and read back what was written, not that they are consistent; that they are sent is
    proven on the wire (``test_budget.py::test_consistent_read_reaches_every_read_request``).
    The themes without reads of their own (locks, lock space, instants, edges' big batches,
    read-only, lifecycle, outages, backend TTL) run once, in TestDynamoDBConformance.
    """

    thread_count: ClassVar[int] = TestDynamoDBConformance.thread_count
    incr_rounds: ClassVar[int] = TestDynamoDBConformance.incr_rounds

    @pytest.fixture
    def cache_factory(self, endpoint: str, conformance_table: str) -> Any:
        settings = {
            "tableName": conformance_table,
            "host": endpoint,
            "consistentRead": True,
            **CREDENTIALS,
        }
        return lambda **kw: DynamoDBCache(settings, **kw)


class TestDynamoDBLostReplies(LostReplyTests):
    """incr, add, delete and delete_if_equal behind a proxy that loses one reply or request."""

    lost_reply_requests: ClassVar[dict[str, Matcher]] = {
        "incr": b"DynamoDB_20120810.UpdateItem",
        "add": b"DynamoDB_20120810.PutItem",
        "delete": b"DynamoDB_20120810.DeleteItem",
        "delete_if_equal": b"DynamoDB_20120810.DeleteItem",
    }

    @pytest.fixture
    def fault_proxy(self, endpoint: str) -> Iterator[FaultProxy]:
        with FaultProxy("127.0.0.1", int(endpoint.rsplit(":", 1)[1])) as proxy:
            yield proxy

    @pytest.fixture
    def cache_factory(self, fault_proxy: FaultProxy, conformance_table: str) -> Any:
        settings = {"tableName": conformance_table, "host": fault_proxy.url, **CREDENTIALS}
        return lambda **kw: DynamoDBCache(settings, **kw)


class TestDynamoDBSkew(SkewTests):
    """The writer's clock decides (docs/dynamodb.md, "Clocks"): the documented bound holds
    for entries and locks with a second process 5 s off."""

    expiry_clock: ClassVar[str] = "writer"

    @pytest.fixture
    def cache_factory(self, endpoint: str, conformance_table: str) -> Any:
        settings = {"tableName": conformance_table, "host": endpoint, **CREDENTIALS}
        return lambda **kw: DynamoDBCache(settings, **kw)
