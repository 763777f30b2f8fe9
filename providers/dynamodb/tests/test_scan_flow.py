"""The Scan flow (:func:`cachehub_dynamodb.scan.scan_pages`) on a fake table: parallel
segments page round by round, at most one page per segment held, in segment order, and
a consumer that stops early sends no further request. Both shells drive the same flow."""

from __future__ import annotations

import asyncio
from contextlib import closing
from typing import Any, ClassVar

import pytest
from cachehub_dynamodb.scan import scan_pages, segment_requests

from cachehub.errors import CacheBackendError, CacheError, CacheUnavailableError
from cachehub.provider import Emit, FlowCache, Stream, pull


class Table(FlowCache[object]):
    """``pages[segment]`` pages per segment; records every Scan request it answers."""

    backend_errors: ClassVar[tuple[type[Exception], ...]] = ()

    def __init__(self, pages: list[int], fail: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.pages = pages
        self.fail = fail
        self.sent: list[tuple[int, int]] = []

    def _connect(self) -> object:
        return object()

    def _translate(self, exc: Exception) -> CacheError:
        return CacheUnavailableError("down.", hint="start it.")

    def _request(self, operation: str, params: dict[str, Any], *_: Any) -> dict[str, Any]:
        assert operation == "Scan"
        segment = params.get("Segment", 0)
        page = params.get("ExclusiveStartKey", 0)
        self.sent.append((segment, page))
        if (segment, page) == self.fail:
            raise CacheUnavailableError(f"segment {segment} failed.", hint="retry.")
        items = [f"s{segment}p{page}"]
        more = page + 1 < self.pages[segment]
        return {"Items": items, **({"LastEvaluatedKey": page + 1} if more else {})}

    async def _arequest(self, operation: str, params: dict[str, Any], *args: Any) -> Any:
        await asyncio.sleep(0)
        return self._request(operation, params, *args)

    def _scan_flow(self, flt: Any, now: float) -> Stream[str]:
        return _items(scan_pages({"TableName": "t"}, len(self.pages)))


def _items(pages: Stream[dict[str, Any]]) -> Stream[str]:
    with closing(pages):
        while (batch := (yield from pull(pages))) is not None:
            assert len(batch) <= 3  # never more pages held than segments
            yield Emit([item for page in batch for item in page["Items"]])


def test_segment_requests() -> None:
    assert segment_requests({"a": 1}) == [{"a": 1}]
    assert segment_requests({"a": 1}, 2) == [
        {"a": 1, "Segment": 0, "TotalSegments": 2},
        {"a": 1, "Segment": 1, "TotalSegments": 2},
    ]


@pytest.mark.parametrize("shell", ["sync", "async"])
def test_segments_page_in_rounds_in_segment_order(shell: str) -> None:
    table = Table([2, 1, 3])
    if shell == "sync":
        got = list(table._scan(None, 0.0))  # type: ignore[arg-type]
    else:

        async def collect() -> list[str]:
            return [k async for k in table._ascan(None, 0.0)]  # type: ignore[arg-type]

        got = asyncio.run(collect())
    # Round 1: every segment; round 2: segments 0 and 2; round 3: segment 2 alone.
    assert got == ["s0p0", "s1p0", "s2p0", "s0p1", "s2p1", "s2p2"]
    assert sorted(table.sent) == [(0, 0), (0, 1), (1, 0), (2, 0), (2, 1), (2, 2)]


def test_an_early_stop_sends_no_further_round() -> None:
    table = Table([5, 5, 5])
    keys = table._scan(None, 0.0)  # type: ignore[arg-type]
    assert next(keys) == "s0p0"
    keys.close()  # type: ignore[attr-defined]
    assert len(table.sent) == 3  # the first round only: no worker outlives the scan


@pytest.mark.parametrize("shell", ["sync", "async"])
def test_a_failed_segment_raises_its_typed_error_after_the_round_settles(shell: str) -> None:
    table = Table([2, 2, 2], fail=(1, 1))
    got: list[str] = []

    async def collect() -> None:
        async for key in table._ascan(None, 0.0):  # type: ignore[arg-type]
            got.append(key)

    with pytest.raises(CacheUnavailableError, match="segment 1 failed"):
        if shell == "sync":
            got.extend(table._scan(None, 0.0))  # type: ignore[arg-type]
        else:
            asyncio.run(collect())
    assert got == ["s0p0", "s1p0", "s2p0"]
    assert len(table.sent) == 6  # the failing round's other requests did settle


class StuckTable(Table):
    """An endpoint whose second page of segment 0 ends where it started."""

    def _request(self, operation: str, params: dict[str, Any], *_: Any) -> dict[str, Any]:
        reply = super()._request(operation, params)
        if params.get("ExclusiveStartKey") == 1 and params.get("Segment", 0) == 0:
            reply["LastEvaluatedKey"] = 1
        return reply


@pytest.mark.parametrize("shell", ["sync", "async"])
@pytest.mark.parametrize("segments", [[5], [5, 2]])
def test_a_scan_that_does_not_advance_is_a_typed_error_not_an_endless_loop(
    shell: str, segments: list[int]
) -> None:
    table = StuckTable(segments)
    with pytest.raises(CacheBackendError, match="did not advance"):
        if shell == "sync":
            list(table._scan(None, 0.0))  # type: ignore[arg-type]
        else:

            async def collect() -> None:
                async for _ in table._ascan(None, 0.0):  # type: ignore[arg-type]
                    pass

            asyncio.run(asyncio.wait_for(collect(), 30))
    assert len(table.sent) <= 2 * len(segments)  # the stuck page is asked for once
