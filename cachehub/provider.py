"""Everything a cache provider author builds on, in one module.

A provider is a :class:`BaseCache` subclass implementing the primitives (``_get``,
``_get_entry``, ``_set``, ``_add``, ``_delete``, ``_delete_if_equal``, ``_incr``,
``_touch``, ``_scan`` and the ``_lock_*`` ones; the batch primitives have loop
defaults). The public contract stays in :mod:`cachehub.api`; this module re-exports
what an author needs from it and adds :class:`RemoteCache`, the base of providers that
talk to a server over the network. It owns, once for every such provider:

* **lazy, thread-safe client creation** (:meth:`RemoteCache._connection`) and ``close()``
  (which writes pending read statistics back first, then releases the client);
* **error translation**: :attr:`RemoteCache.backend_errors` raised by the client library
  become typed :class:`~cachehub.errors.CacheError`\\ s through the provider's
  :meth:`RemoteCache._translate` (:meth:`RemoteCache._guarded`);
* **read statistics** (per-entry hit counts and last access), which cost a write on the
  server: off by default (``hitCounts``); when on, counted in process
  (:class:`cachehub.hits.HitBuffer`) and written back in batches by
  :meth:`RemoteCache._write_hits`, every ``hitFlushInterval`` seconds, on ``close()``
  or on :meth:`RemoteCache.flush_hits`;
* warn-once logging, request ids for exactly-once writes, and the shared
  "not an int" error of ``incr``.

See docs/provider-guide.md for a complete small provider built on it.
"""

from __future__ import annotations

import math
import secrets
import threading
from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import islice
from typing import Any, ClassVar, Final, Generic, TypeVar

from .api import (
    COUNTER_RANGE,
    MISSING,
    NO_EXPIRY,
    BaseCache,
    CacheMetadata,
    Entry,
    Expiry,
    counter_overflow,
)
from .config import Option
from .errors import (
    CacheBackendError,
    CacheError,
    CacheOutcomeUnknownError,
    CachePermissionError,
    CacheUnavailableError,
    CacheValueError,
    ConfigError,
    CorruptEntryError,
    InvalidKeyError,
)
from .filters import KeyFilter
from .hits import ANY_VERSION, HitBuffer, PendingHits
from .scrub import scrub

__all__ = [
    "ANY_VERSION",
    "COUNTER_RANGE",
    "HIT_COUNTS",
    "HIT_FLUSH_INTERVAL",
    "HIT_OPTIONS",
    "MISSING",
    "NO_EXPIRY",
    "BaseCache",
    "CacheBackendError",
    "CacheError",
    "CacheMetadata",
    "CacheOutcomeUnknownError",
    "CachePermissionError",
    "CacheUnavailableError",
    "CacheValueError",
    "ConfigError",
    "CorruptEntryError",
    "Entry",
    "Expiry",
    "InvalidKeyError",
    "KeyFilter",
    "Option",
    "PendingHits",
    "RemoteCache",
    "chunks",
    "counter_overflow",
    "not_an_int",
    "request_id",
    "scrub",
]

C = TypeVar("C")
T = TypeVar("T")

