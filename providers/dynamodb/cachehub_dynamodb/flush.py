"""Concurrent write-back of conditional UpdateItems (pending hit counts).

Flushing the hit counts of many keys is one conditional ``UpdateItem`` per key: sent one
after another, closing a cache that read 250 keys waited for 250 round trips. They are
independent, so they go out as one :func:`cachehub.provider.fanout`: a small thread pool on the
sync path (botocore clients are thread-safe), concurrent tasks on the event loop. The
request count does not change: one per key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cachehub.provider import CacheError, fanout

from .errors import ConditionFailedError
from .flow import Flow, request

__all__ = ["update_all", "flush_workers"]


def flush_workers(max_connections: int) -> int:
    """Concurrent sends a flush may use: half the connection pool, so other callers keep
    theirs."""
    return max(1, max_connections // 2)


def update_all(requests: Sequence[dict[str, Any]], workers: int) -> Flow[int]:
    """Send every ``UpdateItem`` of ``requests``, up to ``workers`` at a time.

    A failed condition skips that item (it was replaced or deleted meanwhile). Every
    request is attempted even if some fail; afterwards the first failure is raised.
    Returns how many updates were applied.
    """
    results = yield fanout([request("UpdateItem", dict(p)) for p in requests], workers)
    for result in results:
        if isinstance(result, CacheError) and not isinstance(result, ConditionFailedError):
            raise result
    return sum(1 for result in results if not isinstance(result, CacheError))
