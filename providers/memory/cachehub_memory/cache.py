"""In-process cache on cachetools, bounded by ``maxsize`` with a choice of eviction policy."""

from __future__ import annotations

import math
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Mapping, MutableMapping
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, ClassVar, Final

import cachetools

from cachehub import provider
from cachehub.aio import _INLINE_BATCH, InlineAsync
from cachehub.api import (
    MAX_KEY_LENGTH,
    MAX_TIME_SPAN,
    MISSING,
    NO_EXPIRY,
    BaseCache,
    Entry,
    Expiry,
    TimeSpan,
    counter_overflow,
)
from cachehub.codec import SafeCodec
from cachehub.config import LuceeOption, Option
from cachehub.errors import CacheValueError, ConfigError, UnknownSigningKeyError
from cachehub.filters import KeyFilter, compile_filter
from cachehub.lock import LockTable
from cachehub.provider import OFF_LOOP_BYTES, adecoded, decode_weight, decodes_inline, heavy

from . import cursor as walk
from .cursor import Cursor, Log

__all__ = ["MemoryCache"]

# An entry is stored as a list, not an Entry: a list literal is several times cheaper to
# build than a dataclass, and index access is as fast as a slot. The deadline is kept
# precomputed (inf = never) so the liveness check on every read is one comparison;
# Entry.deadline() defines it, and reads of idle entries recompute it as they slide.
_VALUE: Final = 0
_DEADLINE: Final = 1
_HITS: Final = 2
_ACCESSED: Final = 3
_CREATED: Final = 4
_MODIFIED: Final = 5
_EXPIRES_AT: Final = 6
_IDLE: Final = 7
_SEQ: Final = 8
"""The key's number in the store's Log: set when the key is first stored, then carried
over by every overwrite, so the key keeps its place in a walk (see cursor.py)."""
_INF: Final = float("inf")
_MAX_SECONDS: Final = MAX_TIME_SPAN.total_seconds()
_MAX_WHOLE_SECONDS: Final = math.floor(_MAX_SECONDS)
"""The same bound for an int lifetime: an int compares with an int several times faster
than with a float, and floor() keeps ``span <= bound`` exactly as it is for the float."""
_Record = list[Any]

_TOOLS_POLICIES: dict[str, type[cachetools.Cache[str, _Record]]] = {
    "lfu": cachetools.LFUCache,
    "rr": cachetools.RRCache,
}
_BYTE_BOUNDED: Final[dict[str, type[cachetools.Cache[str, _Record]]]] = {
    **_TOOLS_POLICIES,
    "lru": cachetools.LRUCache,
    "fifo": cachetools.FIFOCache,
}
"""With ``maxBytes`` every policy is a cachetools cache sized by :func:`_encoded_size`
(``ttl``, a TLRUCache, is built apart): the OrderedDict fast paths count entries only."""
MAX_BYTES: Final = 1 << 50
"""Largest ``maxBytes`` accepted (1 PiB): beyond any process, so a typo is caught."""


def _encoded_size(record: _Record) -> int:
    """What a record weighs against ``maxBytes``: its encoded value's length in bytes."""
    return len(record[_VALUE])


def _record(value: Any, expiry: Expiry, now: float) -> _Record:
    """A fresh record written at ``now``."""
    if expiry is NO_EXPIRY:
        return [value, _INF, 0, now, now, now, None, None, -1]
    deadline = expiry.deadline(now)
    return [
        value,
        _INF if deadline is None else deadline,
        0,
        now,
        now,
        now,
        expiry.expires_at,
        expiry.idle,
        -1,  # numbered by the Log when stored
    ]


def _slide_deadline(record: _Record, now: float) -> None:
    """The new deadline of an idle-expiring record read at ``now`` (Entry.deadline)."""
    expires_at = record[_EXPIRES_AT]
    slid = now + record[_IDLE]
    record[_DEADLINE] = slid if expires_at is None else min(slid, expires_at)


def _ttu(_key: str, record: _Record, _now: float) -> float:
    """TLRUCache's time-to-use: the record's deadline."""
    deadline: float = record[_DEADLINE]
    return deadline


