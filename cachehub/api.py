"""The cache contract: :class:`BaseCache`, which every provider subclasses.

The public methods (``get``, ``put``, ``keys``...) live here once, with their argument
checking, expiry arithmetic, read-only guard, error policy and operation events. A
provider implements only the small set of ``_primitives`` below, each working on
*storage keys* (namespace already applied) and given ``now`` from the cache's clock, so
that expiry is decided identically everywhere and tests can inject a clock.

Expiry model (the same on every provider):

* ``time_span`` - absolute lifetime from the write;
* ``until`` - absolute expiry time (``datetime``);
* ``idle_time`` - sliding: the entry dies when not read for that long.

An entry's *deadline* is the earliest of its absolute expiry and ``last_accessed +
idle``. A provider must never return an entry whose deadline has passed, whether or
not its backend has deleted it yet.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import os
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import TYPE_CHECKING, Any, ClassVar, Final, TypeVar

from .codec import DEFAULT_MAX_VALUE_SIZE, MIN_MAX_VALUE_SIZE, Codec, make_codec
from .config import SECRET_MASK, LuceeOption, Option, redact, validate_settings
from .errors import (
    CacheBackendError,
    CacheError,
    CacheKeyError,
    CacheUnavailableError,
    CacheValueError,
    ConfigError,
    CorruptEntryError,
    InvalidKeyError,
    LockTimeoutError,
    ReadOnlyCacheError,
    UnknownSigningKeyError,
    raised_by_signal_handler,
)
from .filters import KeyFilter, compile_filter
from .flights import WAIT_SLICE, Flight, Flights
from .hookspecs import OperationEvent
from .scrub import install_log_filter, register_settings

if TYPE_CHECKING:
    from .aio import AsyncCache
    from .lock import Lock, LockTable

__all__ = [
    "MISSING",
    "BaseCache",
    "CacheMetadata",
    "Entry",
    "Expiry",
    "TimeSpan",
    "BASE_OPTIONS",
    "HIT_COUNT_MAX",
    "MAX_KEY_LENGTH",
    "MAX_TIME_SPAN",
    "LOCK_HORIZON",
    "COUNTER_RANGE",
    "counter_overflow",
    "settings_identity",
]

T = TypeVar("T")
TimeSpan = timedelta | int | float
"""A duration: a ``timedelta`` or a number of seconds."""

MAX_KEY_LENGTH: Final = 16_384
"""Longest accepted key, in characters. Providers hash keys beyond their own limit."""

HIT_COUNT_MAX: Final = 2**53
"""The largest hit count a stored entry may hold: one read counted every nanosecond for
104 days, and the largest integer a double (Redis's header, a Lua number) holds exactly.
A larger, negative or fractional count was written by another program: reads of the
entry's metadata raise :class:`CorruptEntryError` naming it."""

COUNTER_RANGE: Final = range(-(2**63), 2**63)
"""What ``incr``/``decr`` count in: signed 64 bits, as Redis counters and every language's
native long. A delta or result outside it raises :class:`CacheValueError` on every
provider (nothing is changed), so a counter behaves the same whichever backend holds it."""


def counter_overflow(user_key: str, current: int, delta: int) -> CacheValueError | None:
    """The error of an ``incr`` of ``current`` by ``delta`` outside :data:`COUNTER_RANGE`.

    None when both the stored counter and the result are inside it (the incr may proceed).
    """
    if current in COUNTER_RANGE and current + delta in COUNTER_RANGE:
        return None
    what = "the result" if current in COUNTER_RANGE else "the stored int"
    return CacheValueError(
        f"cannot incr key {user_key!r:.200} by {delta}: {what} does not fit in a "
        "signed 64-bit integer.",
        hint="counters are signed 64-bit on every provider; reset the counter or use a "
        "smaller delta.",
    )


MAX_TIME_SPAN: Final = timedelta(days=365_250)
"""Longest accepted ``time_span`` / ``idle_time``, and farthest ``until`` (1,000 years).

Every deadline then stays a finite epoch second that ``datetime``, Redis ``PXAT`` and a
DynamoDB Number all hold; ``timedelta.max`` would overflow each of them. For an entry
that never expires, pass no expiry at all.
"""
_MAX_SECONDS: Final = MAX_TIME_SPAN.total_seconds()
NEVER_EXPIRES: Final = "an entry that never expires"
"""What None means for ``time_span`` (the default of :func:`_seconds`'s hints)."""
LOCK_HORIZON: Final = _MAX_SECONDS + 86_400
"""Seconds from now past which no cachehub writer sets a lock's deadline: the longest lock
ttl (:data:`MAX_TIME_SPAN`) plus a day of clock skew. A lock record whose deadline lies
beyond it was written by another program and holds nothing: the next acquire takes it
over, where it would otherwise block the lock (and every ``get_or_set`` of its key) for
centuries."""


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final[Any] = _Missing()
"""Sentinel for "no entry", distinct from a cached ``None``: ``cache.get(k, MISSING)``."""

_RAISE: Final[Any] = object()
"""``fallback`` of an operation that raises even under ``onError: miss`` (add, incr...)."""


@dataclass(frozen=True, slots=True)
class Expiry:
    """An entry's expiry policy: absolute deadline (epoch seconds) and idle seconds."""

    expires_at: float | None = None
    idle: float | None = None

    def deadline(self, accessed: float) -> float | None:
        """Epoch second at which an entry last read at ``accessed`` dies, or None."""
        if self.idle is None:
            return self.expires_at
        slide = accessed + self.idle
        return slide if self.expires_at is None else min(slide, self.expires_at)


NO_EXPIRY: Final = Expiry()


@dataclass(slots=True)
class Entry:
    """A stored entry with its metadata, as a provider hands it to the base class."""

    value: Any
    created: float
    modified: float
    accessed: float
    hits: int = 0
    expires_at: float | None = None
    idle: float | None = None

    @classmethod
    def new(cls, value: Any, expiry: Expiry, now: float) -> Entry:
        """A fresh entry written at ``now``."""
        return cls(value, now, now, now, 0, expiry.expires_at, expiry.idle)

    @property
    def expiry(self) -> Expiry:
        return Expiry(self.expires_at, self.idle)

    def deadline(self) -> float | None:
        """Epoch second after which this entry is dead, or None for never."""
        if self.idle is None:
            return self.expires_at
        slide = self.accessed + self.idle
        return slide if self.expires_at is None else min(slide, self.expires_at)

    def alive(self, now: float) -> bool:
        """Whether the entry may still be returned at ``now``."""
        deadline = self.deadline()
        return deadline is None or now < deadline


def _utc(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


@dataclass(frozen=True, slots=True)
class CacheMetadata:
    """What ``metadata(key)`` returns (Lucee's ``cacheGetMetadata``)."""

    hit_count: int
    time_to_live: timedelta | None
    """Remaining lifetime, or None when the entry never expires."""
    idle_time: timedelta | None
    expires: datetime | None
    last_accessed: datetime | None
    last_modified: datetime
    created: datetime

    @classmethod
    def from_entry(cls, entry: Entry, now: float) -> CacheMetadata:
        """The metadata of ``entry`` read at ``now``.

        Raises :class:`CorruptEntryError` when a stored stamp or duration is not a finite
        time ``datetime`` can show (NaN, infinity, beyond year 9999), an idle time is
        negative, or the hit count is not a whole number within :data:`HIT_COUNT_MAX`:
        only a foreign or damaged entry holds one, as writes refuse them
        (:data:`MAX_TIME_SPAN`)."""
        if not 0 <= entry.hits <= HIT_COUNT_MAX or entry.hits != int(entry.hits):
            raise CorruptEntryError(
                f"the entry's hit count is {entry.hits!r:.60}, not a whole number from 0 "
                f"to {HIT_COUNT_MAX:,} (2^53): another program wrote it.",
                hint="delete the entry or put() it again.",
            )
        try:
            if entry.idle is not None and entry.idle < 0:
                raise ValueError("a negative duration")
            deadline = entry.deadline()
            ttl = None if deadline is None else timedelta(seconds=max(0.0, deadline - now))
            return cls(
                hit_count=int(entry.hits),
                time_to_live=ttl,
                idle_time=None if entry.idle is None else timedelta(seconds=entry.idle),
                expires=_utc(deadline),
                last_accessed=_utc(entry.accessed),
                last_modified=_utc(entry.modified) or datetime.fromtimestamp(0, UTC),
                created=_utc(entry.created) or datetime.fromtimestamp(0, UTC),
            )
        except (OverflowError, OSError, ValueError, TypeError) as exc:
            # fromtimestamp/timedelta raise all four for out-of-range or NaN stamps.
            raise CorruptEntryError(
                f"the entry's metadata holds an impossible time or count ({type(exc).__name__}).",
                hint="the entry was written by another program or damaged; delete it "
                "or put() it again.",
            ) from None


def _created(creator: Callable[[], T]) -> T:
    """``creator()`` for the sync ``get_or_set``, which cannot await: an ``async def``
    creator's coroutine was stored as the value (``serialize: false``), every later read
    answering the same, already awaited coroutine."""
    created = creator()
    if inspect.isawaitable(created):
        close = getattr(created, "close", None)
        if callable(close):
            close()  # never run: no "was never awaited" warning either
        raise CacheValueError(
            "get_or_set's creator returned an awaitable (an async def?); the sync shell "
            "cannot await it, and would have stored the coroutine object itself.",
            hint="use `await cache.aio().get_or_set(key, creator)`, or @cached on the async "
            "def (it caches through the async shell).",
        )
    return created


def _key_list(keys: object, op: str) -> list[Any]:
    """The keys of a batch call, listed; CacheValueError for a str, bytes or non-iterable
    (a str would otherwise be read as one key per character)."""
    if type(keys) is list or type(keys) is tuple:  # the common case, at the cost of a copy
        return list(keys)
    if isinstance(keys, (str, bytes, bytearray)) or not isinstance(keys, Iterable):
        raise CacheValueError(
            f"{op}() takes an iterable of keys, got {type(keys).__name__}.",
            hint=f"pass a list of keys, e.g. {op}(['a', 'b']).",
        )
    return list(keys)


def _seconds(value: TimeSpan | None, what: str, none: str | None = NEVER_EXPIRES) -> float | None:
    """``value`` in seconds: a positive, finite duration of at most :data:`MAX_TIME_SPAN`.

    ``none`` says what None means for this argument; the hints offer it as the way out
    (``time_span=None``: an entry that never expires; a lock ttl of None is its default).
    When ``none`` is None, None is refused too: the argument has no "unset".
    """
    if value is None:
        if none is None:
            raise CacheValueError(
                f"{what} must be a timedelta or a number of seconds, got None.",
                hint=f"pass e.g. {what}=timedelta(seconds=30) or {what}=30.",
            )
        return None
    way_out = "" if none is None else f", or None for {none}"
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, int) and abs(value) > _MAX_SECONDS:
            # Not float(value) nor repr(value): both fail for ints of thousands of digits.
            raise CacheValueError(
                f"{what} must be a positive duration of at most {MAX_TIME_SPAN.days:,} days "
                f"(1,000 years), got an int of {value.bit_length()} bits.",
                hint=f"pass a shorter duration{way_out}.",
            )
        seconds = float(value)
    else:
        raise CacheValueError(
            f"{what} must be a timedelta or a number of seconds, got {type(value).__name__}.",
            hint=f"pass e.g. {what}=timedelta(minutes=5) or {what}=300{way_out}.",
        )
    if math.isnan(seconds) or math.isinf(seconds) or seconds <= 0:
        raise CacheValueError(
            f"{what} must be a positive, finite duration, got {value!r}.",
            hint=f"pass a duration > 0{way_out}.",
        )
    if seconds > _MAX_SECONDS:
        raise CacheValueError(
            f"{what} must be at most {MAX_TIME_SPAN.days:,} days (1,000 years), "
            f"got {seconds:.6g} seconds.",
            hint=f"pass a shorter duration{way_out}.",
        )
    return seconds


def make_expiry(
    time_span: TimeSpan | None, idle_time: TimeSpan | None, until: datetime | None, now: float
) -> Expiry:
    """Turn the public TTL arguments into an :class:`Expiry`, validating them."""
    if time_span is None and idle_time is None and until is None:
        return NO_EXPIRY
    if time_span is not None and until is not None:
        raise CacheValueError(
            "time_span and until both set an absolute expiry; they cannot be combined.",
            hint="pass either time_span (a lifetime) or until (a point in time).",
        )
    expires_at: float | None = None
    span = _seconds(time_span, "time_span")
    if span is not None:
        expires_at = now + span
    if until is not None:
        if not isinstance(until, datetime):
            raise CacheValueError(
                f"until must be a datetime, got {type(until).__name__}.",
                hint="pass e.g. until=datetime.now(UTC) + timedelta(hours=2).",
            )
        try:
            expires_at = until.timestamp()  # naive datetimes are local time, as in stdlib
        except (OverflowError, OSError, ValueError):  # naive datetime.min/max in local time
            raise CacheValueError(
                f"until={until.isoformat()} cannot be converted to a point in time.",
                hint="pass an aware datetime such as datetime.now(UTC) + timedelta(hours=2).",
            ) from None
        if expires_at - now > _MAX_SECONDS:
            raise CacheValueError(
                f"until={until.isoformat()} is more than {MAX_TIME_SPAN.days:,} days "
                "(1,000 years) ahead.",
                hint="pass an earlier datetime, or no until for an entry that never expires.",
            )
        if expires_at <= now:
            raise CacheValueError(
                f"until={until.isoformat()} is in the past.",
                hint="pass a future datetime, or delete the entry instead.",
            )
    return Expiry(expires_at, _seconds(idle_time, "idle_time", "no idle expiry"))


BASE_OPTIONS: Final[tuple[Option, ...]] = (
    Option("namespace", str, "", "prefix for every key, so several caches can share one backend."),
    Option(
        "codec",
        str,
        "safe",
        "'safe' (default, never unpickles) or 'pickle' (needs signingKey).",
        choices=("safe", "pickle"),
    ),
    Option("signingKey", str, None, "HMAC key for the opt-in pickle codec.", secret=True),
    Option(
        "signingKeyFallbacks",
        object,
        None,
        "older signing keys that still verify pickle entries (a list, or comma-separated).",
        secret=True,
    ),
    Option(
        "maxValueSize",
        int,
        DEFAULT_MAX_VALUE_SIZE,
        "largest encoded value in bytes, written or read (also bounds decoded objects).",
        minimum=MIN_MAX_VALUE_SIZE,
    ),
    Option(
        "compressThreshold",
        int,
        4096,
        "compress encoded values larger than this many bytes (0 disables).",
        minimum=0,
    ),
    Option("log", str, "cachehub", "name of the logger cache operations and errors go to."),
    Option(
        "onError",
        str,
        "raise",
        "'raise' (default) or 'miss': treat an unreachable backend as a cache miss.",
        choices=("raise", "miss"),
    ),
)


def settings_identity(provider: type, settings: Mapping[str, Any]) -> Hashable:
    """The conservative backend identity: the provider plus every setting but the namespace.

    Equal settings certainly mean one store; different ones may still be one store (the
    provider's own :meth:`BaseCache.backend_identity` knows better).
    """
    shown = sorted((str(k), repr(v)) for k, v in settings.items() if k != "namespace")
    return (f"{provider.__module__}:{provider.__qualname__}", tuple(shown))


_LOCK_TABLES: dict[type, LockTable] = {}
"""Per provider class, the in-process locks of the default lock primitives."""
_TABLES_LOCK = threading.Lock()
_STR_ONLY: Final = {str}
_CHUNK: Final = 500


def _checked_namespace(namespace: str, name: str, provider: type) -> str:
    """The ``namespace`` setting, refused when no storage key built on it could be sent.

    Keys are checked one by one (:meth:`BaseCache._sk`), but the namespace is prepended
    to each: a lone surrogate in it (what ``${VAR}`` yields for an environment variable
    holding bytes that are not UTF-8) failed every operation on Redis and DynamoDB, and
    a namespace longer than a key may be made every key too long.
    """
    where = f"cache '{name}' ({provider.__name__})"
    if len(namespace) > MAX_KEY_LENGTH:
        raise ConfigError(
            f"{where}: setting 'namespace' is {len(namespace):,} characters long; the limit "
            f"is {MAX_KEY_LENGTH:,}.",
            hint="use a short prefix such as 'app:sessions:'.",
        )
    # A lone surrogate was refused when the setting was read (config.checked_text, as
    # for every str setting).
    return namespace


def _plain(keys: list[Any]) -> bool:
    """Whether a batch holds only plain keys: non-empty ASCII ``str`` (exactly ``str``)
    within the length limit, the keys :meth:`BaseCache._sk` would pass unchanged.

    A few C-level passes over the list instead of one :meth:`~BaseCache._sk` call per key.
    """
    if not keys or set(map(type, keys)) != _STR_ONLY or not all(keys):
        return False
    joined = "".join(keys)
    # Within the limit together, each is: the longest key is measured only when not.
    short = len(joined) <= MAX_KEY_LENGTH or max(map(len, keys)) <= MAX_KEY_LENGTH
    return short and joined.isascii()


_ASYNC_SHELL: list[Callable[[BaseCache], AsyncCache]] = []
"""The async shell's class, registered by :mod:`cachehub.aio` when it is imported (the
``cachehub`` package always imports it). Registered rather than imported here, so the
core's import graph stays acyclic (aio builds on this module)."""


def _take(items: Iterator[T], size: int) -> list[T]:
    """The next ``size`` items of ``items`` (fewer at its end)."""
    return list(islice(items, size))


def _close_iterator(items: Iterator[Any]) -> None:
    close = getattr(items, "close", None)
    if close is not None:
        close()


@dataclass(slots=True)
class _Operation:
    """One public operation's error policy and event, sans I/O, for both shells.

    The sync shell calls the primitive inside it, the async shell awaits it there::

        with cache._operation("get", key, MISSING) as call:
            call.result = primitive(...)   # or: await aprimitive(...)
        return call.result

    Leaving the block applies the error policy to an exception (:meth:`BaseCache._failed`:
    degrade to ``fallback`` under ``onError: miss`` - the block then ends normally with
    :attr:`result` the fallback - re-raise a typed error, or translate anything else) and
    reports one :class:`OperationEvent` (when the cache has an observer) spanning the
    whole block: for a key stream, the whole iteration. Cancellation and other
    non-``Exception`` errors are reported, never translated; a stream (``stream=True``)
    closed early by its consumer (``GeneratorExit``) is not an error.
    """

    cache: BaseCache
    observer: Callable[[OperationEvent], None] | None
    op: str
    key: str | None
    fallback: Any
    stream: bool = False
    start: float = field(default_factory=time.perf_counter)
    result: Any = None

    def __enter__(self) -> _Operation:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, _: Any) -> bool:
        error = None if self.stream and kind is GeneratorExit else exc
        try:
            if not isinstance(exc, Exception):
                return False  # done, or cancelled and friends: never translated
            try:
                self.result = self.cache._failed(self.op, exc, self.fallback)
            except CacheError as typed:
                error = typed
                if typed is exc:
                    return False  # already typed: it goes on as it is
                raise
            return True  # degraded: the fallback is the result
        finally:
            if self.observer is not None:
                self.cache._report(self.observer, self.op, self.key, self.start, self.result, error)


