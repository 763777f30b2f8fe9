"""The provider registry: one process-wide pluggy ``PluginManager`` for cachehub.

Installed provider distributions are found through the ``cachehub`` entry-point group;
application code and tests add plugins with :func:`register`. A config entry's
``class`` is turned into a provider class by :func:`resolve_provider`, which accepts a
registered alias (``memory``, a Lucee class name), ``pkg.mod.Class`` or ``pkg.mod:Class``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import logging
import shlex
import threading
import tomllib
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import pluggy
from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

from . import hookspecs
from .api import BaseCache
from .config import suggest
from .errors import ConfigError, MissingPackageError, UnknownProviderError
from .hookspecs import PROJECT, OperationEvent

__all__ = [
    "KNOWN_DISTRIBUTIONS",
    "LUCEE_CLASSES",
    "plugin_manager",
    "register",
    "unregister",
    "provider_aliases",
    "resolve_provider",
    "check_requirement",
    "install_command",
    "operation_observer",
    "add_change_listener",
    "registered_plugins",
]

_log = logging.getLogger("cachehub.plugins")

KNOWN_DISTRIBUTIONS: Final[Mapping[str, str]] = {
    "dynamodb": "cachehub-dynamodb",
    "redis": "cachehub-redis",
    "memory": "cachehub-memory",
}
"""Canonical provider alias -> the distribution that registers it."""

LUCEE_CLASSES: Final[Mapping[str, str]] = {
    "org.lucee.extension.aws.dynamodb.DynamoDBCache": "dynamodb",
    "lucee.extension.io.cache.redis.RedisCache": "redis",
    "lucee.extension.io.cache.redis.simple.RedisCache": "redis",
    "lucee.runtime.cache.eh.EHCache": "memory",
    "lucee.runtime.cache.ram.RamCache": "memory",
    "org.lucee.extension.cache.eh.EHCache": "memory",
}
"""Lucee cache class names -> the canonical alias of the cachehub provider replacing them,
so that an unchanged ``.CFConfig.json`` resolves (or says which package to install)."""

_PROVIDER_MODULES: Final[Mapping[str, str]] = {
    "cachehub_dynamodb": "cachehub-dynamodb",
    "cachehub_redis": "cachehub-redis",
    "cachehub_memory": "cachehub-memory",
}

_lock = threading.RLock()
_manager: pluggy.PluginManager | None = None
_listeners: list[weakref.ref[Callable[[], None]]] = []


def plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, created (and entry points loaded) on first use."""
    global _manager
    manager = _manager
    if manager is not None:
        return manager
    with _lock:
        if _manager is None:
            created = pluggy.PluginManager(PROJECT)
            created.add_hookspecs(hookspecs)
            try:
                created.load_setuptools_entrypoints(PROJECT)
            except Exception as exc:
                # One broken third-party distribution must say who it is.
                raise ConfigError(
                    f"loading the '{PROJECT}' entry-point plugins failed: "
                    f"{type(exc).__name__}: {exc}",
                    hint="reinstall or uninstall the provider package named in the error.",
                ) from exc
            _manager = created
        return _manager


def register(plugin: object, name: str | None = None) -> str:
    """Register a plugin object or module that is not installed through entry points.

    Returns the name it is registered under. Caches already created by a
    :class:`~cachehub.registry.Caches` registry pick up a new operation observer.
    """
    manager = plugin_manager()
    try:
        registered = manager.register(plugin, name=name)
    except ValueError as exc:
        raise ConfigError(
            f"plugin {plugin!r} (name {name!r}) is already registered.",
            hint="unregister() it first, or register it under another name.",
        ) from exc
    except pluggy.PluginValidationError as exc:
        raise ConfigError(
            f"plugin {plugin!r} is invalid: {exc}",
            hint="make its hook implementations match cachehub.hookspecs.",
        ) from exc
    if registered is None:
        raise ConfigError(
            f"plugin name {name!r} is blocked in the cachehub plugin manager.",
            hint="unblock it with plugin_manager().unblock(name) or pick another name.",
        )
    _reject_unknown_hooks(manager, plugin)
    _notify()
    return registered