@dataclass(eq=False)
class _Store:
    """The entries and their lock; shared by every cache naming the same ``store``.

    ``lru`` and ``fifo`` use a plain OrderedDict, whose C methods cost a fraction of
    cachetools' pure-Python bookkeeping on every read and write; ``promote`` (set for
    ``lru``) moves a key to the most-recent end on a read. The other policies use
    cachetools, which updates its own bookkeeping inside ``get`` and ``__setitem__``.
    """

    data: MutableMapping[str, _Record]
    maxsize: int
    policy: str
    ordered: OrderedDict[str, _Record] | None = None
    """The same object as ``data`` when the store evicts by itself (lru, fifo)."""
    promote: Callable[[str], None] | None = None
    serialize: bool = True
    """Whether values are stored encoded: every cache sharing the store must agree."""
    lock: threading.RLock = field(default_factory=threading.RLock)
    pid: int = field(default_factory=os.getpid)
    """The process whose threads use :attr:`lock` (a forked child makes its own)."""
    peek: Callable[[str], _Record | None] = field(init=False)
    """The record under a key or ``None``, read without counting as a use (lfu) or
    reordering anything; safe without the lock too (one dict lookup)."""
    peek_locked: Callable[[str], _Record | None] = field(init=False)
    """The same, cheaper on a miss, for callers holding the lock."""
    log: Log = field(init=False)
    """Every stored key at a place that survives writes: what walks follow."""
    locks: LockTable = field(default_factory=LockTable)
    """The internal space: locks of every cache on this store, by namespaced lock id.
    Outside ``data`` and its log, so never evicted, listed, counted or cleared."""
    max_bytes: int | None = None
    """The byte bound (``maxBytes``): ``data`` is then a cachetools cache of that
    ``maxsize`` weighing records by :func:`_encoded_size`, and :meth:`store` keeps the
    entry bound (``maxsize``) itself."""

    def __post_init__(self) -> None:
        if self.ordered is not None:
            self.peek = self.peek_locked = self.ordered.get  # OrderedDict.get moves nothing
            self.log = Log(_SEQ, self.peek, self.ordered.__len__, self.ordered)
            return
        # cachetools' own subclasses read their base this way to skip their bookkeeping
        # (LFUCache.popitem does): Cache.__getitem__ is one lookup in the entries' dict.
        data = self.data
        assert isinstance(data, cachetools.Cache)
        getitem, contains = cachetools.Cache.__getitem__, cachetools.Cache.__contains__

        def peek(key: str) -> _Record | None:
            try:
                record: _Record = getitem(data, key)
            except KeyError:
                return None
            return record

        def peek_locked(key: str) -> _Record | None:
            # With the lock held nothing changes in between, and a miss costs no exception.
            return getitem(data, key) if contains(data, key) else None

        self.peek, self.peek_locked = peek, peek_locked
        # Cache.__len__ counts the entries as they are: the ttl policy's own len() would
        # first expire entries, and a walk must not write.
        self.log = Log(_SEQ, peek_locked, partial(cachetools.Cache.__len__, data))

    def cursor(self) -> Cursor:
        """A walk over the keys stored now; step it with the lock held."""
        return Cursor(self.log, walk.STEP)

    def store(self, key: str, record: _Record) -> None:
        """Insert or replace ``key`` with a cachetools policy (lock held)."""
        max_bytes = self.max_bytes
        if max_bytes is not None:
            self.check_size(key, record[_VALUE])
        data = self.data
        old = self.peek_locked(key)
        if old is None:
            if max_bytes is not None:
                self.make_room(data)
            self.log.add(key, record)
        else:
            record[_SEQ] = old[_SEQ]
        data[key] = record  # may evict, or (ttl) expire entries, this key among them

    def make_room(self, data: MutableMapping[str, _Record]) -> None:
        """Keep ``maxsize`` under a byte bound, before a new key goes in (lock held).

        cachetools bounds one measure, bytes here, so the entry count is kept by the
        policy's own public ``popitem``, as cachetools does: before the insert, so the
        new key (the least used of all under ``lfu``) is never the one evicted.
        """
        assert isinstance(data, cachetools.Cache)
        if (
            isinstance(data, cachetools.TLRUCache)
            and cachetools.Cache.__len__(data) >= self.maxsize
        ):
            data.expire()  # the expired go first, as TLRUCache's own eviction does
        while cachetools.Cache.__len__(data) >= self.maxsize:
            data.popitem()

    def check_size(self, key: str, value: bytes) -> None:
        """Refuse an encoded value larger than the whole byte bound, naming both sizes.

        cachetools raises a bare ``ValueError('value too large')`` for it; checked first
        so that nothing (the entry, the key log) has changed when the put fails.
        """
        if self.max_bytes is not None and len(value) > self.max_bytes:
            raise CacheValueError(
                f"value for storage key {key!r:.200} is {len(value):,} bytes encoded, more "
                f"than the whole memory store holds (maxBytes {self.max_bytes:,}); not stored.",
                hint="raise maxBytes above the largest value you cache, or set maxValueSize "
                "at most maxBytes so such values are refused by every provider alike.",
            )


# Named stores live as long as some cache uses them.
_stores: weakref.WeakValueDictionary[str, _Store] = weakref.WeakValueDictionary()
_stores_lock = threading.Lock()


def _positive_size(value: Any) -> int:
    size = int(str(value).strip())
    if size <= 0:
        raise ConfigError(
            "Lucee setting 'maxelementsinmemory' is 0 (no limit): a cachehub memory cache is "
            "always bounded.",
            hint="set maxelementsinmemory (or maxsize) to the most entries to keep.",
        )
    return size


_EVICTION: Final = {"lru": "lru", "lfu": "lfu", "fifo": "fifo"}
_NOT_HERE: Final = "disk stores and replication do not exist in an in-process cache"

