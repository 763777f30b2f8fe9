"""The memory provider passes the shared conformance suite, under every eviction policy."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from cachehub_memory import MemoryCache

from cachehub.testing import CacheConformance
from cachehub.testing.asyncshell import AsyncConformance

# Every policy changes how entries are kept (ttl also drops expired entries itself and
# must be told when a read slides a deadline), so each runs the whole suite.
POLICIES = ["lru", "lfu", "fifo", "rr", "ttl"]


class TestMemoryConformance(CacheConformance):
    @pytest.fixture(params=POLICIES)
    def policy(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)

    @pytest.fixture
    def cache_factory(self, policy: str) -> Any:
        # Instances of one test share a named in-process store, like caches on one server.
        store = uuid.uuid4().hex
        return lambda **kw: MemoryCache(store=store, policy=policy, **kw)


class TestMemoryConformanceObserved(CacheConformance):
    """With an operation observer every call takes BaseCache's general path instead of
    MemoryCache's get/put fast paths, so the suite checks both."""

    @pytest.fixture
    def cache_factory(self) -> Any:
        store = uuid.uuid4().hex
        return lambda **kw: MemoryCache(store=store, observer=lambda _event: None, **kw)


class TestMemoryAsyncConformance(AsyncConformance, CacheConformance):
    """The whole suite again through ``cache.aio()`` (default policy only: CI time)."""

    @pytest.fixture
    def cache_factory(self) -> Any:
        store = uuid.uuid4().hex
        return lambda **kw: MemoryCache(store=store, **kw)
