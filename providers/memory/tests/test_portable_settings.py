"""A Redis or DynamoDB cache entry moves to memory by changing its ``class`` only."""

from __future__ import annotations

import pytest
from cachehub_memory import MemoryCache

from cachehub.errors import ConfigError


def test_remote_read_statistics_settings_are_accepted_and_reads_still_count() -> None:
    cache = MemoryCache({"hitCounts": False, "hitFlushInterval": 5})
    cache.put("k", 1)
    assert cache.get("k") == 1
    assert cache.metadata("k").hit_count == 1  # in process a count is free: always kept


@pytest.mark.parametrize("bad", [{"hitCounts": "sometimes"}, {"hitFlushInterval": -1}])
def test_nonsense_read_statistics_settings_are_still_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        MemoryCache(bad)
