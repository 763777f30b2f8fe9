"""The conformance suite every cachehub provider passes, built from themed mixins.

Use it from a provider's test module (see docs/conformance.md)::

    import pytest
    from cachehub.testing import CacheConformance

    class TestMyCache(CacheConformance):
        @pytest.fixture
        def cache_factory(self):
            return lambda **kw: MyCache({"host": "localhost"}, **kw)
"""

from __future__ import annotations

from .basic import BasicTests, KeyTests, LifecycleTests
from .batch import BatchTests
from .concurrency import GetOrSetTests, LockTests
from .counters import CounterTests
from .edges import EdgeTests
from .expiry import ExpiryTests, MetadataTests, UncountedReadTests
from .filters import FilterTests, NamespaceTests
from .instants import InstantTests
from .lockspace import LockSpaceTests
from .onerror import OnErrorTests
from .readonly import ReadOnlyTests
from .realtime import BackendTTLTests
from .values import ValueTests

__all__ = ["CacheConformance"]


class CacheConformance(
    BasicTests,
    KeyTests,
    ValueTests,
    ExpiryTests,
    MetadataTests,
    UncountedReadTests,
    InstantTests,
    EdgeTests,
    FilterTests,
    NamespaceTests,
    BatchTests,
    CounterTests,
    LockTests,
    LockSpaceTests,
    GetOrSetTests,
    ReadOnlyTests,
    LifecycleTests,
    OnErrorTests,
    BackendTTLTests,
):
    """Subclass as ``Test<Provider>`` and define the ``cache_factory`` fixture.

    ``cache_factory(**kwargs)`` must return a *new* provider instance built with those
    keyword arguments (``namespace``, ``clock``, ``read_only``, ``name``...), every
    instance sharing one backend. A provider with a remote backend also defines
    ``unreachable_factory`` (same contract, pointing at a backend that cannot be reached)
    to run the ``onError`` cases. Tunables (class attributes): ``supports_clock``,
    ``real_time_unit``, ``timestamp_tolerance``, ``thread_count``, ``incr_rounds``.
    """
