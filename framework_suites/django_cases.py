"""Django's ``BaseCacheTests``, unchanged, on ``CacheHubCache`` over each provider."""

from __future__ import annotations

import unittest
from typing import Any

from cache.tests import BaseCacheTests, caches_setting_for_tests  # type: ignore[import-not-found]
from django.test import TestCase, override_settings  # type: ignore[import-untyped]

from framework_suites.backends import EXCLUDED, PROVIDERS, configure

_NAMES = configure("django:")


def _cases(provider: str) -> type[Any]:
    settings = caches_setting_for_tests(
        BACKEND="cachehub.contrib.django.CacheHubCache", LOCATION=_NAMES[provider]
    )
    attrs: dict[str, Any] = {
        name: unittest.skip(reason)(getattr(BaseCacheTests, name))
        for name, reason in EXCLUDED["django"].items()
    }
    attrs["__module__"] = __name__
    cls = type(f"CacheHub{provider.title()}Tests", (BaseCacheTests, TestCase), attrs)
    return override_settings(CACHES=settings)(cls)  # type: ignore[no-any-return]


CacheHubMemoryTests, CacheHubRedisTests, CacheHubDynamodbTests = (_cases(p) for p in PROVIDERS)
