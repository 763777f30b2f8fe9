"""Django session engine over :class:`~cachehub.contrib.django.CacheHubCache`.

Django's stock cache engine (``django.contrib.sessions.backends.cache``) works on the
adapter as it is. This engine is the same, plus the spec's storage guard: the cache
behind ``SESSION_CACHE_ALIAS`` must be a cachehub cache built with ``storage: true``::

    SESSION_ENGINE = "cachehub.contrib.django_session"
    SESSION_CACHE_ALIAS = "sessions"
"""

from __future__ import annotations

from django.contrib.sessions.backends.cache import (  # type: ignore[import-untyped]
    SessionStore as CacheSessionStore,
)

from ..errors import ConfigError
from ..session import require_storage
from .django import CacheHubCache

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
