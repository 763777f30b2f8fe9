"""The plugin registry: one process-wide pluggy ``PluginManager`` for cachehub.

Installed provider distributions are found through the ``cachehub`` entry-point group;
application code and tests add plugins with :func:`register`. Turning a config entry's
``class`` into a provider class is :mod:`cachehub.resolve`'s job; this module does not
know :class:`~cachehub.api.BaseCache`, so that the core's import graph stays acyclic.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import logging
import shlex
import sys
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
from .config import suggest
from .errors import ConfigError, MissingPackageError
from .hookspecs import PROJECT, OperationEvent
from .scrub import scrub

__all__ = [
    "KNOWN_DISTRIBUTIONS",
    "LUCEE_CLASSES",
    "lazy_exports",
    "lucee_classes",
    "plugin_manager",
    "register",
    "unregister",
    "check_requirement",
    "install_command",
    "installed_version",
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
    "lucee.extension.io.cache.redis.RedisSentinelCache": "redis",
    "lucee.extension.io.cache.redis.sentinel.RedisSentinelCache": "redis",
    "lucee.runtime.cache.eh.EHCache": "memory",
    "lucee.runtime.cache.ram.RamCache": "memory",
    "org.lucee.extension.cache.eh.EHCache": "memory",
}
"""Lucee cache class names -> the canonical alias of the cachehub provider replacing them,
so that an unchanged ``.CFConfig.json`` resolves (or says which package to install).

The one Lucee class map: the core needs it to name the package to install when no
provider registers a class, and each shipped provider registers its aliases from it
with :func:`lucee_classes`."""


def lucee_classes(alias: str) -> tuple[str, ...]:
    """The Lucee class names the provider registered as ``alias`` replaces."""
    return tuple(name for name, canonical in LUCEE_CLASSES.items() if canonical == alias)


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A provider package's PEP 562 ``__getattr__`` and ``__dir__``: each exported name
    (``{name: ".submodule"}``) is imported from its submodule on first access.

    Loading the plugins (every ``cachehub`` command, ``--help`` included) imports each
    provider package; imported eagerly, its cache class would bring its backend library
    (redis-py, botocore) into processes that never talk to a backend.
    """
    module = sys.modules[package]

    def __getattr__(name: str) -> Any:
        submodule = exports.get(name)
        if submodule is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(submodule, package), name)
        setattr(module, name, value)  # later lookups are plain attribute reads
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(module), *exports})

    return __getattr__, __dir__


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
            _load_entry_points(created)
            _manager = created
        return _manager


def _load_entry_points(manager: pluggy.PluginManager) -> None:
    """Load the ``cachehub`` entry points one by one, so that a broken one is named.

    What pluggy's ``load_setuptools_entrypoints`` does (the first of a name wins; a
    blocked name is skipped), one scan of the installed distributions, but each plugin
    loaded in its own ``try``: pluggy's loader stopped at the first failure with the
    plugin's own exception, naming neither the distribution nor the entry point. A
    plugin's import may also call ``sys.exit()``: that must not end the program.
    """
    for point in importlib.metadata.entry_points(group=PROJECT):
        if manager.has_plugin(point.name) or manager.is_blocked(point.name):
            continue
        try:
            manager.register(point.load(), name=point.name)
        except (Exception, SystemExit) as exc:
            dist = point.dist.name if point.dist is not None else "an unknown distribution"
            detail = "sys.exit()" if isinstance(exc, SystemExit) else type(exc).__name__
            raise ConfigError(
                f"the '{PROJECT}' entry point '{point.name}' = {point.value!r} of "
                f"{dist} failed to load: {detail}: {scrub(str(exc))[:300]}",
                hint=f"reinstall or uninstall {dist} (pip uninstall {dist}).",
            ) from None


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


# ---------------------------------------------------------------------- requirements


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


def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution``, or None when it is not installed."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


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
    if req.marker is not None:
        try:
            applies = req.marker.evaluate()
        except Exception as exc:  # packaging's UndefinedComparison, UndefinedEnvironmentName
            raise ConfigError(
                f"package requirement {requirement!r}: its environment marker cannot be "
                f"evaluated here ({type(exc).__name__}: {str(exc)[:200].rstrip('.')}).",
                hint="compare markers with values of their kind, e.g. "
                "\"cachehub-redis>=0.1; python_version >= '3.11'\".",
            ) from None
        if not applies:
            return  # the requirement does not apply to this interpreter/platform
    command = install_command(requirement)
    version = installed_version(req.name)
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
        except (Exception, SystemExit):
            # An observer must never break the cache operation it is observing.
            _log.warning("a cachehub_operation plugin raised; event dropped", exc_info=True)

    return observe


def registered_plugins() -> dict[str, Any]:
    """Registered plugin name -> plugin object (entry points and :func:`register`)."""
    return dict(plugin_manager().list_name_plugin())
