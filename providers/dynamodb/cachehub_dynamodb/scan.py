"""Paginated, streamed Scan - optionally split into parallel segments.

Items are yielded page by page, so memory stays flat whatever the table size. With
``segments > 1`` one thread per segment pages through its part of the table and hands
pages over a small bounded queue; closing the generator early stops the workers. The
async twins (:func:`ascan_items`, :func:`ascan_count`) share the paging rule
(:func:`_following`) and await each page on the event loop.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

from .table import Caller

__all__ = ["scan_items", "scan_count", "ascan_items", "ascan_count", "AsyncSender"]

AsyncSender = Callable[[str, dict[str, Any]], Awaitable[Any]]
"""Sends one request on the event loop and returns its reply (errors translated)."""

_PUT_POLL: Final = 0.1


def _following(request: dict[str, Any], page: dict[str, Any]) -> dict[str, Any] | None:
    """The request for the page after ``page``, or None when it was the last one."""
    last = page.get("LastEvaluatedKey")
    return {**request, "ExclusiveStartKey": last} if last else None


def _pages(call: Caller, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
    request: dict[str, Any] | None = params
    while request is not None:
        page = call("Scan", **request)
        yield page
        request = _following(request, page)


async def _apages(send: AsyncSender, params: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    request: dict[str, Any] | None = params
    while request is not None:
        page = await send("Scan", request)
        yield page
        request = _following(request, page)


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


async def ascan_items(
    send: AsyncSender, params: dict[str, Any], segments: int = 1
) -> AsyncIterator[dict[str, Any]]:
    """:func:`scan_items` on the event loop; segments are paged one after another (each
    page is one awaited request, so the loop is never blocked while the next one runs)."""
    requests = (
        [params] if segments <= 1 else [_segment(params, s, segments) for s in range(segments)]
    )
    for request in requests:
        async for page in _apages(send, request):
            for item in page.get("Items", []):
                yield item


async def ascan_count(send: AsyncSender, params: dict[str, Any], segments: int = 1) -> int:
    """:func:`scan_count` on the event loop (segments counted concurrently)."""
    counted = {**params, "Select": "COUNT"}

    async def count(request: dict[str, Any]) -> int:
        return sum([int(page.get("Count", 0)) async for page in _apages(send, request)])

    if segments <= 1:
        return await count(counted)
    parts = await asyncio.gather(*(count(_segment(counted, s, segments)) for s in range(segments)))
    return sum(parts)


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
