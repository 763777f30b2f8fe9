"""Adapters for the frameworks people already use: Django, Flask, dogpile.cache,
cachelib / Flask-Caching, and WSGI / ASGI session middleware; plus OpenTelemetry.

The Django, cachelib and Flask-Caching adapters store HMAC-signed pickle keyed from the
framework's secret (:mod:`cachehub.contrib.signing`).

Each adapter lives in its own module and imports its framework only there, so that
``import cachehub`` never pulls in a framework. Install the matching extra, e.g.
``pip install cachehub[django]``. See docs/integrations.md.

This package module itself only holds :func:`resolve_cache`, which every adapter uses
to turn "which cache?" settings into a :class:`~cachehub.api.BaseCache`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from ..api import BaseCache, TimeSpan
from ..errors import ConfigError
from ..registry import Caches, get_caches
from ..session import SessionStore

__all__ = [
    "CacheSpec",
    "for_cdns_only",
    "private_response",
    "resolve_cache",
    "session_store",
    "vary_cookie",
]

CacheSpec = BaseCache | str | Mapping[str, Any]
"""A cache object, the name of a cache in the process registry, or one cache entry
(``{"class": "memory", "custom": {...}, "storage": true}``)."""

# Registries built from inline entries, one per distinct (name, entry): frameworks such as
# Django build a backend object per thread from copies of the same settings, and they all
# must share one cache. Keeping the registry alive also keeps its plugin listener alive.
_inline: dict[str, Caches] = {}
_inline_lock = threading.Lock()


def resolve_cache(spec: CacheSpec, *, name: str = "default", where: str = "adapter") -> BaseCache:
    """The cache ``spec`` designates.

    * a :class:`BaseCache` is returned as is;
    * a ``str`` is looked up in the process-wide registry (:func:`cachehub.registry.get_caches`);
    * a mapping is one cache entry, built through a private :class:`~cachehub.registry.Caches`
      under ``name`` (validated exactly like a configuration file entry).

    ``where`` names the setting for error messages (e.g. ``"CACHES['default']"``).
    """
    if isinstance(spec, BaseCache):
        return spec
    if isinstance(spec, str):
        return get_caches().get(spec)
    if isinstance(spec, Mapping):
        fingerprint = json.dumps([name, spec], sort_keys=True, default=repr)
        with _inline_lock:
            registry = _inline.get(fingerprint)
            if registry is None:
                registry = Caches({name: dict(spec)})
                _inline[fingerprint] = registry
        return registry.get(name)
    raise ConfigError(
        f"{where}: expected a cache, a cache name or a cache entry, got {type(spec).__name__}.",
        hint="pass e.g. 'sessions' (a configured cache) or {'class': 'memory', 'storage': True}.",
    )


def session_store(
    spec: SessionStore | CacheSpec, *, idle_time: TimeSpan, where: str = "session adapter"
) -> SessionStore:
    """``spec`` if it is a :class:`SessionStore`, else a store on the cache it designates."""
    if isinstance(spec, SessionStore):
        return spec
    return SessionStore(resolve_cache(spec, where=where), idle_time=idle_time)


def vary_cookie(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """``headers`` with ``Cookie`` added to ``Vary``.

    A response that may depend on the session must not be served from a shared cache
    to another user: an existing ``Vary`` gets ``Cookie`` appended (unless it already
    names it or is ``*``), otherwise ``Vary: Cookie`` is added.
    """
    out = list(headers)
    for i, (name, value) in enumerate(out):
        if name.lower() == "vary":
            if {f.strip().lower() for f in value.split(",")} & {"cookie", "*"}:
                return out
            out[i] = (name, f"{value}, Cookie" if value.strip() else "Cookie")
            return out
    out.append(("Vary", "Cookie"))
    return out


def private_response(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """``headers`` of a response that sets (or clears) the session cookie, made so that
    no shared cache stores it.

    A CDN or proxy that stored such a response would hand its ``Set-Cookie`` (one user's
    session id) to every later visitor: ``Vary: Cookie`` does not help, since the next
    visitor without a cookie matches the request that got it. ``Cache-Control`` gets
    ``private`` (shared caches must not store; the user's browser still may), and the
    directives that address shared caches (``public``, ``s-maxage``) are dropped;
    ``no-store`` is enough as it is. Several ``Cache-Control`` fields become one. The
    fields addressed to CDNs only (:func:`for_cdns_only`) are dropped: a CDN that reads
    one ignores ``Cache-Control``.
    """
    out: list[tuple[str, str]] = []
    directives: list[str] = []
    name = "Cache-Control"
    for header, value in headers:
        if header.lower() == "cache-control":
            name = header
            directives.extend(d.strip() for d in value.split(",") if d.strip())
        elif not for_cdns_only(header):
            out.append((header, value))
    kept = [
        d
        for d in directives
        if d.split("=", 1)[0].strip().lower() not in ("public", "s-maxage", "private")
    ]
    if not any(d.lower() == "no-store" for d in kept):
        kept.append("private")
    out.append((name, ", ".join(kept)))
    return out


def for_cdns_only(header: str) -> bool:
    """Whether ``header`` is a caching field addressed to CDNs only: ``CDN-Cache-Control``
    and the vendors' targeted fields (``Cloudflare-CDN-Cache-Control``..., RFC 9213) and
    ``Surrogate-Control``. A CDN that reads one ignores ``Cache-Control`` (and its
    ``private``)."""
    name = header.lower()
    return name.endswith("cdn-cache-control") or name == "surrogate-control"
