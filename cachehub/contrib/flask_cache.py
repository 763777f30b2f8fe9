"""Flask-Caching's ``CACHE_TYPE`` for cachehub: signed pickle keyed from the app's secret.

::

    app.config["CACHE_TYPE"] = "cachehub.contrib.flask_cache.CacheHubFlaskCache"
    app.config["CACHE_OPTIONS"] = {"cache": "main"}     # or CACHE_ARGS = ["main"]
    cache = Cache(app)

Flask-Caching builds the backend through :meth:`CacheHubFlaskCache.factory` with the
app, so the signing key is derived from ``app.config["SECRET_KEY"]`` (and the old
secrets of ``SECRET_KEY_FALLBACKS`` still verify), and ``CACHE_KEY_PREFIX`` becomes the
key prefix. Without a ``SECRET_KEY`` the app refuses to start with a
:class:`~cachehub.errors.ConfigError`. Everything else is
:class:`~cachehub.contrib.cachelib.CacheHubCachelib`.
"""

from __future__ import annotations

from typing import Any

from flask_caching.backends.base import BaseCache as FlaskCachingBase

from .cachelib import CacheHubCachelib

__all__ = ["CacheHubFlaskCache"]


class CacheHubFlaskCache(CacheHubCachelib, FlaskCachingBase):
    """:class:`CacheHubCachelib` as a Flask-Caching backend (see the module docs)."""

    @classmethod
    def factory(
        cls, app: Any, config: dict[str, Any], args: list[Any], kwargs: dict[str, Any]
    ) -> CacheHubFlaskCache:
        """Flask-Caching's constructor hook: the app's secret and ``CACHE_KEY_PREFIX``,
        then ``CACHE_ARGS`` / ``CACHE_OPTIONS`` (which win over them)."""
        options = dict(kwargs)
        if options.get("value_format", "signed-pickle") != "cache-codec":
            options.setdefault("secret_key", app.config.get("SECRET_KEY"))
            options.setdefault("secret_key_fallbacks", app.config.get("SECRET_KEY_FALLBACKS"))
        options.setdefault("key_prefix", config.get("CACHE_KEY_PREFIX"))
        return cls(*args, **options)
