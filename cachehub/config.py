"""Provider settings schema: declared options, type coercion, "did you mean", secret masking.

Masking itself lives in :mod:`cachehub.scrub` (the one scrubber); :func:`redact` and
:data:`SECRET_MASK` are re-exported here for the option schema's callers.

Providers declare their settings as a tuple of :class:`Option`; :func:`validate_settings`
checks a ``custom`` block against them. Keys are Lucee's camelCase names (``tableName``);
snake_case spellings (``table_name``) are accepted too, as Python keyword arguments.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError
from .scrub import SECRET_MASK, looks_secret, shown_value
from .scrub import redact as _scrub_redact

__all__ = ["Option", "validate_settings", "redact", "SECRET_MASK", "camel_case"]

_CAMEL_RE = re.compile(r"_([a-z0-9])")
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0", ""}


def camel_case(name: str) -> str:
    """``table_name`` -> ``tableName``; camelCase input is returned unchanged."""
    return _CAMEL_RE.sub(lambda m: m.group(1).upper(), name)


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
                result = int(value.strip()) if isinstance(value, str) else value
                if not isinstance(result, int):
                    raise TypeError
            elif expected is float:
                if isinstance(value, bool):
                    raise TypeError
                result = float(value.strip()) if isinstance(value, str) else float(value)
                if math.isnan(result):
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
        return result


def suggest(name: str, candidates: Iterable[str]) -> str | None:
    """The closest candidate to ``name``, for "did you mean" messages."""
    pool = list(candidates)
    lowered = {c.lower(): c for c in pool}
    if name.lower() in lowered:
        return lowered[name.lower()]
    match = difflib.get_close_matches(name, pool, n=1, cutoff=0.6)
    return match[0] if match else None


def validate_settings(
    settings: Mapping[str, Any], options: Iterable[Option], *, where: str
) -> dict[str, Any]:
    """Check ``settings`` against ``options``; return them complete, coerced and defaulted.

    Raises :class:`ConfigError` for an unknown key (with a suggestion), a wrong type, a
    value outside its choices, or a missing required setting.
    """
    by_name = {o.name: o for o in options}
    result: dict[str, Any] = {}
    for raw_key, value in settings.items():
        if not isinstance(raw_key, str):
            raise ConfigError(f"{where}: setting names must be strings, got {raw_key!r}.")
        key = raw_key if raw_key in by_name else camel_case(raw_key)
        option = by_name.get(key)
        if option is None:
            guess = suggest(raw_key, by_name)
            known = ", ".join(sorted(by_name))
            raise ConfigError(
                f"{where}: unknown setting '{raw_key}'."
                + (f" Did you mean '{guess}'?" if guess else ""),
                hint=f"known settings are: {known}.",
            )
        if key in result:
            raise ConfigError(f"{where}: setting '{key}' is given twice ('{raw_key}').")
        result[key] = option.coerce(value, where)
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
    return _scrub_redact(value, (o.name for o in options if o.secret))
