"""Private namespaces on a configured cache, for commands that write test data.

The tour, ``doctor`` and ``conformance`` must never touch an application's keys: they
work on a copy of the configured cache whose namespace gets a unique suffix, and clear
that namespace when done.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from ..api import BaseCache
from ..errors import CacheError

__all__ = ["clone", "private_namespace", "scratch"]


def private_namespace(purpose: str) -> str:
    """A fresh namespace suffix such as ``cachehub-doctor-1f2e3d4c:``."""
    return f"cachehub-{purpose}-{secrets.token_hex(4)}:"


def clone(cache: BaseCache, namespace: str, /, **overrides: Any) -> BaseCache:
    """A new instance of ``cache``'s provider, same settings, nested in ``namespace``.

    ``overrides`` are extra constructor keywords (``clock=``...); a ``namespace`` among
    them is nested inside ``namespace`` too.
    """
    settings = {k: v for k, v in cache.settings.items() if k != "namespace"}
    inner = str(overrides.pop("namespace", "") or "")
    kwargs: dict[str, Any] = {
        "name": cache.name,
        "read_only": cache.read_only,
        "storage": cache.storage,
        **overrides,
    }
    return type(cache)(settings, namespace=cache.namespace + namespace + inner, **kwargs)


@contextmanager
def scratch(cache: BaseCache, purpose: str) -> Iterator[BaseCache]:
    """A writable private copy of ``cache``; everything it wrote is removed afterwards."""
    isolated = clone(cache, private_namespace(purpose), read_only=False)
    try:
        yield isolated
    finally:
        # Best effort: the original error (if any) matters more than a failed cleanup.
        with suppress(CacheError):
            isolated.clear()
        with suppress(CacheError):
            isolated.close()
