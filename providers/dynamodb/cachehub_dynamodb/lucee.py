"""Lucee interop mode (``itemFormat: "lucee"``): the Lucee DynamoDB extension's item layout.

A Lucee application and a Python application can then share one table during a
migration. What the extension writes (Lucee documentation, "Cache Entry Structure" and
"Data Types and Serialization"; where its code differs, the code wins, because a shared
table must match what the running extension really does):

* the partition key (default ``cacheKey``) holds the id uppercased and trimmed - Lucee
  core does this before the extension sees a key - and wildcard filters ignore case;
* ``value`` holds the value natively (see :mod:`.lucee_values`);
* ``createdTime`` / ``updatedTime`` are epoch **milliseconds**; ``createdTime`` survives
  overwrites (``if_not_exists``): a put is an ``UpdateItem`` that merges into the item,
  so a put without an expiry keeps the item's older ``ttl``/``idle``/``until``;
* ``ttl`` is the absolute expiry in epoch **seconds**; ``until`` and ``idle`` are the
  live and idle *spans* in ms. An item is live while ``floor(now) < ttl``; the idle span
  is never slid (``ttl = now + idle``, once), and a live span wins over an idle one;
* hit counts and last-access times are never stored.

:class:`LuceeDynamoDBCache` is the :class:`~cachehub_dynamodb.DynamoDBCache` chosen by
``itemFormat: "lucee"``; it reuses the provider's client, table bootstrap, error
translation and locks, and replaces the entry primitives.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from itertools import islice
from typing import TYPE_CHECKING, Any, Final

from cachehub.api import COUNTER_RANGE, MAX_TIME_SPAN, MISSING, Entry, Expiry, counter_overflow
from cachehub.errors import (
    CacheBackendError,
    CacheError,
    CacheValueError,
    ConfigError,
    CorruptEntryError,
    InvalidKeyError,
    SerializationError,
)
from cachehub.filters import KeyFilter, compile_filter
from cachehub.migration import is_copy
from cachehub.provider import Call, Emit, Stream, encoded, heavy, off_loop, pull

from .batch import get_batches
from .cache import DynamoDBCache
from .errors import ConditionFailedError, ForeignEntryError, describe_item
from .flow import Flow, request
from .items import MAX_ITEM_BYTES, MAX_KEY_BYTES, item_size
from .lucee_values import LuceeValueError, decode_attr, encode_attr
from .scan import scan_pages

if TYPE_CHECKING:
    from cachehub.api import BaseCache

__all__ = [
    "CONVERT_CHUNK",
    "ConversionReport",
    "LUCEE_FORMAT",
    "LuceeDynamoDBCache",
    "convert_from_lucee",
    "lucee_key",
    "report_foreign",
    "tolerant_chunk",
]

LUCEE_FORMAT: Final = "lucee"
"""The ``itemFormat`` value that selects this layout."""
VALUE: Final = "value"
CREATED: Final = "createdTime"
UPDATED: Final = "updatedTime"
TTL: Final = "ttl"
UNTIL: Final = "until"
IDLE: Final = "idle"
NAMES: Final = {
    "#v": VALUE,
    "#c": CREATED,
    "#u": UPDATED,
    "#ttl": TTL,
    "#until": UNTIL,
    "#idle": IDLE,
}
_PLACEHOLDER: Final = re.compile(r"#[A-Za-z0-9_]+")
_LIVE: Final = "(attribute_not_exists(#ttl) OR (attribute_type(#ttl, :n) AND #ttl > :nows))"
_EXPIRED: Final = f"NOT {_LIVE}"
"""On an existing item, the exact complement of ``_LIVE``: a ``ttl`` that is no Number is
expired for ``add`` too, as for every list and :func:`is_live` (DynamoDB compares across
types as false; the explicit type test keeps moto, which answers such a comparison with a
500, evaluating it)."""
_ROUNDS: Final = 5
_PAGE: Final = 1000
CONVERT_CHUNK: Final = 100
"""Entries read per BatchGetItem while converting or listing values."""
_JAVA_WHITESPACE: Final = "".join(chr(c) for c in range(0x21))
"""What Java's ``String.trim()`` strips: every char up to and including the space."""


def lucee_key(key: str) -> str:
    """The partition key value Lucee stores for cache id ``key`` (``CacheUtil.key``).

    ``key.toUpperCase().trim()``: Java's trim strips control characters and spaces
    only (not other Unicode whitespace); Python's ``upper`` matches Java's outside the
    Turkish/Lithuanian locales.
    """
    return key.upper().strip(_JAVA_WHITESPACE)


def _now(now: float) -> dict[str, dict[str, str]]:
    """The values ``_LIVE``/``_EXPIRED`` use: the whole second ``now``, and type N."""
    return {":nows": {"N": str(math.floor(now))}, ":n": {"S": "N"}}