LUCEE_OPTIONS: Final[tuple[LuceeOption, ...]] = (
    # Lucee's RamCache and EHCache settings, so their .CFConfig.json entries load as is.
    LuceeOption("maxelementsinmemory", "maxsize", _positive_size),
    LuceeOption(
        "memoryevictionpolicy",
        "policy",
        lambda v: _EVICTION[str(v).strip().lower()],
        "memoryevictionpolicy must be LRU, LFU or FIFO",
    ),
    LuceeOption(
        "timeToLiveSeconds", note="default expiry; pass time_span to put()", defaults=("0",)
    ),
    LuceeOption("timeToIdleSeconds", note="default idle expiry; pass idle_time", defaults=("0",)),
    LuceeOption("controlInterval", note="expired entries are dropped when met"),
    LuceeOption("eternal", note="entries without expiry never expire", defaults=("false",)),
    *(
        LuceeOption(name, note=_NOT_HERE, defaults=("false", "0", ""))
        for name in (
            "diskpersistent",
            "overflowtodisk",
            "maxelementsondisk",
            "diskexpirythreadintervalseconds",
            "distributed",
            "replicatePuts",
            "replicatePutsViaCopy",
            "replicateUpdates",
            "replicateUpdatesViaCopy",
            "replicateRemovals",
            "replicateAsynchronously",
            "asynchronousReplicationIntervalMillis",
            "bootstrapAsynchronously",
            "bootstrapType",
            "automatic_hostName",
            "automatic_multicastGroupAddress",
            "automatic_multicastGroupPort",
            "automatic_timeToLive",
            "manual_rmiUrls",
            "listener_hostName",
            "listener_port",
            "listener_remoteObjectPort",
            "listener_socketTimeoutMillis",
        )
    ),
)
"""Lucee's RamCache / EHCache settings: the entry bound and eviction policy are mapped,
the rest (disk, replication, default expiries) accepted and named in one warning."""


def _store_shape(settings: Mapping[str, Any]) -> tuple[int, str, bool, int | None]:
    """What every cache sharing a named store must agree on."""
    return (settings["maxsize"], settings["policy"], settings["serialize"], settings["maxBytes"])


