"""Loading cache configuration the way Lucee does.

Two layers, like Lucee: *server* configuration (a ``.CFConfig.json``-style file or dict
whose ``caches`` key holds the entries, or a file that is directly ``{name: entry}``)
and *application* configuration (a dict like ``this.caches``). Application entries
override server entries of the same name. Every string may reference environment
variables as ``${VAR}`` or ``${VAR:-fallback}``; ``$${`` writes a literal ``${``.

An unset variable breaks only the cache whose entry uses it: the entry is kept with its
:attr:`CacheEntry.problem`, which is raised when that cache is built (the variable is
looked up again then), so every other cache, and ``cachehub doctor``, keep working.

This module checks the *entry* (``class``, ``custom``, ``readOnly``...); the provider's
own settings inside ``custom`` are checked by the provider (see :mod:`cachehub.config`).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import re
import stat
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, TypeAlias

from .config import camel_case, checked_text, redact, suggest
from .errors import CacheError, CacheValueError, ConfigError, MissingEnvVarError
from .scrub import looks_secret, register_secret, shown_value

__all__ = [
    "CacheEntry",
    "ConfigSource",
    "ENTRY_KEYS",
    "load_config",
    "load_file",
    "parse_entries",
    "parse_entry",
    "interpolate",
    "default_entry",
    "parse_json",
    "referenced_variables",
]

_log = logging.getLogger("cachehub.config")

ConfigSource: TypeAlias = "Mapping[str, Any] | str | os.PathLike[str]"
"""A configuration: a mapping, or the path of a JSON file."""

ENTRY_KEYS: Final = ("class", "package", "custom", "storage", "readOnly", "default")
"""The keys a cache entry may have (besides the ignored Lucee deployment keys)."""

_IGNORED_KEYS: Final = ("maven", "bundleName", "bundleVersion")
"""Lucee's extension-deployment keys: meaningless here, accepted so configs load unchanged."""

_KNOWN: Final = {k.lower(): k for k in (*ENTRY_KEYS, *_IGNORED_KEYS)}


@dataclass(frozen=True)
class CacheEntry:
    """One configured cache, validated and with environment variables resolved."""

    name: str
    class_name: str
    package: str | None = None
    custom: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    """Provider settings, passed to the provider class (read-only view)."""
    storage: bool = False
    read_only: bool = False
    default: bool = False
    source: str = "application"
    """Where the entry was defined: ``application``, ``server`` or a file path."""
    not_default: bool = False
    """The entry says it is not the default (Lucee's ``"default": ""``), so it is not made
    the default even when it is the only cache."""
    problem: ConfigError | None = field(default=None, compare=False)
    """Why this cache cannot be built (an unset ``${VAR}``); None when it can."""
    raw: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)
    """The entry as written, kept when :attr:`problem` is set to resolve it again later."""

    def __repr__(self) -> str:
        package = redact(self.package)  # requirements may be URLs with credentials
        problem = f", problem={self.problem.message!r}" if self.problem is not None else ""
        return (
            f"CacheEntry(name={self.name!r}, class_name={self.class_name!r}, "
            f"package={package!r}, custom={redact(dict(self.custom))!r}, "
            f"storage={self.storage}, read_only={self.read_only}, default={self.default}, "
            f"source={self.source!r}{problem})"
        )

    __str__ = __repr__


# ---------------------------------------------------------------------- interpolation

MAX_DEPTH: Final = 32
"""Deepest nesting of objects and lists a configuration may have (real ones need 4)."""

MAX_VALUES: Final = 100_000
"""Most values (strings, numbers, objects, lists) one setting may hold, counting shared ones."""

MAX_REFERENCE_DEPTH: Final = 8
"""Deepest nesting of ``${A:-${B:-...}}`` references."""

MAX_EXPANDED_CHARS: Final = 32 * 1024 * 1024
"""Most characters environment variables may insert into one configuration (as much as
the largest file read): ``"${A}${A}..."`` repeated through a file would otherwise ask
for terabytes, a variable's value being inserted once per reference."""


@dataclass
class ExpansionBudget:
    """What is left of :data:`MAX_EXPANDED_CHARS` for one configuration: shared by
    every entry :func:`parse_entries` reads, so many small settings cannot add up."""

    left: int = MAX_EXPANDED_CHARS