HIT_COUNTS: Final = Option(
    "hitCounts",
    bool,
    False,
    "keep per-entry hit counts and last-access times on the server (metadata()). Off by "
    "default: a plain read is then one read request and never a write. On, reads are "
    "counted in process and written back in batches (see hitFlushInterval).",
)
HIT_FLUSH_INTERVAL: Final = Option(
    "hitFlushInterval",
    float,
    60.0,
    "with hitCounts on: seconds after which counted reads are written back by the next "
    "operation (0: only on close(), flush_hits() or once 10,000 keys are pending).",
    minimum=0,
)
HIT_OPTIONS: Final = (HIT_COUNTS, HIT_FLUSH_INTERVAL)
"""The read-statistics settings every :class:`RemoteCache` takes (add them to ``options``)."""


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of at most ``size``, read lazily: a scan streams through in batches."""
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def request_id() -> str:
    """A fresh id for a write that must apply once: 128 random bits, as 32 hex digits."""
    return secrets.token_hex(16)


def not_an_int(user_key: str, held: str, counter: str = "an int") -> CacheValueError:
    """The error of ``incr`` on an entry holding ``held`` (a type name) instead of a counter."""
    return CacheValueError(
        f"cannot incr key {user_key!r:.200}: it holds a {held}, not {counter}.",
        hint="incr/decr only work on entries created by incr or put with an int.",
    )


class RemoteCache(BaseCache, Generic[C]):
    """Base of providers whose data lives on a server, reached through a client of type ``C``.

    Subclasses implement the primitives plus :meth:`_connect` (build the client; called
    once, lazily), :meth:`_translate` (a client-library error as a typed CacheError) and,
    when they support ``hitCounts``, :meth:`_write_hits`. They add :data:`HIT_OPTIONS`
    to their ``options`` and call the hit helpers from their read and write paths:
    :meth:`_count_read` when a live plain entry was read, :meth:`_forget` when keys were
    overwritten or deleted, :meth:`_after_write` after a write (flushes when due).
    """

    distributed: ClassVar[bool] = True
    backend_errors: ClassVar[tuple[type[Exception], ...]] = ()
    """What the client library raises; :meth:`_guarded` translates exactly these."""

    def __init__(self, settings: Mapping[str, Any] | None = None, /, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.counts_hits = bool(self.settings.get("hitCounts", False))
        interval = self.settings.get("hitFlushInterval", 60.0)
        if not math.isfinite(interval):  # "inf"/"nan" parse as floats: never by time
            raise ConfigError(
                f"cache '{self.name}' ({type(self).__name__}): setting 'hitFlushInterval' "
                f"is {interval}, not a number of seconds.",
                hint="give seconds such as 60, or 0 to write counts back only on close() "
                "and flush_hits().",
            )
        self._hits: HitBuffer[str] = HitBuffer(interval)
        self._conn: C | None = None
        self._conn_lock = threading.Lock()
        self._warn_lock = threading.Lock()
        self._warned: set[str] = set()

    # ------------------------------------------------------------------ the client

    @abstractmethod
    def _connect(self) -> C:
        """A new client for this cache's server (no request needs to be sent yet)."""

    def _disconnect(self, client: C) -> None:
        """Release ``client`` (default: its ``close()``, if it has one)."""
        close: Callable[[], object] | None = getattr(client, "close", None)
        if close is not None:
            close()

    def _connection(self) -> C:
        """The cache's one client, shared by all threads, created on first use.

        Hot paths read ``self._conn or self._connection()``: one attribute load once
        connected.
        """
        client = self._conn
        if client is None:
            with self._conn_lock:
                if self._conn is None:
                    self._conn = self._guarded(self._connect)
                client = self._conn
        return client

    def _close(self) -> None:
        """Write pending read statistics back, then release the client (recreated lazily)."""
        if self._conn is not None:
            try:
                self.flush_hits()
            except CacheError as exc:
                self.log.warning("cache '%s': could not flush hit counts: %s", self.name, exc)
        with self._conn_lock:
            client, self._conn = self._conn, None
        if client is not None:
            self._guarded(self._disconnect, client)

    # ------------------------------------------------------------------ errors

    @abstractmethod
    def _translate(self, exc: Exception) -> CacheError:
        """The typed cachehub error for one of :attr:`backend_errors` (secrets scrubbed)."""

    def _guarded(self, fn: Callable[..., T], /, *args: Any) -> T:
        """``fn(*args)``, with :attr:`backend_errors` raised as :meth:`_translate` says.

        The original exception is not chained (``from None``): client-library messages
        and tracebacks may carry connection strings that the translation scrubbed.
        """
        try:
            return fn(*args)
        except self.backend_errors as exc:
            raise self._translate(exc) from None

    def _warn_once(self, topic: str, message: str) -> None:
        """Log ``message`` as a warning the first time ``topic`` comes up for this cache."""
        with self._warn_lock:
            if topic in self._warned:
                return
            self._warned.add(topic)
        self.log.warning("cache '%s': %s", self.name, message)

    # ------------------------------------------------------------------ read statistics

    def _count_read(self, key: str, version: object, now: float) -> None:
        """Count one read of ``key`` (entry version ``version``) when hit counting is on."""
        if self.counts_hits:
            self._hits.count(key, version, now)

    def _count_reads(self, reads: Iterable[tuple[str, object]], now: float) -> None:
        """Count one read of each ``(key, version)`` when hit counting is on (one lock)."""
        if self.counts_hits:
            self._hits.count_many(reads, now)

    def _with_pending(self, entry: Entry, key: str, version: object) -> Entry:
        """``entry`` with this process's reads not yet written back added in (metadata)."""
        pending = self._hits.peek(key, version)
        if pending is not None:
            entry.hits += pending.hits
            entry.accessed = max(entry.accessed, pending.accessed)
        return entry

    def _take_hits(self, key: str, version: object = ANY_VERSION) -> int:
        """Remove and return the pending reads of ``key`` (a write carries them along)."""
        return self._hits.take(key, version)

    def _forget(self, *keys: str) -> None:
        """Drop pending reads of ``keys``: they were overwritten or deleted."""
        self._hits.forget(*keys)

    def pending_hits(self) -> int:
        """How many keys have reads counted in process, not yet written to the server."""
        return len(self._hits)

    def flush_hits(self) -> int:
        """Write counted reads (hit counts, last access) back; the number of keys sent.

        Reads of entries replaced or deleted meanwhile are dropped by the provider's
        conditional write (they belonged to the old entry). Nothing is sent when hit
        counting is off.
        """
        pending = self._hits.drain()
        if pending:
            self._write_hits(pending)
        return len(pending)

    def _write_hits(self, pending: dict[str, PendingHits]) -> None:
        """Write ``key: pending reads`` back to the server (needed for ``hitCounts``)."""
        raise NotImplementedError(f"{type(self).__name__} does not write hit counts back")

    def _after_write(self) -> None:
        """Write counted reads back when due; a failure is logged, never raised."""
        if not self._hits.due():
            return
        try:
            self.flush_hits()
        except CacheError as exc:
            self.log.warning("cache '%s': could not flush hit counts: %s", self.name, exc)