_LIVE: weakref.WeakSet[BaseCache] = weakref.WeakSet()
"""Every cache of the process, for :func:`_after_fork_in_child`."""


def _after_fork_in_child() -> None:
    """The gunicorn ``--preload`` / multiprocessing ``fork`` case: caches built (and used)
    in the parent keep working in each child, on clients of the child's own. Before,
    a child read DynamoDB replies meant for its parent on a shared keep-alive
    connection (misses for present keys), an async client kept on an inherited loop
    did the same on Redis (another process's values), reads counted before the fork
    were written back by every process, and a ``get_or_set`` waited forever for a
    parent thread's flight."""
    for cache in list(_LIVE):
        cache._forked()


if hasattr(os, "register_at_fork"):  # not on Windows, which never forks
    os.register_at_fork(after_in_child=_after_fork_in_child)


class BaseCache(ABC):
    """Base class of every cache provider; see the module docstring for the contract.

    Construction never connects: providers connect lazily, on first use.
    """

    options: ClassVar[tuple[Option, ...]] = ()
    """Provider-specific settings (the ``custom`` block), besides :data:`BASE_OPTIONS`."""
    lucee_options: ClassVar[tuple[LuceeOption, ...]] = ()
    """Settings of the Lucee extension this provider replaces, mapped or ignored (see
    :class:`~cachehub.config.LuceeOption`), so an unchanged ``.CFConfig.json`` loads."""
    distributed: ClassVar[bool] = False
    """True when several processes share the data (enables cross-process stampede locks)."""
    counts_hits: bool = True
    """Whether reads are counted in ``metadata()`` (``hit_count``, ``last_accessed``).
    Remote providers make it the ``hitCounts`` setting (off by default: counting costs a
    write on the server); when False, ``hit_count`` and ``last_accessed`` only change
    when the entry is written (or, for idle-time entries, slid by a read)."""
    lock_clock: ClassVar[str] = "cache"
    """Whose clock decides lock deadlines: ``"cache"`` (the ``clock=`` of the cache taking
    the lock: a skewed process may take a lock over early, see docs/index.md) or
    ``"server"`` (the backend's own clock: skew between clients does not matter)."""

    def __init__(
        self,
        settings: Mapping[str, Any] | None = None,
        /,
        *,
        name: str = "default",
        read_only: bool = False,
        storage: bool = False,
        clock: Callable[[], float] | None = None,
        observer: Callable[[OperationEvent], None] | None = None,
        **options: Any,
    ) -> None:
        merged = {**(settings or {}), **options}
        self.name = name
        self.settings: dict[str, Any] = validate_settings(
            merged,
            (*BASE_OPTIONS, *self.options),
            where=f"cache '{name}' ({type(self).__name__})",
            lucee_options=self.lucee_options,
        )
        # Every secret of this cache is masked in all output from now on (cachehub.scrub).
        declared = (*BASE_OPTIONS, *self.options)
        register_settings(self.settings, (o.name for o in declared if o.secret))
        install_log_filter()
        self.read_only = read_only
        self.storage = storage
        self.namespace: str = _checked_namespace(self.settings["namespace"], name, type(self))
        self.codec: Codec = make_codec(
            self.settings["codec"],
            signing_key=self.settings["signingKey"],
            compress_threshold=self.settings["compressThreshold"],
            max_value_size=self.settings["maxValueSize"],
            signing_key_fallbacks=self.settings["signingKeyFallbacks"],
        )
        self.log = logging.getLogger(self.settings["log"])
        self._fail_open = self.settings["onError"] == "miss"
        self._clock: Callable[[], float] = clock or time.time
        self._observer = observer
        self._flights = Flights()  # get_or_set's single flight, shared with the async shell
        self._aio: AsyncCache | None = None
        _LIVE.add(self)

    def _forked(self) -> None:
        """Drop what belongs to the parent process, in a child just forked from it.

        A child inherits the parent's objects, not its threads: a flight whose creator
        runs in a parent thread would be waited for forever, and a lock another parent
        thread held stays held. Providers add their own per-process state (clients,
        connections, counted reads), which the child must neither share nor write twice.
        """
        self._flights = Flights()

    @classmethod
    def backend_identity(cls, settings: Mapping[str, Any]) -> Hashable | None:
        """What identifies the store a cache with these settings writes to, or None.

        ``settings`` are the validated settings of one cache (what ``self.settings``
        would be). Two caches whose identities are equal (and not None) share one key
        space, so :func:`cachehub.loader.check_namespaces` refuses nested namespaces
        between them. None means "shared with no other cache" (a private in-process
        store). Called without constructing the cache; must not touch the network.

        Providers override this, start the result with their own name, and normalise
        the spellings that name one store (a Redis ``url`` versus ``host``/``port``).
        The default is None for non-distributed providers and :func:`settings_identity`
        for distributed ones.
        """
        return settings_identity(cls, settings) if cls.distributed else None

    # ------------------------------------------------------------------ provider primitives

    @abstractmethod
    def _get(self, key: str, now: float) -> Any:
        """Live value or :data:`MISSING`; counts a hit and slides an idle expiry."""

    @abstractmethod
    def _get_entry(self, key: str, now: float) -> Entry | None:
        """Live entry with metadata, or None. Does not count a hit."""

    @abstractmethod
    def _set(self, key: str, value: Any, expiry: Expiry, now: float) -> None:
        """Store ``value`` unconditionally as a fresh entry."""

    @abstractmethod
    def _add(self, key: str, value: Any, expiry: Expiry, now: float) -> bool:
        """Store only if no live entry exists (atomically); True when stored."""

    @abstractmethod
    def _delete(self, key: str, now: float) -> bool:
        """Remove the entry; True when a live entry was removed."""

    @abstractmethod
    def _delete_if_equal(self, key: str, value: Any, now: float) -> bool:
        """Atomically remove the entry only if it is live and holds ``value``."""

    @abstractmethod
    def _incr(self, key: str, delta: int, now: float) -> int:
        """Atomically add ``delta`` to an integer entry (missing = 0, keeps expiry)."""

    @abstractmethod
    def _touch(self, key: str, expiry: Expiry, now: float) -> bool:
        """Replace a live entry's expiry policy; True when the entry exists."""

    @abstractmethod
    def _scan(self, flt: KeyFilter, now: float) -> Iterator[str]:
        """Stream the storage keys of live entries selected by ``flt``."""

    # Optional primitives: providers override these with real batch operations.

    def _exists(self, key: str, now: float) -> bool:
        return self._get_entry(key, now) is not None

    def _get_many(self, keys: list[str], now: float) -> dict[str, Any]:
        found = {}
        for key in keys:
            value = self._get(key, now)
            if value is not MISSING:
                found[key] = value
        return found

    def _set_many(self, items: dict[str, Any], expiry: Expiry, now: float) -> None:
        # A batch stores nothing when one value cannot be encoded: check them all before
        # the first write (a provider with a real batch write encodes once instead).
        for value in items.values():
            self.codec.dumps(value)
        for key, value in items.items():
            self._set(key, value, expiry, now)

    def _delete_many(self, keys: list[str], now: float) -> int:
        return sum(self._delete(key, now) for key in keys)

    def _count(self, flt: KeyFilter, now: float) -> int:
        return sum(1 for _ in self._scan(flt, now))

    def _clear(self, flt: KeyFilter, now: float) -> int:
        removed = 0
        keys = self._scan(flt, now)
        while chunk := list(islice(keys, _CHUNK)):
            removed += self._delete_many(chunk, now)
        return removed

    # Internal space: locks. ``name`` is a namespaced lock id (:meth:`_lock_name`), never a
    # cache key: a provider keeps locks where keys()/count()/clear() never look, no user key
    # can reach them and no eviction drops them. The defaults hold them in this process
    # (:class:`cachehub.lock.LockTable`), right for in-process providers only; a
    # distributed provider must override all five (see docs/plugins.md).

    def _lock_acquire(self, name: str, token: str, ttl: float, now: float) -> int | None:
        """Take lock ``name`` for ``token`` for ``ttl`` seconds; its fence, or None if held.

        Idempotent: when ``token`` already holds the lock (a retried request), answer its
        fence again. The fence grows strictly with every new holder of ``name``. A token
        that was the last to release ``name`` never takes it again (None): its request
        arrived after the release that gave it up (see :class:`~cachehub.lock.AsyncLock`).
        """
        return self._lock_table().acquire(self._lock_pair(name), token, ttl, now)

    def _lock_release(self, name: str, token: str, now: float) -> bool:
        """Free lock ``name`` if ``token`` holds it; True also when ``token`` already did."""
        return self._lock_table().release(self._lock_pair(name), token, now)

    def _lock_extend(self, name: str, token: str, ttl: float, now: float) -> bool:
        """Move ``token``'s live lock's deadline to ``ttl`` seconds from now; False if lost."""
        return self._lock_table().extend(self._lock_pair(name), token, ttl, now)

    def _lock_holder(self, name: str, now: float) -> str | None:
        """The token holding lock ``name`` now, or None."""
        return self._lock_table().holder(self._lock_pair(name), now)

    def _clear_internal(self, now: float) -> int:
        """Remove every lock (and other internal record) of this namespace; how many."""
        return self._lock_table().clear(self.namespace)

    def _lock_table(self) -> LockTable:
        """The in-process lock table behind the default lock primitives."""
        if self.distributed:
            from .errors import CacheBackendError

            raise CacheBackendError(
                f"provider {type(self).__name__} shares data between processes but keeps "
                "no locks there: it does not implement the lock primitives.",
                hint="the provider must override _lock_acquire, _lock_release, _lock_extend, "
                "_lock_holder and _clear_internal (see docs/plugins.md).",
            )
        from .lock import LockTable

        with _TABLES_LOCK:
            table = _LOCK_TABLES.get(type(self))
            if table is None:
                table = _LOCK_TABLES[type(self)] = LockTable()
        return table

    def _lock_pair(self, name: str) -> tuple[str, str]:
        """``(namespace, lock id)`` of a namespaced lock id, for :class:`LockTable`."""
        return self.namespace, name[len(self.namespace) :]

    def _lock_name(self, ident: str) -> str:
        """The namespaced id of lock ``ident`` (from :func:`cachehub.lock.lock_id`)."""
        return self.namespace + ident

    def _close(self) -> None:  # noqa: B027 - optional hook; the default holds no resources
        """Release connections; the cache may reconnect lazily afterwards."""

    # ------------------------------------------------------------------ async primitives
    # One per primitive, same arguments and result, awaited by the async shell
    # (cachehub.aio.AsyncCache). These defaults run the sync primitive in a worker thread,
    # so a sync-only provider works from async code without blocking the event loop.
    # In-process providers call their sync primitives directly (cachehub.aio.InlineAsync);
    # remote ones talk to their backend natively (docs/provider-guide.md, "Async
    # primitives").

    async def _aget(self, key: str, now: float) -> Any:
        return await asyncio.to_thread(self._get, key, now)

    async def _aget_entry(self, key: str, now: float) -> Entry | None:
        return await asyncio.to_thread(self._get_entry, key, now)

    async def _aset(self, key: str, value: Any, expiry: Expiry, now: float) -> None:
        await asyncio.to_thread(self._set, key, value, expiry, now)

    async def _aadd(self, key: str, value: Any, expiry: Expiry, now: float) -> bool:
        return await asyncio.to_thread(self._add, key, value, expiry, now)

    async def _adelete(self, key: str, now: float) -> bool:
        return await asyncio.to_thread(self._delete, key, now)

    async def _adelete_if_equal(self, key: str, value: Any, now: float) -> bool:
        return await asyncio.to_thread(self._delete_if_equal, key, value, now)

    async def _aincr(self, key: str, delta: int, now: float) -> int:
        return await asyncio.to_thread(self._incr, key, delta, now)

    async def _atouch(self, key: str, expiry: Expiry, now: float) -> bool:
        return await asyncio.to_thread(self._touch, key, expiry, now)

    async def _aexists(self, key: str, now: float) -> bool:
        return await asyncio.to_thread(self._exists, key, now)

    async def _aget_many(self, keys: list[str], now: float) -> dict[str, Any]:
        return await asyncio.to_thread(self._get_many, keys, now)

    async def _aset_many(self, items: dict[str, Any], expiry: Expiry, now: float) -> None:
        await asyncio.to_thread(self._set_many, items, expiry, now)

    async def _adelete_many(self, keys: list[str], now: float) -> int:
        return await asyncio.to_thread(self._delete_many, keys, now)

    async def _acount(self, flt: KeyFilter, now: float) -> int:
        return await asyncio.to_thread(self._count, flt, now)

    async def _aclear(self, flt: KeyFilter, now: float) -> int:
        return await asyncio.to_thread(self._clear, flt, now)

    async def _ascan(self, flt: KeyFilter, now: float) -> AsyncIterator[str]:
        """:meth:`_scan` read in a worker thread, a chunk of keys per hop."""
        keys = self._scan(flt, now)
        try:
            while chunk := await asyncio.to_thread(_take, keys, _CHUNK):
                for key in chunk:
                    yield key
        finally:
            # The sync scan may hold a server cursor or a lock: closed off the loop too.
            await asyncio.to_thread(_close_iterator, keys)

    async def _alock_acquire(self, name: str, token: str, ttl: float, now: float) -> int | None:
        return await asyncio.to_thread(self._lock_acquire, name, token, ttl, now)

    async def _alock_release(self, name: str, token: str, now: float) -> bool:
        return await asyncio.to_thread(self._lock_release, name, token, now)

    async def _alock_extend(self, name: str, token: str, ttl: float, now: float) -> bool:
        return await asyncio.to_thread(self._lock_extend, name, token, ttl, now)

    async def _alock_holder(self, name: str, now: float) -> str | None:
        return await asyncio.to_thread(self._lock_holder, name, now)

    async def _aclear_internal(self, now: float) -> int:
        return await asyncio.to_thread(self._clear_internal, now)

    async def _ainfo(self, now: float) -> dict[str, Any]:
        return await asyncio.to_thread(self._info, now)

    async def _aclose(self) -> None:
        """Release what the async shell holds (default: :meth:`_close`, off the loop)."""
        await asyncio.to_thread(self._close)

    # Async forms of the helpers below, for the async shell.

    async def _aget_checked(self, key: str, now: float) -> Any:
        """:meth:`_aget`, with an entry signed by an unknown key read as a miss."""
        try:
            return await self._aget(key, now)
        except UnknownSigningKeyError as exc:
            return self._signed_miss(exc)

    async def _aget_verified(self, keys: list[str], now: float) -> dict[str, Any]:
        """:meth:`_aget_many`, leaving out entries signed with an unknown key (misses)."""
        try:
            return await self._aget_many(keys, now)
        except UnknownSigningKeyError:
            found: dict[str, Any] = {}
            for key in keys:
                try:
                    found.update(await self._aget_many([key], now))
                except UnknownSigningKeyError:
                    continue
            return found

    async def _aget_all(self, flt: KeyFilter, now: float) -> dict[str, Any]:
        result: dict[str, Any] = {}
        strip = len(self.namespace)
        chunk: list[str] = []
        async for sk in self._ascan(flt, now):
            chunk.append(sk)
            if len(chunk) >= _CHUNK:
                for key, value in (await self._aget_verified(chunk, now)).items():
                    result[key[strip:]] = value
                chunk = []
        if chunk:
            for key, value in (await self._aget_verified(chunk, now)).items():
                result[key[strip:]] = value
        return result

    # ------------------------------------------------------------------ helpers

    def _signed_miss(self, exc: UnknownSigningKeyError) -> Any:
        """An entry signed with a rotated-away key reads as a miss, so it is recomputed."""
        self.log.debug("cache '%s': entry treated as a miss: %s", self.name, exc.message)
        return MISSING

    def _get_checked(self, key: str, now: float) -> Any:
        """:meth:`_get`, with an entry signed by an unknown key read as a miss."""
        try:
            return self._get(key, now)
        except UnknownSigningKeyError as exc:
            return self._signed_miss(exc)

    def _get_verified(self, keys: list[str], now: float) -> dict[str, Any]:
        """:meth:`_get_many`, leaving out entries signed with an unknown key (misses).

        Such an entry fails its whole batch; the batch is then read key by key, which
        only happens while a rotated-away key's entries are still around.
        """
        try:
            return self._get_many(keys, now)
        except UnknownSigningKeyError:
            found: dict[str, Any] = {}
            for key in keys:
                try:
                    found.update(self._get_many([key], now))
                except UnknownSigningKeyError:
                    continue
            return found

    def _sk(self, key: str) -> str:
        """Validate a user key and return its storage key."""
        if type(key) is not str:
            if not isinstance(key, str):
                raise InvalidKeyError(
                    f"cache keys must be str, got {type(key).__name__} {key!r:.60}.",
                    hint="convert the key with str() or build a string key such as 'user:42'.",
                )
            key = str(key)
        if not key:
            raise InvalidKeyError("cache key is empty.", hint="use a non-empty string key.")
        if len(key) > MAX_KEY_LENGTH:
            raise InvalidKeyError(
                f"cache key is {len(key)} characters long; the limit is {MAX_KEY_LENGTH}.",
                hint="hash long keys yourself (e.g. hashlib.sha256) or shorten them.",
            )
        if not key.isascii():
            try:
                key.encode()
            except UnicodeEncodeError:
                raise InvalidKeyError(
                    "cache key contains a lone surrogate and cannot be encoded as UTF-8.",
                    hint="pass a valid Unicode string.",
                ) from None
        return self.namespace + key if self.namespace else key

    def _plain_sks(self, keys: list[Any]) -> list[str] | None:
        """Storage keys of a batch of plain keys, deduplicated in order, or None.

        The common batch (non-empty ASCII ``str`` keys within the length limit) is
        checked by a few C-level passes over the list instead of one :meth:`_sk` call
        per key; for any other batch this returns None and the caller uses :meth:`_sk`.
        """
        if _plain(keys):
            return self._storage_keys(list(dict.fromkeys(keys)))
        return None

    def _storage_keys(self, keys: list[str]) -> list[str]:
        """The storage keys of plain user keys (see :func:`_plain`), in order."""
        ns = self.namespace
        return [ns + key for key in keys] if ns else keys

    def _user_key(self, storage_key: str) -> str:
        return storage_key[len(self.namespace) :] if self.namespace else storage_key

    # ------------------------------------------------------------------ plans and finishes
    # The sans-I/O half of every public operation: argument checks, key mapping, expiry
    # arithmetic before the primitive call (plan), the result's meaning after it (finish).
    # Both shells (these methods and cachehub.aio.AsyncCache) call them, so each rule is
    # written once.

    def _got_miss(self, key: str, default: Any, throw_when_not_exist: bool) -> Any:
        """What ``get`` answers for a missing ``key``: ``default``, or CacheKeyError."""
        if throw_when_not_exist:
            raise CacheKeyError(
                f"no entry for key {key!r:.200} in cache '{self.name}'.",
                hint="check exists() first, or call get(key, default).",
            )
        return default

    def _write_plan(
        self,
        op: str,
        key: str,
        time_span: TimeSpan | None,
        idle_time: TimeSpan | None,
        until: datetime | None,
    ) -> tuple[str, Expiry, float]:
        """``(storage key, expiry, now)`` of a write of ``key`` (read-only refused)."""
        self._writable(op)
        sk = self._sk(key)
        now = self._clock()
        return sk, make_expiry(time_span, idle_time, until, now), now

    def _counter_plan(self, op: str, key: str, delta: int, sign: int) -> tuple[str, int]:
        """``(storage key, signed delta)`` of an ``incr``/``decr``, checked."""
        self._writable(op)
        if not isinstance(delta, int) or isinstance(delta, bool):
            raise CacheValueError(
                f"{op} delta must be an int, got {type(delta).__name__}.",
                hint="pass an integer delta such as 1 or -5.",
            )
        if sign * delta not in COUNTER_RANGE:
            raise CacheValueError(
                f"{op} delta {delta} does not fit in a signed 64-bit integer.",
                hint="counters are signed 64-bit on every provider; use a smaller delta.",
            )
        return self._sk(key), sign * delta

    def _metadata_of(self, key: str, entry: Entry | None, now: float) -> CacheMetadata:
        """``metadata``'s answer for the entry read (None: CacheKeyError)."""
        if entry is None:
            raise CacheKeyError(
                f"no entry for key {key!r:.200} in cache '{self.name}'.",
                hint="metadata() needs an existing key; check exists() first.",
            )
        try:
            return CacheMetadata.from_entry(entry, now)
        except CorruptEntryError as exc:
            raise CorruptEntryError(
                f"key {key!r:.200} in cache '{self.name}': {exc.message}", hint=exc.hint
            ) from None

    def _storable(self, storage_key: str, value: Any, now: float) -> None:
        """Raise what writing ``value`` at ``storage_key`` would raise for the entry itself
        (a key or a value this backend refuses), writing nothing.

        ``cachehub migrate --dry-run`` asks, so that it promises no copy the run refuses.
        A provider with an encoding step of its own (a stored string, an item and its size
        limit) overrides this with that step; by default nothing more is checked.
        """
        return  # the key was checked by _sk; values are taken as they are

    def _restore_plan(self, key: str, entry: Entry) -> tuple[str, Expiry, float] | None:
        """``(storage key, expiry, stamp)`` to write for ``restore``; None if ``entry`` is dead."""
        self._writable("restore")
        if not isinstance(entry, Entry):
            raise CacheValueError(
                f"restore() takes an Entry, as peek() returns, got {type(entry).__name__}.",
                hint="peek() returns None for a missing key: restore only what it found.",
            )
        sk = self._sk(key)
        now = self._clock()
        if not entry.alive(now):
            return None
        for span in (entry.idle, None if entry.expires_at is None else entry.expires_at - now):
            if span is not None and span > _MAX_SECONDS:
                raise CacheValueError(
                    f"restore of key {key!r:.80}: its expiry is more than {MAX_TIME_SPAN.days:,} "
                    "days away.",
                    hint="write it without expiry, or with a shorter one.",
                )
        return sk, Expiry(entry.expires_at, entry.idle), entry.accessed

    def _get_many_plan(self, keys: Iterable[str]) -> tuple[list[str], list[str] | dict[str, str]]:
        """The storage keys of a ``get_many`` and their user keys: a list in the same order
        for plain keys, else a dict storage -> user key (see :meth:`_get_many_finish`)."""
        keys = _key_list(keys, "get_many")
        if _plain(keys):
            users = list(dict.fromkeys(keys))
            return self._storage_keys(users), users
        storage = {self._sk(k): k for k in keys}
        return list(storage), storage

    def _get_many_finish(
        self, found: Any, batch: list[str], users: list[str] | dict[str, str]
    ) -> dict[str, Any]:
        """``get_many``'s answer (user keys) from what the primitive found (storage keys);
        ``batch`` and ``users`` as :meth:`_get_many_plan` planned them."""
        if type(found) is not dict:  # a provider bug must still surface typed
            raise self._untyped("get_many", TypeError(f"returned {type(found).__name__}"))
        got: dict[str, Any] = found
        if type(users) is dict:
            # .get: a key the provider returns unasked (a bug) must not raise KeyError.
            return {users.get(sk, sk): value for sk, value in got.items()}
        strip = len(self.namespace)
        if not strip:
            return got
        if len(got) == len(batch) and list(got) == batch:
            # Every key found, in the order asked (a batch of hits, as providers build it):
            # the user keys are the plan's, no key is sliced.
            return dict(zip(users, got.values(), strict=True))
        return {sk[strip:]: value for sk, value in got.items()}

    def _put_many_plan(
        self,
        items: Mapping[str, Any],
        time_span: TimeSpan | None,
        idle_time: TimeSpan | None,
        until: datetime | None,
    ) -> tuple[dict[str, Any], Expiry, float]:
        """``(storage key: value, expiry, now)`` of a ``put_many`` (batch may be empty)."""
        if self.read_only:
            self._writable("put_many")
        if type(items) is not dict and not isinstance(items, Mapping):
            raise CacheValueError(
                f"put_many() takes a mapping of keys to values, got {type(items).__name__}.",
                hint="pass a dict, e.g. put_many({'a': 1, 'b': 2}) (dict(pairs) for pairs).",
            )
        now = self._clock()
        if time_span is None and idle_time is None and until is None:
            expiry = NO_EXPIRY
        else:
            expiry = make_expiry(time_span, idle_time, until, now)
        keys = list(items)
        if type(items) is dict and _plain(keys):
            # A dict's keys are unique and its values in the same order: no dedup, no
            # per-key step (another Mapping may yield anything and takes the checks below).
            batch = dict(zip(self._storage_keys(keys), items.values(), strict=True))
        else:
            batch = {self._sk(k): v for k, v in items.items()}
        return batch, expiry, now

    def _delete_many_plan(self, keys: Iterable[str]) -> list[str]:
        """The unique storage keys of a ``delete_many`` (may be empty)."""
        if self.read_only:
            self._writable("delete_many")
        keys = _key_list(keys, "delete_many")
        batch = self._plain_sks(keys)
        if batch is None:
            batch = list(dict.fromkeys(self._sk(k) for k in keys))
        return batch

    def _clear_plan(self, filter: str | None, include_internal: bool) -> KeyFilter:
        """The filter of a ``clear``, checked (read-only and ``include_internal`` rules)."""
        self._writable("clear")
        flt = compile_filter(filter, self.namespace)
        if include_internal and filter is not None:
            raise CacheValueError(
                "clear(include_internal=True) removes all of the namespace's locks and "
                f"cannot take a filter (got {filter!r:.80}).",
                hint="call clear(filter) for entries, then clear(include_internal=True).",
            )
        return flt

    def _fills_across_processes(self) -> bool:
        """Whether ``get_or_set`` takes a fill lock in the backend (cross-process flight)."""
        return self.distributed and not self.read_only

    def _fill_timeout(self, key: str, lock_timeout: float) -> LockTimeoutError:
        """``get_or_set``'s error when another process held the fill lock too long."""
        return LockTimeoutError(
            f"get_or_set({key!r:.200}) on cache '{self.name}': another "
            f"process kept computing the value for over {lock_timeout}s.",
            hint="raise lock_timeout, or make the creator faster.",
        )

    def _info_facts(self) -> dict[str, Any]:
        """The cache-level facts of ``info`` that need no backend."""
        return {
            "name": self.name,
            "provider": f"{type(self).__module__}:{type(self).__qualname__}",
            "namespace": self.namespace,
            "readOnly": self.read_only,
            "storage": self.storage,
            "distributed": self.distributed,
            "codec": self.settings["codec"],
            "onError": self.settings["onError"],
        }

    def _writable(self, op: str) -> None:
        if self.read_only:
            raise ReadOnlyCacheError(
                f"cache '{self.name}' is read-only; {op}() is not allowed.",
                hint="set readOnly to false in the cache's configuration to allow writes.",
            )

    def _run(self, op: str, key: str | None, fallback: Any, fn: Callable[..., T], *args: Any) -> T:
        """Call a primitive under the error policy, reporting it to the observer if any.

        ``fallback`` is what the operation returns when the backend is unreachable and
        ``onError`` is ``miss``; :data:`_RAISE` for operations that cannot degrade.
        """
        observer = self._observer
        if observer is None:  # the hot path: no event to time
            try:
                return fn(*args)
            except Exception as exc:
                return self._failed(op, exc, fallback)  # type: ignore[no-any-return]
        with _Operation(self, observer, op, key, fallback) as call:
            call.result = fn(*args)
        return call.result  # type: ignore[no-any-return]

    def _operation(
        self, op: str, key: str | None, fallback: Any, *, stream: bool = False
    ) -> _Operation:
        """The error policy and event of one operation, for both shells (:class:`_Operation`)."""
        return _Operation(self, self._observer, op, key, fallback, stream)

    def _report(
        self,
        observer: Callable[[OperationEvent], None],
        op: str,
        key: str | None,
        start: float,
        result: Any,
        error: BaseException | None,
    ) -> None:
        hit = None
        if op == "get":
            hit = error is None and result is not MISSING
        elif op == "exists":
            hit = error is None and result is True
        observer(
            OperationEvent(
                cache=self.name,
                provider=type(self).__name__,
                operation=op,
                key=key,
                hit=hit,
                duration=time.perf_counter() - start,
                error=error,
            )
        )

    def _run_strict(self, op: str, key: str | None, fn: Callable[..., T], *args: Any) -> T:
        """:meth:`_run` for an operation that never degrades under ``onError: miss``
        (lock acquisition and inspection: a lock cannot pretend to be held)."""
        return self._run(op, key, _RAISE, fn, *args)

    @staticmethod
    def _span(value: TimeSpan | None, what: str, none: str | None = NEVER_EXPIRES) -> float | None:
        """A validated duration in seconds (None stays None, unless ``none`` is None: see
        :func:`_seconds`); CacheValueError otherwise."""
        return _seconds(value, what, none)

    def _failed(self, op: str, exc: Exception, fallback: Any) -> Any:
        """The error policy, in one place: degrade, re-raise, or translate ``exc``.

        An unreachable backend (:class:`CacheUnavailableError`) returns ``fallback`` when
        ``onError`` is ``miss`` and the operation can degrade (see docs/configuration.md,
        "Error policy"); every other :class:`CacheError` is re-raised as it is; anything
        else escaping a provider becomes a :class:`CacheBackendError`, so no untyped
        exception reaches the caller. An exception a signal handler raised inside the
        call, however a provider translated it, is raised as it is
        (:func:`~cachehub.errors.raised_by_signal_handler`).
        """
        signalled = raised_by_signal_handler(exc)
        if signalled is not None:
            if signalled is exc:
                raise exc
            raise signalled from None
        if isinstance(exc, CacheUnavailableError):
            if self._fail_open and fallback is not _RAISE:
                self.log.warning("cache '%s' unavailable during %s(): %s", self.name, op, exc)
                return fallback
            raise exc
        if isinstance(exc, CacheError):
            raise exc
        raise self._untyped(op, exc) from None

    def _untyped(self, op: str, exc: BaseException) -> CacheBackendError:
        """A typed error for an exception a provider let escape; no secret in its text."""
        # Cut before redacting: the text may be huge (a provider quoting a whole value),
        # and only its start is shown.
        text = str(redact(str(exc)[:1000]))
        for option in (*BASE_OPTIONS, *self.options):
            secret = self.settings.get(option.name) if option.secret else None
            if isinstance(secret, str) and secret:
                text = text.replace(secret, SECRET_MASK)
        if len(text) > 300:
            text = text[:300] + "..."
        return CacheBackendError(
            f"cache '{self.name}': {op}() failed inside {type(self).__name__} with "
            f"{type(exc).__name__}: {text}",
            hint="this is a bug or an unexpected answer of the backend; report it to the "
            "provider's maintainers with this message.",
        )

    def _iterate(self, op: str, filter: str | None, flt: KeyFilter, now: float) -> Iterator[str]:
        """Stream user keys under the error policy; the event spans the whole iteration.

        The event starts at the first ``next()`` and ends at exhaustion, ``close()`` or
        the error. Under ``onError: miss`` an outage ends the iteration early.
        """
        strip = len(self.namespace)
        with self._operation(op, filter, None, stream=True):
            for sk in self._scan(flt, now):
                yield sk[strip:]

    # ------------------------------------------------------------------ public API

    def get(self, key: str, default: Any = None, *, throw_when_not_exist: bool = False) -> Any:
        """The live value for ``key``; ``default`` (or :class:`CacheKeyError`) if absent."""
        # Hot path: a plain ASCII str needs no further checks than these (see _sk).
        if type(key) is str and 0 < len(key) <= MAX_KEY_LENGTH and key.isascii():
            ns = self.namespace
            sk = ns + key if ns else key
        else:
            sk = self._sk(key)
        if self._observer is None:
            try:
                value = self._get(sk, self._clock())
            except UnknownSigningKeyError as exc:
                value = self._signed_miss(exc)
            except Exception as exc:
                value = self._failed("get", exc, MISSING)
        else:
            value = self._run("get", key, MISSING, self._get_checked, sk, self._clock())
        if value is MISSING:
            return self._got_miss(key, default, throw_when_not_exist)
        return value

    def exists(self, key: str) -> bool:
        """Whether a live entry exists for ``key`` (does not count as a hit)."""
        if type(key) is str and 0 < len(key) <= MAX_KEY_LENGTH and key.isascii():
            ns = self.namespace
            sk = ns + key if ns else key
        else:
            sk = self._sk(key)
        if self._observer is None:
            try:
                return self._exists(sk, self._clock())
            except Exception as exc:
                return self._failed("exists", exc, False)  # type: ignore[no-any-return]
        return self._run("exists", key, False, self._exists, sk, self._clock())

    def put(
        self,
        key: str,
        value: Any,
        time_span: TimeSpan | None = None,
        idle_time: TimeSpan | None = None,
        until: datetime | None = None,
    ) -> None:
        """Store ``value`` under ``key``, replacing any entry (Lucee's ``cachePut``)."""
        if self.read_only:
            self._writable("put")
        if type(key) is str and 0 < len(key) <= MAX_KEY_LENGTH and key.isascii():
            ns = self.namespace
            sk = ns + key if ns else key
        else:
            sk = self._sk(key)
        now = self._clock()
        if time_span is None and idle_time is None and until is None:
            expiry = NO_EXPIRY
        else:
            expiry = make_expiry(time_span, idle_time, until, now)
        if self._observer is None:
            try:
                self._set(sk, value, expiry, now)
            except Exception as exc:
                self._failed("put", exc, None)
        else:
            self._run("put", key, None, self._set, sk, value, expiry, now)

    def add(
        self,
        key: str,
        value: Any,
        time_span: TimeSpan | None = None,
        idle_time: TimeSpan | None = None,
        until: datetime | None = None,
    ) -> bool:
        """Store ``value`` only if ``key`` has no live entry; True when stored. Atomic.

        Never degrades under ``onError: miss``: neither True nor False would be true.
        """
        sk, expiry, now = self._write_plan("add", key, time_span, idle_time, until)
        return self._run("add", key, _RAISE, self._add, sk, value, expiry, now)

    def delete(self, key: str) -> bool:
        """Remove ``key``; True when a live entry was removed."""
        self._writable("delete")
        sk = self._sk(key)
        return self._run("delete", key, False, self._delete, sk, self._clock())

    def incr(self, key: str, delta: int = 1) -> int:
        """Atomically add ``delta`` to an integer entry and return the new value.

        A missing key starts at 0 (with no expiry); an existing entry keeps its expiry.
        A non-integer entry raises :class:`CacheValueError`. Never degrades under
        ``onError: miss``: there is no value to return without the backend.
        """
        return self._count_by("incr", key, delta, 1)

    def decr(self, key: str, delta: int = 1) -> int:
        """Atomically subtract ``delta``; see :meth:`incr`."""
        return self._count_by("decr", key, delta, -1)

    def _count_by(self, op: str, key: str, delta: int, sign: int) -> int:
        sk, signed = self._counter_plan(op, key, delta, sign)
        return self._run(op, key, _RAISE, self._incr, sk, signed, self._clock())

    def touch(
        self,
        key: str,
        time_span: TimeSpan | None = None,
        idle_time: TimeSpan | None = None,
        until: datetime | None = None,
    ) -> bool:
        """Give a live entry a new expiry (none = never expires); True if it exists."""
        sk, expiry, now = self._write_plan("touch", key, time_span, idle_time, until)
        return self._run("touch", key, False, self._touch, sk, expiry, now)

    def metadata(self, key: str) -> CacheMetadata:
        """Hit count, remaining TTL and timestamps of a live entry (``cacheGetMetadata``)."""
        sk = self._sk(key)
        now = self._clock()
        entry = self._run("metadata", key, None, self._get_entry, sk, now)
        return self._metadata_of(key, entry, now)

    def _entry_key(self, key: str) -> str:
        """The key as this cache stores it: two keys with the same one are one entry.

        The key itself; a layout that maps keys overrides it (Lucee's upper-cases and
        trims them, so ``user`` and ``USER`` are one entry). ``migrate`` reports source
        keys that would land on one entry of the target instead of copying one over the
        other.
        """
        return key

    def peek(self, key: str) -> Entry | None:
        """The live entry under ``key`` with its value and metadata, or None.

        Read without counting a hit, updating the last access or sliding an idle expiry:
        what ``cachehub migrate`` reads, so the source is left exactly as it was.
        """
        sk = self._sk(key)
        return self._run("peek", key, None, self._get_entry, sk, self._clock())

    def restore(self, key: str, entry: Entry) -> bool:
        """Write ``entry``'s value with its expiry as of its last access; False if dead.

        An idle entry keeps its *remaining* idle time: it dies when the original would
        (``accessed + idle``, or its absolute deadline if earlier) and slides by its full
        idle time when read afterwards. The copy's timestamps are its last access. An
        entry already dead now is not written.
        """
        plan = self._restore_plan(key, entry)
        if plan is None:
            return False
        sk, expiry, stamp = plan
        self._run("restore", key, _RAISE, self._set, sk, entry.value, expiry, stamp)
        return True

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Values of the live entries among ``keys``, fetched in provider batches."""
        batch, users = self._get_many_plan(keys)
        if self._observer is None:
            try:
                found = self._get_verified(batch, self._clock())
            except Exception as exc:
                found = self._failed("get_many", exc, {})
        else:
            found = self._run("get_many", None, {}, self._get_verified, batch, self._clock())
        return self._get_many_finish(found, batch, users)

    def put_many(
        self,
        items: Mapping[str, Any],
        time_span: TimeSpan | None = None,
        idle_time: TimeSpan | None = None,
        until: datetime | None = None,
    ) -> None:
        """Store every ``key: value`` of ``items`` with one expiry, in provider batches."""
        batch, expiry, now = self._put_many_plan(items, time_span, idle_time, until)
        if not batch:
            return
        self._run("put_many", None, None, self._set_many, batch, expiry, now)

    def delete_many(self, keys: Iterable[str]) -> int:
        """Remove ``keys``; returns how many live entries were removed."""
        batch = self._delete_many_plan(keys)
        if not batch:
            return 0
        return self._run("delete_many", None, 0, self._delete_many, batch, self._clock())

    def keys(self, filter: str | None = None) -> Iterator[str]:
        """Stream the keys of live entries matching a Lucee wildcard ``filter``.

        The filter is checked at the call; the backend is read as the iterator is
        consumed, and one ``keys`` event spans the whole iteration.
        """
        flt = compile_filter(filter, self.namespace)
        return self._iterate("keys", filter, flt, self._clock())

    def get_all(self, filter: str | None = None) -> dict[str, Any]:
        """``{key: value}`` of live entries matching ``filter`` (``cacheGetAll``)."""
        flt = compile_filter(filter, self.namespace)
        return self._run("get_all", filter, {}, self._get_all, flt, self._clock())

    def _get_all(self, flt: KeyFilter, now: float) -> dict[str, Any]:
        result: dict[str, Any] = {}
        strip = len(self.namespace)
        keys = self._scan(flt, now)
        while chunk := list(islice(keys, _CHUNK)):
            for sk, value in self._get_verified(chunk, now).items():
                result[sk[strip:]] = value
        return result

    def count(self, filter: str | None = None) -> int:
        """Number of live entries matching ``filter`` (``cacheCount``)."""
        flt = compile_filter(filter, self.namespace)
        return self._run("count", filter, 0, self._count, flt, self._clock())

    def clear(self, filter: str | None = None, *, include_internal: bool = False) -> int:
        """Remove live entries matching ``filter`` (all of this namespace when None).

        Never touches keys outside the cache's namespace, nor the namespace's locks
        (they are not entries). ``include_internal=True`` (with no filter) also removes
        every lock of the namespace, held or not: their holders then lose them
        (:class:`~cachehub.errors.LockLostError`). Returns the number of entries removed.
        """
        flt = self._clear_plan(filter, include_internal)
        removed = self._run("clear", filter, 0, self._clear, flt, self._clock())
        if include_internal:
            self._run("clear_internal", None, None, self._clear_internal, self._clock())
        return removed

    def get_or_set(
        self,
        key: str,
        creator: Callable[[], T],
        time_span: TimeSpan | None = None,
        idle_time: TimeSpan | None = None,
        until: datetime | None = None,
        *,
        lock_timeout: float = 30.0,
    ) -> T:
        """Return the cached value, or compute it with ``creator()`` exactly once and store it.

        Concurrent callers for one key wait for the first instead of all computing it
        (single flight per process; across processes too on distributed providers, through
        a lock in the internal space that no user key can block). The lock lives
        ``lock_timeout`` seconds and is extended while ``creator`` runs (:meth:`Lock.
        keep_alive`), so a slow creator runs once; only a holder that stalls for longer
        than ``lock_timeout`` (or dies) lets a second process compute the value too.
        With ``onError: miss`` and the backend down, the value is computed (once per
        process at a time) and returned without being stored.
        """
        # Checked here, not only where a fill lock is made: a provider without one (memory)
        # must refuse what a distributed one refuses, or a config change breaks the call.
        _seconds(lock_timeout, "lock_timeout", None)
        value = self.get(key, MISSING)
        if value is not MISSING:
            return value  # type: ignore[no-any-return]
        owner = threading.get_ident()
        led: Flight | None = None
        started: list[Flight] = []  # the flight this call leads, from before it is registered
        try:
            while True:
                led, awaited = self._flights.start(key, owner, into=started)
                if awaited is None:
                    break
                try:
                    # In slices: a leader task whose loop was closed by hand never ends its
                    # flight; the first waiter to see it ends it, and they all try again.
                    while not awaited.done.wait(WAIT_SLICE):
                        if self._flights.abandoned(key, awaited):
                            break
                finally:
                    self._flights.stop_waiting(owner)
                value = self.get(key, MISSING)
                if value is not MISSING:
                    return value  # type: ignore[no-any-return]
            if led is None:
                # This thread already computes `key` (a function needing its own result), or
                # waiting would close a cycle: compute, as without a cache, and store.
                created = _created(creator)
                if not self.read_only:
                    self.put(key, created, time_span, idle_time, until)
                return created
            try:
                value = self.get(key, MISSING)
                if value is not MISSING:
                    return value  # type: ignore[no-any-return]
                if self._fills_across_processes():
                    from .lock import Lock

                    fill = Lock(self, key, ttl=lock_timeout, timeout=lock_timeout, kind="fill")
                    try:
                        acquired = fill.acquire()
                    except CacheUnavailableError as exc:
                        # Under onError: miss the outage degrades to the in-process flight.
                        self._failed("get_or_set", exc, None)
                    else:
                        if not acquired:
                            raise self._fill_timeout(key, lock_timeout)
                        try:
                            value = self.get(key, MISSING)
                            if value is not MISSING:
                                return value  # type: ignore[no-any-return]
                            with fill.keep_alive():
                                created = _created(creator)
                            self.put(key, created, time_span, idle_time, until)
                            return created
                        finally:
                            # A lost fill lock is only logged: the value is stored anyway.
                            fill.release_quietly()
                created = _created(creator)
                if not self.read_only:
                    self.put(key, created, time_span, idle_time, until)
                return created
            finally:
                self._flights.finish(key, led)
        finally:
            # Also when a signal handler's exception lands between registering the flight
            # and the inner try, even as start() returns, before `led` is stored: the
            # flight stayed registered and other threads waited for ever.
            for flight in started:
                self._flights.finish(key, flight)

    def lock(
        self,
        name: str,
        ttl: TimeSpan = 30.0,
        *,
        timeout: float | None = None,
        poll: float = 0.05,
    ) -> Lock:
        """A mutually exclusive lock stored in this cache; see :class:`cachehub.lock.Lock`."""
        from .lock import Lock

        return Lock(self, name, ttl=ttl, timeout=timeout, poll=poll)

    def stats(self) -> Mapping[str, Any]:
        """Calls, hits, misses, errors and latency of this cache (see :mod:`cachehub.stats`).

        Collection starts with the first call (or when the process-wide collector of
        :func:`cachehub.stats.default_collector` is created): unobserved caches pay nothing.
        """
        from .stats import cache_stats, default_collector

        collector = default_collector()
        if self._observer is None:
            self._observer = collector.observe
        return cache_stats(self, collector)

    def info(self) -> dict[str, Any]:
        """Cache-level properties (Lucee's ``cacheGetProperties``), through the error policy.

        Every cache reports ``name``, ``provider``, ``namespace``, ``readOnly``,
        ``storage``, ``distributed``, ``codec`` and ``onError``; the provider adds its
        backend's facts (:meth:`_info`): DynamoDB the table's status, key schema, billing
        mode, TTL and indexes; Redis the server version, mode, memory and the keys in the
        namespace; memory its size, maxsize, policy and bytes. Never degrades under
        ``onError: miss``: a backend that cannot be asked raises. Secrets never appear.
        """
        facts = self._info_facts()
        facts.update(self._run("info", None, _RAISE, self._info, self._clock()))
        return facts

    def _info(self, now: float) -> dict[str, Any]:
        """The backend's facts for :meth:`info`; the default counts the live entries.

        Providers override it with what their backend tells cheaply (one or two requests);
        values must be plain JSON types, and never hold a secret.
        """
        return {"count": self._count(compile_filter(None, self.namespace), now)}

    def close(self) -> None:
        """Close connections. The cache reconnects lazily if used again.

        Calls in flight in other threads are not cut: they end on the connections they
        hold, which are released when the last of them ends.
        """
        self._close()

    def aio(self) -> AsyncCache:
        """This cache's async shell: the same operations as coroutines (see docs/async.md).

        One per cache, sharing its settings, codec, namespace, observer, statistics and
        error policy; ``await cache.aio().get(key)``. Natively async providers reach their
        backend without threads; others run their primitives in worker threads.
        """
        shell = self._aio
        if shell is None:
            with _TABLES_LOCK:
                shell = self._aio
                if shell is None:
                    shell = self._aio = _ASYNC_SHELL[0](self)
        return shell

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        shown = redact(self.settings, (*BASE_OPTIONS, *self.options))
        return f"<{type(self).__name__} {self.name!r} {shown}>"
