"""Provider settings schema: declared options, type coercion, "did you mean", secret masking.

Masking itself lives in :mod:`cachehub.scrub` (the one scrubber); :func:`redact` and
:data:`SECRET_MASK` are re-exported here for the option schema's callers.

Providers declare their settings as a tuple of :class:`Option`; :func:`validate_settings`
checks a ``custom`` block against them. Keys are Lucee's camelCase names (``tableName``),
matched case-insensitively as in CFML structs; snake_case spellings (``table_name``) are
accepted too, as Python keyword arguments, and so is every alias an option declares.

Settings of the Lucee extension a provider replaces are declared as :class:`LuceeOption`:
each is mapped onto a cachehub option with its unit converted (``socketTimeout: 2000`` in
Lucee's milliseconds becomes 2.0 seconds), or accepted and named in one warning when
cachehub has no use for it (connection-pool tuning). When a Lucee name is also a cachehub
name with another unit, the Lucee meaning applies only to entries whose ``class`` is the
Lucee class name (``lucee=True``): a cachehub ``socketTimeout`` stays in seconds.
"""

from __future__ import annotations

import difflib
import functools
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from .errors import CacheError, ConfigError
from .scrub import SECRET_MASK, looks_secret, shown_value
from .scrub import redact as _scrub_redact

__all__ = [
    "Option",
    "LuceeOption",
    "validate_settings",
    "canonical_settings",
    "millis_to_seconds",
    "redact",
    "SECRET_MASK",
    "camel_case",
]

_log = logging.getLogger("cachehub.config")

_CAMEL_RE = re.compile(r"_([a-z0-9])")
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0", ""}


def camel_case(name: str) -> str:
    """``table_name`` -> ``tableName``; camelCase input is returned unchanged."""
    return _CAMEL_RE.sub(lambda m: m.group(1).upper(), name)


def _bound(value: float) -> str:
    """A setting's limit as a reader writes it: 86400000, not 8.64e+07."""
    return str(int(value)) if value == int(value) and abs(value) < 1e15 else f"{value:g}"


_DIGITS: Final = re.compile(r"[+-]?[0-9]+")


