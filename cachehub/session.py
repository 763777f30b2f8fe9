"""Session and scope storage on any cache built with ``storage: true``.

:class:`SessionStore` is framework-neutral: the Flask, WSGI, ASGI and Django adapters in
:mod:`cachehub.contrib` all sit on it. Each session is one cache entry, a *record*
holding the data (a ``dict``, through the cache's own codec: never pickle unless the
cache is configured for it), a version number and two timestamps. See docs/sessions.md.

Design (why it looks like this):

* **Keys never carry the id.** A session is stored under ``<prefix><sha256(id)>``, so
  no error message, log record or traceback that names a cache key can leak a usable
  session id (the same idea as Rack's private session ids). :func:`session_ref` gives
  the short hash used for correlation in cachehub's own messages.
* **Versioned writes, no resurrection.** Every write of version ``n + 1`` first claims
  the marker key ``<key>#<n + 1>`` with the cache's atomic ``add`` (a conditional write
  on every provider, so it is strongly consistent even when reads are not). Only one
  writer can claim a version, so a writer that read a stale or superseded record loses
  the claim and re-reads instead of overwriting newer data. Deleting or rotating a
  session claims the next version with a long-lived ``gone`` marker, and a save whose
  record is missing is refused, never treated as empty: a late request cannot bring a
  deleted, expired or rotated session back.
* **Bounded waits.** A claim lives ``lock_ttl`` seconds; a crashed writer therefore
  blocks its session for at most that long, and a save waits at most ``lock_timeout``
  before raising :class:`SessionBusyError`. The waits are expressed as a generator of
  sleeps, so :meth:`SessionStore.commit_async` waits with ``asyncio.sleep`` and never
  parks an executor thread.
* **Read-only requests do not write.** Expiry is an absolute deadline on the entry
  (``idle_time`` ahead of the last refresh, never past the absolute lifetime); reading
  a session is a plain read, and a request that changed nothing rewrites the record only
  when its deadline is more than ``refresh`` old.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import re
import secrets
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from http.cookies import Morsel
from typing import Any, Final, SupportsIndex, TypeAlias, TypeVar, overload

from .api import MAX_TIME_SPAN, MISSING, BaseCache, TimeSpan
from .errors import (
    CacheError,
    CacheValueError,
    CorruptEntryError,
    InvalidKeyError,
    LockTimeoutError,
    StorageNotEnabledError,
)

__all__ = [
    "SessionStore",
    "TrackedSession",
    "SessionCookie",
    "SessionBusyError",
    "require_storage",
    "session_ref",
    "SESSION_ID_PATTERN",
]

SESSION_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{22,128}")
"""What a session id must look like; anything else from a cookie is ignored."""

_CREATE_ATTEMPTS: Final = 8
S = TypeVar("S", bound="TrackedSession")
T = TypeVar("T")
_COOKIE_NAME: Final = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")
_COOKIE_PATH: Final = re.compile(r"/[\x21-\x3a\x3c-\x7e]*")
"""A cookie ``Path``: absolute, printable ASCII without ``;`` (RFC 6265 path-value)."""
_COOKIE_DOMAIN: Final = re.compile(r"\.?[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
"""A cookie ``Domain``: an ASCII host name (IDNA-encode others), optionally dot-led."""

_WRITE: Final = "write"
"""Marker value: this version is being (or was) written by the claim's owner."""
_GONE: Final = "gone"
"""Marker value: the session ended at this version (deleted or rotated to a new id)."""
_MAX_VERSION: Final = 2**53
"""Versions beyond this come from another writer, not from us: the record is refused."""
_POLL: Final = 0.05
"""Longest pause between two attempts of a contended save, in seconds."""


def session_ref(sid: str) -> str:
    """A short, irreversible reference to a session id for logs and error messages.

    The first 12 hex digits of its SHA-256: enough to correlate log lines with a
    session (and with its storage key, which starts with the same digits), useless as
    a cookie.
    """
    return hashlib.sha256(sid.encode("utf-8", "surrogatepass")).hexdigest()[:12]


class SessionBusyError(LockTimeoutError):
    """A save could not get its turn within ``lock_timeout`` (the session kept changing).

    A crashed writer blocks a session for at most ``lock_ttl`` (shorter than the default
    ``lock_timeout``), so this means sustained contention on one session, or a cache
    whose writes keep failing. Nothing was written; the request may be retried.
    """


