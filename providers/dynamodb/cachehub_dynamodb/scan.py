"""Paginated, streamed Scan - optionally split into parallel segments.

Items are yielded page by page, so memory stays flat whatever the table size. With
``segments > 1`` one thread per segment pages through its part of the table and hands
pages over a small bounded queue; closing the generator early stops the workers.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

from .table import Caller

__all__ = ["scan_items", "scan_count"]

_PUT_POLL: Final = 0.1


def _pages(call: Caller, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
    request = dict(params)
    while True:
        page = call("Scan", **request)
        yield page
        last = page.get("LastEvaluatedKey")
        if not last:
            return
        request["ExclusiveStartKey"] = last


def _segment(params: dict[str, Any], segment: int, total: int) -> dict[str, Any]:
    return {**params, "Segment": segment, "TotalSegments": total}


def scan_items(call: Caller, params: dict[str, Any], segments: int = 1) -> Iterator[dict[str, Any]]:
    """Stream every item of a Scan with ``params``, following pagination."""
    if segments <= 1:
        for page in _pages(call, params):
            yield from page.get("Items", [])
        return
    pages: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=segments * 2)
    stop = threading.Event()

    def hand_over(message: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                pages.put(message, timeout=_PUT_POLL)
                return True
            except queue.Full:
                continue
        return False

    def worker(segment: int) -> None:
        try:
            for page in _pages(call, _segment(params, segment, segments)):
                if not hand_over(("page", page.get("Items", []))):
                    return
            hand_over(("done", None))
        except BaseException as exc:  # surfaced in the consumer's thread
            hand_over(("error", exc))

    threads = [
        threading.Thread(target=worker, args=(s,), name=f"cachehub-scan-{s}", daemon=True)
        for s in range(segments)
    ]
    for thread in threads:
        thread.start()
    try:
        running = segments
        while running:
            kind, payload = pages.get()
            if kind == "page":
                yield from payload
            elif kind == "done":
                running -= 1
            else:
                raise payload
    finally:
        stop.set()
        for thread in threads:
            thread.join()


def scan_count(call: Caller, params: dict[str, Any], segments: int = 1) -> int:
    """``Select=COUNT`` over the whole table (segments scanned in parallel)."""
    counted = {**params, "Select": "COUNT"}

    def count(segment: int | None) -> int:
        request = counted if segment is None else _segment(counted, segment, segments)
        return sum(int(page.get("Count", 0)) for page in _pages(call, request))

    if segments <= 1:
        return count(None)
    with ThreadPoolExecutor(max_workers=segments, thread_name_prefix="cachehub-count") as pool:
        return sum(pool.map(count, range(segments)))
