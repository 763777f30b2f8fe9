"""Paginated, streamed Scan - optionally split into parallel segments - as one flow.

:func:`scan_pages` is an iterator flow (:data:`cachehub.provider.Stream`) that both
shells drive: pages come round by round, so memory stays flat whatever the table size.
With ``segments > 1`` each round asks every unfinished segment for its next page at once
(one :func:`~cachehub.provider.fanout` step: threads on the sync side, tasks on the event
loop) and hands the pages over in segment order, so at most ``segments`` pages are
held. A consumer that stops early closes the flow between rounds, when no request is in
flight: no worker outlives the scan.
"""

from __future__ import annotations

from typing import Any

from cachehub.provider import CacheBackendError, Emit, Stream, fanout

from .flow import request

__all__ = ["scan_pages", "segment_requests"]


def _following(request: dict[str, Any], page: dict[str, Any]) -> dict[str, Any] | None:
    """The request for the page after ``page``, or None when it was the last one.

    A page that ends where it started would be asked for again for ever (an endpoint that
    does not page correctly): a typed error instead of a scan that never ends.
    """
    last = page.get("LastEvaluatedKey")
    if not last:
        return None
    if last == request.get("ExclusiveStartKey"):
        raise CacheBackendError(
            f"a Scan of DynamoDB table '{request.get('TableName')}' did not advance: a page "
            "ended at the key it started from, so the next page would be the same one.",
            hint="the endpoint does not page Scans correctly; check it (or its version) "
            "against DynamoDB's API.",
        )
    return {**request, "ExclusiveStartKey": last}


def segment_requests(params: dict[str, Any], segments: int = 1) -> list[dict[str, Any]]:
    """The first request of each of ``segments`` parallel segments (one plain Scan for 1)."""
    if segments <= 1:
        return [params]
    return [{**params, "Segment": s, "TotalSegments": segments} for s in range(segments)]


def scan_pages(params: dict[str, Any], segments: int = 1) -> Stream[dict[str, Any]]:
    """Every page of a Scan with ``params``, following pagination: ``Emit(pages)`` per round.

    A failed page raises its typed error (the first, in segment order) once the round's
    other requests have settled.
    """
    pending = segment_requests(params, segments)
    while pending:
        if len(pending) == 1:
            pages = [(yield request("Scan", pending[0]))]
        else:
            pages = yield fanout([request("Scan", r) for r in pending], len(pending))
            for page in pages:
                if isinstance(page, Exception):  # fanout answers a CacheError as a value
                    raise page
        pending = [
            following
            for sent, page in zip(pending, pages, strict=True)
            if (following := _following(sent, page)) is not None
        ]
        yield Emit(pages)
