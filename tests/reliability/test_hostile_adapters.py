"""Hostile entries under the framework adapters' keys (issue #19): signed pickle is
verified before anything is unpickled or inflated, in a child capped in memory and time.

A co-tenant of the backend plants, under the key an adapter reads: a raw pickle that
would allocate gigabytes, a raw pickle that would run code, a copy of a genuine signed
header followed by a zlib bomb, a foreign key id with a zlib bomb, and random bytes.
Every read is a miss; the child stays within its memory cap; no secret shows.
"""

from __future__ import annotations

import pickle
import zlib
from typing import Any

from .sandbox import assert_contained, run_bounded

SECRET = "hostile-adapters-secret-" + "s3cr3t" * 4


class _Allocate:
    """Unpickling this would allocate 8 GiB."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (bytearray, (8 * 1024**3,))


class _Exit:
    """Unpickling this would end the process."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (SystemExit, ("planted pickle ran",))


def _zlib_bomb(mib: int) -> bytes:
    """``mib`` MiB of zeros, compressed a MiB at a time (~1 KiB each)."""
    packer = zlib.compressobj(9)
    chunk = b"\0" * 1024**2
    return b"".join(packer.compress(chunk) for _ in range(mib)) + packer.flush()


def read_planted_through_adapters(secret: str) -> list[Any]:
    """Child: plant every hostile payload under an adapter's key, read it back each way."""
    from cachehub_memory import MemoryCache

    from cachehub.contrib.cachelib import CacheHubCachelib

    backing = MemoryCache(name="hostile-adapter", namespace="ha:")
    adapter = CacheHubCachelib(backing, secret_key=secret, key_prefix="p:")
    adapter.set("genuine", {"ok": True})
    genuine = backing.get("p:genuine")
    bomb = _zlib_bomb(512)
    plants = {
        "allocate": pickle.dumps(_Allocate()),
        "exit": pickle.dumps(_Exit()),
        "copied-head-zlib-bomb": b"\x06" + genuine[1:9] + b"\0" * 32 + bomb,
        "foreign-id-zlib-bomb": b"\x06" + b"\x01" * 8 + b"\0" * 32 + bomb,
        "random": bytes(range(256)) * 4,
        "empty": b"",
        "not-bytes": {"__class__": "os.system"},
    }
    seen: list[Any] = []
    for name, payload in plants.items():
        backing.put("p:" + name, payload)
        seen.append(adapter.get(name))
        seen.append(adapter.get_many(name, "genuine"))
        seen.append(adapter.has(name))
    seen.append(adapter.get("genuine"))
    return seen


def test_planted_payloads_under_adapter_keys_are_contained_misses() -> None:
    outcome = run_bounded(read_planted_through_adapters, SECRET, memory_mb=256, seconds=60)
    assert_contained(outcome, forbidden=(SECRET,))
    assert outcome.kind == "value", outcome.describe()
    seen = outcome.value
    for index in range(0, len(seen) - 1, 3):
        assert seen[index] is None  # a miss
        assert seen[index + 1] == [None, {"ok": True}]  # the batch keeps the good entry
        assert seen[index + 2] is False  # has() agrees with get(): never trusted, so absent
    assert seen[-1] == {"ok": True}
    assert outcome.peak_rss_mb < 256, outcome.describe()
