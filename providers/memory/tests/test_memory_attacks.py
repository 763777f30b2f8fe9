"""An attacker's view of the memory provider's shared stores."""

from __future__ import annotations

import uuid

import pytest
from cachehub_memory import MemoryCache

from cachehub.errors import ConfigError


@pytest.mark.parametrize("first", [True, False])
def test_caches_sharing_a_store_must_agree_on_serialize(first: bool) -> None:
    # A cache storing references read another's encoded entries as raw bytes (silently
    # wrong values); the encoding cache failed on the references.
    store = uuid.uuid4().hex
    keep = MemoryCache(store=store, serialize=first)
    with pytest.raises(ConfigError, match=f"serialize={first}, not .*serialize={not first}"):
        MemoryCache(store=store, serialize=not first)
    keep.put("k", {"x": 1})
    assert MemoryCache(store=store, serialize=first).get("k") == {"x": 1}
