"""Streamed, resumable key browsing: one server-side iterator per browse session.

``cache.keys(filter)`` streams keys from the backend (memory: a cursor over the store;
Redis: SCAN; DynamoDB: Scan pages), but none of them can be re-entered at "the 5,000th
key" cheaply. So the console keeps the iterator itself: a browse session holds the open
iterator and the pages already shown, and page N+1 pulls only the next
:data:`PAGE_SIZE` keys from where page N stopped. Nothing ever reads all keys.

Bounded on every axis: at most :data:`MAX_SESSIONS` sessions (the least recently used
is dropped), each forgotten after :data:`IDLE_SECONDS` without a request, each keeping at
most :data:`MAX_PAGES_KEPT` pages for "previous" (older ones are dropped and the user is
told to start again).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Final

from ..errors import CacheValueError

__all__ = ["BrowseSessions", "Page", "PAGE_SIZE", "MAX_SESSIONS", "IDLE_SECONDS"]

PAGE_SIZE: Final = 50
"""Keys per page."""
MAX_SESSIONS: Final = 32
"""Open browse sessions at most; the least recently used one is closed beyond that."""
IDLE_SECONDS: Final = 600.0
"""A browse session unused for this long is closed."""
MAX_PAGES_KEPT: Final = 200
"""Pages of keys a session keeps for "previous" (200 x 50 keys)."""


@dataclass(frozen=True)
class Page:
    """One page of keys and where it sits in its session."""

    session: str
    number: int
    """0-based page number."""
    keys: tuple[str, ...]
    more: bool
    """Whether a next page may exist (the iterator is not exhausted)."""
    first_kept: int
    """The oldest page number still kept (earlier ones were dropped)."""


@dataclass
class _Session:
    cache: str
    filter: str | None
    keys: Iterator[str]
    pages: dict[int, tuple[str, ...]] = field(default_factory=dict)
    exhausted: bool = False
    last_used: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def close(self) -> None:
        """End the backend scan (and its observer event) now; the caller holds ``lock``."""
        close = getattr(self.keys, "close", None)
        if callable(close):
            close()

    def shutdown(self) -> None:
        """:meth:`close` from outside a request: waits for one in flight on this session."""
        with self.lock:
            self.close()


class BrowseSessions:
    """The open browse sessions of one console (thread-safe)."""

    def __init__(
        self,
        *,
        page_size: int = PAGE_SIZE,
        max_sessions: int = MAX_SESSIONS,
        idle_seconds: float = IDLE_SECONDS,
        max_pages: int = MAX_PAGES_KEPT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.page_size = page_size
        self.max_sessions = max_sessions
        self.idle_seconds = idle_seconds
        self.max_pages = max_pages
        self._clock = clock
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    def open(self, cache: str, filter: str | None, keys: Iterator[str]) -> str:
        """Start a session over the iterator ``keys``; returns its id."""
        sid = secrets.token_urlsafe(12)
        session = _Session(cache, filter, keys, last_used=self._clock())
        dropped: list[_Session] = []
        with self._lock:
            dropped.extend(self._expire())
            while len(self._sessions) >= self.max_sessions:
                dropped.append(self._sessions.popitem(last=False)[1])
            self._sessions[sid] = session
        for old in dropped:
            old.shutdown()
        return sid

    def page(self, sid: str, cache: str, number: int, filter: str | None = None) -> Page | None:
        """Page ``number`` of session ``sid`` (of ``cache`` and ``filter``); None if the
        session is gone or lists something else.

        Going forward pulls the next keys from the iterator (one page at most: a number
        past the next page gives the next page); a page already shown is served from
        memory, never re-read.
        """
        if number < 0:
            raise CacheValueError(
                f"page numbers start at 0, got {number}.", hint="open the first page."
            )
        with self._lock:
            dropped = self._expire()
            session = self._sessions.get(sid)
            if session is not None:
                if session.cache != cache or session.filter != filter:
                    session = None
                else:
                    self._sessions.move_to_end(sid)
                    session.last_used = self._clock()
        for old in dropped:
            old.shutdown()
        if session is None:
            return None
        with session.lock:
            # ``number`` comes from the URL: a page far ahead would pull every key up to
            # it in this one request. Going forward is one page at a time, as Next does.
            number = min(number, max(session.pages, default=-1) + 1)
            while number not in session.pages:
                latest = max(session.pages, default=-1)
                if number < latest or session.exhausted:
                    break  # dropped long ago, or past the end
                self._pull(session, latest + 1)
            keys = session.pages.get(number)
            first = min(session.pages, default=0)
            last = max(session.pages, default=-1)
            if keys is None:
                if number > last:  # past the end: show the last page
                    number, keys = last, session.pages.get(last, ())
                else:
                    raise CacheValueError(
                        f"page {number + 1} of this listing is no longer kept "
                        f"(only the last {self.max_pages} pages are).",
                        hint="start the listing again from its first page.",
                    )
            more = not session.exhausted or number < last
            return Page(sid, max(number, 0), keys, more, first)

    def key_at(self, sid: str, cache: str, number: int, index: int) -> str | None:
        """The key at ``index`` of page ``number`` of session ``sid`` (of ``cache``), as
        that page showed it; None if the session is gone, lists another cache, or no
        longer keeps that page, or the page has no such position.

        Only pages already shown are looked at: a position never pulls keys. Links to
        long keys name their position rather than the key (a page of 50 keys of 16,384
        characters would otherwise weigh megabytes).
        """
        if number < 0 or index < 0:
            return None
        with self._lock:
            dropped = self._expire()
            session = self._sessions.get(sid)
            if session is not None and session.cache == cache:
                self._sessions.move_to_end(sid)
                session.last_used = self._clock()
            else:
                session = None
        for old in dropped:
            old.shutdown()
        if session is None:
            return None
        with session.lock:
            keys = session.pages.get(number, ())
        return keys[index] if index < len(keys) else None

    def _pull(self, session: _Session, number: int) -> None:
        keys = tuple(islice(session.keys, self.page_size))
        if len(keys) < self.page_size:
            session.exhausted = True
            session.close()
        if keys or number == 0:
            session.pages[number] = keys
        while len(session.pages) > self.max_pages:
            del session.pages[min(session.pages)]

    def close(self, sid: str) -> None:
        """Close session ``sid`` (unknown ids are ignored)."""
        with self._lock:
            session = self._sessions.pop(sid, None)
        if session is not None:
            session.shutdown()

    def close_all(self) -> None:
        """Close every session (the console is stopping or its configuration changed)."""
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for session in sessions:
            session.shutdown()

    def _expire(self) -> list[_Session]:
        """Take the idle sessions out (under the lock); the caller closes them outside it."""
        cutoff = self._clock() - self.idle_seconds
        idle = [sid for sid, s in self._sessions.items() if s.last_used < cutoff]
        return [self._sessions.pop(sid) for sid in idle]
