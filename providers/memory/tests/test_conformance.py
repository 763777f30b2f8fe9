"""The memory provider passes the shared conformance suite."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from cachehub_memory import MemoryCache

from cachehub.testing import CacheConformance


class TestMemoryConformance(CacheConformance):
    @pytest.fixture
    def cache_factory(self) -> Any:
        # Instances of one test share a named in-process store, like caches on one server.
        store = uuid.uuid4().hex
        return lambda **kw: MemoryCache(store=store, **kw)


class TestMemoryConformanceObserved(CacheConformance):
    """With an operation observer every call takes BaseCache's general path instead of
    MemoryCache's get/put fast paths, so the suite checks both."""

    @pytest.fixture
    def cache_factory(self) -> Any:
        store = uuid.uuid4().hex
        return lambda **kw: MemoryCache(store=store, observer=lambda _event: None, **kw)