class MemoryCache(InlineAsync):
    """A thread-safe in-memory cache (the analogue of Lucee's EHCache / RAM cache).

    Values are stored encoded by the cache's codec by default, so a value read back is
    a copy (mutating it never changes the cache) and anything that would fail on Redis
    or DynamoDB fails here too. ``serialize: false`` stores references instead, for speed.
    """

    options: ClassVar[tuple[Option, ...]] = (
        Option("maxsize", int, 10_000, "maximum number of entries before eviction.", minimum=1),
        Option(
            "maxBytes",
            int,
            None,
            "maximum total size in bytes of the stored (encoded) values before eviction; "
            "unset = bounded by maxsize only. Needs serialize: true.",
            minimum=1,
            maximum=MAX_BYTES,
        ),
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
        # Overrides the common option's default (4096): in process, compressing saves
        # memory but costs CPU on every write and every read, which is all an in-process
        # cache is for; the copying peers (cachelib, Django LocMemCache) never compress.
        Option(
            "compressThreshold",
            int,
            0,
            "compress encoded values larger than this many bytes (0, the memory default, "
            "never compresses).",
            minimum=0,
        ),
        # The remote providers' read-statistics settings, accepted so that a Redis or
        # DynamoDB entry moves to memory by changing its class only. In process a count
        # costs nothing, so reads are always counted and nothing is ever written back.
        Option(
            "hitCounts",
            bool,
            True,
            "accepted for portability; the memory provider always counts reads (free in process).",
        ),
        Option(
            "hitFlushInterval",
            float,
            60.0,
            "accepted for portability; nothing is written back in process.",
            minimum=0,
        ),
    )

    lucee_options: ClassVar[tuple[LuceeOption, ...]] = LUCEE_OPTIONS

    def __init__(self, settings: Any = None, /, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        store = self._open_store(self.settings["store"])
        self._store = store
        self._data = store.data
        self._ordered = store.ordered
        self._promote = store.promote
        self._maxsize = store.maxsize
        self._number = store.log.add
        self._encode: bool = self.settings["serialize"]
        self._prefix: str = self.namespace
        # Only the ttl policy must be told when a read slides an idle deadline.
        self._reinsert_slid = isinstance(self._data, cachetools.TLRUCache)
        self._bind_lock()

    def _bind_lock(self) -> None:
        """Bind the store's lock, to the hot paths too."""
        lock = self._store.lock
        self._lock = lock
        # CPython runs a signal handler at the end of a call, so the handler's exception
        # (KeyboardInterrupt, a SIGALRM deadline, Celery's soft time limit) can land right
        # after acquire() returns: taken as acquire() then `try`, the lock stayed held for
        # good and every other thread blocked on it. So most paths take it in a `with`
        # block, and the single-key hot paths (_take, _exists, _set, the fast get and put)
        # call acquire() first thing inside the `try` whose `finally` releases it: there a
        # `with` costs ~950 more instructions a call in CPython 3.11 (__enter__ and
        # __exit__ are looked up, bound and called each time), a fifth of a `serialize:
        # false` get. A handler that raises while acquire() still waits for another
        # thread leaves the lock untaken: release() then raises RuntimeError and changes
        # nothing (only its owner releases an RLock), which the `finally` ignores.
        self._acquire = lock.acquire
        self._release = lock.release
        # The fast paths (see below) inline _get/_set: a subclass that overrides either
        # primitive (a wrapper, a test double) must be called, or that overrides get or
        # put itself, keeps the general path. Instance attributes, which shadow
        # BaseCache.get and BaseCache.put (object.__setattr__: mypy refuses a plain
        # assignment to a method).
        cls = type(self)
        if cls.get is BaseCache.get and cls._get is MemoryCache._get:
            object.__setattr__(self, "get", _fast_get(self))
        if cls.put is BaseCache.put and cls._set is MemoryCache._set:
            object.__setattr__(self, "put", _fast_put(self))

    def _forked(self) -> None:
        """In a forked child: a parent thread inside a call held the store's lock, which
        the child inherited held (its next call hung for good). The store (once for all
        the caches sharing it) gets a new lock, and the hot paths are bound to it."""
        super()._forked()
        global _stores_lock
        store = self._store
        if store.pid != os.getpid():
            store.lock, store.pid = threading.RLock(), os.getpid()
            _stores_lock = threading.Lock()
        self._bind_lock()

    @classmethod
    def backend_identity(cls, settings: Mapping[str, Any]) -> Hashable | None:
        """The named ``store`` caches share; None (shared with nobody) for a private one."""
        store = settings.get("store")
        return None if store is None else ("memory", store)

    def _open_store(self, name: str | None) -> _Store:
        shape = _store_shape(self.settings)
        if shape[3] is not None and not shape[2]:
            # A reference has no size worth a bound: sys.getsizeof is shallow (a list of
            # large strings weighs its pointers), and a deep walk costs more than the put.
            raise ConfigError(
                f"cache '{self.name}': maxBytes needs serialize: true (the default); with "
                "serialize: false values are stored as references, which have no size "
                "cachehub can measure honestly.",
                hint="remove serialize: false to bound the cache in bytes, or bound it in "
                "entries with maxsize only.",
            )
        if name is None:
            return self._new_store(*shape)
        with _stores_lock:
            store = _stores.get(name)
            if store is None:
                store = self._new_store(*shape)
                _stores[name] = store
            elif (store.maxsize, store.policy, store.serialize, store.max_bytes) != shape:
                # serialize too: a cache storing references read another's encoded
                # entries as bytes (silently wrong values), and the other way round failed.
                maxsize, policy, serialize, max_bytes = shape
                raise ConfigError(
                    f"cache '{self.name}': memory store '{name}' already exists with "
                    f"maxsize={store.maxsize}, policy='{store.policy}', "
                    f"maxBytes={store.max_bytes}, serialize={store.serialize}, not "
                    f"maxsize={maxsize}, policy='{policy}', maxBytes={max_bytes}, "
                    f"serialize={serialize}.",
                    hint="give every cache sharing a store the same maxsize, policy, "
                    "serialize and maxBytes.",
                )
            return store

    def _new_store(
        self, maxsize: int, policy: str, serialize: bool, max_bytes: int | None
    ) -> _Store:
        if max_bytes is not None:
            data: cachetools.Cache[str, _Record]
            if policy == "ttl":
                data = cachetools.TLRUCache(
                    max_bytes, ttu=_ttu, timer=self._clock, getsizeof=_encoded_size
                )
            else:
                data = _BYTE_BOUNDED[policy](max_bytes, getsizeof=_encoded_size)
            return _Store(data, maxsize, policy, serialize=serialize, max_bytes=max_bytes)
        if policy in ("lru", "fifo"):
            ordered: OrderedDict[str, _Record] = OrderedDict()
            promote = ordered.move_to_end if policy == "lru" else None
            return _Store(ordered, maxsize, policy, ordered, promote, serialize)
        if policy == "ttl":
            # TLRUCache drops items past their own deadline first, then evicts by recency.
            return _Store(
                cachetools.TLRUCache(maxsize, ttu=_ttu, timer=self._clock),
                maxsize,
                policy,
                serialize=serialize,
            )
        return _Store(_TOOLS_POLICIES[policy](maxsize), maxsize, policy, serialize=serialize)

    # ------------------------------------------------------------ fast public paths
    #
    # get and put are served, in their common form, by functions that __init__ builds for
    # each cache (see _fast_get, _fast_put) and stores on the instance, where they shadow
    # BaseCache's methods: a str key, no operation observer, and for put no expiry or a
    # lifetime in seconds. Such a call runs in one frame, without the _get/_set call, the
    # Expiry object and the span validation of the general path, and with the store's
    # dict, lock and clock in closure cells rather than looked up on the instance at each
    # call: together most of its cost next to a locked cachetools cache (issue #17).
    # Anything else goes to BaseCache, which keeps every check. They repeat _get and
    # _set: keep them in step (the conformance suite runs both paths, see
    # tests/test_conformance.py).
    #
    # A key found in the store needs no validation: every key was checked when it was
    # stored, and without a namespace the storage key is the key itself. So the checks
    # run on a miss or a new key only, where a bad key still raises InvalidKeyError.

    def _plain(self, key: str) -> bool:
        """Whether ``key`` (a str) needs none of :meth:`BaseCache._sk`'s slower checks;
        the others go through ``_sk``, which raises for a bad key."""
        if 0 < len(key) <= MAX_KEY_LENGTH and key.isascii():
            return True
        self._sk(key)
        return True

    # Values are encoded on write and decoded on read, outside the lock where possible.

    def _storable(self, storage_key: str, value: Any, now: float) -> None:
        self._pack(storage_key, value)  # the codec, when values are copied

    def _pack(self, key: str, value: Any) -> Any:
        return self.codec.dumps(value, key) if self._encode else value

    def _unpack(self, key: str, stored: Any) -> Any:
        return self.codec.loads_local(stored, key) if self._encode else stored

    def _store_record(self, key: str, record: _Record) -> None:
        """Insert or replace ``key`` as the most recent entry, evicting beyond maxsize.

        A new key is numbered in the store's log; a replaced one passes its number on.
        """
        ordered = self._ordered
        if ordered is None:
            self._store.store(key, record)
            return
        old = ordered.get(key)
        if old is None:
            self._number(key, record)
            ordered[key] = record
            if len(ordered) > self._maxsize:
                ordered.popitem(last=False)
        else:
            record[_SEQ] = old[_SEQ]
            ordered[key] = record
            ordered.move_to_end(key)  # a rewrite counts as recent, as in cachetools

    def _live(self, key: str, now: float) -> _Record | None:
        """The live record for ``key`` (lock held); dead entries are dropped on sight.

        Like any cachetools lookup, this counts as a use for the eviction policy.
        """
        record = self._data.get(key)
        if record is None:
            return None
        if now < record[_DEADLINE]:
            if self._promote is not None:
                self._promote(key)
            return record
        del self._data[key]
        return None

    def _get(self, key: str, now: float) -> Any:
        stored = self._take(key, now)
        if stored is MISSING or not self._encode:
            return stored
        return self.codec.loads_local(stored, key)

    async def _aget(self, key: str, now: float) -> Any:
        # As _get, a large value decoded off the loop (after the read is counted, as in
        # the sync shell: the record was read).
        stored = self._take(key, now)
        if stored is MISSING or not self._encode:
            return stored
        return await adecoded(self.codec.loads_local, stored, key)

    def _take(self, key: str, now: float) -> Any:
        """The stored form of ``key``'s live entry (MISSING if none), its read counted."""
        try:
            self._acquire()  # inside the try (see _bind_lock)
            record = self._data.get(key)
            if record is None:
                return MISSING
            if now >= record[_DEADLINE]:
                del self._data[key]
                return MISSING
            record[_HITS] += 1
            record[_ACCESSED] = now
            if record[_IDLE] is not None:
                _slide_deadline(record, now)
                if self._reinsert_slid:
                    # So the ttl policy sees the slid deadline; the record keeps its number.
                    self._data[key] = record
            if self._promote is not None:
                self._promote(key)
            return record[_VALUE]
        finally:
            try:  # noqa: SIM105 - contextlib.suppress() is a `with`: see _bind_lock
                self._release()
            except RuntimeError:
                pass  # a handler raised while acquire() waited: the lock was not taken

    def _get_many(self, keys: list[str], now: float) -> dict[str, Any]:
        found = self._take_many(keys, now)
        return self._unpack_many(found) if self._encode else found

    async def _aget_many(self, keys: list[str], now: float) -> dict[str, Any]:
        if len(keys) > _INLINE_BATCH or not self._encode:
            return await super()._aget_many(keys, now)
        found = self._take_many(keys, now)
        if sum(map(decode_weight, found.values())) < OFF_LOOP_BYTES:
            return self._unpack_many(found)
        return await provider.run_off_loop(self._unpack_many, found)

    def _unpack_many(self, found: dict[str, Any]) -> dict[str, Any]:
        """The values of ``found``'s stored forms (``serialize`` on)."""
        codec = self.codec
        if type(codec) is SafeCodec:  # the default: the batch in one call
            return codec.loads_local_many(found)
        loads = codec.loads_local
        return {key: loads(stored, key) for key, stored in found.items()}

    def _take_many(self, keys: list[str], now: float) -> dict[str, Any]:
        """The stored forms of ``keys``' live entries, their reads counted."""
        found: dict[str, Any] = {}
        data = self._data
        get = data.get
        promote = self._promote
        with self._lock:
            for key in keys:
                record = get(key)
                if record is None:
                    continue
                if now >= record[_DEADLINE]:
                    del data[key]
                    continue
                record[_HITS] += 1
                record[_ACCESSED] = now
                if record[_IDLE] is not None:
                    _slide_deadline(record, now)
                    if self._reinsert_slid:
                        data[key] = record
                if promote is not None:
                    promote(key)
                found[key] = record[_VALUE]
        return found

    def _get_entry(self, key: str, now: float) -> Entry | None:
        entry = self._peek_stored(key, now)
        if entry is not None and self._encode:
            entry.value = self.codec.loads_local(entry.value, key)
        return entry

    async def _aget_entry(self, key: str, now: float) -> Entry | None:
        entry = self._peek_stored(key, now)
        if entry is not None and self._encode:
            entry.value = await adecoded(self.codec.loads_local, entry.value, key)
        return entry

    def _peek_stored(self, key: str, now: float) -> Entry | None:
        """``key``'s live entry holding its stored form (None if there is none)."""
        with self._lock:
            record = self._live(key, now)
            if record is None:
                return None
            value, _, hits, accessed, created, modified, expires_at, idle, _ = record
        return Entry(value, created, modified, accessed, hits, expires_at, idle)

    def _exists(self, key: str, now: float) -> bool:
        try:
            self._acquire()  # inside the try (see _bind_lock)
            record = self._data.get(key)
            if record is None:
                return False
            if now < record[_DEADLINE]:
                if self._promote is not None:
                    self._promote(key)
                return True
            del self._data[key]
            return False
        finally:
            try:  # noqa: SIM105 - contextlib.suppress() is a `with`: see _bind_lock
                self._release()
            except RuntimeError:
                pass  # a handler raised while acquire() waited: the lock was not taken

    def _set(self, key: str, value: Any, expiry: Expiry, now: float) -> None:
        if self._encode:
            value = self.codec.dumps(value, key)
        if expiry is NO_EXPIRY:
            record = [value, _INF, 0, now, now, now, None, None, -1]
        else:
            record = _record(value, expiry, now)
        ordered = self._ordered
        try:
            self._acquire()  # inside the try (see _bind_lock)
            # _store_record inlined: this is the hot path.
            if ordered is None:
                self._store.store(key, record)
            else:
                old = ordered.get(key)
                if old is None:
                    self._number(key, record)
                    ordered[key] = record
                    if len(ordered) > self._maxsize:
                        ordered.popitem(last=False)
                else:
                    record[_SEQ] = old[_SEQ]
                    ordered[key] = record
                    ordered.move_to_end(key)  # a rewrite counts as recent
        finally:
            try:  # noqa: SIM105 - contextlib.suppress() is a `with`: see _bind_lock
                self._release()
            except RuntimeError:
                pass  # a handler raised while acquire() waited: the lock was not taken

    def _set_many(self, items: dict[str, Any], expiry: Expiry, now: float) -> None:
        if self._encode:
            dumps = self.codec.dumps
            items = {key: dumps(value, key) for key, value in items.items()}
            if self._store.max_bytes is not None:
                # All or nothing, as a value refused by the codec is: checked before any.
                for key, value in items.items():
                    self._store.check_size(key, value)
        with self._lock:
            for key, value in items.items():
                self._store_record(key, _record(value, expiry, now))

    # A heavy value is written from a worker thread, encoding and all: the store's
    # critical section is short, the encoding is not (what InlineAsync does for batches).

    async def _aset(self, key: str, value: Any, expiry: Expiry, now: float) -> None:
        if self._encode and heavy(value):
            await provider.run_off_loop(self._set, key, value, expiry, now)
        else:
            self._set(key, value, expiry, now)

    async def _aadd(self, key: str, value: Any, expiry: Expiry, now: float) -> bool:
        if self._encode and heavy(value):
            return await provider.run_off_loop(self._add, key, value, expiry, now)
        return self._add(key, value, expiry, now)

    async def _aset_many(self, items: dict[str, Any], expiry: Expiry, now: float) -> None:
        # Weighed only when the batch would be written on the loop (InlineAsync's rule).
        if len(items) <= _INLINE_BATCH and self._encode and any(map(heavy, items.values())):
            await provider.run_off_loop(self._set_many, items, expiry, now)
        else:
            await super()._aset_many(items, expiry, now)

    async def _adelete_if_equal(self, key: str, value: Any, now: float) -> bool:
        # The comparison decodes the stored value under the lock: a large one in a worker.
        if self._stored_heavy(key):
            return await provider.run_off_loop(self._delete_if_equal, key, value, now)
        return self._delete_if_equal(key, value, now)

    async def _aincr(self, key: str, delta: int, now: float) -> int:
        # A key holding a large non-int value is decoded to name its type in the error.
        if self._stored_heavy(key):
            return await provider.run_off_loop(self._incr, key, delta, now)
        return self._incr(key, delta, now)

    def _stored_heavy(self, key: str) -> bool:
        """Whether ``key``'s stored payload decodes off the loop (see
        :func:`cachehub.provider.decodes_inline`): a peek, no use counted, no lock."""
        if not self._encode:
            return False
        record = self._store.peek(key)
        return record is not None and not decodes_inline(record[_VALUE])

    def _add(self, key: str, value: Any, expiry: Expiry, now: float) -> bool:
        record = _record(self._pack(key, value), expiry, now)
        with self._lock:
            if self._live(key, now) is not None:
                return False
            self._store_record(key, record)
            return True

    def _delete(self, key: str, now: float) -> bool:
        with self._lock:
            record = self._data.pop(key, None)
            return record is not None and now < record[_DEADLINE]

    def _delete_many(self, keys: list[str], now: float) -> int:
        removed = 0
        pop = self._data.pop
        with self._lock:
            for key in keys:
                record = pop(key, None)
                if record is not None and now < record[_DEADLINE]:
                    removed += 1
        return removed

    def _delete_if_equal(self, key: str, value: Any, now: float) -> bool:
        with self._lock:
            record = self._live(key, now)
            if record is None or self._unpack(key, record[_VALUE]) != value:
                return False
            del self._data[key]
            return True

    def _incr(self, key: str, delta: int, now: float) -> int:
        with self._lock:
            record = self._live(key, now)
            if record is None:
                self._store_record(key, _record(self._pack(key, delta), NO_EXPIRY, now))
                return delta
            current = self._unpack(key, record[_VALUE])
            if not isinstance(current, int) or isinstance(current, bool):
                raise CacheValueError(
                    f"cannot incr key {self._user_key(key)!r:.200}: it holds a "
                    f"{type(current).__name__}, not an int.",
                    hint="incr/decr only work on entries created by incr or put with an int.",
                )
            overflow = counter_overflow(self._user_key(key), current, delta)
            if overflow is not None:
                raise overflow
            weighed = self._store.max_bytes is not None
            if weighed:
                # A longer encoding must be weighed again: a copy, stored anew below
                # (cachetools keeps each entry's size from when it was set).
                record = record.copy()
            record[_VALUE] = self._pack(key, current + delta)
            record[_MODIFIED] = now
            if weighed:
                self._store.store(key, record)
            return current + delta

    def _touch(self, key: str, expiry: Expiry, now: float) -> bool:
        with self._lock:
            record = self._live(key, now)
            if record is None:
                return False
            deadline = expiry.deadline(now)
            record[_DEADLINE] = _INF if deadline is None else deadline
            record[_EXPIRES_AT], record[_IDLE] = expiry.expires_at, expiry.idle
            record[_ACCESSED] = record[_MODIFIED] = now
            self._store_record(key, record)  # so the ttl policy sees the new deadline
            return True

    def _scan(self, flt: KeyFilter, now: float) -> Iterator[str]:
        # A cursor passes a step of the store's log per lock hold, so memory stays flat
        # and writers wait at most one step; see cursor.py for what survives writes.
        store = self._store
        lookup, matches = store.peek, flt.matches
        with self._lock:
            cursor = store.cursor()
        while not cursor.done:
            with self._lock:
                step = cursor.step()
            for key, record in step:
                if now < record[_DEADLINE] and matches(key):
                    # Still stored and alive when the caller gets to it. The lookup is
                    # one dict read, atomic, so the lock is not taken once per key.
                    current = lookup(key)
                    if current is not None and now < current[_DEADLINE]:
                        yield key

    def _matching(self, flt: KeyFilter) -> Iterator[tuple[str, _Record]]:
        """The stored entries matching ``flt``, dead or alive: hold the lock throughout."""
        cursor, matches = self._store.cursor(), flt.matches
        while not cursor.done:
            for key, record in cursor.step():
                if matches(key):
                    yield key, record

    def _count(self, flt: KeyFilter, now: float) -> int:
        with self._lock:
            return sum(1 for _, record in self._matching(flt) if now < record[_DEADLINE])

    def _clear(self, flt: KeyFilter, now: float) -> int:
        store = self._store
        if flt.match_all and not flt.namespace:
            # Everything goes: count the live records and empty the store in place.
            with self._lock:
                removed = sum(1 for _, record in self._matching(flt) if now < record[_DEADLINE])
                self._data.clear()
                store.log.reset()
                return removed
        return self._clear_matching(flt, now)

    def _clear_matching(self, flt: KeyFilter, now: float) -> int:
        """Delete the matching keys, holding the lock throughout, without a list of them.

        Deleting leaves the log as it is (entries only go stale), so the walk deletes
        each key as it passes it; a log left mostly stale is compacted at the end.
        """
        store, data = self._store, self._data
        removed = 0
        with self._lock:
            for key, record in self._matching(flt):
                removed += now < record[_DEADLINE]
                # ttl's TLRUCache removes an expired key, then raises KeyError for it.
                with suppress(KeyError):
                    del data[key]
            store.log.tidy()
        return removed

    def _lock_table(self) -> LockTable:
        """The store's own locks: shared by the caches of a named store, never evicted."""
        return self._store.locks

    def _close(self) -> None:
        """Nothing to release: the data lives as long as the object."""

    def _info(self, now: float) -> dict[str, Any]:
        """Entries and encoded bytes of this namespace, and the store's size and policy."""
        size = stored_bytes = 0
        with self._lock:
            for _, record in self._matching(compile_filter(None, self.namespace)):
                if now < record[_DEADLINE]:
                    size += 1
                    value = record[_VALUE]
                    if isinstance(value, (bytes, bytearray)):
                        stored_bytes += len(value)
            ordered = self._ordered
            # The ttl policy's own len() expires entries first: count them as they are.
            data = self._data
            store_bytes = None
            if ordered is not None:
                in_store = len(ordered)
            else:
                assert isinstance(data, cachetools.Cache)
                in_store = cachetools.Cache.__len__(data)
                if self._store.max_bytes is not None:
                    store_bytes = data.currsize  # cachetools' own sum of the sizes
        return {
            "count": size,
            "storeSize": in_store,
            "maxsize": self._maxsize,
            "maxBytes": self._store.max_bytes,
            "storeBytes": store_bytes,
            "policy": self._store.policy,
            "store": self.settings["store"],
            "serialize": self._encode,
            # References (serialize: false) have no size worth reporting.
            "bytes": stored_bytes if self._encode else None,
        }


# ------------------------------------------------------------------ fast public paths


def _fast_get(cache: MemoryCache) -> Callable[..., Any]:
    """``cache.get`` for its common form, in one frame (see MemoryCache's fast paths).

    Everything fixed for the cache's life (its store's dict, lock, clock, eviction hook
    and namespace) sits in closure cells; what may change (the operation observer, the
    codec) is read at each call. Anything but a str key and a plain read goes to
    BaseCache.get.
    """
    general = partial(BaseCache.get, cache)
    data = cache._data
    acquire, release, clock = cache._acquire, cache._release, cache._clock
    promote = cache._promote
    reinsert_slid = cache._reinsert_slid
    prefix = cache._prefix
    encode = cache._encode
    # Bound once: an OrderedDict has an instance dict, so `data.get` in the call was a
    # generic method lookup each time, ~15% of a hit (issue #17's 8-thread row).
    lookup = data.get

    def get(key: str, default: Any = None, *, throw_when_not_exist: bool = False) -> Any:
        if cache._observer is not None or throw_when_not_exist or type(key) is not str:
            return general(key, default, throw_when_not_exist=throw_when_not_exist)
        if prefix:
            # A namespaced storage key may also be found for a bad key (an empty one, say,
            # when another cache of the store has a shorter namespace): check first.
            cache._plain(key)
            sk = prefix + key
        else:
            sk = key
        try:
            try:
                acquire()  # inside the try (see _bind_lock)
                record = lookup(sk)
                if record is None:
                    stored: Any = MISSING  # a miss needs no clock
                elif (now := clock()) >= record[_DEADLINE]:
                    del data[sk]
                    stored = MISSING
                else:
                    record[_HITS] += 1
                    record[_ACCESSED] = now
                    if record[_IDLE] is not None:
                        _slide_deadline(record, now)
                        if reinsert_slid:
                            data[sk] = record
                    if promote is not None:
                        promote(sk)
                    stored = record[_VALUE]
                    if not encode and stored is not MISSING:
                        return stored  # a reference: nothing to do outside the lock
            finally:
                try:  # noqa: SIM105 - contextlib.suppress() is a `with`: see _bind_lock
                    release()
                except RuntimeError:
                    pass  # a handler raised while acquire() waited: the lock was not taken
            if stored is MISSING:
                if not (prefix or (0 < len(key) <= MAX_KEY_LENGTH and key.isascii())):
                    cache._sk(key)  # raises for a bad key
                return default
            # In-process bytes: only this process's codecs wrote them (see loads_local).
            return cache.codec.loads_local(stored, sk)
        except UnknownSigningKeyError as exc:
            cache._signed_miss(exc)
            return default
        except Exception as exc:
            # Degrades to a miss (onError: miss) or raises typed, as BaseCache.get does.
            cache._failed("get", exc, MISSING)
            return default

    get.__doc__ = BaseCache.get.__doc__
    return get


def _fast_put(cache: MemoryCache) -> Callable[..., None]:
    """``cache.put`` for its common form, in one frame (see :func:`_fast_get`)."""
    general = partial(BaseCache.put, cache)
    prefix = cache._prefix
    encode = cache._encode
    clock, acquire, release = cache._clock, cache._acquire, cache._release
    ordered = cache._ordered
    # Bound once: a method lookup per call is a measurable share of a put (issue #17).
    # Without an OrderedDict (cachetools policies) they are bound to an unused one.
    bound: OrderedDict[str, _Record] = OrderedDict() if ordered is None else ordered
    lookup, to_end = bound.get, bound.move_to_end
    store = cache._store.store
    number = cache._number
    maxsize = cache._maxsize
    checked_first = bool(prefix or encode)
    max_whole, max_seconds = _MAX_WHOLE_SECONDS, _MAX_SECONDS
    # The last lifetime object this put accepted. Ints and floats are immutable, so the same
    # object passes the same checks again: a caller passing one constant (the common case:
    # `put(k, v, 300)` or a TTL read once from config) pays one identity test instead of
    # the type and range checks. Only an exact int or float within the bounds is stored.
    accepted: Any = None

    def put(
        key: str,
        value: Any,
        time_span: TimeSpan | None = None,
        idle_time: TimeSpan | None = None,
        until: datetime | None = None,
    ) -> None:
        nonlocal accepted
        span: Any = time_span  # compared below only once its type is known (int/float)
        if span is not None and span is not accepted:
            # A lifetime make_expiry would accept as it is: an int or float (not bool),
            # positive, at most MAX_TIME_SPAN (false for NaN and inf). Else the checks.
            if (type(span) is int and 0 < span <= max_whole) or (
                type(span) is float and 0.0 < span <= max_seconds
            ):
                accepted = span
            else:
                general(key, value, time_span, idle_time, until)
                return
        if (
            idle_time is not None
            or until is not None
            or type(key) is not str
            or cache._observer is not None
            or cache.read_only
        ):
            general(key, value, time_span, idle_time, until)
            return
        if checked_first:
            # Checked first, as BaseCache.put does: encoding costs more than the checks.
            cache._plain(key)
            sk = prefix + key
        else:
            sk = key
        try:
            now = clock()
            if encode:
                value = cache.codec.dumps(value, sk)
            if span is None:
                record = [value, _INF, 0, now, now, now, None, None, -1]
            else:
                expires_at = now + span
                record = [value, expires_at, 0, now, now, now, expires_at, None, -1]
            try:
                acquire()  # inside the try (see _bind_lock)
                if ordered is None:
                    if not checked_first:
                        cache._plain(key)
                    store(sk, record)
                else:
                    old = lookup(sk)
                    if old is None:
                        if not checked_first:
                            cache._plain(key)  # a new key: check it before it is stored
                        number(sk, record)
                        ordered[sk] = record
                        if len(ordered) > maxsize:
                            ordered.popitem(last=False)
                    else:
                        record[_SEQ] = old[_SEQ]
                        ordered[sk] = record
                        to_end(sk)  # a rewrite counts as recent
            finally:
                try:  # noqa: SIM105 - contextlib.suppress() is a `with`: see _bind_lock
                    release()
                except RuntimeError:
                    pass  # a handler raised while acquire() waited: the lock was not taken
        except Exception as exc:
            cache._failed("put", exc, None)

    put.__doc__ = BaseCache.put.__doc__
    return put
