"""The reference provider (only the required primitives, every base default) conforms."""

from __future__ import annotations

import pytest

from cachehub.testing import CacheConformance, CacheFactory
from cachehub.testing.asyncshell import AsyncConformance, flags_cpu
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

    slow_callback_limit = 0.020
    """Its heaviest callback: 2.4 ms of CPU (a 2,000-key put_many handed to a worker)
    over 940 tests at a load of 10, with two busy loops beside. 20 ms, not 10: a
    clean-clone CI counted 10.2 ms of user CPU (3 preemptions, no faults) in one task
    wake-up of the clear() cancellation sweep, beside the CI's parallel installs."""


def test_the_async_suite_fails_a_callback_the_default_limit_lets_pass() -> None:
    # 22 ms of CPU in one callback: under CPU_PER_CALLBACK (25 ms), over this suite's.
    assert flags_cpu(TestReferenceAsyncConformance.slow_callback_limit, 0.022)
    assert not flags_cpu(TestReferenceAsyncConformance.slow_callback_limit, 0.003)
