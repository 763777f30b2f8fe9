"""Distributed locks, kept in each backend's reserved internal space.

A lock is not a cache entry: ``keys()``, ``count()`` and ``clear()`` never see it, a user
key can never be mistaken for it, and the memory provider never evicts it. Providers store
locks through five primitives of :class:`~cachehub.api.BaseCache` (``_lock_acquire``,
``_lock_release``, ``_lock_extend``, ``_lock_holder``, ``_clear_internal``; see
docs/plugins.md). :class:`LockTable` is the in-process implementation the base class and
the memory provider use.

Every acquisition returns a *fencing token* (:attr:`Lock.fence`): an integer that grows
strictly with each new holder of a lock name, so a resource that remembers the highest
fence it has seen can refuse a stale holder whose lock expired (see "Locks and clocks" in
docs/index.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from .errors import (
    CacheValueError,
    InvalidKeyError,
    LockLostError,
    LockTimeoutError,
    raised_by_signal_handler,
)

if TYPE_CHECKING:
    from .api import BaseCache, TimeSpan

__all__ = ["AsyncLock", "Lock", "LockTable", "lock_id", "MAX_LOCK_ID"]

MAX_LOCK_ID: Final = 200
"""Longest internal lock id (characters); longer names are hashed (:func:`lock_id`)."""
_log = logging.getLogger("cachehub.lock")


def lock_id(kind: str, name: str) -> str:
    """The internal id of lock ``name`` of ``kind``: ``<kind>:<name>``.

    ``kind`` keeps user locks (``lock``) apart from the locks ``get_or_set`` takes
    (``fill``). An id longer than :data:`MAX_LOCK_ID` becomes ``<kind>:sha256:<hex>``, so
    any valid cache key can name a lock and every backend can store the id.
    """
    if not isinstance(name, str):
        raise InvalidKeyError(
            f"lock names must be str, got {type(name).__name__}.",
            hint="name the lock with a string, e.g. cache.lock('nightly-report').",
        )
    if not name:
        raise InvalidKeyError("lock name is empty.", hint="name the lock, e.g. cache.lock('job').")
    ident = f"{kind}:{name}"
    # A name spelled like a hashed id ("sha256:<hex>") is hashed too: else it and the long
    # name whose hash it spells were one lock.
    hashed_look = name.startswith(_HASHED)
    if len(ident) <= MAX_LOCK_ID and ident.isascii() and not hashed_look:
        return ident
    try:
        raw = name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidKeyError(
            "lock name contains a lone surrogate and cannot be encoded as UTF-8.",
            hint="pass a valid Unicode string.",
        ) from None
    if len(ident) <= MAX_LOCK_ID and not hashed_look:
        return ident
    return f"{kind}:{_HASHED}{hashlib.sha256(raw).hexdigest()}"


_HASHED: Final = "sha256:"


_Name = tuple[str, str]
"""``(namespace, lock id)``: unambiguous whatever characters either holds."""


@dataclass(slots=True)
class _Held:
    token: str
    deadline: float
    fence: int


class LockTable:
    """Locks held in this process: the default lock primitives and the memory provider's.

    Keyed by ``(namespace, lock id)``; deadlines are compared with the ``now`` of the
    cache's clock. Expired locks are dropped on sight and swept when the table grows, so
    it holds at most the live locks plus a bounded number of dead ones; the last
    :data:`RELEASED_MEMORY` releases are remembered so that a repeated release by the same
    token still answers True (idempotent, as over a network that lost a reply).
    """

    RELEASED_MEMORY: Final = 1024

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held: dict[_Name, _Held] = {}
        self._released: OrderedDict[tuple[_Name, str], None] = OrderedDict()
        self._fences = itertools.count(1)
        self._sweep_at = 64

    def _live(self, name: _Name, now: float) -> _Held | None:
        held = self._held.get(name)
        if held is not None and now >= held.deadline:
            del self._held[name]
            return None
        return held

    def acquire(self, name: _Name, token: str, ttl: float, now: float) -> int | None:
        """The new holder's fence, or None while another token holds ``name`` (or when
        ``token`` has released it: a request that arrived late)."""
        with self._mutex:
            held = self._live(name, now)
            if held is not None:
                if held.token != token:
                    return None
                held.deadline = now + ttl  # the same request again: same fence
                return held.fence
            if (name, token) in self._released:
                return None
            if len(self._held) >= self._sweep_at:
                self._sweep(now)
            fence = next(self._fences)
            self._held[name] = _Held(token, now + ttl, fence)
            return fence

    def _sweep(self, now: float) -> None:
        for name in [n for n, h in self._held.items() if now >= h.deadline]:
            del self._held[name]
        self._sweep_at = max(64, 2 * len(self._held))

    def release(self, name: _Name, token: str, now: float) -> bool:
        """True when ``token`` held ``name`` until now (or had already released it)."""
        with self._mutex:
            held = self._live(name, now)
            if held is not None and held.token == token:
                del self._held[name]
                self._released[(name, token)] = None
                if len(self._released) > self.RELEASED_MEMORY:
                    self._released.popitem(last=False)
                return True
            return (name, token) in self._released

    def extend(self, name: _Name, token: str, ttl: float, now: float) -> bool:
        """Give ``token``'s live lock a new deadline ``now + ttl``; False when not held."""
        with self._mutex:
            held = self._live(name, now)
            if held is None or held.token != token:
                return False
            held.deadline = now + ttl
            return True

    def holder(self, name: _Name, now: float) -> str | None:
        """The token holding ``name`` now, or None."""
        with self._mutex:
            held = self._live(name, now)
            return None if held is None else held.token

    def clear(self, namespace: str) -> int:
        """Drop every lock of ``namespace``; how many there were."""
        with self._mutex:
            doomed = [n for n in self._held if n[0] == namespace]
            for name in doomed:
                del self._held[name]
            return len(doomed)


