"""Django session engine over :class:`~cachehub.contrib.django.CacheHubCache`.

Django's stock cache engine (``django.contrib.sessions.backends.cache``) works on the
adapter as it is (and the adapter refuses it on a cache without ``storage: true``).
This engine is the same, plus the spec's storage guard checked up front (the cache
behind ``SESSION_CACHE_ALIAS`` must be a cachehub cache built with ``storage: true``),
and it stores each session under the SHA-256 of its key, so no cache key, error
message or log line can carry a usable session id::

    SESSION_ENGINE = "cachehub.contrib.django_session"
    SESSION_CACHE_ALIAS = "sessions"
"""

from __future__ import annotations

import hashlib

from django.contrib.sessions.backends.cache import (  # type: ignore[import-untyped]
    SessionStore as CacheSessionStore,
)

from ..errors import ConfigError
from ..session import require_storage
from .django import SESSION_ENGINE_PREFIX, CacheHubCache

__all__ = ["SessionStore"]


class SessionStore(CacheSessionStore):  # type: ignore[misc]
    """Django's cache session store, refusing caches not enabled for storage."""

    def __init__(self, session_key: str | None = None) -> None:
        super().__init__(session_key)
        backend = self._cache
        if not isinstance(backend, CacheHubCache):
            raise ConfigError(
                f"SESSION_ENGINE {__name__} needs a cachehub cache, but "
                f"SESSION_CACHE_ALIAS names a {type(backend).__name__}.",
                hint="point SESSION_CACHE_ALIAS at a CACHES entry whose BACKEND is "
                "'cachehub.contrib.django.CacheHubCache'.",
            )
        require_storage(backend.cachehub)

    cache_key_prefix = SESSION_ENGINE_PREFIX

    def _storage_key(self, session_key: str) -> str:
        digest = hashlib.sha256(session_key.encode("utf-8", "surrogatepass")).hexdigest()
        return f"{self.cache_key_prefix}{digest}"

    @property
    def cache_key(self) -> str:
        """The cache key of this session: the SHA-256 of its id, never the id."""
        return self._storage_key(self._get_or_create_session_key())

    async def acache_key(self) -> str:
        """:attr:`cache_key` for Django's async session API."""
        return self._storage_key(await self._aget_or_create_session_key())

    def exists(self, session_key: str | None) -> bool:
        """Whether ``session_key`` names a stored session."""
        return bool(session_key) and self._storage_key(str(session_key)) in self._cache

    async def aexists(self, session_key: str | None) -> bool:
        """:meth:`exists` for Django's async session API."""
        return bool(session_key) and bool(
            await self._cache.ahas_key(self._storage_key(str(session_key)))
        )

    def delete(self, session_key: str | None = None) -> None:
        """Remove the session ``session_key`` (default: this one)."""
        key = self.session_key if session_key is None else session_key
        if key is not None:
            self._cache.delete(self._storage_key(key))

    async def adelete(self, session_key: str | None = None) -> None:
        """:meth:`delete` for Django's async session API."""
        key = self.session_key if session_key is None else session_key
        if key is not None:
            await self._cache.adelete(self._storage_key(key))