def _reject_unknown_hooks(manager: pluggy.PluginManager, plugin: object) -> None:
    """pluggy only complains about misspelled hooks lazily; fail at registration instead."""
    specs = [n for n in dir(hookspecs) if n.startswith(f"{PROJECT}_")]
    for caller in manager.get_hookcallers(plugin) or []:
        if caller.has_spec():
            continue
        if any(not impl.optionalhook for impl in caller.get_hookimpls() if impl.plugin is plugin):
            manager.unregister(plugin)
            guess = suggest(caller.name, specs)
            raise ConfigError(
                f"plugin {plugin!r} implements unknown hook '{caller.name}'."
                + (f" Did you mean '{guess}'?" if guess else ""),
                hint=f"cachehub hooks are: {', '.join(specs)}.",
            )


def unregister(plugin: object) -> None:
    """Remove a plugin added with :func:`register`; unknown plugins are an error."""
    manager = plugin_manager()
    if not manager.is_registered(plugin):
        raise ConfigError(
            f"plugin {plugin!r} is not registered.",
            hint="pass the same object that was given to register().",
        )
    manager.unregister(plugin)
    _notify()


def add_change_listener(callback: Callable[[], None]) -> None:
    """Call ``callback()`` whenever a plugin is registered or unregistered.

    The callback is held weakly (bound methods via :class:`weakref.WeakMethod`), so a
    listening registry can still be garbage collected.
    """
    ref: weakref.ref[Callable[[], None]] = (
        weakref.WeakMethod(callback) if inspect.ismethod(callback) else weakref.ref(callback)
    )
    with _lock:
        _listeners.append(ref)


def _notify() -> None:
    with _lock:
        _listeners[:] = [ref for ref in _listeners if ref() is not None]
        callbacks = [cb for ref in _listeners if (cb := ref()) is not None]
    for callback in callbacks:
        callback()


# ---------------------------------------------------------------------- aliases


def _alias_table() -> dict[str, tuple[type | str, str]]:
    """``alias -> (target, plugin name)``; later registrations override earlier ones."""
    table: dict[str, tuple[type | str, str]] = {}
    caller = plugin_manager().hook.cachehub_providers
    # get_hookimpls() lists plugins in registration order, so the latest wins below.
    for impl in caller.get_hookimpls():
        if impl.wrapper or impl.hookwrapper:
            continue
        try:
            provided = impl.function()
        except Exception as exc:
            raise ConfigError(
                f"plugin '{impl.plugin_name}' raised {type(exc).__name__} in "
                f"cachehub_providers(): {exc}",
                hint="fix or unregister that plugin.",
            ) from exc
        if not isinstance(provided, Mapping):
            raise ConfigError(
                f"plugin '{impl.plugin_name}': cachehub_providers() must return a dict "
                f"of alias -> class, got {type(provided).__name__}.",
                hint="return e.g. {'myalias': 'my_pkg.cache:MyCache'}.",
            )
        for alias, target in provided.items():
            if not isinstance(alias, str) or not isinstance(target, (str, type)):
                raise ConfigError(
                    f"plugin '{impl.plugin_name}': provider alias {alias!r} -> {target!r} "
                    "is not a str -> class or 'module:Class' pair.",
                    hint="return e.g. {'myalias': 'my_pkg.cache:MyCache'}.",
                )
            table[alias] = (target, impl.plugin_name)
    return table


def _display(target: type | str) -> str:
    if isinstance(target, str):
        return target
    return f"{target.__module__}:{target.__qualname__}"


def provider_aliases() -> dict[str, str]:
    """Every registered alias -> its provider as ``"module:Class"``, sorted by alias."""
    return {alias: _display(target) for alias, (target, _) in sorted(_alias_table().items())}


def _lookup(name: str, table: Mapping[str, tuple[type | str, str]]) -> str | None:
    """The alias ``name`` refers to: exact match first, then case-insensitively."""
    if name in table:
        return name
    folded = [alias for alias in table if alias.lower() == name.lower()]
    return folded[0] if len(folded) == 1 else None