_TOKEN = re.compile(r"\$\$\{|\$\{|\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SHOWN: Final = 40
"""Characters of a bad reference quoted in an error (config text, never a variable's value)."""
_ENV_STYLE: Final = re.compile(r"[A-Z_][A-Z0-9_]*")
"""How environment variables are named by convention (``REDIS_PASSWORD``)."""
_CREDENTIALS: Final = re.compile(r"://[^/@\s]*@")
"""A URL with a user-info part (``redis://user:password@host``): its text is a secret."""


def interpolate(
    value: Any,
    *,
    cache: str,
    setting: str,
    environ: Mapping[str, str] | None = None,
    budget: ExpansionBudget | None = None,
) -> Any:
    """``value`` with ``${VAR}`` references replaced, recursing into mappings and lists.

    ``${VAR:-fallback}`` uses the fallback when VAR is unset or empty; the fallback may
    itself hold references (``${A:-${B}}``, up to :data:`MAX_REFERENCE_DEPTH` levels),
    expanded only when it is used, as in POSIX shells. ``$${`` is a literal ``${``. A
    variable's value is inserted as it is, never expanded again. An unset variable
    without fallback raises :class:`MissingEnvVarError` naming the variable, the cache and
    the setting; any other malformed reference, nesting deeper than :data:`MAX_DEPTH`,
    or variables inserting more than what is left of ``budget`` (default: a fresh
    :data:`MAX_EXPANDED_CHARS`), a :class:`ConfigError` naming the position.
    """
    env = os.environ if environ is None else environ
    _check_depth(value, f"cache '{cache}', setting '{setting}'")
    return _interpolate(value, env, cache, setting, budget or ExpansionBudget())


def _interpolate(
    value: Any, env: Mapping[str, str], cache: str, setting: str, budget: ExpansionBudget
) -> Any:
    if isinstance(value, str):
        return _interpolate_str(value, env, cache, setting, budget)
    if isinstance(value, Mapping):
        return {k: _interpolate(v, env, cache, f"{setting}.{k}", budget) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_interpolate(v, env, cache, f"{setting}[{i}]", budget) for i, v in enumerate(value)]
    return value


def _check_depth(value: Any, where: str) -> None:
    """Refuse nesting deeper than :data:`MAX_DEPTH` and more than :data:`MAX_VALUES` values.

    Iterative, so a hostile document cannot exhaust the stack here; everything that
    walks the configuration recursively afterwards is then bounded. A value that contains
    itself is refused as too deep; one that shares a list many times over, as too large.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    visited = 0
    while stack:
        item, depth = stack.pop()
        visited += 1
        if visited > MAX_VALUES:
            raise ConfigError(
                f"{where} holds more than {MAX_VALUES:,} values.",
                hint="cache settings are small; move bulk data out of the configuration.",
            )
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth >= MAX_DEPTH:
            raise ConfigError(
                f"{where}: objects and lists nest more than {MAX_DEPTH} levels deep "
                "(or contain themselves).",
                hint="flatten the setting; cache configuration needs only a few levels.",
            )
        stack.extend((child, depth + 1) for child in children)


class _Expander:
    """One string's ``${...}`` references, expanded in a single left-to-right pass.

    Linear in the text: :data:`_TOKEN` finds the next ``$${``, ``${`` or ``}`` and each
    character is passed once; recursion is bounded by :data:`MAX_REFERENCE_DEPTH`.
    """

    def __init__(
        self,
        text: str,
        env: Mapping[str, str],
        where: str,
        budget: ExpansionBudget,
        *,
        secret: bool = False,
    ) -> None:
        self.text = text
        self.env = env
        self.where = where
        self.budget = budget
        self.secret = secret
        """The text holds a secret (a password, a URL with credentials): its messages give
        positions, never its text - a literal password may contain ``${``."""

    def expand(self) -> str:
        return self._word(0, 0, live=True, opened=None)[0]

    def _word(self, pos: int, depth: int, *, live: bool, opened: int | None) -> tuple[str, int]:
        """Text from ``pos`` up to the ``}`` closing the reference ``opened`` (None: the end).

        Returns the expanded text and the position after it. With ``live`` False the
        text is only checked (an unused fallback): no variable is looked up.
        """
        text, parts = self.text, []
        while True:
            found = _TOKEN.search(text, pos)
            if found is None:
                if opened is not None:
                    raise self._unterminated(opened)
                parts.append(text[pos:])
                return "".join(parts), len(text)
            parts.append(text[pos : found.start()])
            mark, pos = found.group(), found.end()
            if mark == "$${":
                parts.append("${")
            elif mark == "}":
                if opened is not None:
                    return "".join(parts), pos
                parts.append("}")
            else:
                value, pos = self._reference(found.start(), depth + 1, live=live)
                parts.append(value)

    def _reference(self, start: int, depth: int, *, live: bool) -> tuple[str, int]:
        """The value of the reference whose ``${`` is at ``start``, and the position after."""
        text = self.text
        if depth > MAX_REFERENCE_DEPTH:
            raise ConfigError(
                f"{self.where}: references nest more than {MAX_REFERENCE_DEPTH} levels deep "
                f"at character {start + 1}.",
                hint="use fewer nested ${A:-${B}} fallbacks.",
            )
        name = _NAME.match(text, start + 2)
        pos = start + 2 if name is None else name.end()
        if pos >= len(text):
            raise self._unterminated(start)
        if name is None or (text[pos] != "}" and not text.startswith(":-", pos)):
            close = text.find("}", start)
            shown = text[start : close + 1 if close >= 0 else len(text)]
            if len(shown) > _SHOWN:
                shown = shown[:_SHOWN] + "..."
            what = "the '${' here" if self.secret else f"'{shown}'"
            raise ConfigError(
                f"{self.where}: {what} is not a valid environment variable reference "
                f"(at character {start + 1}).",
                hint="write ${NAME} or ${NAME:-fallback}; use $${ for a literal ${ (as in a "
                "password that contains one).",
            )
        found = self.env.get(name.group()) if live else None
        if found and looks_secret(name.group()):
            # Wherever it lands: a password put in 'class' or 'package' by mistake was
            # quoted by the messages naming those (they show values; settings do not).
            register_secret(found)
        if text[pos] == "}":
            if live and found is None:
                variable = name.group()
                if self.secret and not _ENV_STYLE.fullmatch(variable):
                    # Not named like an environment variable (DB_PASSWORD): more likely a
                    # piece of a literal password that holds "${", so not shown.
                    raise MissingEnvVarError(
                        f"{self.where}: the environment variable referenced at character "
                        f"{start + 1} is not set (its name is not shown: this setting holds "
                        "a secret).",
                        hint="export it, or write $${ for a literal ${ if the value is a "
                        "password that contains one.",
                    )
                raise MissingEnvVarError(
                    f"{self.where}: environment variable '{variable}' is not set.",
                    hint=f"export {variable}, or give a fallback with ${{{variable}:-value}}.",
                )
            return self._spend(found or "", start), pos + 1
        # ${NAME:-fallback}: the fallback is expanded only when it is used.
        use_fallback = live and not found
        fallback, pos = self._word(pos + 2, depth, live=use_fallback, opened=start)
        return (fallback if use_fallback else self._spend(found or "", start)), pos

    def _spend(self, value: str, start: int) -> str:
        """``value``, a variable's value about to be inserted, charged to the budget
        before anything joins it (the refusal allocates nothing)."""
        self.budget.left -= len(value)
        if self.budget.left < 0:
            raise ConfigError(
                f"{self.where}: environment variables insert more than "
                f"{MAX_EXPANDED_CHARS // (1024 * 1024)} MiB of text into the configuration "
                f"(at character {start + 1}).",
                hint="reference each variable once or a few times; a configuration "
                "holds settings, not bulk data.",
            )
        return value

    def _unterminated(self, start: int) -> ConfigError:
        return ConfigError(
            f"{self.where}: unterminated '${{' reference at character {start + 1}.",
            hint="close it with '}', or write $${ for a literal ${.",
        )


def referenced_variables(value: Any) -> set[str]:
    """The names of the environment variables that the ``${...}`` references in ``value``
    (configuration as written: strings, mappings and lists, any depth) name.

    Scanned with the expander's own tokens, so ``$${X}`` (a literal) names nothing and a
    fallback's references (``${A:-${B}}``) are counted, used or not. Iterative: callers
    pass configuration whose depth and size the loader bounded, or form input.
    """
    names: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            for token in _TOKEN.finditer(item):
                if token.group() == "${" and (name := _NAME.match(item, token.end())):
                    names.add(name.group())
        elif isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return names


def _interpolate_str(
    text: str, env: Mapping[str, str], cache: str, setting: str, budget: ExpansionBudget
) -> str:
    if "${" not in text:
        return text
    secret = any(looks_secret(part) for part in setting.split(".")) or _CREDENTIALS.search(text)
    where = f"cache '{cache}', setting '{setting}'"
    return _Expander(text, env, where, budget, secret=bool(secret)).expand()


# ---------------------------------------------------------------------- files


MAX_FILE_BYTES: Final = 32 * 1024 * 1024
"""Largest configuration file read (32 MiB): 16,000 entries take about 3 MiB."""


class _Refused(Exception):
    """Raised while parsing for valid Python json that is not acceptable JSON here."""


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are all distinct: json.loads would keep the last silently."""
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            shown = key if len(key) <= _SHOWN else key[:_SHOWN] + "..."
            raise _Refused(
                f"key '{shown}' appears twice in one object (a JSON reader keeps only one)"
            )
        obj[key] = value
    return obj


def _no_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; Python's json module accepts them by default.
    raise _Refused(f"{name} is not a JSON value")


def _finite(text: str) -> float:
    # json reads a literal past a float's range (1e400) as inf, which no JSON value is.
    value = float(text)
    if math.isinf(value):
        raise _Refused(f"the number {text[:40]} is beyond a float's range")
    return value


def _read_limited(file: Path, what: str = "configuration file", limit: int | None = None) -> bytes:
    """The bytes of a regular file of at most ``limit`` (default :data:`MAX_FILE_BYTES`);
    errors call it ``what``.

    Opened non-blocking and checked with fstat, so a FIFO, a device (``/dev/zero``) or a
    sparse file of terabytes is refused without blocking or reading it whole.
    """
    limit = MAX_FILE_BYTES if limit is None else limit
    fd = os.open(file, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise ConfigError(
                f"{what} {file} is not a regular file.",
                hint="point at a JSON file (not a directory, device or pipe).",
            )
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ConfigError(
            f"{what} {file} is larger than {limit // (1024 * 1024)} MiB.",
            hint="check that this is the right file.",
        )
    return data


def load_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse a JSON configuration file; errors name the file, line and column.

    The file must be a regular file of at most :data:`MAX_FILE_BYTES`; a key given twice
    in one object, ``NaN`` and ``Infinity`` are errors (Python's json would accept them,
    keeping the last of two keys silently).
    """
    file = Path(path)
    try:
        text = _read_limited(file).decode("utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(
            f"configuration file {file} does not exist.",
            hint="check the path (relative paths are relative to the working directory).",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise ConfigError(
            f"cannot read configuration file {file}: {reason}.",
            hint="pass a readable UTF-8 JSON file (not a folder), or fix its permissions.",
        ) from None
    try:
        doc = json.loads(
            text, object_pairs_hook=_unique_object, parse_constant=_no_constant, parse_float=_finite
        )
    except RecursionError:
        raise ConfigError(
            f"configuration file {file} nests objects or lists too deeply to read.",
            hint=f"cache configuration needs only a few levels (at most {MAX_DEPTH}).",
        ) from None
    except _Refused as exc:
        raise ConfigError(
            f"configuration file {file} is not valid: {exc}.",
            hint="write each key once per object, and numbers as plain decimals.",
        ) from None
    except json.JSONDecodeError as exc:
        # exc.msg never quotes the document, so no secret can leak from here.
        raise ConfigError(
            f"configuration file {file} is not valid JSON: {exc.msg} at line {exc.lineno}, "
            f"column {exc.colno}.",
            hint="fix the JSON syntax at that position (trailing commas and comments "
            "are not allowed).",
        ) from None
    except ValueError:
        # The one other ValueError of json.loads: an integer longer than Python converts
        # (sys.get_int_max_str_digits(), 4300 digits by default).
        raise ConfigError(
            f"configuration file {file} holds an integer of thousands of digits.",
            hint="write numbers of a few digits.",
        ) from None
    if not isinstance(doc, dict):
        raise ConfigError(
            f"configuration file {file} must contain a JSON object, got {type(doc).__name__}.",
            hint='write {"caches": {"name": {"class": ...}}} or {"name": {"class": ...}}.',
        )
    return doc


def parse_json(text: str, what: str, hint: str, error: type[CacheError] = CacheValueError) -> Any:
    """``text`` (JSON typed by a user: a form field, a CLI argument) parsed, or ``error``
    saying why not: what the text is (``what``, e.g. "the value") and ``hint``.

    Besides syntax errors, json.loads raises RecursionError for thousands of nested
    brackets and a plain ValueError for an integer longer than Python converts
    (sys.get_int_max_str_digits(), 4300 digits by default): both are the user's input,
    not the program's failure. Error messages never quote the text.
    """
    try:
        # Strict as the configuration files: NaN, Infinity and a literal beyond a float's
        # range (1e400, read as inf) are no JSON values.
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except _Refused as exc:
        raise error(f"{what} is not valid JSON: {exc}.", hint=hint) from None
    except json.JSONDecodeError as exc:
        raise error(
            f"{what} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.",
            hint=hint,
        ) from None
    except RecursionError:
        raise error(
            f"{what} nests objects or lists too deeply.", hint="flatten it: a few levels do."
        ) from None
    except ValueError:
        raise error(
            f"{what} holds an integer of thousands of digits, more than JSON readers convert.",
            hint="write numbers of a few digits (as a string if they must be longer).",
        ) from None


def _entries_of(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    """The ``{name: entry}`` block of a document in any of the accepted shapes."""
    caches = doc.get("caches")
    if isinstance(caches, Mapping) and "class" not in caches:
        return caches  # .CFConfig.json: {"caches": {...}, ...other server settings}
    cache = doc.get("cache")
    connections = cache.get("connections") if isinstance(cache, Mapping) else None
    if isinstance(connections, Mapping):
        return connections  # Lucee's this.cache.connections
    return doc


# ---------------------------------------------------------------------- entries


def parse_entries(
    config: ConfigSource, *, source: str = "application", environ: Mapping[str, str] | None = None
) -> dict[str, CacheEntry]:
    """Validate a configuration (mapping or JSON file path) into ``{name: CacheEntry}``."""
    if isinstance(config, (str, os.PathLike)):
        source = os.fspath(config)
        doc: Mapping[str, Any] = load_file(config)
    elif isinstance(config, Mapping):
        doc = config
    else:
        raise ConfigError(
            f"a cache configuration must be a mapping or a file path, got {type(config).__name__}.",
            hint="pass a dict like {'name': {'class': 'memory'}} or the path of a JSON file.",
        )
    entries: dict[str, CacheEntry] = {}
    seen: dict[str, str] = {}
    budget = ExpansionBudget()
    for name, raw in _entries_of(doc).items():
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(
                f"{source}: cache names must be non-empty strings, got {name!r}.",
                hint="name each cache, e.g. {'sessions': {'class': 'memory'}}.",
            )
        # Lucee cache names are case-insensitive; two spellings would be ambiguous.
        if name.lower() in seen:
            raise ConfigError(
                f"{source}: caches '{seen[name.lower()]}' and '{name}' differ only in case.",
                hint="cache names are case-insensitive; rename or remove one of them.",
            )
        seen[name.lower()] = name
        entries[name] = parse_entry(name, raw, source=source, environ=environ, budget=budget)
    return entries


def parse_entry(
    name: str,
    raw: Any,
    *,
    source: str = "application",
    environ: Mapping[str, str] | None = None,
    budget: ExpansionBudget | None = None,
) -> CacheEntry:
    """Validate one cache entry (``{"class": ..., "custom": {...}}``) called ``name``.

    An unset ``${VAR}`` does not raise: the entry comes back with its
    :attr:`~CacheEntry.problem` set (see the module docstring); every other error does.
    ``budget`` is the configuration's :class:`ExpansionBudget` (default: a fresh one).
    """
    checked_text(name, f"{source}: a cache name")
    budget = budget or ExpansionBudget()
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"cache '{name}' ({source}) must be an object with a 'class' key, "
            f"got {type(raw).__name__}.",
            hint=f'write "{name}": {{"class": "memory"}}.',
        )
    values: dict[str, Any] = {}
    missing: list[MissingEnvVarError] = []
    for raw_key, raw_value in raw.items():
        key = _entry_key(name, raw_key, source)
        if key in values:
            raise ConfigError(f"cache '{name}' ({source}): key '{key}' is given twice.")
        if key in _IGNORED_KEYS:
            _check_depth(raw_value, f"cache '{name}', setting '{key}'")  # logged below
            values[key] = raw_value  # never used, so an unset ${VAR} in it is no error
        elif key == "custom" and isinstance(raw_value, Mapping):
            _check_depth(raw_value, f"cache '{name}', setting 'custom'")
            resolved: dict[Any, Any] = {}
            for setting, value in raw_value.items():
                try:
                    resolved[setting] = interpolate(
                        value,
                        cache=name,
                        setting=f"custom.{setting}",
                        environ=environ,
                        budget=budget,
                    )
                except MissingEnvVarError as exc:
                    missing.append(exc)
            values[key] = resolved
        else:
            try:
                values[key] = interpolate(
                    raw_value, cache=name, setting=key, environ=environ, budget=budget
                )
            except MissingEnvVarError as exc:
                missing.append(exc)
                if key == "class" and isinstance(raw_value, str):
                    values[key] = raw_value  # shown as written; the cache cannot be built
    for key in _IGNORED_KEYS:
        if key in values:
            _log.debug(
                "cache '%s': ignoring Lucee key '%s' (%s); Python packages come from 'package'",
                name,
                key,
                redact(values[key]),
            )
    if "class" not in values:
        raise ConfigError(
            f"cache '{name}' ({source}) has no 'class'.",
            hint="add \"class\": a provider alias (memory, redis, dynamodb) or 'module:Class'.",
        )
    class_name = values["class"]
    if not isinstance(class_name, str) or not class_name.strip():
        raise _wrong_type(name, "class", class_name, "a non-empty string")
    checked_text(class_name, f"cache '{name}': 'class'")
    package = values.get("package")
    if package is not None and (not isinstance(package, str) or not package.strip()):
        raise _wrong_type(name, "package", package, "a pip requirement string")
    if package is not None:
        checked_text(package, f"cache '{name}': 'package'")
    custom = values.get("custom")
    if custom is None:
        custom = {}
    if not isinstance(custom, Mapping):
        raise _wrong_type(name, "custom", custom, "an object of provider settings")
    default = _default(name, values.get("default"))
    return CacheEntry(
        name=name,
        class_name=class_name.strip(),
        package=package.strip() if package else None,
        custom=MappingProxyType(dict(custom)),
        storage=_flag(name, "storage", values.get("storage", False)),
        read_only=_flag(name, "readOnly", values.get("readOnly", False)),
        default=bool(default),
        source=source,
        not_default=default is False,
        problem=_unresolved(name, missing),
        raw=MappingProxyType(dict(raw)) if missing else None,
    )


def _unresolved(name: str, missing: list[MissingEnvVarError]) -> MissingEnvVarError | None:
    """One error for every unset variable of an entry (None when all are set)."""
    if not missing:
        return None
    if len(missing) == 1:
        return missing[0]
    return MissingEnvVarError(
        f"cache '{name}': {len(missing)} environment variables are not set: "
        + "; ".join(exc.message for exc in missing),
        hint="export each variable named above, or give fallbacks with ${NAME:-value}.",
    )


def _entry_key(name: str, raw_key: Any, source: str) -> str:
    if isinstance(raw_key, str):
        # CFML struct keys are case-insensitive; Python users may write read_only.
        key = _KNOWN.get(raw_key.lower()) or _KNOWN.get(camel_case(raw_key).lower())
        if key is not None:
            return key
    guess = suggest(str(raw_key), (*ENTRY_KEYS, *_IGNORED_KEYS))
    raise ConfigError(
        f"cache '{name}' ({source}): unknown key '{raw_key}'."
        + (f" Did you mean '{guess}'?" if guess else ""),
        hint=f"cache entries accept: {', '.join(ENTRY_KEYS)}; provider settings go in 'custom'.",
    )


def _wrong_type(name: str, key: str, value: Any, expected: str) -> ConfigError:
    # Values are not shown: a misplaced secret must never reach an error message.
    return ConfigError(
        f"cache '{name}': '{key}' must be {expected}, got {type(value).__name__}.",
        hint=f"set '{key}' to {expected}.",
    )


def _flag(name: str, key: str, value: Any) -> bool:
    """A bool, or the strings true/false (any case) as produced by ``${VAR}``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    shown = f"string {shown_value(value)}" if isinstance(value, str) else type(value).__name__
    raise ConfigError(
        f"cache '{name}': '{key}' must be true or false, got {shown}.",
        hint=f'write "{key}": true or "{key}": false.',
    )


def _default(name: str, value: Any) -> bool | None:
    """Lucee writes ``""`` for not-default and a cache type (``"object"``) for default.

    None: the entry does not say (absent or null), so a single cache becomes the default.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        return lowered not in ("", "false")
    raise ConfigError(
        f"cache '{name}': 'default' must be a bool or a string, got {type(value).__name__}.",
        hint='write "default": true (or Lucee\'s "object"), or "" for not-default.',
    )


# ---------------------------------------------------------------------- layers


def load_config(
    config: ConfigSource | None = None,
    *,
    server_config: ConfigSource | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, CacheEntry]:
    """Merge server and application configuration; application entries win.

    Names match case-insensitively (as in Lucee), so an application entry ``Dynamo``
    replaces a server entry ``dynamo``.
    """
    merged: dict[str, CacheEntry] = {}
    if server_config is not None:
        merged.update(parse_entries(server_config, source="server", environ=environ))
    if config is not None:
        # Each layer's names are unique case-insensitively (parse_entries), so one
        # folded index finds the server entry an application entry replaces.
        folded = {name.lower(): name for name in merged}
        for name, entry in parse_entries(config, environ=environ).items():
            existing = folded.pop(name.lower(), None)
            if existing is not None:
                _log.debug("cache '%s': application entry overrides %s", name, existing)
                del merged[existing]
            merged[name] = entry
    return merged


def default_entry(entries: Mapping[str, CacheEntry]) -> str | None:
    """The default cache's name: the one marked default, else the only entry, else None.

    The only entry is not the default when it says so (``"default": ""`` or false).
    Several entries marked default is a :class:`ConfigError`.
    """
    marked = [name for name, entry in entries.items() if entry.default]
    if len(marked) > 1:
        raise ConfigError(
            f"several caches are marked default: {', '.join(marked)}.",
            hint='mark exactly one cache with "default": true (use "" for the others).',
        )
    if marked:
        return marked[0]
    if len(entries) == 1:
        only = next(iter(entries.values()))
        return None if only.not_default else only.name
    return None


def check_namespaces(
    entries: Mapping[str, CacheEntry],
    place: Callable[[CacheEntry], tuple[Hashable, str] | None],
) -> None:
    """Refuse two caches on one backend whose namespaces nest (``app:`` and ``app:x:``).

    A namespace is a plain key prefix, so ``clear()`` on ``app:`` would also remove
    every entry of ``app:x:``. ``place(entry)`` says which backend an entry writes to
    (the provider's :meth:`~cachehub.api.BaseCache.backend_identity`; None: a store
    shared with no other cache), the core never guesses it, and the entry's validated
    namespace (a raw ``custom.get("namespace")`` missed ``Namespace``, ``name_space``
    and Redis's Lucee ``keyPrefix``). A cache without a namespace beside namespaced ones
    is common (a default cache plus a sessions cache) and only logs a warning.
    """
    groups: dict[Hashable, list[tuple[str, str]]] = {}
    for entry in entries.values():
        found = place(entry)
        if found is not None:
            backend, namespace = found
            groups.setdefault(backend, []).append((namespace, entry.name))
    for members in groups.values():
        _check_group(members)


def _check_group(members: list[tuple[str, str]]) -> None:
    """:func:`check_namespaces` for the ``(namespace, name)`` caches of one backend.

    ``O(n log n)``: after sorting, every namespace that starts with a shorter one
    follows it directly or after others that start with it too, so if any pair nests,
    some *adjacent* pair of distinct namespaces does. Comparing every pair instead made
    start-up quadratic (16,000 caches: 98 s).
    """
    bare = [name for ns, name in members if not ns]
    spaced = sorted((ns, name) for ns, name in members if ns)
    if bare and spaced:
        shown = ", ".join(f"'{name}'" for _, name in spaced[:3])
        more = f" and {len(spaced) - 3} more" if len(spaced) > 3 else ""
        for outer in bare:
            _log.warning(
                "cache '%s' has no namespace and shares its backend with namespaced "
                "caches: clear() on '%s' also removes the entries of %s%s.",
                outer,
                outer,
                shown,
                more,
            )
    for (outer_ns, outer), (inner_ns, inner) in itertools.pairwise(spaced):
        if outer_ns != inner_ns and inner_ns.startswith(outer_ns):
            raise ConfigError(
                f"cache '{inner}' (namespace {inner_ns!r}) lies inside cache '{outer}' "
                f"(namespace {outer_ns!r}) on the same backend: clear() on '{outer}' "
                f"would remove the entries of '{inner}'.",
                hint="use namespaces that are not prefixes of each other, "
                "e.g. 'app:main:' and 'app:x:'.",
            )
