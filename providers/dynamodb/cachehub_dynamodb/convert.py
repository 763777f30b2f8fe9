"""Plain Python values <-> DynamoDB attribute values (the wire format of the low-level client).

boto3's :class:`TypeSerializer` refuses floats and its deserializer returns ``Decimal`` and
``Binary``; these helpers make both directions plain: floats go in as exact decimals, and
numbers come back as ``int`` when integral, ``float`` when that is exact, else ``Decimal``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final, cast

from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer

from cachehub.errors import CacheValueError, CorruptEntryError
from cachehub.provider import unflooded

__all__ = ["to_attr", "to_item", "from_attr", "from_item", "plain_number", "utf8_text"]

# Typed as Any: the stubs' TypedDicts do not describe the plain dicts this module handles.
_SERIALIZER: Any = TypeSerializer()


class _Deserializer(TypeDeserializer):  # type: ignore[misc]  # boto3 ships no types here
    """boto3's, with number sets checked before they are built.

    A Decimal hashes to its value modulo 2**61 - 1, so a planted ``NS`` of numbers k *
    (2**61 - 1) all hash alike and the set took time quadratic in their count (8,000 of
    them: 1.7 s per read). ``_deserialize_ns`` is boto3's private per-type method
    (``deserialize`` dispatches on the type's name), hence boto3's upper bound; the
    planted-set test fails if boto3 stops calling it.
    """

    def _deserialize_ns(self, value: Any) -> set[Decimal]:
        return set(unflooded(list(map(self._deserialize_n, value))))


_DESERIALIZER: Any = _Deserializer()

MAX_NESTING: Final = 32
"""DynamoDB's limit for nested lists and maps: deeper values are refused before any
recursion can exhaust the interpreter's stack (a self-containing list included)."""


def utf8_text(text: str, what: str) -> str:
    """``text`` when it can be sent as UTF-8 (DynamoDB's encoding), else a typed error:
    a lone surrogate would otherwise fail deep in the client or on the server."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise CacheValueError(
                f"{what} {text[:40]!r} holds a lone surrogate and cannot be encoded as UTF-8, "
                "which DynamoDB stores.",
                hint="pass valid Unicode text (e.g. decode bytes with errors='replace').",
            ) from None
    return text


def _prepare(value: Any, depth: int = 0) -> Any:
    """Make ``value`` acceptable to TypeSerializer (floats -> Decimal, tuples -> lists)."""
    if depth > MAX_NESTING:
        raise CacheValueError(
            f"the value nests deeper than {MAX_NESTING} levels, DynamoDB's limit for "
            "lists and maps (or contains itself).",
            hint="flatten the value, or store it through the cache API (which serializes it).",
        )
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise CacheValueError(
                f"DynamoDB numbers cannot be {value!r}.",
                hint="store NaN/infinity as a string, or leave the attribute out.",
            )
        return Decimal(repr(value))  # repr is the shortest exact round-trip form
    if isinstance(value, str):
        return utf8_text(value, "a string")
    if isinstance(value, Mapping):
        return {utf8_text(str(k), "a map key"): _prepare(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_prepare(v, depth + 1) for v in value]
    if isinstance(value, (set, frozenset)):
        return {_prepare(v, depth + 1) for v in value}
    return value


def to_attr(value: Any) -> dict[str, Any]:
    """One plain value as a DynamoDB attribute value, e.g. ``30 -> {"N": "30"}``."""
    try:
        return dict(_SERIALIZER.serialize(_prepare(value)))
    except CacheValueError:
        raise  # already names the problem and its fix
    except ArithmeticError:
        # boto3's decimal context signals Inexact/Rounded, whose text names no problem.
        raise CacheValueError(
            f"cannot store a {type(value).__name__} as a DynamoDB attribute: it holds a "
            "number beyond DynamoDB's 38 significant digits (or outside 1e-130..1e126).",
            hint="store such numbers as strings.",
        ) from None
    except (TypeError, ValueError) as exc:
        raise CacheValueError(
            f"cannot store a {type(value).__name__} as a DynamoDB attribute: {exc}",
            hint="use str, int, float, Decimal, bool, None, bytes, list, dict or set values.",
        ) from None


def to_item(values: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """A plain dict as a DynamoDB item (or key, or ExpressionAttributeValues)."""
    return {utf8_text(str(k), "an attribute name"): to_attr(v) for k, v in values.items()}


def plain_number(number: Decimal) -> int | float | Decimal:
    """``int`` if integral, ``float`` if the float is exact, else the ``Decimal`` itself."""
    if not number.is_finite():
        return number
    if number == number.to_integral_value():
        return int(number)
    as_float = float(number)
    return as_float if Decimal(repr(as_float)) == number else number


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return plain_number(value)
    if isinstance(value, Binary):
        return bytes(cast(Any, value).value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return {_plain(v) for v in value}
    return value


def from_attr(attr: Mapping[str, Any]) -> Any:
    """A DynamoDB attribute value as a plain Python value."""
    return _plain(_DESERIALIZER.deserialize(dict(attr)))


def from_item(item: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """A DynamoDB item as a plain dict.

    An attribute boto3 cannot read raises :class:`CorruptEntryError` naming it: a Number
    of more than DynamoDB's 38 digits (which DynamoDB-compatible servers such as moto
    store and return) made boto3's decimal context raise ``decimal.Rounded``/``Inexact``
    through ``dynamodb_command``.
    """
    plain: dict[str, Any] = {}
    for name, attr in item.items():
        try:
            plain[name] = from_attr(attr)
        except (TypeError, ValueError, ArithmeticError, KeyError, AttributeError) as exc:
            raise CorruptEntryError(
                f"DynamoDB item attribute '{str(name)[:100]}' cannot be read "
                f"({type(exc).__name__}).",
                hint="another program wrote this item; delete it or write the attribute again.",
            ) from None
    return plain