def require_storage(cache: BaseCache) -> None:
    """Raise :class:`StorageNotEnabledError` unless ``cache`` was built with ``storage=True``."""
    if not isinstance(cache, BaseCache):
        raise CacheValueError(
            f"session storage needs a cachehub cache, got {type(cache).__name__}.",
            hint="pass a cache from cachehub's registry or a provider instance.",
        )
    if not cache.storage:
        raise StorageNotEnabledError(
            f"cache '{cache.name}' is not enabled for session storage.",
            hint=f"set `storage: true` on the '{cache.name}' cache entry "
            "(or pass storage=True when constructing the cache).",
        )


class TrackedSession(dict[str, Any]):
    """A session ``dict`` that records which keys a request set or removed.

    :meth:`SessionStore.commit` replays exactly these changes onto the stored session,
    so two requests changing different keys both keep their writes. Mutating a nested
    value in place (``session["cart"].append(x)``) is invisible to the tracking: assign
    the key again, or set ``session.modified = True`` to write every key.
    """

    def __init__(self, data: Mapping[str, Any] | None = None, *, sid: str | None = None) -> None:
        super().__init__(data or {})
        self.sid = sid
        """The stored session's id, or None for a session not saved yet."""
        self.presented: str | None = sid
        """The id the client sent (its cookie), even if that session had expired."""
        self.new = sid is None
        """True when the session did not exist before this request."""
        self.changed: set[str] = set()
        self.removed: set[str] = set()
        self.cleared = False
        """True after ``clear()``: the commit replaces the stored data instead of merging."""
        self.regenerate_requested = False
        self._force = False
        self.gone = False
        """True when the commit found the session already ended by another request
        (logout, expiry, rotation): this request's changes were dropped."""
        self.extended = False
        """True when the commit moved the session's expiry (the cookie is re-sent)."""
        self.refreshed = 0.0
        """Epoch second the stored session's idle deadline was last pushed back."""
        self.expires_in = 0.0
        """Seconds the session lives after the last commit that wrote it."""

    @property
    def modified(self) -> bool:
        """Whether this request changed anything that must be written back."""
        return bool(self.changed or self.removed or self.cleared or self._force)

    @modified.setter
    def modified(self, value: bool) -> None:
        # Marking the session modified writes every key: covers in-place nested mutation.
        self._force = value

    def regenerate(self) -> None:
        """Ask for a new session id when this request's session is committed.

        Call it on every privilege change (login, logout, sudo) to defeat session fixation.
        """
        self.regenerate_requested = True

    # ---------------------------------------------------------------- tracked mutators

    def _set(self, key: str) -> None:
        self.changed.add(key)
        self.removed.discard(key)

    def _drop(self, key: str) -> None:
        self.changed.discard(key)
        self.removed.add(key)

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self._set(key)

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self._drop(key)

    def pop(self, key: str, *default: Any) -> Any:
        """Remove ``key`` and return its value (``default`` if given and absent)."""
        present = key in self
        value = super().pop(key, *default)
        if present:
            self._drop(key)
        return value

    def popitem(self) -> tuple[str, Any]:
        """Remove and return the last inserted item."""
        key, value = super().popitem()
        self._drop(key)
        return key, value

    def setdefault(self, key: str, default: Any = None) -> Any:
        """``dict.setdefault``; a newly inserted key counts as a change."""
        if key not in self:
            self[key] = default
        return self[key]

    def update(self, *args: Any, **kwargs: Any) -> None:
        """``dict.update``; every given key counts as a change."""
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def clear(self) -> None:
        """Remove everything; the commit replaces the stored data (no merge)."""
        super().clear()
        self.changed.clear()
        self.removed.clear()
        self.cleared = True

    def __ior__(self, other: Any) -> TrackedSession:  # type: ignore[override,misc]
        self.update(other)
        return self

    def __reduce_ex__(self, protocol: SupportsIndex) -> Any:
        # Copies/pickles of a session are plain dicts: the tracking is per request.
        return (dict, (dict(self),))

    def apply_to(self, stored: dict[str, Any]) -> dict[str, Any]:
        """Replay this request's changes onto ``stored`` (the current stored data)."""
        if self._force or self.cleared:
            stored.clear()
            stored.update(self)
            return stored
        for key in self.removed:
            stored.pop(key, None)
        for key in self.changed:
            if key in self:
                stored[key] = dict.__getitem__(self, key)
        return stored


@dataclass(frozen=True, slots=True)
class _Record:
    """One stored session: its data plus what the store needs to version and expire it."""

    version: int
    data: dict[str, Any]
    created: float
    refreshed: float

    def dump(self) -> dict[str, Any]:
        return {"v": self.version, "d": self.data, "c": self.created, "r": self.refreshed}

    @classmethod
    def parse(cls, raw: Any) -> _Record | None:
        """The record in ``raw``, or None for anything this store did not write."""
        if not isinstance(raw, dict) or raw.keys() != {"v", "d", "c", "r"}:
            return None
        version, data, created, refreshed = raw["v"], raw["d"], raw["c"], raw["r"]
        if type(version) is not int or not 0 < version < _MAX_VERSION:
            return None
        if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
            return None
        stamps: list[float] = []
        for stamp in (created, refreshed):
            if isinstance(stamp, bool) or not isinstance(stamp, (int, float)):
                return None
            try:  # an int beyond a float's range (10**400) raised OverflowError here
                stamps.append(float(stamp))
            except OverflowError:
                return None
            if not math.isfinite(stamps[-1]):
                return None
        return cls(version, data, stamps[0], stamps[1])


