"""Scale: peak client memory of keys() and clear() over many items (tracemalloc).

Each operation is measured at N/10 and N items. A streaming implementation (Redis SCAN,
DynamoDB Scan, both in pages; the memory provider's cursor, a step of entries at a time) has a
peak that stays flat as N grows tenfold; one that made a list of the keys would grow linearly.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from functools import partial
from itertools import islice
from typing import Any

from cachehub_memory import MemoryCache

from .harness import Config, Section, moto_process
from .memory import VALUE

__all__ = ["FLAT_GROWTH", "peak_bytes", "run"]

FLAT_GROWTH = 2.0
"""Peak growth below this, for 10x the items, counts as flat (streaming)."""
_FILL_CHUNK = 1000


def peak_bytes(action: Callable[[], object]) -> int:
    """Peak bytes newly allocated while ``action`` runs (memory held before is ignored)."""
    gc.collect()
    tracemalloc.start()
    try:
        action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _consume(it: Iterator[str]) -> None:
    for _ in it:
        pass


def _fill(cache: Any, n: int) -> None:
    keys = (f"item:{i}" for i in range(n))
    while chunk := list(islice(keys, _FILL_CHUNK)):
        cache.put_many(dict.fromkeys(chunk, VALUE))


def _kib(n: float) -> str:
    return f"{n / 1024:,.0f} KiB"


def _measure(
    provider: str, make: Callable[[], Any], sizes: tuple[int, int], table: list[list[str]]
) -> None:
    for op in ("keys()", "clear(filter)", "clear()"):
        peaks: list[int] = []
        for n in sizes:
            cache = make()
            cache.clear()
            _fill(cache, n)
            if op == "keys()":
                peaks.append(peak_bytes(partial(_consume, cache.keys())))
                cache.clear()
            elif op == "clear(filter)":
                # A filter selecting every item, so it takes the filtered path.
                peaks.append(peak_bytes(partial(cache.clear, "item:*")))
                cache.clear()
            else:
                peaks.append(peak_bytes(cache.clear))
            cache.close()
        growth = peaks[1] / peaks[0] if peaks[0] else float("inf")
        flat = "yes (streaming)" if growth < FLAT_GROWTH else "no (linear)"
        table.append(
            [
                provider,
                op,
                f"{sizes[0]:,} -> {sizes[1]:,}",
                _kib(peaks[0]),
                _kib(peaks[1]),
                f"{peaks[1] / sizes[1]:.1f}",
                f"{growth:.1f}x",
                flat,
            ]
        )


def run(cfg: Config) -> Section:
    """Measure keys()/clear() peaks on the memory provider, and on Redis in full mode."""
    section = Section("scale", "Scale: peak memory of keys() and clear()", baseline="-")
    sizes = (cfg.scale_keys // 10, cfg.scale_keys)
    table: list[list[str]] = []
    _measure("memory (default)", lambda: MemoryCache(maxsize=cfg.scale_keys + 1), sizes, table)
    if cfg.quick:
        section.notes.append(
            "Redis and DynamoDB are measured in full mode only (they need many round trips)."
        )
    else:
        _redis(section, sizes, table)
        # moto serves ~100 requests/s here: a tenth of the items still shows the trend.
        _dynamodb(section, (sizes[0] // 10, sizes[1] // 10), table)
    section.extra_tables.append(
        (
            "Peak client memory (tracemalloc)",
            [
                "provider",
                "op",
                "items",
                "peak at N/10",
                "peak at N",
                "bytes/item at N",
                "growth",
                "flat?",
            ],
            table,
        )
    )
    section.notes.append(
        f"'flat' means the peak grew less than {FLAT_GROWTH:g}x while the item count grew 10x. "
        "The memory provider walks its dict a step of 256 entries per lock hold with a cursor "
        "that survives writes between steps (docs/memory.md); clear(filter) deletes up to "
        "4,096 keys per pass under the lock (fewer matches, a smaller peak), and clear() of "
        "everything empties the store in place."
    )
    return section


def _redis(section: Section, sizes: tuple[int, int], table: list[list[str]]) -> None:
    try:
        from cachehub_redis import RedisCache
        from cachehub_redis.server import RedisServer
    except ImportError:
        section.notes.append("Redis: skipped: provider not installed (cachehub_redis)")
        return
    server: AbstractContextManager[Any] = RedisServer()
    with server as running:
        url = running.url
        _measure("redis", lambda: RedisCache(url=url, namespace="scale:"), sizes, table)


def _dynamodb(section: Section, sizes: tuple[int, int], table: list[list[str]]) -> None:
    try:
        from cachehub_dynamodb import DynamoDBCache
    except ImportError:
        section.notes.append("DynamoDB: skipped: provider not installed (cachehub_dynamodb)")
        return
    with moto_process() as endpoint:

        def make() -> Any:
            return DynamoDBCache(
                tableName="scale",
                host=endpoint,
                region="us-east-1",
                accessKeyId="bench",
                secretkey="bench",
            )

        _measure("dynamodb", make, sizes, table)
