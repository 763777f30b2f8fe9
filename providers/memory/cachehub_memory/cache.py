"""In-process cache on cachetools, bounded by ``maxsize`` with a choice of eviction policy."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import cachetools

from cachehub.api import MISSING, BaseCache, Entry, Expiry
from cachehub.config import Option
from cachehub.errors import CacheValueError, ConfigError
from cachehub.filters import KeyFilter

__all__ = ["MemoryCache"]

_POLICIES: dict[str, type[cachetools.Cache[str, Entry]]] = {
    "lru": cachetools.LRUCache,
    "lfu": cachetools.LFUCache,
    "fifo": cachetools.FIFOCache,
    "rr": cachetools.RRCache,
}


@dataclass(eq=False)
class _Store:
    """The entries and their lock; shared by every cache naming the same ``store``."""

    data: cachetools.Cache[str, Entry]
    maxsize: int
    policy: str
    lock: threading.RLock = field(default_factory=threading.RLock)


# Named stores live as long as some cache uses them.
_stores: weakref.WeakValueDictionary[str, _Store] = weakref.WeakValueDictionary()
_stores_lock = threading.Lock()


class MemoryCache(BaseCache):
    """A thread-safe in-memory cache (the analogue of Lucee's EHCache / RAM cache).

    Values are stored encoded by the cache's codec by default, so a value read back is
    a copy (mutating it never changes the cache) and anything that would fail on Redis
    or DynamoDB fails here too. ``serialize: false`` stores references instead, for speed.
    """

    options: ClassVar[tuple[Option, ...]] = (
        Option("maxsize", int, 10_000, "maximum number of entries before eviction.", minimum=1),
        Option(
            "policy",
            str,
            "lru",
            "eviction policy: 'lru', 'lfu', 'fifo', 'rr' (random) or 'ttl' "
            "(drop expired entries first, then the least recently used).",
            choices=("lru", "lfu", "fifo", "rr", "ttl"),
        ),
        Option(
            "store",
            str,
            None,
            "name of an in-process store shared by every cache that gives the same name "
            "(each keeps its own namespace); unset = a private store.",
        ),
        Option(
            "serialize",
            bool,
            True,
            "store values encoded (copies, same rules as remote caches); false stores references.",
        ),
    )

    def __init__(self, settings: Any = None, /, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self._store = self._open_store(self.settings["store"])
        self._data = self._store.data
        self._lock = self._store.lock
        self._encode = self.settings["serialize"]

    def _open_store(self, name: str | None) -> _Store:
        maxsize, policy = self.settings["maxsize"], self.settings["policy"]
        if name is None:
            return _Store(self._new_data(maxsize, policy), maxsize, policy)
        with _stores_lock:
            store = _stores.get(name)
            if store is None:
                store = _Store(self._new_data(maxsize, policy), maxsize, policy)
                _stores[name] = store
            elif (store.maxsize, store.policy) != (maxsize, policy):
                raise ConfigError(
                    f"cache '{self.name}': memory store '{name}' already exists with "
                    f"maxsize={store.maxsize}, policy='{store.policy}', not "
                    f"maxsize={maxsize}, policy='{policy}'.",
                    hint="give every cache sharing a store the same maxsize and policy.",
                )
            return store

    def _new_data(self, maxsize: int, policy: str) -> cachetools.Cache[str, Entry]:
        if policy == "ttl":
            # TLRUCache drops items past their own deadline first, then evicts by recency.
            return cachetools.TLRUCache(maxsize, ttu=self._ttu, timer=self._clock)
        return _POLICIES[policy](maxsize)

    @staticmethod
    def _ttu(_key: str, entry: Entry, _now: float) -> float:
        deadline = entry.deadline()
        return float("inf") if deadline is None else deadline

    # Values are encoded on write and decoded on read, outside the lock where possible.

    def _pack(self, value: Any) -> Any:
        return self.codec.dumps(value) if self._encode else value

    def _unpack(self, stored: Any) -> Any:
        return self.codec.loads(stored) if self._encode else stored

    def _live(self, key: str, now: float) -> Entry | None:
        """The live entry for ``key`` (lock held); dead entries are dropped on sight."""
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry.alive(now):
            return entry
        del self._data[key]
        return None

    def _get(self, key: str, now: float) -> Any:
        with self._lock:
            entry = self._live(key, now)
            if entry is None:
                return MISSING
            entry.hits += 1
            entry.accessed = now
            if entry.idle is not None and isinstance(self._data, cachetools.TLRUCache):
                self._data[key] = entry  # re-insert so the policy sees the slid deadline
            stored = entry.value
        return self._unpack(stored)

    def _get_entry(self, key: str, now: float) -> Entry | None:
        with self._lock:
            entry = self._live(key, now)
            if entry is None:
                return None
            copy = Entry(**{f: getattr(entry, f) for f in Entry.__slots__})
        copy.value = self._unpack(copy.value)
        return copy

    def _exists(self, key: str, now: float) -> bool:
        with self._lock:
            return self._live(key, now) is not None

    def _set(self, key: str, value: Any, expiry: Expiry, now: float) -> None:
        entry = Entry.new(self._pack(value), expiry, now)
        with self._lock:
            self._data[key] = entry

    def _set_many(self, items: dict[str, Any], expiry: Expiry, now: float) -> None:
        packed = {k: Entry.new(self._pack(v), expiry, now) for k, v in items.items()}
        with self._lock:
            for key, entry in packed.items():
                self._data[key] = entry

    def _add(self, key: str, value: Any, expiry: Expiry, now: float) -> bool:
        entry = Entry.new(self._pack(value), expiry, now)
        with self._lock:
            if self._live(key, now) is not None:
                return False
            self._data[key] = entry
            return True

    def _delete(self, key: str, now: float) -> bool:
        with self._lock:
            alive = self._live(key, now) is not None
            self._data.pop(key, None)
            return alive

    def _delete_if_equal(self, key: str, value: Any, now: float) -> bool:
        with self._lock:
            entry = self._live(key, now)
            if entry is None or self._unpack(entry.value) != value:
                return False
            del self._data[key]
            return True

    def _incr(self, key: str, delta: int, now: float) -> int:
        with self._lock:
            entry = self._live(key, now)
            if entry is None:
                self._data[key] = Entry.new(self._pack(delta), Expiry(), now)
                return delta
            current = self._unpack(entry.value)
            if not isinstance(current, int) or isinstance(current, bool):
                raise CacheValueError(
                    f"cannot incr key {self._user_key(key)!r:.200}: it holds a "
                    f"{type(current).__name__}, not an int.",
                    hint="incr/decr only work on entries created by incr or put with an int.",
                )
            entry.value = self._pack(current + delta)
            entry.modified = now
            return current + delta

    def _touch(self, key: str, expiry: Expiry, now: float) -> bool:
        with self._lock:
            entry = self._live(key, now)
            if entry is None:
                return False
            entry.expires_at, entry.idle = expiry.expires_at, expiry.idle
            entry.accessed = entry.modified = now
            self._data[key] = entry
            return True

    def _scan(self, flt: KeyFilter, now: float) -> Iterator[str]:
        # Snapshot the keys under the lock; checking each one later keeps the lock short.
        with self._lock:
            keys = [k for k in self._data if flt.matches(k)]
        for key in keys:
            with self._lock:
                if self._live(key, now) is None:
                    continue
            yield key

    def _count(self, flt: KeyFilter, now: float) -> int:
        with self._lock:
            return sum(1 for k, e in list(self._data.items()) if flt.matches(k) and e.alive(now))

    def _clear(self, flt: KeyFilter, now: float) -> int:
        with self._lock:
            doomed = [k for k in self._data if flt.matches(k)]
            removed = 0
            for key in doomed:
                entry = self._data.pop(key, None)
                if entry is not None and entry.alive(now):
                    removed += 1
            return removed

    def _close(self) -> None:
        """Nothing to release: the data lives as long as the object."""
