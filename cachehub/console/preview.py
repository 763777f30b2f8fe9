"""Bounded previews of cached values: what the entry page shows, whatever the value's size.

A cached value may be a 100 MB string or a list of a million dicts. Nothing here walks
or copies more than a fixed budget of it: :mod:`reprlib` cuts strings and containers
(sets and dicts unsorted, see :class:`_Repr`),
and the JSON text offered for editing is produced lazily by ``iterencode`` and abandoned
as soon as it passes :data:`MAX_EDIT_CHARS`.
"""

from __future__ import annotations

import json
import reprlib
from collections.abc import Collection, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from itertools import islice
from typing import Any, Final

__all__ = ["Preview", "preview", "MAX_PREVIEW_CHARS", "MAX_EDIT_CHARS"]

MAX_PREVIEW_CHARS: Final = 4000
"""Longest preview text shown."""
MAX_EDIT_CHARS: Final = 64 * 1024
"""Longest JSON text offered in the edit form (larger values are not editable here)."""


class _Repr(reprlib.Repr):
    """:class:`reprlib.Repr` showing sets and dicts in iteration order.

    reprlib sorts them first, which copies and compares *every* item to show the first
    50: a set or dict of millions of items would cost seconds and a list of its size.
    Iteration order (a dict's insertion order, as its JSON shows) costs 50 items.
    """

    def repr_set(self, x: AbstractSet[Any], level: int) -> str:
        return self._first(x, level, "{", "}", self.maxset) if x else "set()"

    def repr_frozenset(self, x: AbstractSet[Any], level: int) -> str:
        return self._first(x, level, "frozenset({", "})", self.maxfrozenset) if x else "frozenset()"

    def repr_dict(self, x: Mapping[Any, Any], level: int) -> str:
        if not x:
            return "{}"
        if level <= 0:
            return "{" + self.fillvalue + "}"
        pieces = [
            f"{self.repr1(key, level - 1)}: {self.repr1(x[key], level - 1)}"
            for key in islice(x, self.maxdict)
        ]
        if len(x) > self.maxdict:
            pieces.append(self.fillvalue)
        return "{" + ", ".join(pieces) + "}"

    def _first(self, x: Collection[Any], level: int, left: str, right: str, limit: int) -> str:
        if level <= 0:
            return left + self.fillvalue + right
        pieces = [self.repr1(item, level - 1) for item in islice(x, limit)]
        if len(x) > limit:
            pieces.append(self.fillvalue)
        return left + ", ".join(pieces) + right


_REPR = _Repr()
_REPR.maxlevel = 4
_REPR.maxstring = 2000
_REPR.maxother = 200
_REPR.maxlong = 200
for _name in ("maxlist", "maxtuple", "maxset", "maxfrozenset", "maxdeque", "maxarray"):
    setattr(_REPR, _name, 50)
_REPR.maxdict = 50


@dataclass(frozen=True)
class Preview:
    """What the entry page shows of one value."""

    type_name: str
    size: str
    """Human-readable length: characters, bytes or items."""
    text: str
    """A bounded representation (``truncated`` says whether it was cut)."""
    truncated: bool
    json_text: str | None
    """The value as JSON for the edit form, or None when it is not JSON or too large."""


def _size(value: Any) -> str:
    if isinstance(value, str):
        return f"{len(value):,} characters"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"{len(value):,} bytes"
    try:
        return f"{len(value):,} items"
    except TypeError:
        return "-"


def _small(value: Any, budget: int = MAX_EDIT_CHARS) -> bool:
    """Whether ``value``'s strings and nodes add up to at most ``budget`` (bounded walk).

    ``iterencode`` yields each string whole, so a 100 MB string (even deep in a list)
    would be encoded in one piece before the length check could stop it.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        budget -= 1
        if isinstance(item, (str, bytes, bytearray)):
            budget -= len(item)
        elif isinstance(item, dict):
            budget -= len(item)
            if budget >= 0:
                stack.extend(item.keys())
                stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            budget -= len(item)
            if budget >= 0:
                stack.extend(item)
        if budget < 0:
            return False
    return True


def _json_text(value: Any) -> str | None:
    """Indented JSON of ``value`` if it is JSON data and at most MAX_EDIT_CHARS long."""
    if not _small(value):
        return None
    encoder = json.JSONEncoder(indent=2, ensure_ascii=False, allow_nan=False, check_circular=True)
    parts: list[str] = []
    length = 0
    try:
        for chunk in encoder.iterencode(value):
            length += len(chunk)
            if length > MAX_EDIT_CHARS:
                return None
            parts.append(chunk)
    except (TypeError, ValueError, RecursionError):
        return None  # not JSON data (bytes, sets, objects, NaN...) or nested too deeply
    return "".join(parts)


def preview(value: Any) -> Preview:
    """A bounded :class:`Preview` of ``value``."""
    shown = value
    if isinstance(value, (bytes, bytearray, memoryview)):
        # reprlib has no bytes rule: it would repr() all of them, then cut.
        shown = bytes(value[: _REPR.maxstring])
    try:
        text = _REPR.repr(shown)
    except Exception as exc:  # a stored object whose __repr__ fails must not break the page
        text = f"<{type(value).__name__}: repr() raised {type(exc).__name__}>"
    truncated = len(text) > MAX_PREVIEW_CHARS
    if truncated:
        text = text[:MAX_PREVIEW_CHARS] + " …"
    elif isinstance(value, (str, bytes, bytearray, memoryview)):
        truncated = len(value) > _REPR.maxstring  # reprlib kept its two ends
    elif isinstance(value, (list, tuple, set, frozenset, dict)):
        truncated = len(value) > _REPR.maxdict  # reprlib showed the first items
    return Preview(type(value).__name__, _size(value), text, truncated, _json_text(value))