@dataclass(frozen=True, slots=True)
class _Saved:
    """What a versioned write left behind: the id now holding the data (None: ended)."""

    sid: str | None
    record: _Record | None


_ENDED: Final = _Saved(None, None)


@dataclass(frozen=True, slots=True)
class _Op:
    """One cache call of a session step: ``get``/``add``/``put``/``delete`` (a ttl in seconds
    is the third argument of ``add``/``put``)."""

    name: str
    key: str
    value: Any = None
    seconds: float | None = None

    def call(self, cache: Any) -> Any:
        """Call it on ``cache`` (a BaseCache, or its AsyncCache: then it is awaitable)."""
        if self.name == "get":
            return cache.get(self.key, self.value)
        if self.name == "delete":
            return cache.delete(self.key)
        method = cache.add if self.name == "add" else cache.put
        return method(self.key, self.value, time_span=self.seconds)


Steps: TypeAlias = Generator["float | _Op", Any, T]
"""The store's logic, once for both shells: a generator yielding the cache calls to make
(:class:`_Op`, the reply sent back, an error thrown in) and the pauses to take (seconds)
between attempts on a busy session; :meth:`SessionStore._run` drives it with the sync
cache, :meth:`SessionStore._run_async` with its async shell."""


class SessionStore:
    """Server-side sessions, one versioned cache entry per session, with sliding expiry.

    ``cache`` must have been built with ``storage=True`` (``storage: true`` in its config
    entry). Settings:

    * ``idle_time``: how long a session lives without being used (default 30 minutes).
    * ``absolute_time``: the longest a session may live at all, counted from its
      creation whatever the activity (default None: no limit). ``regenerate`` keeps the
      creation time, so rotating ids does not extend it.
    * ``refresh``: how stale the idle deadline may get before a request that changed
      nothing rewrites the record to push it back (default ``idle_time / 10``). This is
      the cost of sliding expiry: at most one write per session per ``refresh``; the
      price is that a session may end up to ``refresh`` earlier than ``idle_time`` after
      its last request.
    * ``lock_ttl``: how long one save may hold its claim on the next version (default
      2 s). A writer that crashed mid-save blocks its session for at most this long.
    * ``lock_timeout``: how long a save waits for its turn before raising
      :class:`SessionBusyError` (default 3 s, longer than ``lock_ttl`` so a crashed
      writer only delays others).
    """

    def __init__(
        self,
        cache: BaseCache,
        *,
        idle_time: TimeSpan = timedelta(minutes=30),
        absolute_time: TimeSpan | None = None,
        refresh: TimeSpan | None = None,
        prefix: str = "session:",
        lock_ttl: float = 2.0,
        lock_timeout: float = 3.0,
    ) -> None:
        require_storage(cache)
        if not isinstance(prefix, str):
            raise CacheValueError(
                f"session prefix must be a str, got {type(prefix).__name__}.",
                hint='pass e.g. prefix="session:".',
            )
        self.cache = cache
        self.idle_time = timedelta(seconds=_positive(idle_time, "idle_time", "minutes=30"))
        self.absolute_time = (
            None
            if absolute_time is None
            else timedelta(seconds=_positive(absolute_time, "absolute_time", "hours=12"))
        )
        idle = self.idle_time.total_seconds()
        self.refresh = timedelta(
            seconds=idle / 10 if refresh is None else _positive(refresh, "refresh", "minutes=3")
        )
        if self.refresh.total_seconds() >= idle:
            raise CacheValueError(
                f"session refresh ({self.refresh}) must be shorter than idle_time "
                f"({self.idle_time}).",
                hint="leave refresh unset (idle_time / 10) or pass a fraction of idle_time.",
            )
        self.prefix = prefix
        self.lock_ttl = _positive(lock_ttl, "lock_ttl", "2")
        self.lock_timeout = _positive(lock_timeout, "lock_timeout", "3")

    # ---------------------------------------------------------------- helpers

    @staticmethod
    def valid_id(sid: object) -> bool:
        """Whether ``sid`` looks like an id this store issues (cheap pre-check for cookies)."""
        return isinstance(sid, str) and SESSION_ID_PATTERN.fullmatch(sid) is not None

    def storage_key(self, sid: str) -> str:
        """The cache key of session ``sid``: the prefix and the id's SHA-256, never the id."""
        if not self.valid_id(sid):
            raise InvalidKeyError(
                "that is not a valid session id "
                f"({type(sid).__name__}, {len(sid) if isinstance(sid, str) else '?'} chars).",
                hint="use an id returned by SessionStore.create() or regenerate().",
            )
        return self.prefix + hashlib.sha256(sid.encode("ascii")).hexdigest()

    @staticmethod
    def _claim_key(key: str, version: int) -> str:
        return f"{key}#{version}"

    @staticmethod
    def _check_data(data: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(data, Mapping):
            raise CacheValueError(
                f"session data must be a mapping, got {type(data).__name__}.",
                hint="store a dict such as {'user_id': 42}.",
            )
        bad = next((k for k in data if not isinstance(k, str)), MISSING)
        if bad is not MISSING:
            raise CacheValueError(
                f"session keys must be str, got {type(bad).__name__} {bad!r:.60}.",
                hint="use string keys in the session (they must survive JSON-like codecs).",
            )
        return dict(data)

    def _now(self) -> float:
        return self.cache._clock()

    def _lifetime(self, created: float, now: float) -> float:
        """Seconds a record written at ``now`` may live: idle window, capped by the absolute one."""
        idle = self.idle_time.total_seconds()
        if self.absolute_time is None:
            return idle
        return min(idle, created + self.absolute_time.total_seconds() - now)

    def _read(self, key: str) -> Steps[_Record | None]:
        """The live record under ``key`` (a plain read: it never writes)."""
        try:
            stored = yield _Op("get", key, MISSING)
        except CorruptEntryError:
            # An entry the codec cannot read (a sound header over a junk body, written by
            # anything else) is "no session", as other junk is: else every request with
            # that cookie failed until the entry expired.
            return None
        record = _Record.parse(stored)
        if record is None:
            return None
        if self._lifetime(record.created, self._now()) <= 0:
            return None  # past its absolute lifetime (the entry's own expiry agrees)
        return record

    def _put(self, key: str, record: _Record, *, new: bool = False) -> Steps[bool]:
        """Write ``record`` with its expiry; with ``new``, only if the key is free."""
        seconds = self._lifetime(record.created, record.refreshed)
        if new:
            added: bool = yield _Op("add", key, record.dump(), seconds)
            return added
        yield _Op("put", key, record.dump(), seconds)
        return True

    def _insert(
        self, data: dict[str, Any], created: float, now: float
    ) -> Steps[tuple[str, _Record]]:
        """Store ``data`` under a fresh id and return it with its record."""
        record = _Record(1, data, created, now)
        for _ in range(_CREATE_ATTEMPTS):
            sid = secrets.token_urlsafe(32)
            # add() is atomic, so an (astronomically unlikely) id collision never merges.
            if (yield from self._put(self.storage_key(sid), record, new=True)):
                return sid, record
        raise CacheValueError(
            f"could not create a unique session id in {_CREATE_ATTEMPTS} attempts.",
            hint=f"check that cache '{self.cache.name}' accepts writes under '{self.prefix}'.",
        )

    # ---------------------------------------------------------------- the versioned write

    def _write(
        self,
        sid: str,
        change: Callable[[dict[str, Any]], object] | None,
        *,
        move: bool = False,
        refresh_only: bool = False,
    ) -> Steps[_Saved | None]:
        """Read-modify-write session ``sid`` as version n + 1 (its steps: see ``Steps``).

        ``change`` edits the current data in place (None: keep it). Data that ends up
        empty deletes the session; ``move`` re-stores it under a fresh id first. Returns
        None when the session is gone (missing, expired, deleted, rotated or not ours):
        nothing is written then. Raises :class:`SessionBusyError` after ``lock_timeout``.
        """
        key = self.storage_key(sid)
        started = time.monotonic()
        pause = 0.002
        stale = False
        while True:
            # The claim below only guards what was read while claims on the next version
            # are still alive: a read older than half of lock_ttl may be of a version
            # whose claims have expired (a logout's successor written meanwhile, its
            # write claim lapsed), so it is read again, never written from. Its age counts
            # from before the request: a stall on the way back is part of it.
            read_at = time.monotonic()
            record = yield from self._read(key)
            if record is None:
                return None
            now = self._now()
            if self._lifetime(record.created, now) <= 0:
                # Its absolute lifetime ended since the read (or the clock stepped
                # forward): gone, as the next read would say. Writing it would ask the
                # cache for a TTL <= 0, which it refuses with an error.
                return None
            if refresh_only and now - record.refreshed < self.refresh.total_seconds():
                return _Saved(sid, record)  # someone refreshed it meanwhile
            data = dict(record.data)
            if change is not None:
                change(data)
                data = self._check_data(data)
            target = record.version + 1
            # Emptied by this change (or moved): the session ends. A touch or refresh of a
            # session created empty (create()'s default) keeps it.
            ending = move or (change is not None and not data)
            moved: tuple[str, _Record] | None = None
            if data and move:  # the new session exists before the old one is removed
                moved = yield from self._insert(data, record.created, now)
            if time.monotonic() - read_at >= self.lock_ttl / 2:  # stale: read again
                if moved is not None:
                    yield from self._discard(moved[0])
                if stale:  # a stall is read again at once; a change that is always this
                    self._check_waited(sid, started)  # slow ends as a busy session
                stale = True
                continue
            marker = _GONE if ending else _WRITE
            # A gone marker outlives every late writer; a write claim only the write itself.
            ttl = self._lifetime(record.created, now) if ending else self.lock_ttl
            try:
                won = yield _Op(
                    "add", self._claim_key(key, target), marker, max(ttl, self.lock_ttl)
                )
            except BaseException:
                if moved is not None:  # the user keeps the old id: leave no orphaned copy
                    yield from self._discard(moved[0])
                raise
            if won:
                if ending:
                    yield from self._remove_ended(key, sid, moved=moved is not None)
                    return _ENDED if moved is None else _Saved(*moved)
                if time.monotonic() - read_at < self.lock_ttl / 2:
                    saved = _Record(target, data, record.created, now)
                    try:
                        yield from self._put(key, saved)
                    except Exception:
                        # Refused (a value the codec cannot store, too large) or failed:
                        # the claim is given back, or every save of this session waited
                        # out lock_ttl behind a write that never comes.
                        with contextlib.suppress(CacheError):
                            yield _Op("delete", self._claim_key(key, target))
                        raise
                    return _Saved(sid, saved)
                # The read (or the claim) took so long the claim may expire mid-write, and
                # the read may be older than a lapsed claim: let it lapse and read again.
            elif moved is not None:
                yield from self._discard(moved[0])  # lost the race: undo the copy
            if (yield _Op("get", self._claim_key(key, target), MISSING)) == _GONE:
                # Ended at that version; a record still there is one whose removal
                # failed: finish it (nobody can write it again, so this is safe).
                with contextlib.suppress(CacheError):
                    yield _Op("delete", key)
                return None
            self._check_waited(sid, started)
            yield pause
            pause = min(pause * 2, _POLL)

    def _check_waited(self, sid: str, started: float) -> None:
        """Raise :class:`SessionBusyError` once a save has tried for ``lock_timeout``."""
        if time.monotonic() - started >= self.lock_timeout:
            raise SessionBusyError(
                f"session {session_ref(sid)} is being saved by another request and "
                f"did not become free within {self.lock_timeout}s; nothing was saved.",
                hint="retry the request; if it persists, look for requests that write "
                "the same session continuously, a change that takes longer than half of "
                "lock_ttl, or a cache whose writes fail.",
            )

    def _remove_ended(self, key: str, sid: str, *, moved: bool) -> Steps[None]:
        """Remove the record of a session whose end is claimed (its gone marker is set).

        If that fails the session is still ended for writers (the marker refuses them,
        and the next one removes the record). A logout reports the failure; a rotation
        already stored the session under its new id, so it only logs it and goes on.
        """
        try:
            yield _Op("delete", key)
        except CacheError as exc:
            if not moved:
                raise
            self.cache.log.warning(
                "session %s moved to a new id, but its old record could not be removed "
                "(%s); no save can revive it and it expires on its own.",
                session_ref(sid),
                exc,
            )

    def _discard(self, sid: str) -> Steps[None]:
        """Best-effort removal of a copy made for a rotation that did not happen."""
        try:
            yield _Op("delete", self.storage_key(sid))
        except CacheError as exc:  # already failing: report the first error, not this one
            self.cache.log.warning(
                "could not remove the unused copy of session %s: %s", session_ref(sid), exc
            )

    def _run(self, steps: Steps[T]) -> T:
        """Drive ``steps`` in this thread: the cache's sync calls, ``time.sleep`` pauses."""
        reply: Any = None
        error: BaseException | None = None
        while True:
            try:
                step = steps.send(reply) if error is None else steps.throw(error)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            reply = error = None
            if isinstance(step, float):
                time.sleep(step)
                continue
            try:
                reply = step.call(self.cache)
            except BaseException as exc:  # handed to the steps, which re-raise or recover
                error = exc

    async def _run_async(self, steps: Steps[T]) -> T:
        """Drive ``steps`` from asyncio: the cache's async shell (``cache.aio()``), and
        ``asyncio.sleep`` between attempts (no thread is parked while a session is busy)."""
        shell = self.cache.aio()
        reply: Any = None
        error: BaseException | None = None
        while True:
            try:
                step = steps.send(reply) if error is None else steps.throw(error)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            reply = error = None
            if isinstance(step, float):
                await asyncio.sleep(step)
                continue
            try:
                reply = await step.call(shell)
            except BaseException as exc:
                error = exc

    # ---------------------------------------------------------------- API

    def create(self, data: Mapping[str, Any] | None = None) -> str:
        """Store a new session holding ``data`` (default empty) and return its id."""
        now = self._now()
        return self._run(self._insert(self._check_data(data or {}), now, now))[0]

    def load(self, sid: str | None) -> dict[str, Any] | None:
        """The session's data, or None when it is unknown, expired or ``sid`` is malformed.

        A plain read: it does not slide the expiry (a commit or :meth:`touch` does).
        """
        if sid is None or not self.valid_id(sid):
            return None
        record = self._run(self._read(self.storage_key(sid)))
        return None if record is None else record.data

    def exists(self, sid: str) -> bool:
        """Whether the session is live (does not slide its expiry)."""
        return self.valid_id(sid) and self._run(self._read(self.storage_key(sid))) is not None

    def save(self, sid: str, data: Mapping[str, Any]) -> bool:
        """Replace the data of a live session (last writer wins) and restart its idle expiry.

        Returns False, writing nothing, when the session does not exist (any more): a
        save never creates or revives a session. Empty ``data`` deletes it.
        """
        payload = self._check_data(data)

        def replace(current: dict[str, Any]) -> None:
            current.clear()
            current.update(payload)

        return self._run(self._write(sid, replace)) is not None

    def delete(self, sid: str) -> bool:
        """End the session; True when it existed. Malformed ids are simply absent.

        Later saves of it, even by requests that started before, are refused.
        """
        if not self.valid_id(sid):
            return False
        return self._run(self._write(sid, dict.clear)) is not None

    def touch(self, sid: str) -> bool:
        """Restart the idle expiry now (one versioned write); True when the session exists."""
        if not self.valid_id(sid):
            return False
        return self._run(self._write(sid, None)) is not None

    def regenerate(self, sid: str | None) -> str:
        """Move the session's data to a fresh id, end the old one and return the new id.

        The new session is stored before the old one is removed, so a failure on the way
        leaves the old session intact. An unknown or expired ``sid`` yields a new empty
        session (nothing of an ended session is carried over).
        """
        if sid is None or not self.valid_id(sid):
            return self.create()
        saved = self._run(self._write(sid, None, move=True))
        if saved is None or saved.sid is None:  # gone, or nothing to carry over
            return self.create()
        return saved.sid

    def update(
        self, sid: str, mutator: Callable[[dict[str, Any]], object]
    ) -> dict[str, Any] | None:
        """Read-modify-write the session as one versioned write; returns the saved data.

        ``mutator`` receives the current data and changes it in place. Concurrent
        updates of one session are serialised, so none is lost. Returns None, writing
        nothing, when the session does not exist (any more): a missing session is never
        treated as empty. Data left empty deletes the session (and returns ``{}``).
        """
        saved = self._run(self._write(sid, mutator))
        if saved is None:
            return None
        return {} if saved.record is None else saved.record.data

    @overload
    def open(self, sid: str | None) -> TrackedSession: ...

    @overload
    def open(self, sid: str | None, session_class: type[S]) -> S: ...

    def open(
        self, sid: str | None, session_class: type[TrackedSession] = TrackedSession
    ) -> TrackedSession:
        """The session for a request: its stored data, or a new empty session.

        ``session_class`` lets an adapter use a subclass (Flask adds ``SessionMixin``).
        One read, no write.
        """
        return self._run(self._open(sid, session_class))

    async def open_async(
        self, sid: str | None, session_class: type[TrackedSession] = TrackedSession
    ) -> TrackedSession:
        """:meth:`open` for asyncio, through the cache's async shell."""
        return await self._run_async(self._open(sid, session_class))

    def _open(self, sid: str | None, session_class: type[TrackedSession]) -> Steps[TrackedSession]:
        record = None
        if sid is not None and self.valid_id(sid):
            record = yield from self._read(self.storage_key(sid))
        if record is None:
            session = session_class()
        else:
            session = session_class(record.data, sid=sid)
            session.refreshed = record.refreshed
        session.presented = sid if self.valid_id(sid) else None
        return session

    def commit(self, session: TrackedSession) -> str | None:
        """Write a request's changes back and return the id the client must now hold.

        Returns None when there is no session any more: either it ended (emptied,
        deleted: the adapter clears the cookie) or it was already gone when this
        request saved (``session.gone``: its changes are dropped and the adapter leaves
        the cookie alone, as another request already changed it). New sessions get an
        id here, only once they hold data, so anonymous requests create nothing. A
        request that changed nothing writes only when the idle deadline is due for a
        refresh; ``session.extended`` tells whether the deadline moved.
        """
        return self._run(self._commit(session))

    async def commit_async(self, session: TrackedSession) -> str | None:
        """:meth:`commit` for asyncio: the cache's async shell, and ``asyncio.sleep``
        while waiting for a contended session."""
        return await self._run_async(self._commit(session))

    def _commit(self, session: TrackedSession) -> Steps[str | None]:
        sid = session.sid
        session.extended = False
        regenerate = session.regenerate_requested  # cleared once the commit succeeded
        if sid is None:
            session.regenerate_requested = False  # a new session gets a fresh id anyway
            if not session:
                return None
            now = self._now()
            session.sid, record = yield from self._insert(self._check_data(session), now, now)
            self._done(session, record)
            return session.sid
        if session.modified or regenerate:
            saved = yield from self._write(sid, session.apply_to, move=regenerate)
        elif self._now() - session.refreshed >= self.refresh.total_seconds():
            saved = yield from self._write(sid, None, refresh_only=True)
        else:
            return sid  # read-only and recently refreshed: no write at all
        session.regenerate_requested = False
        if saved is None:
            session.gone = True  # ended by another request: this request's changes are dropped
            session.sid = None
            return None
        self._done(session, saved.record)
        session.sid = saved.sid
        return saved.sid

    def _done(self, session: TrackedSession, record: _Record | None) -> None:
        session.changed.clear()
        session.removed.clear()
        session.cleared = False
        session.modified = False
        if record is not None:
            session.extended = record.refreshed > session.refreshed
            session.refreshed = record.refreshed
            session.expires_in = self._lifetime(record.created, record.refreshed)


def _positive(value: object, what: str, example: str) -> float:
    """``value`` (a timedelta or seconds) as a positive, finite number of seconds."""
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, int) and not isinstance(seconds, bool):
        try:
            seconds = float(seconds)
        except OverflowError:  # 10**400: math.isfinite raised it raw; refused below
            seconds = math.inf
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, (int, float))
        or not math.isfinite(seconds)
        or seconds <= 0
    ):
        raise CacheValueError(
            f"session {what} must be a positive duration, got {value!r:.60}.",
            hint=f"pass e.g. {what}=timedelta({example}) or a number of seconds."
            if "=" in example
            else f"pass e.g. {what}={example} (seconds).",
        )
    if seconds > MAX_TIME_SPAN.total_seconds():  # timedelta(seconds=1e300) raised raw
        raise CacheValueError(
            f"session {what} of {value!r:.60} is longer than the 1,000 years a cache "
            "entry may live.",
            hint=f"pass at most {what}=timedelta(days={MAX_TIME_SPAN.days}).",
        )
    return float(seconds)