def _float_seconds(value: float, what: str, way_out: str) -> float:
    """``value`` as a float: an int beyond a float's range (10**400) raised a raw
    OverflowError where a lock computed its deadline or waits."""
    try:
        return float(value)
    except OverflowError:
        raise CacheValueError(
            f"lock {what} must be a number of seconds, got an int of "
            f"{value.bit_length() if isinstance(value, int) else '?'} bits.",
            hint=f"pass a number of seconds such as {way_out}.",
        ) from None


def _wait_limit(timeout: object) -> float | None:
    """A lock ``timeout`` (seconds, or None: no limit) checked and made a float."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout != timeout:
        raise CacheValueError(
            f"lock timeout must be a number of seconds or None, got {timeout!r:.60}.",
            hint="pass e.g. timeout=5 (seconds), or None to wait as long as it takes.",
        )
    return _float_seconds(timeout, "timeout", "5, or timeout=None to wait as long as it takes")


class _LockState:
    """What :class:`Lock` and :class:`AsyncLock` share: arguments, state and messages."""

    def __init__(
        self,
        cache: BaseCache,
        name: str,
        *,
        ttl: TimeSpan = 30.0,
        timeout: float | None = None,
        poll: float = 0.05,
        kind: str = "lock",
    ) -> None:
        if isinstance(poll, bool) or not isinstance(poll, (int, float)) or not poll > 0:
            raise CacheValueError(f"lock poll interval must be > 0, got {poll!r:.60}.")
        poll = _float_seconds(poll, "poll interval", "0.05 (the default)")
        timeout = _wait_limit(timeout)
        self.cache = cache
        self.name = name
        self.key = cache._lock_name(lock_id(kind, name))
        """The namespaced internal id of this lock (not a cache key)."""
        self.ttl = ttl
        # A lock always expires, so a crashed holder cannot hold it for ever: None is the
        # default ttl, never "no expiry".
        self._ttl: float = cache._span(ttl, "lock ttl", "the default, 30 s") or 30.0
        self.timeout = timeout
        self.poll = float(poll)
        self.token: str | None = None
        self.fence: int | None = None
        """The fencing token of the current holding: grows strictly with each new holder."""
        self._abandoned: set[str] = set()
        """:class:`AsyncLock`: tokens whose attempt is still out, its waiter cancelled."""

    def _start(self, timeout: float | None) -> tuple[str, float | None, float]:
        """Checks before an acquisition: ``(new token, monotonic deadline, first delay)``."""
        if self.token is not None:
            raise CacheValueError(f"lock '{self.name}' is already held by this Lock object.")
        self.cache._writable("lock")
        limit = self.timeout if timeout is None else _wait_limit(timeout)
        deadline = None if limit is None else time.monotonic() + limit
        return secrets.token_hex(16), deadline, min(self.poll, 0.005)

    def _backoff(self, delay: float) -> float:
        """The next wait between attempts: doubling up to the poll interval."""
        return min(delay * 2, self.poll)

    def _lost(self, what: str) -> LockLostError:
        return LockLostError(
            f"lock '{self.name}' was lost before {what}: its ttl of {self._ttl:g}s ran out "
            "(or it was cleared), so another holder may have run meanwhile.",
            hint="give the lock a longer ttl, extend() it (or use keep_alive()) during long "
            "work, and check the fencing token where the work is applied.",
        )

    def _extend_plan(self, ttl: TimeSpan | None) -> tuple[str, float]:
        """``(token, seconds)`` of an ``extend``: the lock must be held."""
        if self.token is None:
            raise CacheValueError(
                f"lock '{self.name}' is not held by this Lock object; nothing to extend.",
                hint="acquire() the lock first.",
            )
        seconds = self.cache._span(ttl, "lock ttl", "the lock's own ttl") or self._ttl
        return self.token, seconds

    def _keep_alive_interval(self, every: float | None) -> float:
        if self.token is None:
            raise CacheValueError(
                f"lock '{self.name}' is not held by this Lock object; nothing to keep alive.",
                hint="acquire() the lock first.",
            )
        if every is None:
            return self._ttl / 3
        if isinstance(every, bool) or not isinstance(every, (int, float)):
            raise CacheValueError(
                f"keep_alive interval must be a number of seconds, got {type(every).__name__}.",
                hint="pass e.g. every=10, or leave it out (a third of the ttl).",
            )
        # Shorter than the ttl, or the lock expires between beats (inf, or 10**9, also
        # killed the heartbeat thread with an OverflowError: the lock was lost silently).
        if not 0 < every < self._ttl:
            raise CacheValueError(
                f"keep_alive interval must be > 0 and shorter than the lock's ttl of "
                f"{self._ttl:g}s, got {every!r:.40}.",
                hint="pass e.g. every=ttl/3, or leave it out (a third of the ttl).",
            )
        return float(every)

    def _timed_out(self) -> LockTimeoutError:
        return LockTimeoutError(
            f"could not acquire lock '{self.name}' within {self.timeout}s.",
            hint="raise the timeout, or look for a stuck owner (locks expire after their ttl).",
        )

    @property
    def locked(self) -> bool:
        """Whether this object believes it holds the lock (no request; see :attr:`held`)."""
        return self.token is not None


class Lock(_LockState):
    """Mutual exclusion across threads and processes sharing one cache.

    Acquire stores a random owner token in the backend's internal lock space with a
    ``ttl``, so that a crashed owner cannot hold the lock forever; release removes it only
    if it still holds *this* token. Use as a context manager::

        with cache.lock("nightly-report", ttl=60, timeout=5) as lock:
            build_nightly_report(fence=lock.fence)

    A holder whose ``ttl`` ran out has lost the lock: :meth:`release` and :meth:`extend`
    then raise :class:`~cachehub.errors.LockLostError`, and :attr:`held` is False. Keep a
    long job's lock with :meth:`extend` or :meth:`keep_alive`.
    """

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take the lock; wait up to ``timeout`` seconds (None: forever) when blocking.

        An unreachable backend raises :class:`~cachehub.errors.CacheUnavailableError`
        even under ``onError: miss``: a lock cannot pretend to be held.
        """
        token, deadline, delay = self._start(timeout)
        cache = self.cache
        while True:
            fence = cache._run_strict(
                "lock",
                self.name,
                cache._lock_acquire,
                self.key,
                token,
                self._ttl,
                cache._clock(),
            )
            if fence is not None:
                self.token, self.fence = token, int(fence)
                return True
            if not blocking or (deadline is not None and time.monotonic() >= deadline):
                return False
            time.sleep(delay)
            delay = self._backoff(delay)

    def release(self) -> bool:
        """Release the lock; False if this object does not hold it.

        Raises :class:`~cachehub.errors.LockLostError` when it was acquired but its ttl ran
        out before the release (the lock is then no longer this object's either).
        """
        token, self.token = self.token, None
        if token is None:
            return False
        cache = self.cache
        cache._writable("lock release")
        # Under onError: miss an unreachable backend gives None: the lock then expires
        # after its ttl, as it would if this process had crashed.
        released: bool | None = cache._run(
            "lock_release", self.name, None, cache._lock_release, self.key, token, cache._clock()
        )
        if released is None:
            return False
        if not released:
            raise self._lost("release")
        return True

    def extend(self, ttl: TimeSpan | None = None) -> None:
        """Hold the lock for ``ttl`` more seconds from now (default: its own ttl).

        Raises :class:`~cachehub.errors.LockLostError` when it had already expired.
        """
        token, seconds = self._extend_plan(ttl)
        cache = self.cache
        extended = cache._run_strict(
            "lock_extend",
            self.name,
            cache._lock_extend,
            self.key,
            token,
            seconds,
            cache._clock(),
        )
        if not extended:
            self.token = None
            raise self._lost("extend")
        self._ttl = seconds

    def release_quietly(self) -> bool:
        """:meth:`release`, logging a lost lock as a warning instead of raising."""
        try:
            return self.release()
        except LockLostError as lost:
            _log.warning("%s", lost)
            return False

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now, asked of the backend (one request)."""

        token = self.token
        if token is None:
            return False
        cache = self.cache
        holder = cache._run_strict(
            "lock_holder", self.name, cache._lock_holder, self.key, cache._clock()
        )
        return holder == token

    @property
    def busy(self) -> bool:
        """Whether anyone (any object, thread or process) holds the lock now (one request)."""

        cache = self.cache
        holder = cache._run_strict(
            "lock_holder", self.name, cache._lock_holder, self.key, cache._clock()
        )
        return holder is not None

    @contextmanager
    def keep_alive(self, every: float | None = None) -> Iterator[Lock]:
        """Extend the held lock from a background thread while the block runs.

        The lock is extended by its ttl every ``every`` seconds (default: a third of the
        ttl), so work longer than the ttl keeps it as long as the process runs. When an
        extension finds the lock lost, the block is not interrupted: the loss is logged,
        and :meth:`release` raises :class:`~cachehub.errors.LockLostError` afterwards.
        """
        interval = self._keep_alive_interval(every)
        stop = threading.Event()
        token = self.token

        def beat() -> None:
            while not stop.wait(interval):
                try:
                    self.extend()
                except LockLostError:
                    self.token = token  # so that release() reports the loss
                    _log.warning("lock '%s' was lost while kept alive", self.name)
                    return
                except Exception as exc:  # a backend outage: retried on the next beat
                    _log.warning("lock '%s': keep_alive could not extend it: %s", self.name, exc)

        thread = threading.Thread(target=beat, name=f"cachehub-lock-{self.name:.40}", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()

    def __enter__(self) -> Lock:
        if not self.acquire():
            raise self._timed_out()
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.release()
        else:
            self.release_quietly()  # never hide the block's own exception


def _won(attempt: asyncio.Future[int | None]) -> bool:
    """Whether a finished lock attempt took the lock (answered with a fence)."""
    return not attempt.cancelled() and attempt.exception() is None and attempt.result() is not None


class AsyncLock(_LockState):
    """:class:`Lock` for async code: the same lock, awaited (``cache.aio().lock(name)``).

    ``async with cache.aio().lock("job", ttl=60, timeout=5) as lock: ...``. Waiting never
    blocks the event loop (``asyncio.sleep`` between attempts), and a task cancelled while
    acquiring leaves no lock behind: an attempt already sent is released when it answers.
    """

    async def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take the lock; wait up to ``timeout`` seconds (None: forever) when blocking."""
        token, deadline, delay = self._start(timeout)
        while True:
            # The attempt runs as its own task: when this waiter is cancelled after the
            # request left, the answer is still awaited and a won lock given back.
            attempt = asyncio.ensure_future(self._attempt(token))
            try:
                fence = await asyncio.shield(attempt)
            except asyncio.CancelledError:
                # Given back here or by the attempt itself, never by a new task: when
                # asyncio.run ends it waits only for the tasks it cancelled (this one and
                # the attempt), so a task created now would never run and the won lock
                # would stay held for its whole ttl.
                if not attempt.done():
                    self._abandoned.add(token)  # the attempt gives back when it answers
                elif _won(attempt):
                    await self._give_back_whole(token)
                raise
            if fence is not None:
                self.token, self.fence = token, int(fence)
                return True
            if not blocking or (deadline is not None and time.monotonic() >= deadline):
                return False
            await asyncio.sleep(delay)
            delay = self._backoff(delay)

    async def _attempt(self, token: str) -> int | None:
        cache = self.cache
        try:
            fence: int | None = await cache.aio()._run_strict(
                "lock", self.name, cache._alock_acquire, self.key, token, self._ttl, cache._clock()
            )
        except asyncio.CancelledError:
            # The attempt itself was cancelled (asyncio.run ending cancels every task left,
            # this one too): its request may have won the lock on the server all the same,
            # with nobody left to release it (held for its whole ttl), or may still be on
            # its way. Give back whatever the token holds before ending; the loop waits for
            # a cancelled task.
            self._abandoned.discard(token)
            await self._give_back_whole(token, unanswered=True)
            raise
        except BaseException:
            self._abandoned.discard(token)
            raise
        if token in self._abandoned:  # its waiter was cancelled meanwhile
            self._abandoned.discard(token)
            if fence is not None:
                await self._give_back_whole(token)
        return fence

    async def _give_back_whole(self, token: str, unanswered: bool = False) -> None:
        """:meth:`_give_back` to its end even if this task is cancelled again meanwhile
        (that cancel is raised afterwards): half a release would leave the lock held."""
        giving = asyncio.ensure_future(self._give_back(token, unanswered))
        cancelled = False
        while not giving.done():
            try:
                await asyncio.shield(giving)
            except asyncio.CancelledError:
                cancelled = True
        if cancelled:
            raise asyncio.CancelledError

    async def _give_back(self, token: str, unanswered: bool) -> None:
        """Release what ``token`` holds, if anything, for a waiter that was cancelled.

        ``unanswered``: the token's acquire request got no answer, and may still reach the
        server after this release (on its own connection, which a server such as DynamoDB
        serves in parallel with the new one). Then the lock is taken again first, with the
        same token (which answers the fence if the request did win), and released: a
        release leaves the token refused for good (see ``BaseCache._lock_acquire``), so the
        late request takes nothing. Taken by another holder meanwhile, it is left alone.
        """
        cache = self.cache
        try:
            if (
                unanswered
                and await cache._alock_acquire(self.key, token, self._ttl, cache._clock()) is None
            ):
                return
            await cache._alock_release(self.key, token, cache._clock())
        except Exception as exc:  # it expires after its ttl anyway
            signalled = raised_by_signal_handler(exc)
            if signalled is not None:  # the program's (a soft time limit): never just logged
                raise signalled from None
            _log.warning("lock '%s': could not release after cancel: %s", self.name, exc)

    async def release(self) -> bool:
        """Release the lock; False if this object does not hold it (see :meth:`Lock.release`)."""
        token, self.token = self.token, None
        if token is None:
            return False
        cache = self.cache
        cache._writable("lock release")
        # Shielded: a cancelled holder still gives its lock back.
        released: bool | None = await asyncio.shield(
            cache.aio()._run(
                "lock_release",
                self.name,
                None,
                cache._alock_release,
                self.key,
                token,
                cache._clock(),
            )
        )
        if released is None:
            return False
        if not released:
            raise self._lost("release")
        return True

    async def extend(self, ttl: TimeSpan | None = None) -> None:
        """Hold the lock for ``ttl`` more seconds from now (see :meth:`Lock.extend`)."""
        token, seconds = self._extend_plan(ttl)
        cache = self.cache
        extended = await cache.aio()._run_strict(
            "lock_extend", self.name, cache._alock_extend, self.key, token, seconds, cache._clock()
        )
        if not extended:
            self.token = None
            raise self._lost("extend")
        self._ttl = seconds

    async def release_quietly(self) -> bool:
        """:meth:`release`, logging a lost lock as a warning instead of raising."""
        try:
            return await self.release()
        except LockLostError as lost:
            _log.warning("%s", lost)
            return False

    async def held(self) -> bool:
        """Whether this object holds the lock now, asked of the backend (one request)."""
        token = self.token
        if token is None:
            return False
        return await self._holder() == token

    async def busy(self) -> bool:
        """Whether anyone holds the lock now (one request)."""
        return await self._holder() is not None

    async def _holder(self) -> str | None:
        cache = self.cache
        holder: str | None = await cache.aio()._run_strict(
            "lock_holder", self.name, cache._alock_holder, self.key, cache._clock()
        )
        return holder

    @asynccontextmanager
    async def keep_alive(self, every: float | None = None) -> AsyncIterator[AsyncLock]:
        """Extend the held lock from a background task while the block runs.

        As :meth:`Lock.keep_alive`: a loss is logged and reported by :meth:`release`.
        """
        interval = self._keep_alive_interval(every)
        token = self.token
        stop = asyncio.Event()

        async def beat() -> None:
            while True:
                try:
                    await asyncio.wait_for(stop.wait(), interval)
                    return  # the block ended
                except TimeoutError:
                    pass  # a beat is due
                try:
                    await self.extend()
                except LockLostError:
                    self.token = token  # so that release() reports the loss
                    _log.warning("lock '%s' was lost while kept alive", self.name)
                    return
                except Exception as exc:  # a backend outage: retried on the next beat
                    _log.warning("lock '%s': keep_alive could not extend it: %s", self.name, exc)

        task = asyncio.get_running_loop().create_task(beat())
        try:
            yield self
        finally:
            # Told to stop, not cancelled, as the sync heartbeat is: an extension in flight
            # finishes (bounded by the client's timeouts). Cancelling it mid-request is what
            # redis-py 5.0.0 could swallow: the heartbeat then beat on and this exit hung.
            stop.set()
            await asyncio.gather(task, return_exceptions=True)

    async def __aenter__(self) -> AsyncLock:
        if not await self.acquire():
            raise self._timed_out()
        return self

    async def __aexit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            await self.release()
        else:
            await self.release_quietly()  # never hide the block's own exception
