"""Conformance, in real time: a backend's own expiry never removes a live entry early.

Everything else in the suite runs on a fake clock that starts at the real time and only
moves forward, so a backend TTL derived from a fake deadline always lies in the real
future, and a provider that never renews its backend TTL (on an idle read, on ``touch``)
would pass. This small group uses the real clock, with spans of a few seconds: each live
entry is checked inside the last half second before the deadline its backend TTL would
have if the provider got it wrong. Only for distributed providers (in-process ones have
no backend TTL); about ``2.5 * backend_ttl_unit`` seconds of waiting in all.
"""

from __future__ import annotations

import time
from typing import ClassVar

import pytest

from cachehub.api import MISSING

from .support import CacheFactory, ConformanceBase

__all__ = ["BackendTTLTests"]


class BackendTTLTests(ConformanceBase):
    """Backend TTLs follow put, touch (extend, persist) and idle reads, on the real clock."""

    backend_ttl_unit: ClassVar[float] = 1.0
    """Seconds per unit in the real-time group; each check has half a unit of slack."""

    def test_backend_ttl_never_removes_a_live_entry(self, make_cache: CacheFactory) -> None:
        cache = make_cache(clock=time.time)
        if not cache.distributed:
            pytest.skip("an in-process provider has no backend TTL")
        unit = self.backend_ttl_unit
        start = time.monotonic()

        def until(units: float) -> None:
            time.sleep(max(0.0, start + units * unit - time.monotonic()))

        cache.put("span", "v", time_span=3 * unit)  # backend TTL too early by a unit: gone at 2
        cache.put_many({"many": "v"}, time_span=3 * unit)
        assert cache.add("added", "v", time_span=3 * unit)
        cache.put("idle", "v", idle_time=1.5 * unit)  # never renewed: gone at 1.5
        cache.put("idle_many", "v", idle_time=1.5 * unit)
        cache.put("touched", "v", time_span=unit)  # not renewed by touch: gone at 1
        assert cache.touch("touched", time_span=10 * unit)
        cache.put("persisted", "v", time_span=unit)
        assert cache.touch("persisted")  # no expiry any more: the backend's TTL must go too
        cache.put("slid_by_touch", "v", idle_time=unit)
        assert cache.touch("slid_by_touch", idle_time=5 * unit)
        for at in (1.0, 2.0):  # reads slide the idle deadlines to 2.5, then 3.5
            until(at)
            assert cache.get("idle") == "v", f"idle entry gone at {at} units"
            assert cache.get_many(["idle_many"]) == {"idle_many": "v"}, f"at {at} units"
        until(2.5)
        alive = ["span", "many", "added", "idle", "idle_many", "touched", "persisted"]
        alive.append("slid_by_touch")
        found = cache.get_many(alive)  # one batch: the verdict comes within the window
        elapsed = (time.monotonic() - start) / unit
        if elapsed >= 2.95:
            pytest.skip(f"the machine overslept ({elapsed:.2f} units): no verdict possible")
        gone = [key for key in alive if found.get(key, MISSING) is MISSING]
        assert not gone, f"removed early by the backend at {elapsed:.2f} units: {gone}"