def resolve_provider(class_name: str) -> type[BaseCache]:
    """The provider class for a config entry's ``class``.

    Accepts a registered alias, ``pkg.mod.Class`` or ``pkg.mod:Class``. Raises
    :class:`UnknownProviderError` (with "did you mean"), :class:`MissingPackageError`
    (with the ``pip install`` command) or :class:`ConfigError` when the target is not a
    :class:`BaseCache` subclass.
    """
    if not isinstance(class_name, str) or not class_name.strip():
        raise ConfigError(
            f"a cache class must be a non-empty string, got {class_name!r}.",
            hint="set 'class' to a provider alias such as 'memory' or a 'module:Class' path.",
        )
    name = class_name.strip()
    table = _alias_table()
    alias = _lookup(name, table)
    canonical = LUCEE_CLASSES.get(name)
    if alias is None and canonical is not None:
        alias = _lookup(canonical, table)
    if alias is not None:
        target, plugin = table[alias]
        if isinstance(target, str):
            obj = _import_path(target, f"provider alias '{alias}' (plugin '{plugin}')", table)
        else:
            obj = target
        return _provider_class(obj, name)
    canonical = canonical or (name.lower() if name.lower() in KNOWN_DISTRIBUTIONS else None)
    if canonical is not None:
        raise _not_registered(name, canonical)
    if ":" in name or "." in name:
        return _provider_class(_import_path(name, f"cache class '{name}'", table), name)
    raise _unknown(name, table)


def _unknown(name: str, table: Mapping[str, object]) -> UnknownProviderError:
    pool = sorted({*table, *KNOWN_DISTRIBUTIONS})
    guess = suggest(name, pool)
    return UnknownProviderError(
        f"unknown cache class '{name}'." + (f" Did you mean '{guess}'?" if guess else ""),
        hint=f"use a registered alias ({', '.join(sorted(table)) or 'none registered'}), "
        "or a full path such as 'my_pkg.cache:MyCache'.",
    )


