"""cachelib's common backend mixins, unchanged, on ``CacheHubCachelib`` over each provider.

Copied next to cachelib's extracted tests (its mixins import ``conftest`` from there) as
``test_cachehub_adapter.py`` by ``python -m framework_suites``.
"""

from __future__ import annotations

from typing import Any

import pytest
from clear import ClearTests  # type: ignore[import-not-found]
from common import CommonTests  # type: ignore[import-not-found]
from delete_many_with_prefix import DeleteManyWithPrefixTests  # type: ignore[import-not-found]
from has import HasTests  # type: ignore[import-not-found]
from serializer import SerializerTests  # type: ignore[import-not-found]

from cachehub.contrib.cachelib import CacheHubCachelib
from cachehub.registry import get_caches
from framework_suites.backends import PROVIDERS, SECRET, configure

_NAMES = configure("cachelib:")


@pytest.fixture(autouse=True, params=PROVIDERS)
def cache_factory(request: pytest.FixtureRequest, key_prefix: str | None) -> None:
    """The adapter, as cachelib's own backend tests build theirs (``key_prefix`` param)."""
    backing = get_caches().get(_NAMES[request.param])
    backing.clear()  # like the Redis tests' flushdb()

    def _factory(self: Any, *args: Any, **kwargs: Any) -> CacheHubCachelib:
        kwargs.setdefault("key_prefix", key_prefix)
        kwargs.setdefault("secret_key", SECRET)
        return CacheHubCachelib(backing, *args, **kwargs)

    request.cls.cache_factory = _factory


class TestCacheHubCachelib(  # type: ignore[misc]
    CommonTests, ClearTests, HasTests, DeleteManyWithPrefixTests, SerializerTests
):
    """Every mixin cachelib's Redis backend runs."""