def checked_text(text: str, what: str) -> str:
    """``text``, or ConfigError when it holds a lone surrogate (JSON's ``"\\ud800"``):
    no backend can store it and printing it crashed the CLI (UnicodeEncodeError)."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ConfigError(
                f"{what} contains a lone surrogate (not valid Unicode text: bytes that are "
                "not UTF-8, e.g. from an environment variable).",
                hint="write it as valid UTF-8; a \\uD800-style escape in JSON must be one "
                "half of a surrogate pair.",
            ) from None
    return text


@dataclass(frozen=True, slots=True)
class Option:
    """One provider setting: its name, Python type, default and documentation."""

    name: str
    type: type = str
    default: Any = None
    doc: str = ""
    secret: bool = False
    required: bool = False
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    """The largest value accepted: a bound on what a setting can make the cache do (a
    retry count of 10**30 retried forever against a server that is down)."""
    aliases: tuple[str, ...] = ()
    """Other names of this setting (Lucee's ``table`` for ``tableName``); any case."""

    def coerce(self, value: Any, where: str) -> Any:
        """Convert ``value`` (often a string from ``${VAR}``) to this option's type."""
        expected = self.type
        # Never quote a value that could be a secret: a URL given to an int setting is
        # shown scrubbed and shortened, a secret option or secret-named one not at all.
        secret = self.secret or looks_secret(self.name)
        shown = SECRET_MASK if secret else shown_value(value)
        result: Any
        try:
            if value is None:
                result = None
            elif expected is bool:
                if isinstance(value, bool):
                    result = value
                elif isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
                    result = value.strip().lower() in _TRUE
                else:
                    raise TypeError
            elif expected is int:
                if isinstance(value, bool):
                    raise TypeError
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
                if isinstance(value, str) and not _DIGITS.fullmatch(value.strip()):
                    raise ValueError  # int() also takes "1_000" and other scripts' digits
                result = int(value.strip()) if isinstance(value, str) else value
                if not isinstance(result, int):
                    raise TypeError
            elif expected is float:
                if isinstance(value, bool):
                    raise TypeError
                result = float(value.strip()) if isinstance(value, str) else float(value)
                if not math.isfinite(result):
                    # "inf" or "1e309" from ${VAR}: no setting means forever this way,
                    # and timeouts derived from it overflowed (OverflowError in ceil).
                    raise TypeError
            elif expected is str:
                if not isinstance(value, str):
                    raise TypeError
                result = value
            else:
                if not isinstance(value, expected):
                    raise TypeError
                result = value
        except (TypeError, ValueError):
            raise ConfigError(
                f"{where}: setting '{self.name}' must be {expected.__name__}, "
                f"got {type(value).__name__} {shown}.",
                hint=self.doc or f"set '{self.name}' to a {expected.__name__}.",
            ) from None
        if isinstance(result, str):  # outside the try: ConfigError is a ValueError
            checked_text(result, f"{where}: setting '{self.name}'")
        if result is not None and self.choices is not None and result not in self.choices:
            choices = ", ".join(repr(c) for c in self.choices)
            raise ConfigError(
                f"{where}: setting '{self.name}' is {shown}, which is not one of {choices}.",
                hint=f"use one of {choices}.",
            )
        if result is not None and self.minimum is not None and result < self.minimum:
            raise ConfigError(
                f"{where}: setting '{self.name}' is {shown}, below its minimum {self.minimum}.",
                hint=f"use a value >= {self.minimum}.",
            )
        if result is not None and self.maximum is not None and result > self.maximum:
            raise ConfigError(
                f"{where}: setting '{self.name}' is {shown}, above its maximum "
                f"{_bound(self.maximum)}.",
                hint=f"use a value <= {_bound(self.maximum)}.",
            )
        return result


@dataclass(frozen=True, slots=True)
class LuceeOption:
    """A setting of the Lucee extension a provider replaces, read so its config loads unchanged.

    ``target`` is the cachehub option it sets (None: accepted, not used, and named in one
    warning unless its value is one of ``defaults``); ``convert`` turns the Lucee value
    into the target's (units, enumerations) and may raise :class:`ConfigError` for a
    value cachehub cannot honour. ``when=(setting, value)`` applies the setting only when
    that other Lucee setting has that value (the admin form writes the fields of every
    connection mode); otherwise it is dropped silently.
    """

    name: str
    target: str | None = None
    convert: Callable[[Any], Any] | None = None
    note: str = ""
    when: tuple[str, str] | None = None
    defaults: tuple[str, ...] = ()
    """Values (compared as lower-case strings) that mean "off": not worth a warning."""


def millis_to_seconds(value: Any) -> float:
    """Lucee's milliseconds (a number or numeric string) as seconds."""
    if isinstance(value, bool):
        raise TypeError(value)
    number = float(value.strip()) if isinstance(value, str) else float(value)
    if not math.isfinite(number):
        raise ValueError(value)
    return number / 1000.0


@functools.lru_cache(maxsize=4096)
def fold_setting(name: str) -> str:
    """A setting name as settings are matched: in any case, camelCase or snake_case
    (``table_name``, ``TableName`` and ``tablename`` are one setting)."""
    # Memoised: every cache's settings are matched against every option's spellings, the
    # same few dozen names for thousands of caches.
    return camel_case(name).lower()


def canonical_settings(
    settings: Mapping[str, Any],
    options: Iterable[Option],
    lucee_options: Iterable[LuceeOption] = (),
    *,
    where: str,
    lucee: bool = False,
    warn: bool = True,
) -> dict[str, Any]:
    """``settings`` with every key spelled as its option's name and Lucee values converted.

    Names match case-insensitively (CFML structs are), also in snake_case and through
    each option's aliases. Two spellings of one setting with different values are a
    :class:`ConfigError` naming both. Lucee settings are mapped onto their targets; the
    ones cachehub does not use are dropped and named in a single warning (``warn``).
    ``lucee`` (the entry names a Lucee class): a name that is both a cachehub and a Lucee
    setting takes the Lucee meaning, and an empty string means "not set", as in the
    Lucee admin. Values are not type-checked here (:func:`validate_settings` does).
    """
    by_fold: dict[str, Option] = {}
    for declared in options:
        for spelling in (declared.name, *declared.aliases):
            by_fold.setdefault(fold_setting(spelling), declared)
    foreign = {fold_setting(o.name): o for o in lucee_options}
    folded_input = {fold_setting(k): v for k, v in settings.items() if isinstance(k, str)}
    result: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    ignored: list[str] = []
    ignored_folds: set[str] = set()
    for raw_key, value in settings.items():
        if not isinstance(raw_key, str):
            raise ConfigError(f"{where}: setting names must be strings, got {raw_key!r}.")
        fold = fold_setting(raw_key)
        option = by_fold.get(fold)
        theirs = foreign.get(fold)
        if theirs is not None and (option is None or lucee):
            if lucee and isinstance(value, str) and not value.strip():
                continue  # an empty field of the Lucee admin form
            if theirs.when is not None:
                other, wanted = theirs.when
                actual = folded_input.get(fold_setting(other))
                if str(actual).strip().lower() != wanted:
                    continue  # a field of a connection mode that is not in use
            if theirs.target is None:
                if theirs.convert is not None:
                    _convert(theirs, raw_key, value, where)  # refuses what cannot be honoured
                if fold not in ignored_folds and str(value).strip().lower() not in theirs.defaults:
                    ignored_folds.add(fold)  # once per setting, whatever the spellings
                    ignored.append(f"{theirs.name} ({theirs.note})" if theirs.note else theirs.name)
                continue
            key = theirs.target
            if theirs.convert is not None:
                value = _convert(theirs, raw_key, value, where)
        elif option is not None:
            if lucee and isinstance(value, str) and not value.strip():
                continue
            key = option.name
        else:
            pool = [*(o.name for o in by_fold.values()), *(o.name for o in foreign.values())]
            guess = suggest(raw_key[:_NAME_SHOWN], pool)
            known = ", ".join(sorted({o.name for o in by_fold.values()}))
            raise ConfigError(
                f"{where}: unknown setting '{_shown_name(raw_key)}'."
                + (f" Did you mean '{guess}'?" if guess else ""),
                hint=f"known settings are: {known}.",
            )
        if key in result:
            if result[key] != value:
                first, second = _shown_name(spelled[key]), _shown_name(raw_key)
                raise ConfigError(
                    f"{where}: '{first}' and '{second}' both set '{key}', to different values.",
                    hint=f"setting names are case-insensitive and '{second}' is another "
                    f"name of '{key}'; keep only one of them.",
                )
            continue
        result[key] = value
        spelled[key] = raw_key
    if ignored and warn:
        _log.warning(
            "%s: ignoring Lucee settings cachehub does not use: %s.", where, "; ".join(ignored)
        )
    return result


_NAME_SHOWN: Final = 80
"""Characters of a setting name quoted in a message (a name is config text, not a value)."""


def _shown_name(name: str) -> str:
    return name if len(name) <= _NAME_SHOWN else name[:_NAME_SHOWN] + "..."


def _convert(option: LuceeOption, raw_key: str, value: Any, where: str) -> Any:
    assert option.convert is not None
    try:
        return option.convert(value)
    except CacheError:
        raise
    except (TypeError, ValueError, KeyError):
        shown = SECRET_MASK if looks_secret(raw_key) else shown_value(value)
        raise ConfigError(
            f"{where}: Lucee setting '{option.name}' has a value cachehub cannot read: {shown}.",
            hint=option.note or f"check the value of '{option.name}'.",
        ) from None


def suggest(name: str, candidates: Iterable[str]) -> str | None:
    """The closest candidate to ``name``, for "did you mean" messages."""
    pool = list(candidates)
    lowered = {c.lower(): c for c in pool}
    if name.lower() in lowered:
        return lowered[name.lower()]
    match = difflib.get_close_matches(name, pool, n=1, cutoff=0.6)
    return match[0] if match else None


def validate_settings(
    settings: Mapping[str, Any],
    options: Iterable[Option],
    *,
    where: str,
    lucee_options: Iterable[LuceeOption] = (),
    warn: bool = True,
) -> dict[str, Any]:
    """Check ``settings`` against ``options``; return them complete, coerced and defaulted.

    Names are resolved first by :func:`canonical_settings` (any case, aliases, Lucee
    settings). Raises :class:`ConfigError` for an unknown key (with a suggestion), a
    wrong type, a value outside its choices, or a missing required setting.
    """
    declared = tuple(options)
    by_name = {o.name: o for o in declared}
    canonical = canonical_settings(settings, declared, lucee_options, where=where, warn=warn)
    result: dict[str, Any] = {}
    for key, value in canonical.items():
        result[key] = by_name[key].coerce(value, where)
    for option in by_name.values():
        if result.get(option.name) is None:
            if option.required:
                raise ConfigError(
                    f"{where}: required setting '{option.name}' is missing.",
                    hint=option.doc or f"add '{option.name}' to the cache's custom settings.",
                )
            result[option.name] = option.default
    return result


def redact(value: Any, options: Iterable[Option] = ()) -> Any:
    """A copy of ``value`` safe to show: secret options, secret-looking names, URL passwords
    and query tokens masked (see :func:`cachehub.scrub.redact`)."""
    secret = {fold_setting(n) for o in options if o.secret for n in (o.name, *o.aliases)}
    names = {o.name for o in options if o.secret}
    if isinstance(value, Mapping):
        # Names are case-insensitive and have aliases: mask every spelling of a secret.
        names |= {k for k in value if isinstance(k, str) and fold_setting(k) in secret}
    return _scrub_redact(value, names)
