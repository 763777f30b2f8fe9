"""Read accounting kept in process: hit counts and last-access times not yet written back.

Remote providers do not write on every read: that would double the cost of the hottest
operation. They count reads here and write the counts back in batches (on close, on
``flush_hits()``, or when :meth:`HitBuffer.due` says so). Each count is tied to the
*version* of the entry it was read from (a provider-chosen token, such as the entry's
creation stamp), so counts gathered for an entry that was replaced meanwhile are dropped
instead of being credited to the new one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

__all__ = ["ANY_VERSION", "HitBuffer", "PendingHits"]

K = TypeVar("K", bound=Hashable)

ANY_VERSION: Final = object()
"""For :meth:`HitBuffer.take`: the pending reads whatever entry version they belong to."""

DEFAULT_MAX_KEYS: Final = 10_000
"""Keys a buffer holds before it asks to be flushed, whatever the interval."""


@dataclass(slots=True)
class PendingHits:
    """Reads of one entry version not yet written back."""

    hits: int
    accessed: float
    version: object


class HitBuffer(Generic[K]):
    """Thread-safe pending reads per key, flushed by the owning cache.

    Args:
        interval: seconds after which :meth:`due` asks for a flush (0: only when the
            buffer holds ``max_keys`` keys).
        max_keys: bound on the keys held, so a read-only workload cannot grow it forever.
    """

    __slots__ = ("_last_flush", "_lock", "_pending", "interval", "max_keys")

    def __init__(self, interval: float, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        self._lock = threading.Lock()
        self._pending: dict[K, PendingHits] = {}
        self._last_flush = time.monotonic()
        self.interval = interval
        self.max_keys = max_keys

    def __len__(self) -> int:
        return len(self._pending)

    def count(self, key: K, version: object, now: float) -> None:
        """Record one read of ``key`` (in the entry version ``version``) at ``now``."""
        with self._lock:
            pending = self._pending.get(key)
            if pending is None or pending.version != version:
                self._pending[key] = PendingHits(1, now, version)
            else:
                pending.hits += 1
                if now > pending.accessed:
                    pending.accessed = now

    def count_many(self, reads: Iterable[tuple[K, object]], now: float) -> None:
        """Record one read at ``now`` of each ``(key, version)`` (a batch: one lock)."""
        with self._lock:
            pending_of = self._pending.get
            for key, version in reads:
                pending = pending_of(key)
                if pending is None or pending.version != version:
                    self._pending[key] = PendingHits(1, now, version)
                else:
                    pending.hits += 1
                    if now > pending.accessed:
                        pending.accessed = now

    def peek(self, key: K, version: object) -> PendingHits | None:
        """The pending reads of ``key`` if they belong to ``version`` (for metadata)."""
        with self._lock:
            pending = self._pending.get(key)
        return pending if pending is not None and pending.version == version else None

    def take(self, key: K, version: object = ANY_VERSION) -> int:
        """Remove the pending reads of ``key``; their count if they belong to ``version``.

        With :data:`ANY_VERSION` the count is returned whatever version it belongs to: for
        writes that keep the entry (and check its version themselves).
        """
        if not self._pending:
            return 0
        with self._lock:
            pending = self._pending.pop(key, None)
        if pending is None or (version is not ANY_VERSION and pending.version != version):
            return 0
        return pending.hits

    def forget(self, *keys: K) -> None:
        """Drop pending reads of ``keys`` (they were overwritten or deleted)."""
        if not self._pending:  # the common write path: nothing counted, skip the lock
            return
        with self._lock:
            for key in keys:
                self._pending.pop(key, None)

    def clear(self) -> None:
        """Drop every pending read (the whole cache was cleared)."""
        with self._lock:
            self._pending.clear()

    def drain(self) -> dict[K, PendingHits]:
        """Take every pending read, to be written back by the caller."""
        with self._lock:
            pending, self._pending = self._pending, {}
            self._last_flush = time.monotonic()
        return pending

    def due(self) -> bool:
        """Whether the owner should flush now: the interval passed or the buffer is full."""
        if not self._pending:
            return False
        if len(self._pending) >= self.max_keys:
            return True
        return bool(self.interval) and time.monotonic() - self._last_flush >= self.interval
