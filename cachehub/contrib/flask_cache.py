"""Flask-Caching's ``CACHE_TYPE`` for cachehub: signed pickle keyed from the app's secret.

::

    app.config["CACHE_TYPE"] = "cachehub.contrib.flask_cache.CacheHubFlaskCache"
    app.config["CACHEHUB_CACHE"] = "main"   # or CACHE_OPTIONS = {"cache": "main"}
    cache = Cache(app)

Flask-Caching builds the backend through :meth:`CacheHubFlaskCache.factory` with the
app, so the signing key is derived from ``app.config["SECRET_KEY"]`` (and the old
secrets of ``SECRET_KEY_FALLBACKS`` still verify), and ``CACHE_KEY_PREFIX`` becomes the
key prefix. ``CACHEHUB_CACHE`` names the cachehub cache (a configured name, a cache
object or an inline entry) unless ``CACHE_ARGS`` / ``CACHE_OPTIONS`` give one. Without a
``SECRET_KEY`` the app refuses to start with a
:class:`~cachehub.errors.ConfigError`. Everything else is
:class:`~cachehub.contrib.cachelib.CacheHubCachelib`.
"""

from __future__ import annotations

from typing import Any

from flask_caching.backends.base import BaseCache as FlaskCachingBase

from ..errors import ConfigError
from .cachelib import CacheHubCachelib

__all__ = ["CacheHubFlaskCache"]


class CacheHubFlaskCache(CacheHubCachelib, FlaskCachingBase):
    """:class:`CacheHubCachelib` as a Flask-Caching backend (see the module docs)."""

    @classmethod
    def factory(
        cls, app: Any, config: dict[str, Any], args: list[Any], kwargs: dict[str, Any]
    ) -> CacheHubFlaskCache:
        """Flask-Caching's constructor hook: the app's secret, ``CACHEHUB_CACHE`` and
        ``CACHE_KEY_PREFIX``, then ``CACHE_ARGS`` / ``CACHE_OPTIONS`` (which win)."""
        options = dict(kwargs)
        if not args and "cache" not in options:
            if config.get("CACHEHUB_CACHE") is None:
                raise ConfigError(
                    "Flask-Caching's CacheHubFlaskCache needs a cachehub cache.",
                    hint="set app.config['CACHEHUB_CACHE'] to the name of a configured "
                    "cachehub cache (or a cache entry such as {'class': 'memory'}).",
                )
            options["cache"] = config["CACHEHUB_CACHE"]
        if options.get("value_format", "signed-pickle") != "cache-codec":
            options.setdefault("secret_key", app.config.get("SECRET_KEY"))
            options.setdefault("secret_key_fallbacks", app.config.get("SECRET_KEY_FALLBACKS"))
        options.setdefault("key_prefix", config.get("CACHE_KEY_PREFIX"))
        return cls(*args, **options)