@dataclass(frozen=True)
class SessionCookie:
    """How the session id travels: the cookie's name and security attributes.

    Defaults are the safe ones: ``Secure`` (HTTPS only), ``HttpOnly`` (no JavaScript
    access) and ``SameSite=Lax``. Expiry slides with the session: with ``persistent``
    (the default) the cookie's ``Max-Age`` is the session's remaining server-side
    lifetime, re-sent whenever a commit pushes that deadline back (at most once per
    ``refresh`` of the store, plus on every change), so an active user's cookie lives
    as long as their session. ``max_age`` fixes the value instead; ``persistent=False``
    with no ``max_age`` makes a browser-session cookie.
    """

    name: str = "session"
    path: str = "/"
    domain: str | None = None
    secure: bool = True
    httponly: bool = True
    samesite: str | None = "Lax"
    max_age: int | None = None
    persistent: bool = True

    def __post_init__(self) -> None:
        if not self.name or not _COOKIE_NAME.fullmatch(self.name):
            raise CacheValueError(
                f"session cookie name {self.name!r:.60} is not a valid cookie name.",
                hint="use letters, digits, '-', '_' or '.', e.g. 'session'.",
            )
        # Path and domain are written into Set-Cookie as they are: a ";" or a line break
        # would add attributes (or headers) to every session cookie.
        if not isinstance(self.path, str) or not _COOKIE_PATH.fullmatch(self.path):
            raise CacheValueError(
                f"session cookie path {self.path!r:.60} is not a valid cookie path.",
                hint="use an absolute path of printable ASCII without ';', e.g. '/' or '/app'.",
            )
        if self.domain is not None and (
            not isinstance(self.domain, str) or not _COOKIE_DOMAIN.fullmatch(self.domain)
        ):
            raise CacheValueError(
                f"session cookie domain {self.domain!r:.60} is not a valid cookie domain.",
                hint="use a host name such as 'example.com' (IDNA-encoded), or None for "
                "the request's host only.",
            )
        # Browsers drop a prefixed cookie whose attributes break the prefix's rules, and
        # then every request would silently start a new session. They match a prefix in
        # any letter case (RFC 6265bis, "Cookie Name Prefixes").
        folded = self.name.lower()
        if folded.startswith("__host-") and (not self.secure or self.domain or self.path != "/"):
            raise CacheValueError(
                "a __Host- cookie needs secure=True, path='/' and no domain "
                "(browsers drop it otherwise).",
                hint="set secure=True, path='/', domain=None, or drop the __Host- prefix.",
            )
        if folded.startswith("__secure-") and not self.secure:
            raise CacheValueError(
                "a __Secure- cookie needs secure=True (browsers drop it otherwise).",
                hint="set secure=True, or drop the __Secure- prefix.",
            )
        if self.samesite not in (None, "Lax", "Strict", "None"):
            raise CacheValueError(
                f"samesite must be 'Lax', 'Strict', 'None' or None, got {self.samesite!r:.60}.",
                hint="use samesite='Lax' unless cross-site requests need the session.",
            )
        if self.samesite == "None" and not self.secure:
            raise CacheValueError(
                "samesite='None' requires secure=True (browsers reject it otherwise).",
                hint="set secure=True, or use samesite='Lax'.",
            )
        if self.max_age is not None and (
            isinstance(self.max_age, bool) or not isinstance(self.max_age, int) or self.max_age < 1
        ):
            raise CacheValueError(
                "cookie max_age must be a positive int of seconds or None, "
                f"got {self.max_age!r:.60}.",
                hint="leave max_age unset to follow the session's idle expiry.",
            )

    def read(self, header: str | None) -> str | None:
        """The session id in a ``Cookie`` request header, or None.

        A browser sends every cookie of this name that matches the request (another
        path, a parent domain: another application's ``session`` cookie), in an order
        the server cannot rely on (RFC 6265, "The Cookie Header"). The first value that
        looks like a session id wins; the others are ignored, so a foreign cookie of
        the same name does not start a new session on every request.
        """
        for part in (header or "").split(";"):
            name, sep, value = part.strip().partition("=")
            if sep and name == self.name:
                value = value.strip().strip('"')
                if SESSION_ID_PATTERN.fullmatch(value):
                    return value
        return None

    def render(self, sid: str | None, max_age: float | None = None) -> str:
        """A ``Set-Cookie`` value: the session id, or an expired cookie when ``sid`` is None.

        ``max_age`` (seconds) applies when this cookie has no fixed ``max_age``.
        """
        morsel: Morsel[str] = Morsel()
        morsel.set(self.name, sid or "", sid or '""')
        morsel["path"] = self.path
        if self.domain:
            morsel["domain"] = self.domain
        morsel["secure"] = self.secure
        morsel["httponly"] = self.httponly
        if self.samesite:
            morsel["samesite"] = self.samesite
        if sid is None:
            morsel["max-age"] = 0
            morsel["expires"] = "Thu, 01 Jan 1970 00:00:00 GMT"
        elif self.max_age is not None:
            morsel["max-age"] = self.max_age
        elif max_age is not None and self.persistent:
            morsel["max-age"] = max(1, int(max_age))
        return morsel.OutputString()

    def commit(self, store: SessionStore, session: TrackedSession) -> str | None:
        """Commit ``session`` and return the ``Set-Cookie`` value to send, if any.

        A cookie is sent when the id changed (new or regenerated session), when the
        session's expiry moved and the cookie carries one, and an expired cookie when
        this request ended (or found already expired) the session the client presented.
        Nothing is sent when another request ended the session meanwhile: that request's
        response already set the cookie the browser must keep.
        """
        return self._after(session, store.commit(session))

    async def commit_async(self, store: SessionStore, session: TrackedSession) -> str | None:
        """:meth:`commit` for asyncio (see :meth:`SessionStore.commit_async`)."""
        return self._after(session, await store.commit_async(session))

    def _after(self, session: TrackedSession, sid: str | None) -> str | None:
        if sid is None:
            if session.gone or session.presented is None:
                return None
            session.presented = None
            return self.render(None)
        expiring = self.max_age is not None or self.persistent
        if sid != session.presented or (session.extended and expiring):
            session.presented = sid
            return self.render(sid, session.expires_in)
        return None
