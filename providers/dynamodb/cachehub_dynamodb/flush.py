"""Concurrent write-back of conditional UpdateItems (pending hit counts).

Flushing the hit counts of many keys is one conditional ``UpdateItem`` per key: sent one
after another, closing a cache that read 250 keys waited for 250 round trips. They are
independent, so a small thread pool sends them concurrently on the cache's one client
(botocore clients are thread-safe). The request count does not change: one per key.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cachehub.errors import CacheError

from .errors import ConditionFailedError
from .table import Caller

__all__ = ["send_updates", "flush_workers"]


def flush_workers(max_connections: int) -> int:
    """Threads a flush may use: half the connection pool, so other callers keep theirs."""
    return max(1, max_connections // 2)


def send_updates(call: Caller, requests: Sequence[dict[str, Any]], workers: int) -> int:
    """Send every ``UpdateItem`` of ``requests``, up to ``workers`` at a time.

    A failed condition skips that item (it was replaced or deleted meanwhile). Every
    request is attempted even if some fail; afterwards the first failure is raised.
    Returns how many updates were applied.
    """

    def send(params: dict[str, Any]) -> CacheError | bool:
        try:
            call("UpdateItem", **params)
        except ConditionFailedError:
            return False
        except CacheError as exc:
            return exc
        return True

    if workers <= 1 or len(requests) <= 1:
        results = [send(params) for params in requests]
    else:
        with ThreadPoolExecutor(
            max_workers=min(workers, len(requests)), thread_name_prefix="cachehub-dynamodb-flush"
        ) as pool:
            results = list(pool.map(send, requests))
    for result in results:
        if isinstance(result, CacheError):
            raise result
    return sum(1 for result in results if result is True)
