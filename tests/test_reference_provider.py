"""The reference provider (only the required primitives, every base default) conforms."""

from __future__ import annotations

import pytest

from cachehub.testing import CacheConformance, CacheFactory
from cachehub.testing.asyncshell import CPU_PER_CALLBACK, AsyncConformance, flags_cpu
from cachehub.testing.reference import ReferenceBackend, ReferenceCache


class TestReferenceConformance(CacheConformance):
    @pytest.fixture
    def backend(self) -> ReferenceBackend:
        return ReferenceBackend()

    @pytest.fixture
    def cache_factory(self, backend: ReferenceBackend) -> CacheFactory:
        return lambda **kw: ReferenceCache(backend=backend, **kw)

    @pytest.fixture
    def unreachable_factory(self) -> CacheFactory:
        return lambda **kw: ReferenceCache(backend=ReferenceBackend(down=True), **kw)


class TestReferenceAsyncConformance(AsyncConformance, TestReferenceConformance):
    """The suite through ``cache.aio()`` on a sync-only provider: BaseCache's async
    defaults (its primitives in worker threads), the path every third-party sync
    provider gets."""


def test_the_async_suite_fails_a_callback_that_computes_past_its_limit() -> None:
    # The default limit (a shared machine's noise stays under it); waits fail at any length.
    limit = TestReferenceAsyncConformance.slow_callback_limit
    assert limit == CPU_PER_CALLBACK
    assert flags_cpu(limit, 1.5 * limit)
    assert not flags_cpu(limit, 0.005)
