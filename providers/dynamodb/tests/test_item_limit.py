"""An entry the cache accepts stays readable: a fresh item keeps room for the stamps that
later reads and writes add (``items.ITEM_GROWTH``).

An idle entry stored up to DynamoDB's 400 KB limit itself could be written, and then every
``get`` of it failed (its deadline slide adds ``lastAccessed``), taking ``get_many`` and
``get_all`` of other keys down with it; ``touch`` and hit-count write-backs failed too.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import pytest
from cachehub_dynamodb import DynamoDBCache
from cachehub_dynamodb import cache as cache_module
from cachehub_dynamodb.items import (
    GROWS,
    ITEM_GROWTH,
    MAX_ITEM_BYTES,
    build_item,
    encode_value,
    item_size,
)

from cachehub.api import Expiry
from cachehub.errors import CacheValueError

MOTO_LIMIT = 405_000
"""moto's item limit (DynamoDB's is 409,600): the tests put the cache's limit there, so
that the server refuses exactly what DynamoDB would."""


def test_the_room_kept_fits_every_stamp_a_later_write_adds() -> None:
    item: dict[str, Any] = {"cacheKey": {"S": "k"}, "value": {"B": b"x"}}
    grown = {**item, **{name: {"N": "-1." + "9" * 37} for name in GROWS}}
    assert item_size(grown) - item_size(item) <= ITEM_GROWTH
    assert ITEM_GROWTH < MAX_ITEM_BYTES // 500  # what it costs: about 0.1% of an item


def _largest(cache: DynamoDBCache, key: str, expiry: Expiry) -> int:
    """The most value bytes ``cache`` accepts under ``key`` (its limit as it stands)."""
    low, high = 0, MOTO_LIMIT
    while low < high:
        mid = (low + high + 1) // 2
        try:
            cache._item(key, b"\0" * mid, expiry, time.time())
        except CacheValueError:
            high = mid - 1
        else:
            low = mid
    return low


@pytest.fixture
def at_moto_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_module, "MAX_ITEM_BYTES", MOTO_LIMIT)


@pytest.mark.usefixtures("at_moto_limit")
def test_an_idle_entry_of_the_largest_accepted_size_is_read_touched_and_counted(
    make: Callable[..., DynamoDBCache],
) -> None:
    cache = make(settings={"compressThreshold": 0, "hitCounts": True})
    cache.connect()
    size = _largest(cache, "idle", Expiry(None, 60.0))
    value = os.urandom(size)
    cache.put("idle", value, idle_time=60)
    cache.put("small", "ok", idle_time=60)
    with pytest.raises(CacheValueError, match="400 KB"):
        cache.put("idle", os.urandom(size + 1), idle_time=60)
    for _ in range(3):  # each read slides the deadline and counts a hit
        assert cache.get("idle") == value
    assert cache.get_many(["idle", "small"]) == {"idle": value, "small": "ok"}
    assert dict(cache.get_all()) == {"idle": value, "small": "ok"}
    assert cache.touch("idle", time_span=3600, idle_time=60)
    cache.flush_hits()
    meta = cache.metadata("idle")
    assert meta is not None
    assert meta.hit_count >= 4
    assert cache.get("idle") == value


@pytest.mark.usefixtures("at_moto_limit")
def test_an_idle_item_planted_at_the_limit_is_read_without_sliding(
    make: Callable[..., DynamoDBCache], caplog: pytest.LogCaptureFixture
) -> None:
    """Another program (or an older cachehub) wrote an idle entry with no room left: the
    read answers, and the entry keeps its deadline (a warning says so)."""
    cache = make(settings={"compressThreshold": 0})
    cache.connect()
    expiry, now = Expiry(None, 60.0), time.time()

    def planted_item(value: bytes) -> dict[str, Any]:  # as _item builds it, unchecked
        encoded = encode_value(value, cache.codec, "idle")
        return build_item(cache.key_name, "idle", encoded, expiry, now)

    value = b"\0" * (MOTO_LIMIT - 3 - item_size(planted_item(b"")))
    planted = planted_item(value)
    assert MOTO_LIMIT - 40 < item_size(planted) <= MOTO_LIMIT
    cache.client.put_item(TableName=cache.table_name, Item=planted)
    cache.put("small", "ok", idle_time=60)
    assert cache.get("idle") == value
    assert cache.get_many(["idle", "small"]) == {"idle": value, "small": "ok"}
    assert "too close to DynamoDB's 400 KB item limit" in caplog.text


def test_the_docs_state_the_room_kept() -> None:
    from pathlib import Path

    docs = Path(__file__).resolve().parents[3] / "docs" / "dynamodb.md"
    assert f"keeps {ITEM_GROWTH} bytes free" in docs.read_text(encoding="utf-8")
