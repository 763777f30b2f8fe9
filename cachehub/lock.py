"""A distributed lock built on the cache's atomic ``add`` and owner-checked delete."""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import TYPE_CHECKING, Any

from .api import MAX_KEY_LENGTH
from .errors import CacheValueError, InvalidKeyError, LockTimeoutError

if TYPE_CHECKING:
    from .api import BaseCache, TimeSpan

__all__ = ["Lock", "LOCK_PREFIX", "lock_key"]

LOCK_PREFIX = "lock:"
"""Locks live in the cache's own key space as ``lock:<name>``."""
_HASHED_LOCK = LOCK_PREFIX + "sha256:"


def lock_key(name: str) -> str:
    """The cache key of the lock called ``name``: ``lock:<name>``.

    A name so long that ``lock:<name>`` would exceed :data:`~cachehub.api.MAX_KEY_LENGTH`
    becomes ``lock:sha256:<hex of name>`` (71 characters), so that any valid cache key can
    also name a lock (``get_or_set`` locks ``<key>\x00fill``).
    """
    if not isinstance(name, str):
        raise InvalidKeyError(
            f"lock names must be str, got {type(name).__name__}.",
            hint="name the lock with a string, e.g. cache.lock('nightly-report').",
        )
    key = LOCK_PREFIX + name
    if len(key) <= MAX_KEY_LENGTH:
        return key
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()
    return _HASHED_LOCK + digest


class Lock:
    """Mutual exclusion across threads and processes sharing one cache.

    Acquire stores a random owner token with ``add`` (atomic put-if-absent) and a
    ``ttl`` so that a crashed owner cannot hold the lock forever; release deletes the
    entry only if it still holds *this* owner's token. Use as a context manager::

        with cache.lock("nightly-report", ttl=60, timeout=5):
            build_nightly_report()
    """

    def __init__(
        self,
        cache: BaseCache,
        name: str,
        *,
        ttl: TimeSpan = 30.0,
        timeout: float | None = None,
        poll: float = 0.05,
    ) -> None:
        if poll <= 0:
            raise CacheValueError(f"lock poll interval must be > 0, got {poll!r}.")
        self.cache = cache
        self.name = name
        self.key = lock_key(name)
        self.ttl = ttl
        self.timeout = timeout
        self.poll = poll
        self.token: str | None = None

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take the lock; wait up to ``timeout`` seconds (None: forever) when blocking."""
        if self.token is not None:
            raise CacheValueError(f"lock '{self.name}' is already held by this Lock object.")
        token = secrets.token_hex(16)
        limit = self.timeout if timeout is None else timeout
        deadline = None if limit is None else time.monotonic() + limit
        delay = min(self.poll, 0.005)
        while True:
            if self.cache.add(self.key, token, time_span=self.ttl):
                self.token = token
                return True
            if not blocking or (deadline is not None and time.monotonic() >= deadline):
                return False
            time.sleep(delay)
            delay = min(delay * 2, self.poll)  # back off up to the poll interval

    def release(self) -> bool:
        """Release the lock if this object still owns it; False if it had expired."""
        token, self.token = self.token, None
        if token is None:
            return False
        self.cache._writable("lock release")
        sk = self.cache._sk(self.key)
        return self.cache._run(
            "delete", self.key, self.cache._delete_if_equal, sk, token, self.cache._clock()
        )

    @property
    def locked(self) -> bool:
        """Whether this object currently believes it holds the lock."""
        return self.token is not None

    def __enter__(self) -> Lock:
        if not self.acquire():
            raise LockTimeoutError(
                f"could not acquire lock '{self.name}' within {self.timeout}s.",
                hint="raise the timeout, or look for a stuck owner (locks expire after their ttl).",
            )
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