def _ms(now: float) -> int:
    return math.floor(now * 1000)


def _whole(item: Mapping[str, Mapping[str, Any]], name: str) -> Decimal | None:
    """A Number attribute as a finite Decimal; None when absent or of another type."""
    attr = item.get(name)
    if not isinstance(attr, Mapping) or "N" not in attr:
        return None
    try:
        value = Decimal(str(attr["N"]))
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def ttl_of(item: Mapping[str, Mapping[str, Any]]) -> float | None:
    """The item's ``ttl`` (epoch seconds), None when it has none.

    A ``ttl`` that is not a finite Number (another program's) reads as already past:
    the entry is treated as expired rather than immortal.
    """
    if TTL not in item:
        return None
    value = _whole(item, TTL)
    return -math.inf if value is None else float(value)


def is_live(item: Mapping[str, Mapping[str, Any]], now: float) -> bool:
    """Lucee's liveness rule: ``now_seconds < ttl`` with whole seconds."""
    ttl = ttl_of(item)
    return ttl is None or math.floor(now) < ttl


def _stamp(item: Mapping[str, Mapping[str, Any]], name: str) -> float | None:
    """A millisecond stamp as epoch seconds (None: absent or outside the datetime range)."""
    value = _whole(item, name)
    if value is None:
        return None
    seconds = float(value) / 1000
    return seconds if -62_135_596_800 <= seconds <= 253_402_300_799 else None


