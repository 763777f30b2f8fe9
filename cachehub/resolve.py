"""Resolving a config entry's ``class`` to a provider class.

:func:`resolve_provider` accepts a registered alias (``memory``, a Lucee class name),
``pkg.mod.Class`` or ``pkg.mod:Class``, and explains every failure: a misspelled alias
("did you mean"), a well-known provider whose package is missing (the ``pip install``
command), a path that does not name a :class:`~cachehub.api.BaseCache` subclass.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from typing import Final, cast

from . import plugins
from .api import BaseCache
from .config import suggest
from .errors import ConfigError, MissingPackageError, UnknownProviderError
from .plugins import KNOWN_DISTRIBUTIONS, LUCEE_CLASSES, plugin_manager
from .scrub import scrub

__all__ = ["provider_aliases", "resolve_provider"]

_PROVIDER_MODULES: Final[Mapping[str, str]] = {
    "cachehub_dynamodb": "cachehub-dynamodb",
    "cachehub_redis": "cachehub-redis",
    "cachehub_memory": "cachehub-memory",
}


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
        except (Exception, SystemExit) as exc:  # sys.exit() in a hook must not end the program
            raise ConfigError(
                f"plugin '{impl.plugin_name}' raised {type(exc).__name__} in "
                f"cachehub_providers(): {scrub(str(exc))[:300]}",
                hint="fix or unregister that plugin.",
            ) from None
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
    """The alias ``name`` refers to: exact match first, then case-insensitively; two
    aliases matching it only case-insensitively are a :class:`ConfigError` (not "no
    such alias", which blamed the installation)."""
    if name in table:
        return name
    folded = sorted(alias for alias in table if alias.lower() == name.lower())
    if len(folded) > 1:
        shown = " and ".join(f"'{alias}' (plugin '{table[alias][1]}')" for alias in folded[:4])
        raise ConfigError(
            f"cache class '{name}' matches the provider aliases {shown}, which differ "
            "only in case.",
            hint=f"write the class exactly as one of them, e.g. '{folded[0]}'.",
        )
    return folded[0] if folded else None


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


def _not_registered(name: str, canonical: str) -> ConfigError:
    """A well-known provider that no plugin registers: usually its package is missing."""
    distribution = KNOWN_DISTRIBUTIONS[canonical]
    version = plugins.installed_version(distribution)
    if version is None:
        return MissingPackageError(
            f"cache class '{name}' is provided by the {distribution} package, "
            "which is not installed.",
            hint=plugins.install_command(distribution),
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
    parts = module_name.split(".")
    if not all(part.isidentifier() for part in (*parts, *qualname.split("."))):
        raise UnknownProviderError(
            f"{what}: '{path}' is not a 'module:Class' or 'module.Class' path.",
            hint="write it as 'my_pkg.cache:MyCache'.",
        )
    if module_name not in sys.modules and (
        parts[0] in sys.stdlib_module_names or "__main__" in parts
    ):
        # Importing runs the module: a `class` read from a file or ${VAR} someone else
        # controls must not start a program (venv.__main__, idlelib.idle) or a browser
        # (antigravity) before the check below. No provider lives in the standard library
        # or in a __main__ script, so these are refused unimported.
        kind = "a script" if "__main__" in parts else "part of the Python standard library"
        raise ConfigError(
            f"{what}: module '{module_name}' is {kind}, not a cachehub provider; "
            "it is not imported.",
            hint="point 'class' at a provider alias or a cachehub provider class "
            "such as 'my_pkg.cache:MyCache'.",
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
                hint=plugins.install_command(distribution),
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
    except (Exception, SystemExit) as exc:
        # SystemExit too: a module that exits when imported must not end the program.
        raise ConfigError(
            f"{what}: importing '{module_name}' failed: {type(exc).__name__}: "
            f"{scrub(str(exc))[:300]}",
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
        except Exception as exc:
            # A lazy object or proxy (django.conf:settings, flask:request) computes its
            # attributes: unconfigured, it raises its framework's own error.
            raise ConfigError(
                f"{what}: reading '{part}' of '{module_name}:{qualname}' raised "
                f"{type(exc).__name__}: {scrub(str(exc))[:300]}",
                hint="point 'class' at a cachehub provider class.",
            ) from exc
    return obj


def _provider_class(obj: object, name: str) -> type[BaseCache]:
    # type(obj), never isinstance(): a lazy object answers isinstance() through its
    # __class__ property, which sets it up (and raises when it cannot). Nor repr(obj):
    # an arbitrary object's repr may run code, be huge or show its settings' secrets.
    if issubclass(type(obj), type):
        cls = cast(type, obj)
        if issubclass(cls, BaseCache):
            return cls
        kind = "class"
    else:
        kind = f"{type(obj).__name__} object"
    raise ConfigError(
        f"cache class '{name}' resolves to a {kind}, which is not a subclass of "
        "cachehub.BaseCache.",
        hint="point 'class' at a cachehub provider class.",
    )
