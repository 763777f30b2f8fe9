"""The registry of configured caches, and the process-wide instance behind the functions.

:class:`Caches` holds validated :class:`~cachehub.loader.CacheEntry` objects and builds
each cache on first lookup (thread-safe). Providers connect lazily themselves, so
building a cache never touches the network: :meth:`Caches.validate` can surface every
configuration error at start-up. :meth:`Caches.add` and :meth:`Caches.remove` change the
configured caches at run time (Lucee's ``cacheRegionNew`` / ``cacheRegionRemove``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from .api import BASE_OPTIONS, BaseCache, settings_identity
from .config import canonical_settings, fold_setting, redact, suggest, validate_settings
from .errors import CacheError, ConfigError, UnknownCacheError
from .loader import (
    CacheEntry,
    ConfigSource,
    check_namespaces,
    default_entry,
    load_config,
    parse_entry,
)
from .plugins import LUCEE_CLASSES, add_change_listener, check_requirement, operation_observer
from .resolve import resolve_provider

if TYPE_CHECKING:
    from .aio import AsyncCache

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


def provider_settings(
    entry: CacheEntry, provider: type[BaseCache], *, warn: bool = True
) -> dict[str, Any]:
    """The ``custom`` settings of ``entry`` as ``provider`` receives them.

    An entry whose ``class`` is a Lucee class name is read in Lucee's terms: its Lucee
    settings are renamed and converted to cachehub's units (``socketTimeout`` in ms) and
    the ones cachehub does not use are named in one warning (``warn``).
    """
    custom = dict(entry.custom)
    if entry.class_name not in LUCEE_CLASSES:
        return custom
    where = f"cache '{entry.name}' ({provider.__name__})"
    options = (*BASE_OPTIONS, *provider.options)
    return canonical_settings(
        custom, options, provider.lucee_options, where=where, lucee=True, warn=warn
    )


def backend_place(entry: CacheEntry) -> tuple[Hashable, str] | None:
    """Where ``entry`` writes: its backend, as its provider says, and its namespace (the
    validated ``namespace`` setting, whatever spelling or Lucee key set it); None when
    the backend is unknown.

    Nothing is built or connected. An entry whose provider cannot be resolved is skipped
    (it fails when used), and so is one with an unset ``${VAR}``; one whose settings the
    provider rejects is identified by the conservative rule of
    :func:`~cachehub.api.settings_identity` on its raw settings.
    """
    if entry.problem is not None:
        return None
    try:
        provider = resolve_provider(entry.class_name)
    except ConfigError:
        return None
    where = f"cache '{entry.name}' ({provider.__name__})"
    try:
        raw = provider_settings(entry, provider, warn=False)
    except CacheError:
        raw = dict(entry.custom)
    try:
        settings = validate_settings(
            raw,
            (*BASE_OPTIONS, *provider.options),
            where=where,
            lucee_options=provider.lucee_options,
            warn=False,
        )
        identity = provider.backend_identity(settings)
    except CacheError:
        if not provider.distributed:
            return None
        # The namespace as the raw settings spell it: "Namespace" and "name_space" are
        # the setting too (names match in any case and in snake_case), and a cache named
        # by one spelling must not escape the nesting check.
        named = (v for k, v in raw.items() if isinstance(k, str) and fold_setting(k) == "namespace")
        return settings_identity(provider, entry.custom), str(next(named, ""))
    except Exception as exc:
        raise ConfigError(
            f"{where}: {provider.__name__}.backend_identity() raised {type(exc).__name__}: "
            f"{redact(str(exc)[:300])}",
            hint="this is a bug in the provider; report it to its maintainers.",
        ) from None
    if identity is None:
        return None
    try:
        hash(identity)
    except TypeError:
        raise ConfigError(
            f"{where}: {provider.__name__}.backend_identity() returned an unhashable "
            f"{type(identity).__name__}.",
            hint="the provider must return a hashable value such as a tuple, or None.",
        ) from None
    return identity, str(settings.get("namespace", ""))


@dataclass(frozen=True)
class _Config:
    """One consistent view of the configured caches, replaced whole on add/remove.

    Lookups read it without the lock: they always see entries, folded names and the
    default of one and the same configuration.
    """

    entries: Mapping[str, CacheEntry]
    folded: Mapping[str, str]
    default: str | None

    @classmethod
    def of(cls, entries: Mapping[str, CacheEntry], keep: str | None = None) -> _Config:
        """The view of ``entries``; ``keep`` stays the default unless another is marked.

        (Adding a second cache at run time must not take the default away from the
        first, which was the default only because it was alone.)
        """
        default = default_entry(entries)  # refuses several marked defaults
        if default is None and keep in entries:
            default = keep
        return cls(
            MappingProxyType(dict(entries)),
            MappingProxyType({name.lower(): name for name in entries}),
            default,
        )


class Caches:
    """The configured caches: ``caches["name"]``, ``caches.get()`` for the default.

    ``config`` is application configuration (like Lucee's ``this.caches``) and
    ``server_config`` server configuration (like ``.CFConfig.json``); each may be a
    mapping or the path of a JSON file. Application entries override server entries of
    the same (case-insensitive) name. ``clock`` is passed to every cache, for tests.
    ``environ`` replaces ``os.environ`` for ``${VAR}`` references.
    """

    def __init__(
        self,
        config: ConfigSource | None = None,
        *,
        server_config: ConfigSource | None = None,
        clock: Callable[[], float] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        entries = load_config(config, server_config=server_config, environ=environ)
        check_namespaces(entries, backend_place)
        self._config = _Config.of(entries)
        self._clock = clock
        self._environ = environ
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
        return self._config.default

    def names(self) -> list[str]:
        """Configured cache names, in configuration order."""
        return list(self._config.entries)

    def entries(self) -> list[CacheEntry]:
        """The validated configuration entries, in configuration order."""
        return list(self._config.entries.values())

    def entry(self, name: str | None = None) -> CacheEntry:
        """The configuration entry of cache ``name`` (None: the default cache)."""
        config = self._config
        return config.entries[self._resolve(name, config)]

    def _resolve(self, name: str | None, config: _Config) -> str:
        entries = config.entries
        if name is None:
            if config.default is not None:
                return config.default
            configured = ", ".join(entries) or "none"
            raise ConfigError(
                f"no default cache: {len(entries)} caches are configured "
                f"({configured}) and none is marked default.",
                hint='mark one entry with "default": true, or pass a cache name.',
            )
        if not isinstance(name, str):
            raise UnknownCacheError(
                f"cache names are strings, got {type(name).__name__} {name!r:.60}.",
                hint="pass the configured name, e.g. caches['sessions'].",
            )
        if name in entries:
            return name
        folded = config.folded.get(name.lower())
        if folded is not None:
            return folded  # Lucee cache names are case-insensitive
        guess = suggest(name, entries)
        raise UnknownCacheError(
            f"no cache named '{name}' is configured."
            + (f" Did you mean '{guess}'?" if guess else ""),
            hint=f"configured caches: {', '.join(entries) or 'none'}.",
        )

    def get(self, name: str | None = None) -> BaseCache:
        """The cache called ``name`` (case-insensitive), or the default cache for None.

        The cache is built on first lookup; later lookups return the same object.
        """
        key = self._resolve(name, self._config)
        cache = self._caches.get(key)
        if cache is not None:
            return cache
        with self._lock:
            # Resolved again under the lock: the cache may have been removed meanwhile.
            config = self._config
            key = self._resolve(name, config)
            cache = self._caches.get(key)
            if cache is None:
                cache = self._build(config.entries[key])
                self._caches[key] = cache
            return cache

    def aio(self, name: str | None = None) -> AsyncCache:
        """The async shell of the cache called ``name`` (the default for None).

        ``await caches.aio("main").get(key)``: the same cache object as :meth:`get`
        returns, driven by its :class:`~cachehub.aio.AsyncCache` (see docs/async.md).
        """
        return self.get(name).aio()

    def __getitem__(self, name: str) -> BaseCache:
        """The cache called ``name``; use :meth:`get` with no argument for the default."""
        if name is None:
            raise UnknownCacheError(
                "caches[None] is not a cache name.", hint="use caches.get() for the default cache."
            )
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        config = self._config
        return isinstance(name, str) and (name in config.entries or name.lower() in config.folded)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._config.entries))

    def __len__(self) -> int:
        return len(self._config.entries)

    # ------------------------------------------------------------------ run-time changes

    def add(self, name: str, entry: Mapping[str, Any] | CacheEntry) -> BaseCache:
        """Configure a new cache ``name`` at run time (Lucee's ``cacheRegionNew``) and build it.

        ``entry`` is a configuration entry as in a config file (``{"class": "redis",
        "custom": {...}}``, ``${VAR}`` resolved now) or a :class:`CacheEntry`. Refused
        with a :class:`ConfigError`: a name already configured (in any case), an invalid
        entry, a namespace nesting with another cache on the same backend, a second
        default. Nothing changes when it is refused. The current default stays the
        default unless the new entry is marked default. Thread-safe.
        """
        if not isinstance(name, str) or not name.strip() or name != name.strip():
            raise ConfigError(
                f"a cache name must be a non-empty string without surrounding spaces, "
                f"got {name!r:.60}.",
                hint="name the cache, e.g. caches.add('reports', {'class': 'memory'}).",
            )
        if isinstance(entry, CacheEntry):
            if entry.name != name:
                raise ConfigError(
                    f"caches.add('{name}', ...) was given the entry of cache '{entry.name}'.",
                    hint="pass the entry's own name, or a mapping entry.",
                )
            parsed = entry
        elif isinstance(entry, Mapping):
            parsed = parse_entry(name, entry, source="runtime", environ=self._environ)
        else:
            raise ConfigError(
                f"cache '{name}': the entry must be a mapping like {{'class': 'memory'}}, "
                f"got {type(entry).__name__}.",
                hint="pass e.g. {'class': 'redis', 'custom': {'host': 'localhost'}}.",
            )
        if parsed.problem is not None:
            raise parsed.problem
        with self._lock:
            config = self._config
            existing = config.folded.get(name.lower())
            if existing is not None:
                raise ConfigError(
                    f"a cache named '{existing}' is already configured.",
                    hint=f"remove it first with caches.remove('{existing}'), or pick another "
                    "name (cache names are case-insensitive).",
                )
            entries = {**config.entries, name: parsed}
            check_namespaces(entries, backend_place)
            updated = _Config.of(entries, keep=config.default)  # refuses a second default
            cache = self._build(parsed)
            self._caches[name] = cache
            self._config = updated
        return cache

    def remove(self, name: str) -> None:
        """Remove cache ``name`` at run time (Lucee's ``cacheRegionRemove``) and close it.

        The stored entries stay in the backend. Later lookups of ``name`` raise
        :class:`UnknownCacheError`. Removing the default cache leaves none, unless one
        cache is marked default or only one is left (as at start-up). Thread-safe.
        """
        with self._lock:
            config = self._config
            key = self._resolve(name, config)
            entries = {k: v for k, v in config.entries.items() if k != key}
            self._config = _Config.of(entries, keep=config.default)
            cache = self._caches.pop(key, None)
        if cache is not None:
            cache.close()

    # ------------------------------------------------------------------ construction

    def _build(self, entry: CacheEntry) -> BaseCache:
        if entry.problem is not None:
            # ${VAR}s are resolved lazily: the variable may have been set since start-up.
            assert entry.raw is not None
            entry = parse_entry(entry.name, entry.raw, source=entry.source, environ=self._environ)
            if entry.problem is not None:
                raise entry.problem
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
                provider_settings(entry, provider),
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
        names = list(self._config.entries)
        for name in names:
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
                f"{len(errors)} of {len(names)} caches are misconfigured:\n"
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
        config = self._config
        entries = ", ".join(repr(entry) for entry in config.entries.values())
        return f"Caches([{entries}], default={config.default!r})"


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