def expiry_values(expiry: Expiry, now: float) -> dict[str, dict[str, str]]:
    """``ttl``/``until``/``idle`` for an entry written at ``now`` (empty: never expires).

    As the extension computes them: ``until`` is the live span and ``idle`` the idle span,
    both in whole ms (at least 1: Lucee ignores spans of 0); ``ttl`` is
    ``(now_ms + until) // 1000``, else ``(now_ms + idle) // 1000``.
    """
    now_ms = _ms(now)
    attrs: dict[str, dict[str, str]] = {}
    until = None if expiry.expires_at is None else max(1, _ms(expiry.expires_at) - now_ms)
    idle = None if expiry.idle is None else max(1, round(expiry.idle * 1000))
    span = until if until is not None else idle
    if span is not None:
        attrs[TTL] = {"N": str((now_ms + span) // 1000)}
    if idle is not None:
        attrs[IDLE] = {"N": str(idle)}
    if until is not None:
        attrs[UNTIL] = {"N": str(until)}
    return attrs


def put_update(value: dict[str, Any], expiry: Expiry, now: float) -> tuple[str, dict[str, Any]]:
    """The extension's put: ``UpdateExpression`` and its values (a merge, never a replace)."""
    values: dict[str, Any] = {":value": value, ":now": {"N": str(_ms(now))}}
    update = "SET #v = :value, #u = :now, #c = if_not_exists(#c, :now)"
    for name, attr in expiry_values(expiry, now).items():
        update += f", #{name} = :{name}"
        values[f":{name}"] = attr
    return update, values


def _names(*expressions: str, key_name: str) -> dict[str, str]:
    """ExpressionAttributeNames for exactly the placeholders the expressions use."""
    used = set(_PLACEHOLDER.findall(" ".join(expressions)))
    names = {ph: attr for ph, attr in NAMES.items() if ph in used}
    if "#pk" in used:
        names["#pk"] = key_name
    return names


MAX_REPORTED: Final = 1000
"""Unreadable entries a :class:`ConversionReport` keeps in full (the rest are counted)."""


@dataclass
class ConversionReport:
    """What :func:`convert_from_lucee` did (or, with ``dry_run``, would do)."""

    copied: int = 0
    unchanged: int = 0
    """Entries the target already holds as copied (an earlier or concurrent conversion):
    same value and deadline; not written again."""
    expired: int = 0
    """Selected entries not copied because they were dead: past their ``ttl`` when the
    scan listed them, when they were read, or when the copy was written (or deleted from
    the table between the scan and the read)."""
    kept_newer: int = 0
    """Entries the target already held in a version newer than Lucee's (its application
    wrote them during the conversion): kept, not overwritten."""
    skipped_count: int = 0
    skipped: list[ForeignEntryError] = field(default_factory=list)
    """The first :data:`MAX_REPORTED` unreadable entries, each with its key and what the
    item holds (``skipped_count`` counts them all)."""
    unwritable_count: int = 0
    unwritable: list[dict[str, str]] = field(default_factory=list)
    """The first :data:`MAX_REPORTED` entries the target refused (a key it cannot name or
    a value it cannot store), each as ``{"key", "error"}`` (``unwritable_count`` counts
    them all): never written, and the run went on."""
    dry_run: bool = False

    def skip(self, error: ForeignEntryError) -> None:
        """Record an entry that could not be read (kept in full up to the cap)."""
        self.skipped_count += 1
        if len(self.skipped) < MAX_REPORTED:
            self.skipped.append(error)

    def refuse(self, key: str, error: CacheError) -> None:
        """Record an entry the target cannot hold (kept in full up to the cap)."""
        self.unwritable_count += 1
        if len(self.unwritable) < MAX_REPORTED:
            self.unwritable.append({"key": key, "error": f"{type(error).__name__}: {error}"})


def _raw_item(cache: DynamoDBCache, key: str) -> Flow[Any]:
    """The stored item of ``key`` as it is, for describing it (None if it cannot be read)."""
    try:
        if isinstance(cache, LuceeDynamoDBCache):
            return (yield from cache._fetch(key))
        item, _, _ = yield from cache._get_item(key, verify=False)
        return item
    except CacheError:
        return None


def report_foreign(
    cache: DynamoDBCache, key: str, exc: Exception, item: Any = None
) -> ForeignEntryError:
    """Hand an undecodable entry to ``cache.on_foreign_entry`` (default: a warning in
    the cache's log) as a :class:`ForeignEntryError`; returns that error. ``item`` is
    what the entry holds, when the caller read it."""
    if isinstance(exc, ForeignEntryError):
        error = exc
    else:
        user_key = cache._user_key(key)
        found = describe_item(item)
        error = ForeignEntryError(
            f"entry {user_key!r:.80} in DynamoDB table '{cache.table_name}' cannot be "
            f"read and was skipped: {exc} (the item holds {found}).",
            key=user_key,
            found=found,
            hint="open the table with itemFormat 'lucee' if Lucee wrote it, or delete the "
            "entry; see docs/lucee-interop.md.",
        )
    callback = cache.on_foreign_entry
    if callback is None:
        cache.log.warning("cache '%s': skipped an unreadable entry: %s", cache.name, error)
    else:
        callback(error)
    return error


def tolerant_chunk(cache: DynamoDBCache, chunk: list[str], now: float) -> Flow[dict[str, Any]]:
    """The readable entries of ``chunk`` (storage keys), as ``get_all`` reads them (#18).

    One batch read; when it fails with a :class:`CorruptEntryError`, the keys are read
    one by one and each bad entry is handed to :func:`report_foreign` with what its item
    holds. A flow (the batch reads are ``_get_verified`` / ``_aget_verified``, which read
    entries signed with a rotated-away key as misses), so both shells skip alike.
    """
    try:
        found: dict[str, Any] = yield Call("get_verified", chunk, now)
        return found
    except CorruptEntryError:
        found = {}
        for key in chunk:
            try:
                found.update((yield Call("get_verified", [key], now)))
            except CorruptEntryError as exc:
                item = (
                    None
                    if isinstance(exc, ForeignEntryError)
                    else (yield from _raw_item(cache, key))
                )
                report_foreign(cache, key, exc, item)
        return found


class LuceeDynamoDBCache(DynamoDBCache):
    """A :class:`~cachehub_dynamodb.DynamoDBCache` on the Lucee extension's item layout.

    Created by ``DynamoDBCache(..., itemFormat="lucee")``. See the module docstring for
    the layout and docs/lucee-interop.md for what interoperates.
    """

    def __init__(self, settings: Mapping[str, Any] | None = None, /, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        ns = self.namespace
        if ns and lucee_key(ns) != ns:
            raise ConfigError(
                f"cache '{self.name}': namespace {ns!r:.80} changes when Lucee uppercases "
                "and trims keys, so its entries could not be told apart.",
                hint=f"use the namespace {lucee_key(ns)!r:.80} (uppercase, no surrounding "
                "spaces) with itemFormat 'lucee'.",
            )

    # ------------------------------------------------------------------ keys

    def _entry_key(self, key: str) -> str:
        """Lucee's key mapping (``CacheUtil.key``): ``user`` and ``USER`` are one entry.

        A key that maps to nothing (blank) stays itself: it is no entry at all, and a write
        refuses it with its own error rather than as a collision of blank keys.
        """
        return lucee_key(key) or key

    def _lucee_pk(self, storage_key: str) -> str:
        pk = lucee_key(storage_key)
        if not pk:
            raise InvalidKeyError(
                f"key {storage_key!r:.40} is empty once uppercased and trimmed as Lucee does.",
                hint="use a key with at least one non-space character.",
            )
        if len(pk.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
            raise InvalidKeyError(
                f"key {storage_key[:40]!r}... is longer than DynamoDB's {MAX_KEY_BYTES}-byte "
                "partition key limit; Lucee's layout has no hashed form for long keys.",
                hint="shorten the key, or use the default itemFormat (which hashes long keys).",
            )
        return pk

    def _lkey(self, storage_key: str) -> tuple[dict[str, Any], str]:
        pk = self._lucee_pk(storage_key)
        return {self.key_name: {"S": pk}}, pk

    def _decode(self, key: str, item: Mapping[str, Any]) -> Any:
        """The value of a Lucee item; :class:`ForeignEntryError` when it cannot be read."""
        attr = item.get(VALUE)
        if attr is None:
            return None  # an item without value (DynamoDBCommand's) reads as null in Lucee
        try:
            return decode_attr(attr)
        except (LuceeValueError, RecursionError) as exc:
            reason = str(exc) if isinstance(exc, LuceeValueError) else "nests too deeply"
            raise ForeignEntryError(
                f"the Lucee entry {self._user_key(key)!r:.80} in DynamoDB table "
                f"'{self.table_name}' cannot be read: {reason}.",
                key=self._user_key(key),
                found=describe_item(dict(item)),
                hint="delete or rewrite the entry from Lucee; see docs/lucee-interop.md "
                "for the values both sides read.",
            ) from None

    def _decoded(self, key: str, item: Mapping[str, Any]) -> Flow[Any]:
        """:meth:`_decode` inside a flow: off the event loop when the value attribute is
        large (:func:`cachehub.provider.heavy` weighs it as it weighs a value to encode:
        64 KiB of binary or text, or more than 256 map and list entries), else at once."""
        attr = item.get(VALUE)
        if attr is None or not heavy(attr):
            return self._decode(key, item)
        return (yield off_loop(self._decode, key, item))

    def _live(self, key: str, item: Mapping[str, Any], now: float) -> bool:
        attr = item.get(TTL)
        if attr is not None and _whole(item, TTL) is None:
            raise ForeignEntryError(
                f"the Lucee entry {self._user_key(key)!r:.80} has a ttl that is not a "
                f"finite Number ({str(attr)[:60]}).",
                key=self._user_key(key),
                found=describe_item(dict(item)),
                hint="delete the item, or put() the key again with an expiry.",
            )
        return is_live(item, now)

    def _fetch(self, storage_key: str, *, consistent: bool | None = None) -> Flow[Any]:
        key, _ = self._lkey(storage_key)
        read = {
            "TableName": self.table_name,
            "Key": key,
            "ConsistentRead": self._consistent if consistent is None else consistent,
        }
        return (yield request("GetItem", read)).get("Item")

    def _storable(self, storage_key: str, value: Any, now: float) -> None:
        self._lkey(storage_key)  # the extension's key rules (uppercased, trimmed, length)
        self._encode(storage_key, value)  # Lucee's attribute types

    def _encode(self, storage_key: str, value: Any) -> dict[str, Any]:
        try:
            attr = encode_attr(value)
        except RecursionError:
            raise CacheValueError(
                "the value nests too deeply for the Lucee item format.",
                hint="flatten the value.",
            ) from None
        raw = attr.get("B")
        # Key twice at most 4 bytes a character, plus the stamps and spans: < 256 bytes.
        extra = 4 * len(storage_key) + 256
        size = len(raw) + extra if raw is not None else item_size({VALUE: attr}) + extra
        if size > MAX_ITEM_BYTES:
            raise CacheValueError(
                f"the value for key {self._user_key(storage_key)!r:.80} does not fit "
                f"DynamoDB's {MAX_ITEM_BYTES}-byte item limit.",
                hint="store large values elsewhere (e.g. S3) and cache a reference.",
            )
        return attr

    # ------------------------------------------------------------------ primitives

    def _get_flow(self, key: str, now: float) -> Flow[Any]:
        item = yield from self._fetch(key)
        if not item or not self._live(key, item, now):
            return MISSING
        return (yield from self._decoded(key, item))

    def _get_entry_flow(self, key: str, now: float) -> Flow[Entry | None]:
        item = yield from self._fetch(key)
        if not item or not self._live(key, item, now):
            return None
        value = yield from self._decoded(key, item)
        created = _stamp(item, CREATED)
        modified = _stamp(item, UPDATED) or created or 0.0
        ttl = ttl_of(item)
        if ttl is not None and not -62_135_596_800 <= ttl <= 253_402_300_799:
            raise ForeignEntryError(
                f"the Lucee entry {self._user_key(key)!r:.80} has a ttl beyond any date "
                f"({ttl:.0f}).",
                key=self._user_key(key),
                found=describe_item(dict(item)),
                hint="put() the key again with a real expiry.",
            )
        return Entry(
            value=value,
            created=created or modified,
            modified=modified,
            accessed=modified,  # Lucee stores no access time nor hit count
            hits=0,
            expires_at=ttl,
            idle=None,  # stored, but never slid by Lucee: the ttl is the whole story
        )

    def _exists_flow(self, key: str, now: float) -> Flow[bool]:
        k, _ = self._lkey(key)
        read = {
            "TableName": self.table_name,
            "Key": k,
            "ConsistentRead": self._consistent,
            "AttributesToGet": [self.key_name, TTL],
        }
        item = (yield request("GetItem", read)).get("Item")
        return item is not None and is_live(item, now)

    def _set_flow(self, key: str, value: Any, expiry: Expiry, now: float) -> Flow[None]:
        k, pk = self._lkey(key)
        attr = yield from encoded(value, self._encode, key, value)
        update, values = put_update(attr, expiry, now)
        params = {
            "TableName": self.table_name,
            "Key": k,
            "UpdateExpression": update,
            "ExpressionAttributeNames": _names(update, key_name=self.key_name),
            "ExpressionAttributeValues": values,
        }
        if expiry.expires_at is not None or expiry.idle is not None:
            yield request("UpdateItem", params)  # the merge sets a new ttl
            return
        # Without an expiry the merge keeps the item's ttl: over an expired entry the new
        # value would be dead on arrival for both Lucee and cachehub (a put lost without
        # a word). So merge only into a live item (or none); an expired one is replaced
        # by a fresh item without ttl, which both sides read as live.
        cond = f"attribute_not_exists(#pk) OR {_LIVE}"
        params["ConditionExpression"] = cond
        params["ExpressionAttributeNames"] = _names(update, cond, key_name=self.key_name)
        params["ExpressionAttributeValues"] = {**values, **_now(now)}
        fresh = self._fresh_item(pk, attr, expiry, now)
        for _ in range(_ROUNDS):
            try:
                yield request("UpdateItem", params)
                return
            except ConditionFailedError:
                pass
            if (yield from self._put_fresh(key, fresh, f"NOT {_LIVE}", now, "put")):
                return
        raise CacheBackendError(
            f"put of key {self._user_key(key)!r:.80} kept conflicting with concurrent writes.",
            hint="retry the call.",
        )

    def _fresh_item(self, pk: str, attr: dict[str, Any], expiry: Expiry, now: float) -> Any:
        stamp = {"N": str(_ms(now))}
        item = {self.key_name: {"S": pk}, VALUE: attr, UPDATED: stamp, CREATED: stamp}
        item.update(expiry_values(expiry, now))
        return item

    def _put_fresh(self, key: str, item: Any, cond: str, now: float, op: str) -> Flow[bool]:
        """PutItem of a whole new entry under ``cond``; never re-sent blind."""
        params = {
            "TableName": self.table_name,
            "Item": item,
            "ConditionExpression": cond,
            "ExpressionAttributeNames": _names(cond, key_name=self.key_name),
            "ExpressionAttributeValues": _now(now),
        }
        try:
            reply = yield request("PutItem", params, once=True)
        except ConditionFailedError:
            return False
        if reply is None:
            raise self._unknown(op, key)
        return True

    def _add_flow(self, key: str, value: Any, expiry: Expiry, now: float) -> Flow[bool]:
        _, pk = self._lkey(key)
        attr = yield from encoded(value, self._encode, key, value)
        item = self._fresh_item(pk, attr, expiry, now)
        cond = f"attribute_not_exists(#pk) OR {_EXPIRED}"
        return (yield from self._put_fresh(key, item, cond, now, "add"))

    def _delete_flow(self, key: str, now: float) -> Flow[bool]:
        k, _ = self._lkey(key)
        sent = {"TableName": self.table_name, "Key": k, "ReturnValues": "ALL_OLD"}
        old = (yield request("DeleteItem", sent)).get("Attributes")
        return old is not None and is_live(old, now)

    def _delete_if_equal_flow(self, key: str, value: Any, now: float) -> Flow[bool]:
        item = yield from self._fetch(key, consistent=True)
        if not item or not self._live(key, item, now):
            return False
        if (yield from self._decoded(key, item)) != value:
            return False
        k, _ = self._lkey(key)
        cond = "#u = :u" if UPDATED in item else "attribute_not_exists(#u)"
        values: dict[str, Any] = {":u": item.get(UPDATED)} if UPDATED in item else {}
        if VALUE in item:
            cond += " AND #v = :v"
            values[":v"] = item[VALUE]
        params: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": k,
            "ConditionExpression": cond,
            "ExpressionAttributeNames": _names(cond, key_name=self.key_name),
        }
        if values:
            params["ExpressionAttributeValues"] = values
        try:
            yield request("DeleteItem", params)
        except ConditionFailedError:
            return False
        return True

    def _incr_flow(self, key: str, delta: int, now: float) -> Flow[int]:
        k, pk = self._lkey(key)
        update = "SET #v = if_not_exists(#v, :zero) + :d, #u = :now, #c = if_not_exists(#c, :now)"
        # Counters are signed 64-bit on every provider (COUNTER_RANGE), as in the default
        # layout: the old value must leave room for the delta, or nothing is written.
        cond = (
            f"attribute_not_exists(#pk) OR ({_LIVE} AND attribute_type(#v, :n)"
            " AND #v BETWEEN :lo AND :hi)"
        )
        values = {
            ":zero": {"N": "0"},
            ":d": {"N": str(delta)},
            ":lo": {"N": str(max(COUNTER_RANGE[0], COUNTER_RANGE[0] - delta))},
            ":hi": {"N": str(min(COUNTER_RANGE[-1], COUNTER_RANGE[-1] - delta))},
            ":now": {"N": str(_ms(now))},
            **_now(now),
        }
        params = {**self._conditional_update(k, update, cond, values), "ReturnValues": "ALL_NEW"}
        for _ in range(_ROUNDS):
            try:
                reply = yield request("UpdateItem", params, once=True)
            except ConditionFailedError:
                old = yield from self._fetch(key, consistent=True)
                if old is None:
                    continue
                # _live, not is_live: a ttl that is no Number fails both conditions on
                # DynamoDB (a comparison across types is false), so it must end here as a
                # ForeignEntryError, not after every round as a "conflict".
                if self._live(key, old, now):
                    current = _whole_number(old)
                    if current is not None:
                        overflow = counter_overflow(self._user_key(key), current, delta)
                        if overflow is not None:
                            raise overflow from None
                        continue  # it was rewritten meanwhile: the next round adds to it
                    raise CacheValueError(
                        f"cannot incr key {self._user_key(key)!r:.200}: it holds no Number.",
                        hint="incr/decr only work on entries holding a number.",
                    ) from None
                fresh = self._fresh_item(pk, {"N": str(delta)}, Expiry(), now)
                if (yield from self._put_fresh(key, fresh, _EXPIRED, now, "incr")):
                    return delta
                continue
            if reply is None:
                raise self._unknown("incr", key)
            attr = reply.get("Attributes", {}).get(VALUE, {})
            try:
                return int(Decimal(str(attr["N"])))
            except (KeyError, TypeError, InvalidOperation):
                raise CacheValueError(
                    f"incr of key {self._user_key(key)!r:.200} left no whole Number.",
                    hint="incr/decr only work on entries holding a whole number.",
                ) from None
        raise CacheBackendError(
            f"incr of key {self._user_key(key)!r:.80} kept conflicting with concurrent writes.",
            hint="retry the call.",
        )

    def _conditional_update(
        self, key: dict[str, Any], update: str, cond: str, values: dict[str, Any]
    ) -> dict[str, Any]:
        """The parameters of an UpdateItem of ``key`` under ``cond``."""
        return {
            "TableName": self.table_name,
            "Key": key,
            "UpdateExpression": update,
            "ConditionExpression": cond,
            "ExpressionAttributeNames": _names(update, cond, key_name=self.key_name),
            "ExpressionAttributeValues": values,
        }

    def _touch_flow(self, key: str, expiry: Expiry, now: float) -> Flow[bool]:
        k, _ = self._lkey(key)
        attrs = expiry_values(expiry, now)
        values: dict[str, Any] = {
            ":now": {"N": str(_ms(now))},
            **_now(now),
        }
        sets = ["#u = :now"]
        for name, attr in attrs.items():
            sets.append(f"#{name} = :{name}")
            values[f":{name}"] = attr
        update = "SET " + ", ".join(sets)
        removed = [f"#{name}" for name in (TTL, UNTIL, IDLE) if name not in attrs]
        if removed:
            update += " REMOVE " + ", ".join(removed)
        cond = f"attribute_exists(#pk) AND {_LIVE}"
        try:
            yield request("UpdateItem", self._conditional_update(k, update, cond, values))
        except ConditionFailedError:
            return False
        return True

    def _restore_plan(self, key: str, entry: Entry) -> tuple[str, Expiry, float] | None:
        """As the base, but an entry with both spans dies when its idle time runs out.

        Lucee's ttl follows the live span when both are given and never slides, so a copy
        written with both would outlive its original (which dies ``idle`` after its last
        access if unread) by up to the whole live span: the live span is shortened to the
        earlier of the two deadlines (the idle span is still stored)."""
        plan = super()._restore_plan(key, entry)
        if plan is None:
            return None
        sk, expiry, stamp = plan
        if expiry.expires_at is not None and expiry.idle is not None:
            expiry = Expiry(min(expiry.expires_at, stamp + expiry.idle), expiry.idle)
        return sk, expiry, stamp

    # ------------------------------------------------------------------ scans

    def _filter(self, flt: KeyFilter) -> KeyFilter:
        """The filter, case-insensitive as Lucee's: matched uppercased against the key."""
        if flt.pattern is None:
            return flt
        return compile_filter(flt.pattern.upper(), self.namespace)

    def _list_params(self, flt: KeyFilter, now: float) -> dict[str, Any]:
        """Scan for the keys (and ttl) of live items whose key starts with the filter's
        literal prefix (namespace included), uppercased: every listed key is canonical,
        so the prefix test on the server is exact and foreign namespaces stay unread.

        ``cachehubInternal`` hides nothing here: a lock item's partition key holds the
        lowercase ``sha256:`` no Lucee key has, so :meth:`_listed` never lists it, and the
        marker on an entry (another writer's) must not keep it from ``clear``."""
        return self._lucee_scan_params(flt, now, live_only=True)

    def _lucee_scan_params(self, flt: KeyFilter, now: float, *, live_only: bool) -> dict[str, Any]:
        """The key-and-ttl Scan of :meth:`_list_params`; ``live_only=False`` drops the
        liveness test (``from-lucee`` counts the expired items it sees)."""
        tests: list[str] = []
        values: dict[str, Any] = {}
        if flt.prefix:
            tests.append("begins_with(#pk, :p)")
            values[":p"] = {"S": flt.prefix}
        if live_only:
            tests.append(_LIVE)
            values.update(_now(now))
        projection = "#pk, #ttl"
        params: dict[str, Any] = {
            "TableName": self.table_name,
            "ProjectionExpression": projection,
            "ConsistentRead": self._consistent,
            "Limit": _PAGE,
        }
        if tests:  # DynamoDB refuses an empty FilterExpression or value map
            params["FilterExpression"] = " AND ".join(tests)
            params["ExpressionAttributeValues"] = values
        params["ExpressionAttributeNames"] = _names(
            params.get("FilterExpression", ""), projection, key_name=self.key_name
        )
        return params

    def _canonical(self, item: Any, flt: KeyFilter) -> str | None:
        """The partition key of a scanned item when ``flt`` selects it, else None.

        A partition key Lucee could not have written (lowercase, surrounding spaces, not
        a string) is no reachable entry - every key is uppercased and trimmed before a
        lookup - so it is never listed, counted, cleared or converted.
        """
        attr = item.get(self.key_name)
        pk = attr.get("S") if isinstance(attr, dict) else None
        if not isinstance(pk, str) or not pk or lucee_key(pk) != pk:
            return None
        return pk if flt.matches(pk) else None

    def _listed(self, item: Any, flt: KeyFilter, now: float) -> tuple[dict[str, Any], str] | None:
        """The storage key of a live scanned item when ``flt`` selects it, else None."""
        pk = self._canonical(item, flt)
        if pk is None or not is_live(item, now):
            return None
        return {self.key_name: item[self.key_name]}, pk

    def _convert_scan_flow(self, flt: KeyFilter, now: float) -> Stream[tuple[str, bool]]:
        """``(storage key, expired)`` of every entry ``flt`` selects, live or not.

        The listing scan without its liveness filter, so that ``from-lucee`` can count
        the expired entries: a FilterExpression saves no read capacity (a Scan is charged
        for the items it reads, not for those it returns), and only key and ttl come
        back. A ttl that is no Number is expired here, as for every other listing.
        """
        yield Call("ready")  # the async shell bootstraps the table off the loop
        flt = self._filter(flt)
        params = self._lucee_scan_params(flt, now, live_only=False)
        with closing(scan_pages(params, self._segments)) as pages:
            while (batch := (yield from pull(pages))) is not None:
                found = []
                for item in (item for page in batch for item in page.get("Items", [])):
                    pk = self._canonical(item, flt)
                    if pk is not None:
                        found.append((pk, not is_live(item, now)))
                yield Emit(found)

    def _count_params(self, flt: KeyFilter, now: float) -> dict[str, Any] | None:
        return None  # listed keys are counted: the canonical-key check is client-side

    # ------------------------------------------------------------------ batches

    def _get_many_flow(self, keys: list[str], now: float) -> Flow[dict[str, Any]]:
        kn = self.key_name
        wanted: dict[str, list[str]] = {}
        for storage_key in keys:  # "user" and "USER" are one Lucee entry
            wanted.setdefault(self._lucee_pk(storage_key), []).append(storage_key)
        found: dict[str, Any] = {}
        requested = [{kn: {"S": pk}} for pk in wanted]
        items = yield from get_batches(self.table_name, requested, consistent=self._consistent)
        for item in items:
            pk = item.get(kn, {}).get("S")
            asked = wanted.get(pk) if isinstance(pk, str) else None
            if not asked or not self._live(asked[0], item, now):
                continue
            value = yield from self._decoded(asked[0], item)
            for storage_key in asked:
                found[storage_key] = value
        return found

    def _set_many_flow(self, items: dict[str, Any], expiry: Expiry, now: float) -> Flow[None]:
        # One merge per key: BatchWriteItem can only replace whole items, which would
        # drop createdTime (and Lucee's merge semantics) on overwrites.
        for key, value in items.items():
            yield from self._set_flow(key, value, expiry, now)

    def _delete_many_flow(self, keys: list[str], now: float) -> Flow[int]:
        removed = 0
        for key in dict.fromkeys(map(lucee_key, keys)):
            removed += yield from self._delete_flow(key, now)
        return removed


_REFUSED: Final = (InvalidKeyError, CacheValueError, SerializationError)
"""What a target raises for one entry it cannot hold (as ``cachehub.migration`` counts
them): the entry's fault, never the whole run's."""


def convert_from_lucee(
    source: LuceeDynamoDBCache,
    target: BaseCache,
    *,
    filter: str | None = None,
    dry_run: bool = False,
    on_entry: Callable[[str], None] | None = None,
) -> ConversionReport:
    """Copy every readable live entry of a Lucee-written table into ``target``.

    ``source`` reads the table in Lucee's layout (``itemFormat: "lucee"``); entries keep
    their key as Lucee stored it (uppercased) and their remaining lifetime (``ttl``,
    kept as is; one beyond cachehub's longest expiry never expires). An entry the target
    already holds in a newer version (by modification time) is kept, and one it cannot
    read is never overwritten (listed as skipped). Streamed: at most
    :data:`CONVERT_CHUNK` keys are held at a time. Entries that cannot be read, and
    entries the target refuses, are listed in the report, never copied, and the run goes
    on; with ``dry_run`` nothing is written.
    """
    report = ConversionReport(dry_run=dry_run)
    flt = compile_filter(filter, source.namespace)
    strip = len(source.namespace)
    previous = source.on_foreign_entry
    source.on_foreign_entry = report.skip
    try:
        listed = source._drive_iter(source._convert_scan_flow(flt, source._clock()))
        while chunk := list(islice(listed, CONVERT_CHUNK)):
            for pk, dead in chunk:
                if dead:
                    report.expired += 1
                else:
                    _convert_one(source, target, pk, report, dry_run)
                if on_entry is not None:
                    on_entry(pk[strip:])
    finally:
        source.on_foreign_entry = previous
    return report


def _convert_one(
    source: LuceeDynamoDBCache,
    target: BaseCache,
    pk: str,
    report: ConversionReport,
    dry_run: bool,
) -> None:
    item = source._drive(source._fetch(pk))
    # The time of this entry's read, not of its chunk's: an entry that died since the
    # scan is expired, not copied with a deadline already past (which the target refuses).
    now = source._clock()
    try:
        if not item or not source._live(pk, item, now):
            report.expired += 1
            return
        value = source._decode(pk, item)
    except CacheError as exc:
        report_foreign(source, pk, exc, item)
        return
    ttl = ttl_of(item)
    key = pk[len(source.namespace) :]
    modified = _stamp(item, UPDATED) or _stamp(item, CREATED) or 0.0
    try:
        held = target.peek(key)
    except CorruptEntryError as exc:  # another program's item: not ours to overwrite
        report.skip(
            ForeignEntryError(
                f"the target cache '{target.name}' holds an entry for {key!r:.80} that it "
                f"cannot read ({exc.message}); it was not overwritten.",
                key=key,
                found="an unreadable entry in the target",
                hint="delete that entry from the target, then convert again.",
            )
        )
        return
    except _REFUSED as exc:  # a key the target cannot name
        _refused(source, report, key, exc)
        return
    # A deadline beyond cachehub's longest expiry (Lucee allows any span; a "forever" of
    # a million days is common) means never, as ``cachehub migrate`` reads it; any other
    # is kept: the copy dies when Lucee's entry dies, at its ttl, a whole second.
    until = None
    if ttl is not None and ttl - now < MAX_TIME_SPAN.total_seconds():
        until = datetime.fromtimestamp(ttl, UTC)
    if held is not None:
        if is_copy(held, value, None if until is None else until.timestamp(), now):
            report.unchanged += 1  # an earlier conversion's copy (its write time is later)
            return
        if held.modified > modified:
            report.kept_newer += 1  # written to the target after Lucee's version
            return
    if not dry_run:
        try:
            target.put(key, value, until=until)
        except _REFUSED as exc:
            if until is not None and until.timestamp() <= target._clock():
                report.expired += 1  # it died while being copied: the target says so
                return
            _refused(source, report, key, exc)
            return
    report.copied += 1


def _refused(
    source: LuceeDynamoDBCache, report: ConversionReport, key: str, exc: CacheError
) -> None:
    """Record an entry the target refused, and warn in the source's log (as
    :func:`report_foreign` does for unreadable ones)."""
    report.refuse(key, exc)
    source.log.warning(
        "cache '%s': entry %r could not be written to the target: %s", source.name, key, exc
    )


def _whole_number(item: Mapping[str, Any]) -> int | None:
    """The whole number a Number ``value`` holds (``1E+3`` included), else None."""
    attr = item.get(VALUE)
    raw = attr.get("N") if isinstance(attr, dict) else None
    try:
        number = Decimal(str(raw)) if isinstance(raw, str) else None
    except InvalidOperation:
        return None
    if number is None or not number.is_finite() or number != number.to_integral_value():
        return None
    return int(number)
