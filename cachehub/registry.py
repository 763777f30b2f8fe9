"""The registry of configured caches, and the process-wide instance behind the functions.

:class:`Caches` holds validated :class:`~cachehub.loader.CacheEntry` objects and builds
each cache on first lookup (thread-safe). Providers connect lazily themselves, so
building a cache never touches the network: :meth:`Caches.validate` can surface every
configuration error at start-up.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Hashable, Iterator, Mapping
from pathlib import Path
from typing import Final

from .api import BASE_OPTIONS, BaseCache, settings_identity
from .config import redact, suggest, validate_settings
from .errors import CacheError, ConfigError, UnknownCacheError
from .loader import CacheEntry, ConfigSource, check_namespaces, default_entry, load_config
from .plugins import add_change_listener, check_requirement, operation_observer
from .resolve import resolve_provider

__all__ = [
    "Caches",
    "UnknownCacheError",
    "configure",
    "get_caches",
    "CONFIG_ENV",
    "DEFAULT_CONFIG_FILE",
]

CONFIG_ENV: Final = "CACHEHUB_CONFIG"
"""Environment variable naming the JSON file :func:`get_caches` loads when unconfigured."""

DEFAULT_CONFIG_FILE: Final = "cachehub.json"
"""File in the working directory :func:`get_caches` loads when ``CACHEHUB_CONFIG`` is unset."""


def backend_identity(entry: CacheEntry) -> Hashable | None:
    """Which backend ``entry`` writes to, as its provider says; None when unknown.

    Nothing is built or connected. An entry whose provider cannot be resolved is skipped
    (it fails when used); one whose settings the provider rejects is identified by the
    conservative rule of :func:`~cachehub.api.settings_identity` on its raw settings.
    """
    try:
        provider = resolve_provider(entry.class_name)
    except ConfigError:
        return None
    where = f"cache '{entry.name}' ({provider.__name__})"
    try:
        settings = validate_settings(entry.custom, (*BASE_OPTIONS, *provider.options), where=where)
        identity = provider.backend_identity(settings)
    except CacheError:
        return settings_identity(provider, entry.custom) if provider.distributed else None
    except Exception as exc:
        raise ConfigError(
            f"{where}: {provider.__name__}.backend_identity() raised {type(exc).__name__}: "
            f"{redact(str(exc)[:300])}",
            hint="this is a bug in the provider; report it to its maintainers.",
        ) from None
    try:
        hash(identity)
    except TypeError:
        raise ConfigError(
            f"{where}: {provider.__name__}.backend_identity() returned an unhashable "
            f"{type(identity).__name__}.",
            hint="the provider must return a hashable value such as a tuple, or None.",
        ) from None
    return identity


class Caches:
    """The configured caches: ``caches["name"]``, ``caches.get()`` for the default.

    ``config`` is application configuration (like Lucee's ``this.caches``) and
    ``server_config`` server configuration (like ``.CFConfig.json``); each may be a
    mapping or the path of a JSON file. Application entries override server entries of
    the same (case-insensitive) name. ``clock`` is passed to every cache, for tests.
    """

    def __init__(
        self,
        config: ConfigSource | None = None,
        *,
        server_config: ConfigSource | None = None,
        clock: Callable[[], float] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._entries = load_config(config, server_config=server_config, environ=environ)
        check_namespaces(self._entries, backend_identity)
        self._default = default_entry(self._entries)
        self._folded = {name.lower(): name for name in self._entries}
        self._clock = clock
        self._caches: dict[str, BaseCache] = {}
        # Re-entrant: a provider's constructor may itself look up another cache.
        self._lock = threading.RLock()
        add_change_listener(self._rebind_observer)

    @classmethod
    def from_file(
        cls, path: str | os.PathLike[str], *, clock: Callable[[], float] | None = None
    ) -> Caches:
        """Load a JSON file: ``{"caches": {...}}`` (``.CFConfig.json``) or ``{name: entry}``."""
        return cls(server_config=path, clock=clock)

    # ------------------------------------------------------------------ lookup

    @property
    def default_name(self) -> str | None:
        """Name of the default cache (marked ``default``, or the only one), or None."""
        return self._default

    def names(self) -> list[str]:
        """Configured cache names, in configuration order."""
        return list(self._entries)

    def entries(self) -> list[CacheEntry]:
        """The validated configuration entries, in configuration order."""
        return list(self._entries.values())

    def entry(self, name: str | None = None) -> CacheEntry:
        """The configuration entry of cache ``name`` (None: the default cache)."""
        return self._entries[self._resolve(name)]

    def _resolve(self, name: str | None) -> str:
        if name is None:
            if self._default is not None:
                return self._default
            configured = ", ".join(self._entries) or "none"
            raise ConfigError(
                f"no default cache: {len(self._entries)} caches are configured "
                f"({configured}) and none is marked default.",
                hint='mark one entry with "default": true, or pass a cache name.',
            )
        if not isinstance(name, str):
            raise UnknownCacheError(
                f"cache names are strings, got {type(name).__name__} {name!r:.60}.",
                hint="pass the configured name, e.g. caches['sessions'].",
            )
        if name in self._entries:
            return name
        folded = self._folded.get(name.lower())
        if folded is not None:
            return folded  # Lucee cache names are case-insensitive
        guess = suggest(name, self._entries)
        raise UnknownCacheError(
            f"no cache named '{name}' is configured."
            + (f" Did you mean '{guess}'?" if guess else ""),
            hint=f"configured caches: {', '.join(self._entries) or 'none'}.",
        )

    def get(self, name: str | None = None) -> BaseCache:
        """The cache called ``name`` (case-insensitive), or the default cache for None.

        The cache is built on first lookup; later lookups return the same object.
        """
        key = self._resolve(name)
        cache = self._caches.get(key)
        if cache is not None:
            return cache
        with self._lock:
            cache = self._caches.get(key)
            if cache is None:
                cache = self._build(self._entries[key])
                self._caches[key] = cache
            return cache

    def __getitem__(self, name: str) -> BaseCache:
        """The cache called ``name``; use :meth:`get` with no argument for the default."""
        if name is None:
            raise UnknownCacheError(
                "caches[None] is not a cache name.", hint="use caches.get() for the default cache."
            )
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._entries or name.lower() in self._folded)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    # ------------------------------------------------------------------ construction

    def _build(self, entry: CacheEntry) -> BaseCache:
        try:
            if entry.package:
                check_requirement(entry.package)
            provider = resolve_provider(entry.class_name)
        except ConfigError as exc:
            # Same error type, now saying which cache it is about.
            raise type(exc)(f"cache '{entry.name}': {exc.message}", hint=exc.hint) from (
                exc.__cause__
            )
        try:
            return provider(
                dict(entry.custom),
                name=entry.name,
                read_only=entry.read_only,
                storage=entry.storage,
                clock=self._clock,
                observer=operation_observer(),
            )
        except CacheError:
            raise
        except Exception as exc:
            raise ConfigError(
                f"cache '{entry.name}': creating {provider.__name__} failed: "
                f"{type(exc).__name__}: {redact(str(exc))}",
                hint="check the cache's 'custom' settings against the provider's options.",
            ) from exc

    def _rebind_observer(self) -> None:
        """Plugins changed: give every live cache the current observer (or None)."""
        with self._lock:
            observer = operation_observer()
            for cache in self._caches.values():
                cache._observer = observer

    def validate(self) -> dict[str, str]:
        """Build every cache (without connecting) so configuration errors surface now.

        Returns ``{name: "module:Class"}``. One bad entry re-raises its own typed error;
        several raise one :class:`ConfigError` listing them all.
        """
        errors: list[CacheError] = []
        providers: dict[str, str] = {}
        for name in self._entries:
            try:
                cls = type(self.get(name))
            except CacheError as exc:
                errors.append(exc)
                continue
            providers[name] = f"{cls.__module__}:{cls.__qualname__}"
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise ConfigError(
                f"{len(errors)} of {len(self._entries)} caches are misconfigured:\n"
                + "\n".join(f"  - {exc}" for exc in errors),
                hint="fix each entry listed above.",
            )
        return providers

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close every built cache's connections (they reconnect lazily if used again)."""
        with self._lock:
            caches = list(self._caches.values())
        failures: list[BaseException] = []
        for cache in caches:
            try:
                cache.close()
            except Exception as exc:
                failures.append(exc)
        if failures:
            raise failures[0]

    def __enter__(self) -> Caches:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        entries = ", ".join(repr(entry) for entry in self._entries.values())
        return f"Caches([{entries}], default={self._default!r})"


# ---------------------------------------------------------------------- process-wide

_current: Caches | None = None
_current_lock = threading.Lock()


def _discover() -> Caches:
    """The configuration named by ``CACHEHUB_CONFIG``, else ``./cachehub.json``."""
    named = os.environ.get(CONFIG_ENV)
    if named:
        if not Path(named).is_file():
            raise ConfigError(
                f"{CONFIG_ENV} is set to '{named}', which is not a file.",
                hint=f"point {CONFIG_ENV} at a JSON cache configuration, or unset it.",
            )
        return Caches.from_file(named)
    if Path(DEFAULT_CONFIG_FILE).is_file():
        return Caches.from_file(DEFAULT_CONFIG_FILE)
    raise ConfigError(
        "cachehub is not configured: no configure() call, no "
        f"{CONFIG_ENV} environment variable and no ./{DEFAULT_CONFIG_FILE}.",
        hint="call cachehub.configure({'main': {'class': 'memory'}}), set "
        f"{CONFIG_ENV}=/path/to/caches.json, or create ./{DEFAULT_CONFIG_FILE}.",
    )


def configure(
    config: ConfigSource | None = None,
    *,
    server_config: ConfigSource | None = None,
    clock: Callable[[], float] | None = None,
) -> Caches:
    """Set the process-wide caches used by :mod:`cachehub.functions` and ``@cached``.

    With no arguments, (re)loads the file named by ``CACHEHUB_CONFIG`` or
    ``./cachehub.json``. The previous registry's caches are closed.
    """
    global _current
    if config is None and server_config is None:
        caches = _discover()
    else:
        caches = Caches(config, server_config=server_config, clock=clock)
    with _current_lock:
        previous, _current = _current, caches
    if previous is not None and previous is not caches:
        previous.close()
    return caches


def get_caches() -> Caches:
    """The process-wide caches; loaded on first use if :func:`configure` was not called."""
    global _current
    current = _current
    if current is not None:
        return current
    with _current_lock:
        if _current is None:
            _current = _discover()
        return _current
