"""The reference provider: the smallest correct cachehub provider, over a dict.

It implements only the abstract primitives of :class:`~cachehub.api.BaseCache` and uses
every default the base class offers (``_exists``, ``_get_many``, ``_set_many``,
``_delete_many``, ``_count``, ``_clear``, ``_close``), so running the conformance suite on
it proves that those defaults are correct. It is also the template for a new provider
(see docs/plugins.md, "Writing a provider")::

    backend = ReferenceBackend()
    cache = ReferenceCache(backend=backend, namespace="app:")

Every cache built on one :class:`ReferenceBackend` shares its entries, like caches on one
server. ``backend.down = True`` simulates an outage: every primitive then raises
:class:`~cachehub.errors.CacheUnavailableError`, which is how the conformance suite's
``onError`` cases run without a real server.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from cachehub.api import MISSING, BaseCache, Entry, Expiry, counter_overflow
from cachehub.errors import CacheUnavailableError, CacheValueError
from cachehub.filters import KeyFilter

__all__ = ["ReferenceBackend", "ReferenceCache"]


@dataclass(eq=False)
class ReferenceBackend:
    """The shared store: encoded entries by storage key, one lock, an outage switch."""

    entries: dict[str, Entry] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    down: bool = False
    """While True every primitive raises CacheUnavailableError (a simulated outage)."""

    def check(self) -> None:
        """Raise the error a real provider raises when its server cannot be reached."""
        if self.down:
            raise CacheUnavailableError(
                "reference backend is down (simulated outage).",
                hint="set backend.down = False to bring it back.",
            )


class ReferenceCache(BaseCache):
    """A dict-backed provider implementing only the required primitives.

    Values are stored encoded by the cache's codec (an :class:`Entry` whose ``value`` is
    bytes), so reads return copies and unserialisable values fail like on a remote cache.
    """

    def __init__(
        self,
        settings: Mapping[str, Any] | None = None,
        /,
        *,
        backend: ReferenceBackend | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(settings, **kwargs)
        self.backend = backend if backend is not None else ReferenceBackend()

    def _live(self, key: str, now: float) -> Entry | None:
        """The live entry under ``key``; a dead one is dropped. Call with the lock held."""
        entry = self.backend.entries.get(key)
        if entry is not None and not entry.alive(now):
            del self.backend.entries[key]
            return None
        return entry

    def _get(self, key: str, now: float) -> Any:
        self.backend.check()
        with self.backend.lock:
            entry = self._live(key, now)
            if entry is None:
                return MISSING
            entry.hits += 1
            entry.accessed = now
            blob = entry.value
        return self.codec.loads(blob)

    def _get_entry(self, key: str, now: float) -> Entry | None:
        self.backend.check()
        with self.backend.lock:
            entry = self._live(key, now)
            if entry is None:
                return None
            copy = Entry(**{name: getattr(entry, name) for name in Entry.__slots__})
        copy.value = self.codec.loads(copy.value)
        return copy

    def _set(self, key: str, value: Any, expiry: Expiry, now: float) -> None:
        self.backend.check()
        blob = self.codec.dumps(value)  # before the lock: a bad value stores nothing
        with self.backend.lock:
            self.backend.entries[key] = Entry.new(blob, expiry, now)

    def _add(self, key: str, value: Any, expiry: Expiry, now: float) -> bool:
        self.backend.check()
        blob = self.codec.dumps(value)
        with self.backend.lock:
            if self._live(key, now) is not None:
                return False
            self.backend.entries[key] = Entry.new(blob, expiry, now)
            return True

    def _delete(self, key: str, now: float) -> bool:
        self.backend.check()
        with self.backend.lock:
            return self._live(key, now) is not None and bool(self.backend.entries.pop(key))

    def _delete_if_equal(self, key: str, value: Any, now: float) -> bool:
        self.backend.check()
        with self.backend.lock:
            entry = self._live(key, now)
            if entry is None or self.codec.loads(entry.value) != value:
                return False
            del self.backend.entries[key]
            return True

    def _incr(self, key: str, delta: int, now: float) -> int:
        self.backend.check()
        with self.backend.lock:
            entry = self._live(key, now)
            if entry is None:
                entry = Entry.new(self.codec.dumps(0), Expiry(), now)
            current = self.codec.loads(entry.value)
            if type(current) is not int:
                raise CacheValueError(
                    f"cannot incr key {self._user_key(key)!r:.200}: it holds "
                    f"{type(current).__name__}, not int.",
                    hint="incr only works on entries written by incr or put(key, <int>).",
                )
            result = current + delta
            overflow = counter_overflow(self._user_key(key), current, delta)
            if overflow is not None:
                raise overflow
            entry.value = self.codec.dumps(result)
            entry.modified = now
            self.backend.entries[key] = entry
            return result

    def _touch(self, key: str, expiry: Expiry, now: float) -> bool:
        self.backend.check()
        with self.backend.lock:
            entry = self._live(key, now)
            if entry is None:
                return False
            entry.expires_at, entry.idle = expiry.expires_at, expiry.idle
            entry.accessed = entry.modified = now
            return True

    def _scan(self, flt: KeyFilter, now: float) -> Iterator[str]:
        self.backend.check()
        with self.backend.lock:
            snapshot = [k for k in self.backend.entries if flt.matches(k)]
        for key in snapshot:
            # Checked again as the consumer reads: entries deleted meanwhile are skipped.
            self.backend.check()
            with self.backend.lock:
                alive = self._live(key, now) is not None
            if alive:
                yield key