def _checkout_project(distribution: str) -> tuple[Path, Version] | None:
    """Where a source checkout holds ``distribution``, and its version; None if not here.

    Only when this cachehub itself runs from a checkout (an editable install): the
    providers then sit in ``providers/<name>/`` beside the ``cachehub`` package.
    """
    prefix = f"{PROJECT}-"
    if distribution == PROJECT:
        folder = Path(__file__).resolve().parents[1]
    elif distribution.startswith(prefix):
        folder = Path(__file__).resolve().parents[1] / "providers" / distribution[len(prefix) :]
    else:
        return None
    try:
        meta = tomllib.loads((folder / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    project = meta.get("project")
    if not isinstance(project, dict) or project.get("name") != distribution:
        return None
    try:
        return folder, Version(str(project.get("version")))
    except InvalidVersion:
        return None


def install_command(requirement: str) -> str:
    """The ``pip install`` command for a requirement such as ``cachehub-dynamodb>=0.1``.

    cachehub's own distributions need not be on the package index: when this cachehub
    runs from a source checkout that holds the distribution (at a version that fits),
    the command installs it from there, by absolute path, so it works from any directory.
    Otherwise it is the index command, followed for cachehub's distributions by the
    command that works in a checkout.
    """
    text = requirement.strip()
    index = f"pip install {shlex.quote(text)}"
    try:
        req = Requirement(text)
    except InvalidRequirement:
        return index
    found = _checkout_project(req.name)
    if found is None:
        if req.name == PROJECT:
            return f"{index} (from a cachehub source checkout: pip install .)"
        if req.name in KNOWN_DISTRIBUTIONS.values():
            local = f"./providers/{req.name[len(PROJECT) + 1 :]}"
            return f"{index} (from a cachehub source checkout: pip install {local})"
        return index
    folder, version = found
    if req.specifier and not req.specifier.contains(version, prereleases=True):
        return index  # the checkout's version does not fit: only the index can help
    extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
    return f"pip install {shlex.quote(f'{folder}{extras}')}"


def _installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _not_registered(name: str, canonical: str) -> ConfigError:
    """A well-known provider that no plugin registers: usually its package is missing."""
    distribution = KNOWN_DISTRIBUTIONS[canonical]
    version = _installed_version(distribution)
    if version is None:
        return MissingPackageError(
            f"cache class '{name}' is provided by the {distribution} package, "
            "which is not installed.",
            hint=install_command(distribution),
        )
    return UnknownProviderError(
        f"cache class '{name}' should come from {distribution} {version}, which is "
        f"installed but registers no '{canonical}' provider (its entry point is missing).",
        hint=f"reinstall it: pip install --force-reinstall {distribution}",
    )


def _import_path(path: str, what: str, table: Mapping[str, object]) -> object:
    """Import ``pkg.mod:Qual.Name`` or ``pkg.mod.Name``; errors name ``what`` and the fix."""
    if ":" in path:
        module_name, _, qualname = path.partition(":")
    else:
        module_name, _, qualname = path.rpartition(".")
    if not module_name or not qualname:
        raise UnknownProviderError(
            f"{what}: '{path}' is not a 'module:Class' or 'module.Class' path.",
            hint="write it as 'my_pkg.cache:MyCache'.",
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or module_name
        distribution = _PROVIDER_MODULES.get(missing.partition(".")[0])
        if distribution is not None:
            raise MissingPackageError(
                f"{what}: module '{module_name}' needs the {distribution} package, "
                "which is not installed.",
                hint=install_command(distribution),
            ) from None
        if module_name == missing or module_name.startswith(missing + "."):
            guess = suggest(path, sorted(table))
            raise UnknownProviderError(
                f"{what}: module '{module_name}' does not exist."
                + (f" Did you mean '{guess}'?" if guess else ""),
                hint="check the spelling, or install the package that provides it.",
            ) from None
        raise MissingPackageError(
            f"{what}: importing '{module_name}' failed because its dependency "
            f"'{missing}' is not installed.",
            hint=f"install the package that provides the '{missing}' module.",
        ) from None
    except Exception as exc:
        raise ConfigError(
            f"{what}: importing '{module_name}' failed: {type(exc).__name__}: {exc}",
            hint="fix the error in that module.",
        ) from exc
    obj: object = module
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            candidates = [n for n in dir(module) if not n.startswith("_")]
            guess = suggest(part, candidates)
            raise UnknownProviderError(
                f"{what}: module '{module_name}' has no attribute '{qualname}'."
                + (f" Did you mean '{guess}'?" if guess else ""),
                hint="check the class name (it is case-sensitive).",
            ) from None
    return obj


def _provider_class(obj: object, name: str) -> type[BaseCache]:
    if isinstance(obj, type) and issubclass(obj, BaseCache):
        return obj
    raise ConfigError(
        f"cache class '{name}' resolves to {obj!r}, which is not a subclass of cachehub.BaseCache.",
        hint="point 'class' at a cachehub provider class.",
    )


# ---------------------------------------------------------------------- requirements


def check_requirement(requirement: str) -> None:
    """Check a config entry's ``package`` (a pip requirement such as ``x>=0.1``).

    Raises :class:`MissingPackageError` with the exact ``pip install`` command when the
    distribution is absent or its installed version does not satisfy the requirement.
    """
    try:
        req = Requirement(requirement)
    except InvalidRequirement as exc:
        raise ConfigError(
            f"package requirement {requirement!r} is not a valid pip requirement: "
            f"{str(exc).splitlines()[0]}.",
            hint="write it like 'cachehub-dynamodb>=0.1'.",
        ) from None
    if req.marker is not None and not req.marker.evaluate():
        return  # the requirement does not apply to this interpreter/platform
    command = install_command(requirement)
    version = _installed_version(req.name)
    if version is None:
        raise MissingPackageError(
            f"package {req.name} is required by the cache configuration but is not installed.",
            hint=command,
        )
    if req.specifier and not req.specifier.contains(version, prereleases=True):
        raise MissingPackageError(
            f"package {req.name} {version} is installed, but the cache configuration "
            f"requires {req.name}{req.specifier}.",
            hint=command,
        )


# ---------------------------------------------------------------------- observers


def operation_observer() -> Callable[[OperationEvent], None] | None:
    """A callable forwarding events to ``cachehub_operation``; None when nobody listens."""
    caller = plugin_manager().hook.cachehub_operation
    if not caller.get_hookimpls():
        return None

    def observe(event: OperationEvent) -> None:
        try:
            caller(event=event)
        except Exception:
            # An observer must never break the cache operation it is observing.
            _log.warning("a cachehub_operation plugin raised; event dropped", exc_info=True)

    return observe


def registered_plugins() -> dict[str, Any]:
    """Registered plugin name -> plugin object (entry points and :func:`register`)."""
    return dict(plugin_manager().list_name_plugin())
