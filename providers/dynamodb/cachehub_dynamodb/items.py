"""Item layout: how a cache entry is stored as a DynamoDB item.

Documented in docs/dynamodb.md so that ``dynamodb_command`` and other tools can read and
write the same items. Every cache item has:

* the partition key (name discovered from the table, default ``cacheKey``) = namespace +
  key, or ``<namespace>sha256:<hex of namespace + key>`` when that exceeds DynamoDB's
  2048-byte key limit (the namespace is kept so that hashed entries stay inside it), with
  the full namespace + key kept in ``originalKey``. Every read checks ``originalKey``:
  an item whose ``originalKey`` is not the requested key is somebody else's and reads as
  a miss; writes to hash-shaped keys are conditional, so they never replace it silently
  (:func:`owns`, :func:`owner_condition`);
* ``value``: ``N`` for ints that fit a DynamoDB Number (so ``incr`` is a native atomic
  update), else the codec's bytes as ``B``. An item *without* ``value`` (written by
  ``dynamodb_command``) reads through the cache API as a dict of all its attributes;
* ``deadline`` (exact epoch seconds when the entry dies) and ``timeToLive`` (its ceiling,
  an integer, for DynamoDB's native TTL deletion), both absent for entries that never
  expire; for idle-time entries also ``idleTime`` (seconds) and ``expiresAt`` (their
  absolute expiry, if any) - otherwise the deadline *is* the absolute expiry;
* ``createdTime`` (epoch seconds); ``updatedTime`` only once the entry has been modified
  in place (``incr``, ``touch``) - absent, the entry was last modified when it was created.
  Every attribute of an item costs on every read (the server serializes it, botocore
  parses it), so ``put`` writes one stamp, not two equal ones. Items written before this
  (both stamps always) read the same; an item's *version* for conditional writes is its
  ``updatedTime``, else its ``createdTime`` (:func:`version_of`);
* ``lastAccessed`` and ``hitCount`` once reads have been recorded (absent: never read);
* ``requestId`` on items last written by ``incr`` or ``add``: the random id of that call,
  read back after a lost reply to tell an applied write from one that never landed.

A batch read asks only for :func:`read_attributes`; the few items without ``value`` are
then read again in full (dual access).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from cachehub.api import HIT_COUNT_MAX, MAX_TIME_SPAN, Entry, Expiry
from cachehub.codec import Codec
from cachehub.errors import CacheError, CorruptEntryError

from .convert import from_attr, from_item

VALUE: Final = "value"
TTL: Final = "timeToLive"
DEADLINE: Final = "deadline"
EXPIRES: Final = "expiresAt"
IDLE: Final = "idleTime"
ACCESSED: Final = "lastAccessed"
CREATED: Final = "createdTime"
MODIFIED: Final = "updatedTime"
HITS: Final = "hitCount"
ORIGINAL_KEY: Final = "originalKey"
INTERNAL: Final = "cachehubInternal"
"""Marks an internal item (value ``lock``): never listed, counted or cleared as an entry."""
LOCK_HOLDER: Final = "lockHolder"
LOCK_UNTIL: Final = "lockUntil"
LOCK_FENCE: Final = "lockFence"
LOCK_RELEASED: Final = "lockReleasedBy"
LUCEE_TTL: Final = "ttl"
"""The expiry of items written by Lucee's extension (epoch seconds): honoured on every read
in the default layout too, so a Lucee entry past its ttl is never returned (issue #18)."""
REQUEST: Final = "requestId"
"""The random id of the last ``incr``/``add`` that wrote the item: after a lost reply the
writer reads it back to learn whether its write was applied (see cache._write_once)."""
HIT_FLUSH: Final = "hitFlush"
"""The random id of the last hit-count write-back that reached the item (``hitCounts`` on):
a re-send of that ``ADD hitCount`` after a lost reply finds its own id and fails its
condition instead of counting the same reads twice."""

MAX_KEY_BYTES: Final = 2048
"""DynamoDB's limit for a partition key value."""
MAX_ITEM_BYTES: Final = 400 * 1024
"""DynamoDB's item size limit (names and values together)."""
GROWS: Final = (ACCESSED, MODIFIED, HITS, HIT_FLUSH, REQUEST, DEADLINE, TTL, EXPIRES, IDLE)
"""Attributes a later write may add to an entry, or lengthen: a read's slide and hit count,
``touch``, ``incr``, a write-back."""
ITEM_GROWTH: Final = sum(len(name) + 40 for name in GROWS)
"""Bytes a fresh item keeps free for :data:`GROWS` (each value as at most 40 characters: a
Number of 38 digits with its sign and point, a 32-digit request id). An entry written up
to the limit itself could be stored, then never read again: its first slide did not fit."""
HASH_PREFIX: Final = "sha256:"
MAX_NUMBER: Final = 10**38
"""Ints with fewer than 38 digits fit a DynamoDB Number exactly."""

Item = dict[str, dict[str, Any]]

ITEM_ATTRIBUTES: Final = frozenset(
    {VALUE, TTL, DEADLINE, EXPIRES, IDLE, ACCESSED, CREATED, MODIFIED, HITS, ORIGINAL_KEY}
    | {INTERNAL, LOCK_HOLDER, LOCK_UNTIL, LOCK_FENCE, LOCK_RELEASED, LUCEE_TTL, REQUEST}
    | {HIT_FLUSH, "until", "idle"}  # the last two: Lucee's spans (its layout, lucee.py)
)
"""Every attribute name either layout writes besides the partition key: a table whose
partition key has one of these names cannot hold cache items (the attribute would replace
the key), see table.py."""

# Expression placeholders: attribute names always go through these, because several of
# ours (value, ttl...) are DynamoDB reserved words.
PLACEHOLDERS: Final = {
    "#v": VALUE,
    "#ttl": TTL,
    "#dl": DEADLINE,
    "#ex": EXPIRES,
    "#idle": IDLE,
    "#la": ACCESSED,
    "#cr": CREATED,
    "#up": MODIFIED,
    "#hc": HITS,
    "#ok": ORIGINAL_KEY,
    "#int": INTERNAL,
    "#holder": LOCK_HOLDER,
    "#lu": LOCK_UNTIL,
    "#fence": LOCK_FENCE,
    "#rel": LOCK_RELEASED,
    "#rq": REQUEST,
    "#hf": HIT_FLUSH,
    "#lttl": LUCEE_TTL,
}

CONSTANTS: Final = {
    ":n": {"S": "N"},
    ":lock": {"S": "lock"},
    ":nul": {"S": "\x00"},
}
"""Expression values every request may use (``attribute_type(x, :n)``, :data:`ENTRY`)."""
LIVE: Final = (
    "((attribute_type(#dl, :n) AND #dl > :now) OR (attribute_not_exists(#dl)"
    " AND (attribute_not_exists(#ttl) OR (attribute_type(#ttl, :n) AND #ttl > :now))"
    " AND (attribute_not_exists(#lttl) OR (attribute_type(#lttl, :n) AND #lttl > :now))))"
)
"""Condition: the item has not reached its deadline (``timeToLive``, then Lucee's ``ttl``,
when it has none). An expiry attribute that is not a Number fails it, as DynamoDB's own
comparison across types would (:func:`is_live` agrees); the explicit ``attribute_type``
says so, and keeps moto, which fails such a comparison with a 500, evaluating it."""
EXPIRED: Final = f"NOT {LIVE}"
"""Condition, on an item that exists: past its deadline. The exact complement of
:data:`LIVE`, so that an expiry attribute of another type (no comparison holds) reads as
expired to ``add`` and ``incr`` as it does to every read, not as live to neither."""
ENTRY: Final = "(attribute_not_exists(#int) OR NOT (#int = :lock AND contains(#ok, :nul)))"
"""Condition (values in :data:`CONSTANTS`): the item is an entry, not an internal (lock)
item. Only the marker *with* the ``originalKey`` only a lock
has (it holds a NUL, see :func:`internal_key`) hides an item: ``cachehubInternal`` set on an
ordinary item by another writer does not hide it from ``keys``/``count`` nor keep it from
``clear``."""
OWNED: Final = "(attribute_not_exists(#ok) OR #ok = #pk OR begins_with(#pk, :hashed))"
"""Condition (``:hashed``: :func:`hashed_prefix` of the cache's namespace): the item may be
its key's own entry, as far as the server can tell. An item whose ``originalKey`` names
another key than its partition key is another program's unless it is shaped like a hashed
item (its partition key starts with the namespace and ``sha256:``), whose hash only the
client can check (:func:`consistent_key`): so a server-side count skips the first, as
every read does. It used to take any partition key *containing* ``sha256:`` (another
program's ``report-sha256:2024``), which ``count()`` counted and ``keys()`` did not."""
EXPIRY_ATTRIBUTES: Final = (DEADLINE, TTL, LUCEE_TTL)
"""The attributes :func:`is_live` reads: what a key-only read must ask for."""
MS_STAMPS: Final = 1e11
"""Stamps above this are epoch milliseconds (Lucee's), not seconds: 1e11 s is the year 5138."""


def num(value: float) -> dict[str, str]:
    """A Number attribute; floats keep microsecond precision."""
    if isinstance(value, int):
        return {"N": str(value)}
    if abs(value) >= 1e15:  # beyond any timestamp; whole seconds are plenty
        return {"N": str(round(value))}
    return {"N": format(value, ".6f")}  # float formatting: no Decimal round trip per stamp


def number(item: Mapping[str, Mapping[str, Any]], name: str) -> float | None:
    """The Number attribute ``name`` of ``item`` as a finite float, or None when absent.

    An attribute of another type (``S`` where ``N`` belongs) counts as absent; a Number
    that is not a finite number (``NaN``, ``1e400``: DynamoDB refuses both, other stores
    and tools may not) raises :class:`CorruptEntryError`.
    """
    attr = item.get(name)
    if attr is None or "N" not in attr:
        return None
    return _finite(attr["N"], name)


def _finite(text: Any, name: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        raise CorruptEntryError(
            f"DynamoDB item attribute '{name}' is not a finite Number ({str(text)[:40]!r}).",
            hint="another program wrote this item; delete it or put() the key again.",
        )
    return value


def hit_count(item: Mapping[str, Mapping[str, Any]], key: str = "") -> int:
    """The ``hitCount`` of the item of storage key ``key``, exactly (absent: never read, 0).

    Read from the Number's text, not as a float: a float would round a 38-digit count
    silently. Anything but a whole Number from 0 to :data:`HIT_COUNT_MAX` (a negative,
    fractional or 38-digit count, another type) was written by another program: it
    raises :class:`CorruptEntryError` naming the attribute and the fix.
    """
    attr = item.get(HITS)
    if attr is None:
        return 0
    text = attr.get("N")
    if isinstance(text, str) and len(text) <= 40:  # DynamoDB Numbers: 38 digits, sign, dot
        try:
            count = Decimal(text)
        except InvalidOperation:
            count = Decimal("NaN")
        whole = count.is_finite() and count == count.to_integral_value()
        if whole and 0 <= count <= HIT_COUNT_MAX:
            return int(count)
    shown = repr(text) if text is not None else f"a value of type {'/'.join(attr)}"
    raise CorruptEntryError(
        f"DynamoDB item {key!r:.200} holds {HITS} {shown:.60}, not a whole number from 0 to "
        f"{HIT_COUNT_MAX:,} (2^53): another program wrote it.",
        hint=f"delete the item, put() the key again, or remove its '{HITS}' attribute "
        f"(UpdateItem REMOVE {HITS}): the count then restarts from 0.",
    )


_HASHED_LENGTH: Final = len(HASH_PREFIX) + 64
_HASH_SHAPED: Final = re.compile(r"sha256:[0-9a-f]{64}\Z")


def partition_value(storage_key: str, namespace: str = "") -> tuple[str, str | None]:
    """``(partition key value, original key or None)`` for a namespaced storage key.

    A key beyond DynamoDB's limit becomes ``namespace + "sha256:" + hex``: the hash covers
    namespace and key, and the namespace stays readable (so prefix scans and IAM
    ``LeadingKeys`` conditions still see it) unless it is itself too long to fit.
    """
    if len(storage_key) * 4 <= MAX_KEY_BYTES or len(storage_key.encode()) <= MAX_KEY_BYTES:
        return storage_key, None
    digest = hashlib.sha256(storage_key.encode()).hexdigest()
    fits = len(namespace.encode()) + _HASHED_LENGTH <= MAX_KEY_BYTES
    prefix = namespace if fits and storage_key.startswith(namespace) else ""
    return prefix + HASH_PREFIX + digest, storage_key


def hashed_prefix(namespace: str) -> str:
    """How the partition key of every hashed item of ``namespace`` starts (see
    :func:`partition_value`)."""
    fits = len(namespace.encode("utf-8", "surrogatepass")) + _HASHED_LENGTH <= MAX_KEY_BYTES
    return (namespace if fits else "") + HASH_PREFIX


def internal_key(namespace: str, lock_name: str) -> tuple[str, str]:
    """``(partition key, originalKey)`` of the internal item of a namespaced lock id.

    The originalKey is ``<namespace>\\x00<lock id>`` and the partition key is shaped like a
    hashed long key, ``<namespace>sha256:<hex of the originalKey>``: no user key maps to
    it (a short key is its own partition key and is owner-checked when hash-shaped; a long
    one hashes its own, different text), so the cache API never reads or overwrites a lock.
    """
    original = namespace + "\x00" + lock_name[len(namespace) :]
    # The hash covers the namespace's length too: namespaces may hold NUL themselves.
    text = f"{len(namespace)}:{original}".encode("utf-8", "surrogatepass")
    digest = HASH_PREFIX + hashlib.sha256(text).hexdigest()
    fits = len(namespace.encode("utf-8", "surrogatepass")) + _HASHED_LENGTH <= MAX_KEY_BYTES
    return (namespace + digest if fits else digest), original


def needs_owner_check(storage_key: str, pk: str) -> bool:
    """Whether the item at ``pk`` could belong to a key other than ``storage_key``.

    True for hashed keys and for keys shaped like a hash (``...sha256:<64 hex>``), which
    a hashed long key of another namespace may occupy. Other keys are their own
    partition key, which no hashed key ever takes.
    """
    return pk != storage_key or _HASH_SHAPED.search(storage_key) is not None


def owns(item: Mapping[str, Mapping[str, Any]], storage_key: str, key_name: str) -> bool:
    """Whether ``item`` is the entry of ``storage_key`` (checked on every read).

    An item with ``originalKey`` belongs to that key; one without it to its partition
    key. So a hashed item whose ``originalKey`` differs (another key with the same hash
    prefix, or a planted item) and a hash-keyed item with no ``originalKey`` are misses.
    """
    original = item.get(ORIGINAL_KEY)
    if original is None:
        pk = item.get(key_name)
        return pk is not None and pk.get("S") == storage_key
    return original.get("S") == storage_key


def owner_condition(storage_key: str, pk: str) -> tuple[str, dict[str, Any]]:
    """Condition (and values) that the item at ``pk`` is absent or ``storage_key``'s own."""
    values = {":sk": {"S": storage_key}}
    if pk != storage_key:
        return "(attribute_not_exists(#pk) OR #ok = :sk)", values
    return "(attribute_not_exists(#ok) OR #ok = :sk)", values


def consistent_key(item: Mapping[str, Mapping[str, Any]], key_name: str) -> str | None:
    """The storage key of a scanned item, or None when its ``originalKey`` is forged.

    A genuine hashed item's partition key is a prefix of its ``originalKey`` followed by
    ``sha256:`` and the hash of that ``originalKey``.
    """
    pk_attr = item.get(key_name)
    pk = None if pk_attr is None or "S" not in pk_attr else str(pk_attr["S"])
    original_attr = item.get(ORIGINAL_KEY)
    if original_attr is None:
        return pk
    original = original_attr.get("S")
    if not isinstance(original, str) or pk is None:
        return None
    if pk == original:
        return original
    head, digest = pk[:-_HASHED_LENGTH], pk[-_HASHED_LENGTH:]
    expected = HASH_PREFIX + hashlib.sha256(original.encode()).hexdigest()
    return original if digest == expected and original.startswith(head) else None


def storage_key_of(item: Mapping[str, Mapping[str, Any]], key_name: str) -> str | None:
    """The namespaced storage key an item belongs to (its original key when hashed)."""
    original = item.get(ORIGINAL_KEY)
    if original is not None and "S" in original:
        return str(original["S"])
    pk = item.get(key_name)
    return None if pk is None or "S" not in pk else str(pk["S"])


def _expiry(item: Mapping[str, Mapping[str, Any]], name: str) -> float | None:
    """An expiry attribute: None when absent, ``-inf`` (past) when not a Number."""
    attr = item.get(name)
    if attr is None:
        return None
    return _finite(attr["N"], name) if "N" in attr else -math.inf


def deadline_of(item: Mapping[str, Mapping[str, Any]]) -> float | None:
    """When the item dies: ``deadline``, else a ``timeToLive`` set by other tools, else
    the ``ttl`` of an item written by Lucee's extension.

    An expiry attribute of another type (``{"S": "2030-01-01"}``, written by another
    program) reads as already past, ``-inf``: DynamoDB's TTL process ignores it, so the
    server keeps the item forever, and its conditions (:data:`LIVE`) compare it as false
    - so every read, scan and conditional write treats the item as expired, and the
    next ``put``/``add``/``incr`` replaces it. (Lucee's extension fails on such a
    ``ttl``, which ``cacheGet`` turns into a miss.)
    """
    if DEADLINE in item:
        return _expiry(item, DEADLINE)
    native = _expiry(item, TTL)
    lucee = _expiry(item, LUCEE_TTL)
    if native is None or lucee is None:
        return native if lucee is None else lucee
    return min(native, lucee)


def is_live(item: Mapping[str, Mapping[str, Any]], now: float) -> bool:
    """Whether the item may be returned at ``now`` (expiry is enforced on every read)."""
    # Deadlines are stored to the microsecond (num), and the conditions and filters the
    # server evaluates compare them with num(now): the same instant here, or an entry at
    # its (rounded-up) deadline was alive to get() and expired to add() and keys().
    now = round(now, 6)
    # Same rule as deadline_of, inlined: this runs for every item read.
    attr = item.get(DEADLINE)
    if attr is None:
        attr = item.get(TTL)
        if attr is None:
            attr = item.get(LUCEE_TTL)
            if attr is None:
                return True
        elif LUCEE_TTL in item:  # both: whichever comes first
            return now < deadline_of(item)  # type: ignore[operator]
    if "N" not in attr:  # another type: past, as DynamoDB's LIVE condition reads it
        return False
    try:
        return now < float(attr["N"])  # NaN: never alive
    except (TypeError, ValueError):
        raise CorruptEntryError(
            f"DynamoDB item has a deadline that is not a Number ({str(attr['N'])[:40]!r}).",
            hint="another program wrote this item; delete it or put() the key again.",
        ) from None


def encode_value(value: Any, codec: Codec, key: str = "") -> dict[str, Any]:
    """The ``value`` attribute: a native Number for ints, else codec bytes (signed for
    storage key ``key`` by the pickle codec)."""
    if type(value) is int and -MAX_NUMBER < value < MAX_NUMBER:
        return {"N": str(value)}
    return {"B": codec.dumps(value, key)}


def decode_value(item: Mapping[str, Mapping[str, Any]], codec: Codec, key: str = "") -> Any:
    """The cached value of an item read from storage key ``key``; items without ``value``
    read as a dict (dual access).

    A ``value`` no cachehub writer produces (an empty or unknown type descriptor, a
    Number that does not parse) raises :class:`CorruptEntryError`.
    """
    attr = item.get(VALUE)
    try:
        if attr is None:
            return from_item(item)
        if "B" in attr:
            return codec.loads(bytes(attr["B"]), key)
        return from_attr(attr)
    except CacheError:
        raise
    except (TypeError, ValueError, ArithmeticError, KeyError, AttributeError) as exc:
        # boto3's deserializer: TypeError for unknown descriptors, decimal errors for
        # bad Numbers; bytes() a TypeError for a B that is not bytes.
        raise CorruptEntryError(
            f"DynamoDB item attribute '{VALUE}' cannot be read ({type(exc).__name__}).",
            hint="another program wrote this item; delete it or put() the key again.",
        ) from None


def expiry_attrs(expiry: Expiry, accessed: float) -> Item:
    """The expiry attributes of an entry last read at ``accessed`` (absent = never)."""
    attrs: Item = {}
    deadline = expiry.deadline(accessed)
    if deadline is not None:
        attrs[DEADLINE] = num(deadline)
        attrs[TTL] = {"N": str(math.ceil(deadline))}
    if expiry.idle is not None:
        attrs[IDLE] = num(expiry.idle)
        if expiry.expires_at is not None:  # without idle time, the deadline is the expiry
            attrs[EXPIRES] = num(expiry.expires_at)
    return attrs


def read_attributes(key_name: str, *, versions: bool = True) -> list[str]:
    """What a batch read needs: key, value, expiry and (``versions``) the version - not
    the statistics.

    The version stamps (``updatedTime``, ``createdTime``) are only for counted hits: a
    cache that does not count hits leaves them on the server too, one attribute fewer per
    item for botocore to parse (a tenth of a 100-key read's client CPU). An idle entry's
    slide then checks its deadline instead (:func:`same_deadline`).

    ``lastAccessed`` and ``hitCount`` stay on the server: once reads have been flushed
    they are two of an item's five attributes. ``originalKey`` is asked for, because
    every read checks it (:func:`owns`); only hashed items have it. Sent as
    ``AttributesToGet``, the list form of a projection of top-level attributes: the same
    result as a ``ProjectionExpression`` naming them, with no expression to parse and no
    placeholders (``value`` is a reserved word), and moto applies it as a plain filter
    (it re-converts the whole item once per path of an expression). DynamoDB refuses it
    next to expression parameters, so it is only for requests without any.
    """
    stamps = [MODIFIED, CREATED] if versions else []
    return [key_name, VALUE, *stamps, DEADLINE, TTL, LUCEE_TTL, IDLE, EXPIRES, ORIGINAL_KEY]


def fresh_attrs(expiry: Expiry, now: float) -> Item:
    """What every item written at ``now`` with ``expiry`` has besides key and value.

    ``updatedTime``, ``lastAccessed`` and ``hitCount`` are left out until there is a
    modification or a read to record: every attribute costs on every read and write, and
    absent means "as created" / "never read". A batch computes this once for all items
    (the attribute values are shared, never mutated).
    """
    attrs: Item = {CREATED: num(now)}
    if expiry.expires_at is not None or expiry.idle is not None:
        attrs.update(expiry_attrs(expiry, now))
    return attrs


def build_item(
    key_name: str,
    storage_key: str,
    value: dict[str, Any],
    expiry: Expiry,
    now: float,
    *,
    shared: Item | None = None,
    namespace: str = "",
) -> Item:
    """A complete, fresh cache item (``shared``: :func:`fresh_attrs`, if already built)."""
    pk, original = partition_value(storage_key, namespace)
    item: Item = {key_name: {"S": pk}, VALUE: value}
    item.update(fresh_attrs(expiry, now) if shared is None else shared)
    if original is not None:
        item[ORIGINAL_KEY] = {"S": original}
    return item


Version = tuple[str, Mapping[str, Any]] | None
"""Which stamp identifies an item's version, and its attribute value (None: neither)."""


def version_of(item: Mapping[str, Mapping[str, Any]]) -> Version:
    """The stored version of an item: its ``updatedTime``, else its ``createdTime``.

    Every write of the cache API changes one of them (a put writes a new ``createdTime``
    and no ``updatedTime``; incr and touch set ``updatedTime``), so hit counts and
    conditional deletes can tell whether the entry they read is still the stored one.
    """
    attr = item.get(MODIFIED)
    if attr is not None:
        return MODIFIED, attr
    attr = item.get(CREATED)
    return None if attr is None else (CREATED, attr)


def same_version(seen: Version) -> tuple[str, dict[str, Any]]:
    """Condition (and its values) that the stored item is still version ``seen``."""
    if seen is None:
        return (
            "attribute_exists(#pk) AND attribute_not_exists(#up) AND attribute_not_exists(#cr)",
            {},
        )
    name, attr = seen
    if name == MODIFIED:
        return "#up = :seen", {":seen": attr}
    return "#cr = :seen AND attribute_not_exists(#up)", {":seen": attr}


def same_deadline(item: Mapping[str, Mapping[str, Any]]) -> tuple[str, dict[str, Any]]:
    """Condition (and its values) that the stored item still has the deadline ``item`` was
    read with, and the expiry it slides by (idle time, absolute expiry): an idle entry's
    slide read without its version stamps. A replacement, a touch or another process's
    slide writes a new deadline, so the condition fails and the newer deadline stands, as
    it does with :func:`same_version`; a replacement that ends at the same deadline by
    another idle time or time span fails it too (the slide, computed from the old
    entry's, would extend it past its own)."""
    parts: list[str] = []
    values: dict[str, Any] = {}
    compared = (("#dl", DEADLINE, ":seen"), ("#idle", IDLE, ":idle"), ("#ex", EXPIRES, ":ex"))
    for placeholder, name, value in compared:
        attr = item.get(name)
        if attr is None:
            parts.append(f"attribute_not_exists({placeholder})")
        else:
            parts.append(f"{placeholder} = {value}")
            values[value] = attr
    if not values:  # nothing compared: the entry itself must still be there
        parts.insert(0, "attribute_exists(#pk)")
    return " AND ".join(parts), values


def item_size(item: Mapping[str, Mapping[str, Any]]) -> int:
    """DynamoDB's size of an item: attribute names plus values (close upper bound)."""
    size = 0
    for name, attr in item.items():
        size += len(name.encode())
        for kind, raw in attr.items():
            if kind == "B":
                size += len(raw)
            elif kind in ("S", "N"):
                size += len(str(raw).encode())
            else:
                size += len(repr(raw).encode())
    return size


def expiry_of(item: Mapping[str, Mapping[str, Any]]) -> Expiry:
    """The entry's expiry policy (a bare ``timeToLive`` counts as an absolute expiry)."""
    idle = number(item, IDLE)
    if idle is not None:
        # Another program's: a read slides the deadline by it, so a negative one would make
        # the read delete the entry and a huge one write a Number DynamoDB refuses.
        if not 0 < idle <= MAX_TIME_SPAN.total_seconds():
            raise CorruptEntryError(
                f"DynamoDB item attribute '{IDLE}' is {idle:.6g} seconds; an idle time is "
                "above 0 and at most 1,000 years.",
                hint="another program wrote this item; delete it or put() the key again.",
            )
        return Expiry(number(item, EXPIRES), idle)
    return Expiry(deadline_of(item), None)


def stamp(item: Mapping[str, Mapping[str, Any]], name: str) -> float | None:
    """A time stamp attribute in epoch seconds; Lucee's millisecond stamps (between
    :data:`MS_STAMPS` and 1e14, the year 5138) are converted. Anything else is left as it
    is: :meth:`CacheMetadata.from_entry` refuses times beyond any date, typed."""
    value = number(item, name)
    if value is not None and MS_STAMPS < value < MS_STAMPS * 1000:
        value /= 1000
    return value


def to_entry(item: Mapping[str, Mapping[str, Any]], value: Any, key: str = "") -> Entry:
    """An :class:`Entry` with the item's metadata (0 = unknown, for foreign items); ``key``
    (the storage key) names the item in an error."""
    expiry = expiry_of(item)
    created = stamp(item, CREATED)
    modified = stamp(item, MODIFIED) or created or 0.0
    return Entry(
        value=value,
        created=created or modified,
        modified=modified,
        accessed=max(stamp(item, ACCESSED) or 0.0, modified),
        hits=hit_count(item, key),
        expires_at=expiry.expires_at,
        idle=expiry.idle,
    )
