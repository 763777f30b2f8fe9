"""Session and scope storage on any cache built with ``storage: true``.

:class:`SessionStore` is framework-neutral: the Flask, WSGI, ASGI and Django adapters in
:mod:`cachehub.contrib` all sit on it. Session data is a ``dict`` stored under
``<prefix><session id>`` through the cache's own codec (never pickle unless the cache is
configured for it) with a sliding ``idle_time`` expiry: every load or save pushes the
deadline back, so a session dies after ``idle_time`` without requests.

Concurrency (see docs/sessions.md):

* :meth:`SessionStore.save` replaces the whole session: last writer wins.
* :meth:`SessionStore.update` and :meth:`SessionStore.commit` do read-modify-write under
  ``cache.lock`` (atomic ``add`` on the backend, so also across processes), so concurrent
  requests that change *different* keys of one session never lose each other's writes.
  The framework adapters always commit this way.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from http.cookies import Morsel
from typing import Any, Final, SupportsIndex, TypeVar, overload

from .api import MISSING, BaseCache, TimeSpan
from .errors import CacheValueError, InvalidKeyError, StorageNotEnabledError
from .lock import Lock

__all__ = [
    "SessionStore",
    "TrackedSession",
    "SessionCookie",
    "require_storage",
    "SESSION_ID_PATTERN",
]

SESSION_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{22,128}")
"""What a session id must look like; anything else from a cookie is ignored."""

_CREATE_ATTEMPTS: Final = 8
S = TypeVar("S", bound="TrackedSession")
_COOKIE_NAME: Final = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")


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


class SessionStore:
    """Server-side sessions in a cache entry per session, with sliding expiry.

    ``cache`` must have been built with ``storage=True`` (``storage: true`` in its
    config entry). ``idle_time`` is how long a session lives without being used.
    """

    def __init__(
        self,
        cache: BaseCache,
        *,
        idle_time: TimeSpan = timedelta(minutes=30),
        prefix: str = "session:",
        lock_timeout: float = 10.0,
    ) -> None:
        require_storage(cache)
        seconds = idle_time.total_seconds() if isinstance(idle_time, timedelta) else idle_time
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0:
            raise CacheValueError(
                f"session idle_time must be a positive duration, got {idle_time!r}.",
                hint="pass e.g. idle_time=timedelta(minutes=30).",
            )
        if not isinstance(prefix, str):
            raise CacheValueError(
                f"session prefix must be a str, got {type(prefix).__name__}.",
                hint='pass e.g. prefix="session:".',
            )
        self.cache = cache
        self.idle_time = timedelta(seconds=seconds)
        self.prefix = prefix
        self.lock_timeout = lock_timeout

    # ---------------------------------------------------------------- helpers

    @staticmethod
    def valid_id(sid: object) -> bool:
        """Whether ``sid`` looks like an id this store issues (cheap pre-check for cookies)."""
        return isinstance(sid, str) and SESSION_ID_PATTERN.fullmatch(sid) is not None

    def _key(self, sid: str) -> str:
        if not self.valid_id(sid):
            raise InvalidKeyError(
                f"{sid!r:.60} is not a valid session id.",
                hint="use an id returned by SessionStore.create() or regenerate().",
            )
        return self.prefix + sid

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

    # ---------------------------------------------------------------- API

    def create(self, data: Mapping[str, Any] | None = None) -> str:
        """Store a new session holding ``data`` (default empty) and return its id."""
        payload = self._check_data(data or {})
        for _ in range(_CREATE_ATTEMPTS):
            sid = secrets.token_urlsafe(32)
            # add() is atomic, so an (astronomically unlikely) id collision never merges.
            if self.cache.add(self.prefix + sid, payload, idle_time=self.idle_time):
                return sid
        raise CacheValueError(
            f"could not create a unique session id in {_CREATE_ATTEMPTS} attempts.",
            hint=f"check that cache '{self.cache.name}' accepts writes under '{self.prefix}'.",
        )

    def load(self, sid: str | None) -> dict[str, Any] | None:
        """The session's data, or None when it is unknown, expired or ``sid`` is malformed.

        Loading counts as activity: it slides the idle expiry.
        """
        if sid is None or not self.valid_id(sid):
            return None
        data = self.cache.get(self.prefix + sid, MISSING)
        if data is MISSING or not isinstance(data, dict):
            return None
        return data

    def exists(self, sid: str) -> bool:
        """Whether the session is live (does not slide its expiry)."""
        return self.valid_id(sid) and self.cache.exists(self.prefix + sid)

    def save(self, sid: str, data: Mapping[str, Any]) -> None:
        """Replace the session's data and restart its idle expiry (last writer wins)."""
        self.cache.put(self._key(sid), self._check_data(data), idle_time=self.idle_time)

    def delete(self, sid: str) -> bool:
        """Remove the session; True when it existed. Malformed ids are simply absent."""
        if not self.valid_id(sid):
            return False
        return self.cache.delete(self.prefix + sid)

    def touch(self, sid: str) -> bool:
        """Restart the idle expiry without reading the data; True when the session exists."""
        if not self.valid_id(sid):
            return False
        return self.cache.touch(self.prefix + sid, idle_time=self.idle_time)

    def regenerate(self, sid: str | None) -> str:
        """Move the session's data to a fresh id, delete the old one and return the new id.

        An unknown or expired ``sid`` yields a new empty session.
        """
        if sid is None or not self.valid_id(sid):
            return self.create()
        with self._lock(sid):
            data = self.load(sid) or {}
            new_sid = self.create(data)
            self.cache.delete(self.prefix + sid)
        return new_sid

    def _lock(self, sid: str) -> Lock:
        """The per-session lock serialising read-modify-write of one session."""
        return self.cache.lock(self.prefix + sid, ttl=self.lock_timeout, timeout=self.lock_timeout)

    def update(self, sid: str, mutator: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
        """Read-modify-write the session under a per-session lock; returns the saved data.

        ``mutator`` receives the current data (empty if the session expired) and changes
        it in place. Concurrent updates of one session are serialised, so none is lost.
        """
        key = self._key(sid)
        with self._lock(sid):
            data = self.load(sid) or {}
            mutator(data)
            self.cache.put(key, self._check_data(data), idle_time=self.idle_time)
        return data

    @overload
    def open(self, sid: str | None) -> TrackedSession: ...

    @overload
    def open(self, sid: str | None, session_class: type[S]) -> S: ...

    def open(
        self, sid: str | None, session_class: type[TrackedSession] = TrackedSession
    ) -> TrackedSession:
        """The session for a request: its stored data, or a new empty session.

        ``session_class`` lets an adapter use a subclass (Flask adds ``SessionMixin``).
        """
        data = self.load(sid)
        session = session_class() if data is None else session_class(data, sid=sid)
        session.presented = sid if self.valid_id(sid) else None
        return session

    def commit(self, session: TrackedSession) -> str | None:
        """Write a request's changes back and return the id the client must now hold.

        Returns None when the session is (now) empty and should be forgotten: the stored
        entry is deleted and the adapter clears the cookie. New sessions get an id here,
        only once they hold data, so anonymous requests create nothing.
        """
        sid = session.sid
        if session.regenerate_requested:
            session.regenerate_requested = False
            if sid is not None:
                sid = self.regenerate(sid)
                session.sid = sid
        if sid is None:
            if not session:
                return None
            session.sid = self.create(dict(session))
            self._reset(session)
            return session.sid
        if session.modified:
            stored = self.update(sid, session.apply_to)
            self._reset(session)
            if not stored:
                self.delete(sid)
                session.sid = None
                return None
        else:
            self.touch(sid)
        return sid

    @staticmethod
    def _reset(session: TrackedSession) -> None:
        session.changed.clear()
        session.removed.clear()
        session.cleared = False
        session.modified = False


@dataclass(frozen=True)
class SessionCookie:
    """How the session id travels: the cookie's name and security attributes.

    Defaults are the safe ones: ``Secure`` (HTTPS only), ``HttpOnly`` (no JavaScript
    access) and ``SameSite=Lax``. ``max_age=None`` makes a browser-session cookie; the
    server-side idle expiry decides how long the session really lives either way.
    """

    name: str = "session"
    path: str = "/"
    domain: str | None = None
    secure: bool = True
    httponly: bool = True
    samesite: str | None = "Lax"
    max_age: int | None = None

    def __post_init__(self) -> None:
        if not self.name or not _COOKIE_NAME.fullmatch(self.name):
            raise CacheValueError(
                f"session cookie name {self.name!r} is not a valid cookie name.",
                hint="use letters, digits, '-', '_' or '.', e.g. 'session'.",
            )
        if self.samesite not in (None, "Lax", "Strict", "None"):
            raise CacheValueError(
                f"samesite must be 'Lax', 'Strict', 'None' or None, got {self.samesite!r}.",
                hint="use samesite='Lax' unless cross-site requests need the session.",
            )
        if self.samesite == "None" and not self.secure:
            raise CacheValueError(
                "samesite='None' requires secure=True (browsers reject it otherwise).",
                hint="set secure=True, or use samesite='Lax'.",
            )

    def read(self, header: str | None) -> str | None:
        """The session id in a ``Cookie`` request header, or None."""
        for part in (header or "").split(";"):
            name, sep, value = part.strip().partition("=")
            if sep and name == self.name:
                value = value.strip().strip('"')
                return value if SESSION_ID_PATTERN.fullmatch(value) else None
        return None

    def render(self, sid: str | None) -> str:
        """A ``Set-Cookie`` value: the session id, or an expired cookie when ``sid`` is None."""
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
        return morsel.OutputString()

    def commit(self, store: SessionStore, session: TrackedSession) -> str | None:
        """Commit ``session`` and return the ``Set-Cookie`` value to send, if any.

        A cookie is sent when the id changed (new or regenerated session) and an
        expired one when a session the client presented is gone or emptied.
        """
        sid = store.commit(session)
        if sid is None:
            return self.render(None) if session.presented is not None else None
        if sid != session.presented:
            session.presented = sid
            return self.render(sid)
        return None
