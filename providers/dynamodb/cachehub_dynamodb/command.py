"""``dynamodb_command``: Lucee's ``DynamoDBCommand()`` - direct item access on a cache's table.

Values go in and come out as plain Python (str, int, float, Decimal, bool, None, bytes,
list, dict, set). Parameter names follow DynamoDB's and are matched case-insensitively,
as in Lucee (two spellings of one name in one call are refused). Actions
(case-insensitive):

* ``putItem`` - ``data`` is the item (ReturnValues/ConditionExpression/Expression* are
  taken out); returns the old item with ``ReturnValues: ALL_OLD``, else None.
* ``getItem`` - ``data`` is the key (or ``{"key": {...}}``); returns a dict or None.
* ``updateItem`` - ``key``, ``UpdateExpression``, ``ExpressionAttributeValues``,
  ``ExpressionAttributeNames``, ``ConditionExpression``, ``ReturnValues``; returns the
  returned attributes or None.
* ``deleteItem`` - ``data`` is the key (plus ReturnValues/ConditionExpression...).
* ``query`` / ``scan`` - return a list of items (:class:`ItemList`), following
  pagination; ``Limit`` caps the items *evaluated* (before filtering), as in DynamoDB,
  and when it stops the read early the list's ``last_evaluated_key`` is the
  ``ExclusiveStartKey`` of the next call. One call collects at most :data:`MAX_ITEMS`
  items and :data:`MAX_BYTES` bytes.
* ``batchGetItem`` - ``{"keys": [...]}``; returns the items found (any order).
* ``batchWriteItem`` - ``{"put": [items], "delete": [keys]}``; returns the counts.
* ``transactWriteItems`` - ``{"items": [{"Put": {"Item": ...}}, {"Update": ...}, ...]}``
  plus an optional ``ClientRequestToken`` (sent: DynamoDB's idempotency token), every
  item on the cache's table (a ``TableName`` naming another table is refused).

Every top-level entry must be a parameter of its action (the key's attribute, for the
flat key form): an unknown one - a misspelled ``ConditionExpression`` - is refused with
a suggestion before anything is sent, never dropped. A failed ``ConditionExpression``
raises :class:`~cachehub_dynamodb.ConditionFailedError`.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import ParamValidationError

from cachehub.config import suggest
from cachehub.errors import (
    CacheBackendError,
    CacheValueError,
    ConfigError,
    ReadOnlyCacheError,
)

from .batch import get_batches, write_batches
from .client import validate
from .convert import from_item, to_item
from .items import item_size

if TYPE_CHECKING:
    from .cache import DynamoDBCache

__all__ = ["dynamodb_command", "run_command", "ACTIONS", "ItemList", "MAX_ITEMS", "MAX_BYTES"]

MAX_ITEMS: Final = 100_000
"""The most items one ``query``/``scan`` call collects; past it the call raises
:class:`~cachehub.errors.CacheValueError` (pass ``Limit`` and page)."""

MAX_BYTES: Final = 64 * 1024 * 1024
"""The most item bytes (DynamoDB's item size) one ``query``/``scan`` call collects."""

_RECENT_KEYS: Final = 1024
"""How many of the last ``LastEvaluatedKey``\\ s a read remembers to notice a server that
does not advance (a real read never repeats one)."""

_WRITE_CONTROLS = (
    "ReturnValues",
    "ConditionExpression",
    "ExpressionAttributeNames",
    "ExpressionAttributeValues",
)
_READ_CONTROLS = ("ProjectionExpression", "ExpressionAttributeNames", "ConsistentRead")
_QUERY_PARAMS = (
    "KeyConditionExpression",
    "FilterExpression",
    "ExpressionAttributeValues",
    "ExpressionAttributeNames",
    "IndexName",
    "Limit",
    "ProjectionExpression",
    "ConsistentRead",
    "ScanIndexForward",
    "ExclusiveStartKey",
)
_SCAN_PARAMS = (
    *(p for p in _QUERY_PARAMS if p not in ("KeyConditionExpression", "ScanIndexForward")),
    "Segment",
    "TotalSegments",
)
_FLAGS = frozenset({"ConsistentRead", "ScanIndexForward"})
_TEXTS = frozenset(
    {
        "ReturnValues",
        "ConditionExpression",
        "UpdateExpression",
        "KeyConditionExpression",
        "FilterExpression",
        "ProjectionExpression",
        "IndexName",
        "ReturnValuesOnConditionCheckFailure",
        "ClientRequestToken",
    }
)
"""Parameters DynamoDB takes as a boolean / as a string: anything else is refused."""


class ItemList(list[dict[str, Any]]):
    """What ``query`` and ``scan`` return: a plain list of items, plus the
    ``last_evaluated_key`` to pass as ``ExclusiveStartKey`` for the next page when
    ``Limit`` stopped the read before its end (None when the read reached the end)."""

    def __init__(
        self, items: Iterable[dict[str, Any]] = (), last_evaluated_key: Any = None
    ) -> None:
        super().__init__(items)
        self.last_evaluated_key: dict[str, Any] | None = last_evaluated_key


def _shown(value: Any, width: int = 80) -> str:
    return repr(str(value)[:width])


class _Command:
    """One call: the cache, the action's display name and helpers shared by actions."""

    def __init__(self, cache: DynamoDBCache, action: str) -> None:
        self.cache = cache
        self.action = action
        self.kn = cache.key_name
        self.table = cache.table_name

    def call(self, operation: str, /, **params: Any) -> dict[str, Any]:
        return self.send(operation, TableName=self.table, **params)

    def send(self, operation: str, /, **params: Any) -> dict[str, Any]:
        """``operation`` with ``params``; a parameter of the wrong type or a missing one
        is the caller's input: a :class:`CacheValueError` naming it, before sending."""
        try:
            validate(self.cache.client, operation, params)
        except ParamValidationError as exc:
            report = str(exc).replace("Parameter validation failed:\n", "")[:600]
            raise CacheValueError(
                f"{self.action}: invalid parameters for {operation}: {report}",
                hint="pass each parameter with the type DynamoDB documents for "
                f"{operation} (see the dynamodb_command table in docs/dynamodb.md).",
            ) from None
        return self.cache._send_request(operation, **params)

    def duplicate(self, spellings: Iterable[Any], canonical: str) -> CacheValueError:
        names = [_shown(s) for s in spellings]
        shown = " and ".join(names) + (" both" if len(names) == 2 else " all")
        return CacheValueError(
            f"{self.action}: {shown} name the parameter '{canonical}' (parameter names "
            "are case-insensitive), so one of them would be dropped.",
            hint=f"pass '{canonical}' once.",
        )

    def unknown(self, raw: Any, known: Iterable[str]) -> CacheValueError:
        known = list(known)
        guess = suggest(str(raw)[:200], known) if known else None
        return CacheValueError(
            f"{self.action}: unknown parameter '{raw!s:.80}'."
            + (f" Did you mean '{guess}'?" if guess else ""),
            hint=f"supported parameters: {', '.join(known) or 'none'}; nothing was sent.",
        )

    def pop(self, data: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
        """Take the control parameters ``names`` (any case) out of ``data``, converted."""
        wanted = {n.lower(): n for n in names}
        found: dict[str, list[Any]] = {}
        for raw in list(data):
            canonical = wanted.get(str(raw).lower())
            if canonical is not None and raw != self.kn:
                found.setdefault(canonical, []).append(raw)
        taken: dict[str, Any] = {}
        for canonical, spellings in found.items():
            if len(spellings) > 1:
                raise self.duplicate(spellings, canonical)
            taken[canonical] = data.pop(spellings[0])
        return self.params(taken)

    def params(self, taken: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(taken)
        for name, value in out.items():
            if name in _FLAGS:
                self.flag(value, name)
            elif name in _TEXTS:
                self.text(value, name)
        for name in ("ExpressionAttributeValues", "ExclusiveStartKey"):
            if name in out:
                out[name] = to_item(self.mapping(out[name], name))
        if "ExpressionAttributeNames" in out:
            names = self.mapping(out["ExpressionAttributeNames"], "ExpressionAttributeNames")
            for placeholder, attribute in names.items():
                if not isinstance(placeholder, str) or not isinstance(attribute, str):
                    raise CacheValueError(
                        f"{self.action}: ExpressionAttributeNames maps {placeholder!r:.80} to "
                        f"{attribute!r:.80}; both must be strings.",
                        hint="pass e.g. ExpressionAttributeNames={'#n': 'name'}.",
                    )
            out["ExpressionAttributeNames"] = dict(names)
        if "Limit" in out:
            out["Limit"] = self.positive(out["Limit"], "Limit")
        if "TotalSegments" in out:
            out["TotalSegments"] = self.positive(out["TotalSegments"], "TotalSegments")
        if "Segment" in out:
            out["Segment"] = self.positive(out["Segment"], "Segment", least=0)
        return out

    def flag(self, value: Any, what: str) -> bool:
        if not isinstance(value, bool):
            raise CacheValueError(
                f"{self.action}: {what} must be a boolean (True or False), got "
                f"{type(value).__name__} {value!r:.80}.",
                hint=f"pass {what}=True or {what}=False; a string such as 'false' is "
                "not read as a boolean.",
            )
        return value

    def text(self, value: Any, what: str) -> str:
        if not isinstance(value, str) or not value:
            raise CacheValueError(
                f"{self.action}: {what} must be a non-empty string, got "
                f"{type(value).__name__} {value!r:.80}.",
                hint=f"pass {what} as a string, e.g. {_EXAMPLES.get(what, repr('...'))}.",
            )
        return value

    def mapping(self, value: Any, what: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise CacheValueError(
                f"{self.action}: {what} must be a struct/dict, got {type(value).__name__}.",
                hint=f"pass {what} as a dict such as {{':v': 1}}.",
            )
        return value

    def positive(self, value: Any, what: str, least: int = 1) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            kind = "a positive integer" if least == 1 else f"an integer >= {least}"
            raise CacheValueError(
                f"{self.action}: {what} must be {kind}, got {value!r:.80}.",
                hint=f"pass e.g. {what}={ {'Limit': 100, 'TotalSegments': 4}.get(what, least) }.",
            )
        return value

    def key(self, data: Mapping[str, Any], allowed: tuple[str, ...] = ()) -> dict[str, Any]:
        """The partition key from ``data`` (flat, or nested under ``key``), validated.

        ``allowed`` are the action's other parameters, already taken out of ``data``:
        beside a nested key, nothing else may remain (it would be dropped), and an
        attribute beside a flat key is named with the parameter it may have meant.
        """
        if self.kn.lower() != "key":
            nested = [raw for raw in data if str(raw).lower() == "key"]
            if len(nested) > 1:
                raise self.duplicate(nested, "key")
            if nested:
                data = self.nested_key(data, nested[0], allowed)
        self.require_key(data)
        extra = sorted(str(k) for k in data if k != self.kn)
        if extra:
            guess = next((g for e in extra[:20] if (g := suggest(e[:200], allowed))), None)
            shown = extra[:5] + ([f"... {len(extra) - 5} more"] if len(extra) > 5 else [])
            raise CacheValueError(
                f"{self.action}: the key may only hold the partition key '{self.kn}', "
                f"but also has {shown}."
                + (f" Did you mean the parameter '{guess}'?" if guess else ""),
                hint=f"pass {{'{self.kn}': <key>}} and put other values in the expression "
                "parameters" + (f" ({', '.join(allowed)})." if allowed else "."),
            )
        return to_item(data)

    def nested_key(
        self, data: Mapping[str, Any], raw: Any, allowed: tuple[str, ...]
    ) -> Mapping[str, Any]:
        """The mapping under ``data[raw]`` (the ``key`` form); ``data`` must hold nothing else."""
        value = data[raw]
        if not isinstance(value, Mapping):
            raise CacheValueError(
                f"{self.action}: '{raw}' must be a struct/dict holding the partition key "
                f"'{self.kn}', got {type(value).__name__}.",
                hint=f"pass {{'key': {{'{self.kn}': <key>}}}} or {{'{self.kn}': <key>}}.",
            )
        rest = [k for k in data if k != raw]
        if self.kn in rest:
            raise CacheValueError(
                f"{self.action}: the partition key '{self.kn}' is given twice, nested under "
                f"'{raw}' ({value.get(self.kn)!r:.80}) and at the top level "
                f"({data[self.kn]!r:.80}).",
                hint=f"pass it once: {{'key': {{'{self.kn}': <key>}}}} or {{'{self.kn}': <key>}}.",
            )
        if rest:
            raise self.unknown(rest[0], ("key", *allowed))
        return value

    def require_key(self, data: Mapping[str, Any]) -> None:
        if self.kn in data:
            if not isinstance(data[self.kn], str) or not data[self.kn]:
                raise CacheValueError(
                    f"{self.action}: partition key '{self.kn}' must be a non-empty string, "
                    f"got {data[self.kn]!r:.80}.",
                    hint=f"the table's key '{self.kn}' has type S (string).",
                )
            return
        guess = suggest(self.kn, [str(k) for k in data]) if data else None
        raise CacheValueError(
            f"{self.action} needs the partition key '{self.kn}'; the table's key is "
            f"'{self.kn}'" + (f" (got '{guess}': names are case-sensitive)." if guess else "."),
            hint=f"pass {{'{self.kn}': <key>, ...}}; the name is discovered from the table.",
        )

    def only(
        self, data: Mapping[str, Any], allowed: tuple[str, ...], also: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        """``data`` restricted to ``allowed`` parameters (any case); unknown ones raise.

        ``also`` are the action's parameters taken out before (named in suggestions)."""
        by_lower = {a.lower(): a for a in allowed}
        taken: dict[str, Any] = {}
        spelled: dict[str, Any] = {}
        for raw, value in data.items():
            canonical = by_lower.get(str(raw).lower())
            if canonical is None:
                raise self.unknown(raw, (*also, *allowed))
            if canonical in taken:
                raise self.duplicate((spelled[canonical], raw), canonical)
            taken[canonical] = value
            spelled[canonical] = raw
        return self.params(taken)

    def attributes(self, response: Mapping[str, Any]) -> dict[str, Any] | None:
        found = response.get("Attributes")
        return from_item(found) if found else None


_EXAMPLES = {
    "ReturnValues": "'ALL_OLD'",
    "ReturnValuesOnConditionCheckFailure": "'ALL_OLD'",
    "ConditionExpression": "'attribute_exists(pk)'",
    "UpdateExpression": "'SET age = age + :inc'",
    "KeyConditionExpression": "'pk = :k'",
    "FilterExpression": "'age > :min'",
    "ProjectionExpression": "'pk, #n'",
    "IndexName": "'email-index'",
    "ClientRequestToken": "str(uuid.uuid4())",
}


def _put_item(cmd: _Command, data: dict[str, Any]) -> Any:
    controls = cmd.pop(data, _WRITE_CONTROLS)
    cmd.require_key(data)
    return cmd.attributes(cmd.call("PutItem", Item=to_item(data), **controls))


def _get_item(cmd: _Command, data: dict[str, Any]) -> Any:
    controls = cmd.pop(data, _READ_CONTROLS)
    found = cmd.call("GetItem", Key=cmd.key(data, _READ_CONTROLS), **controls).get("Item")
    return from_item(found) if found else None


_UPDATE_CONTROLS = ("UpdateExpression", *_WRITE_CONTROLS)


def _update_item(cmd: _Command, data: dict[str, Any]) -> Any:
    controls = cmd.pop(data, _UPDATE_CONTROLS)
    key = cmd.key(data, _UPDATE_CONTROLS)
    if "UpdateExpression" not in controls:
        raise CacheValueError(
            "updateItem needs an UpdateExpression.",
            hint="pass e.g. UpdateExpression='SET age = age + :inc' with "
            "ExpressionAttributeValues={':inc': 1}.",
        )
    return cmd.attributes(cmd.call("UpdateItem", Key=key, **controls))


def _delete_item(cmd: _Command, data: dict[str, Any]) -> Any:
    controls = cmd.pop(data, _WRITE_CONTROLS)
    return cmd.attributes(cmd.call("DeleteItem", Key=cmd.key(data, _WRITE_CONTROLS), **controls))


def _fingerprint(key: Mapping[str, Any]) -> bytes:
    text = json.dumps(key, sort_keys=True, default=repr)
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def _paged(cmd: _Command, operation: str, params: dict[str, Any]) -> ItemList:
    """Follow pagination; ``Limit`` caps the items evaluated over all pages.

    What one call collects is bounded (:data:`MAX_ITEMS`, :data:`MAX_BYTES`): past
    either, a :class:`CacheValueError` tells the caller to page with ``Limit`` and
    ``ExclusiveStartKey``. A ``LastEvaluatedKey`` that repeats one of the read's recent
    keys (or the ``ExclusiveStartKey`` given) is a server that does not advance: a
    :class:`CacheBackendError`, not a loop without end.
    """
    limit = params.pop("Limit", None)
    results = ItemList()
    evaluated = pages = size = 0
    recent: OrderedDict[bytes, None] = OrderedDict()
    if params.get("ExclusiveStartKey"):
        recent[_fingerprint(params["ExclusiveStartKey"])] = None
    while True:
        if limit is not None:
            params["Limit"] = limit - evaluated
        page = cmd.call(operation, **params)
        pages += 1
        items = page.get("Items") or []
        size += sum(item_size(item) for item in items)
        if len(results) + len(items) > MAX_ITEMS or size > MAX_BYTES:
            raise _too_much(cmd, operation, limit, pages, len(results) + len(items), size)
        results.extend(from_item(item) for item in items)
        evaluated += int(page.get("ScannedCount", page.get("Count", 0)))
        last = page.get("LastEvaluatedKey")
        if not last:
            return results
        if limit is not None and evaluated >= limit:
            results.last_evaluated_key = from_item(last)
            return results
        mark = _fingerprint(last)
        if mark in recent:
            raise CacheBackendError(
                f"{cmd.action} on table '{cmd.table}': the server did not advance the read - "
                f"page {pages} answered LastEvaluatedKey {json.dumps(last, default=repr):.200} "
                "again, so the read was stopped instead of repeating it for ever.",
                hint="the endpoint (host) does not page like DynamoDB: check host, or page "
                "yourself with Limit and ExclusiveStartKey.",
            )
        recent[mark] = None
        if len(recent) > _RECENT_KEYS:
            recent.popitem(last=False)
        params["ExclusiveStartKey"] = last


def _too_much(
    cmd: _Command, operation: str, limit: int | None, pages: int, items: int, size: int
) -> CacheValueError:
    bound = f"{MAX_ITEMS:,} items or {MAX_BYTES // (1024 * 1024)} MiB"
    return CacheValueError(
        f"{cmd.action} on table '{cmd.table}' would collect more than {bound} in one call "
        f"({items:,} items, {size:,} bytes after {pages} {operation} page(s)); nothing is "
        "returned rather than a list too large to hold.",
        hint=(
            f"pass a smaller Limit (it is {limit:,})"
            if limit is not None
            else "pass Limit (e.g. Limit=1000)"
        )
        + " and page: pass the result's last_evaluated_key as ExclusiveStartKey to the "
        "next call until it is None; a ProjectionExpression makes items smaller.",
    )


def _query(cmd: _Command, data: dict[str, Any]) -> Any:
    params = cmd.only(data, _QUERY_PARAMS)
    if "KeyConditionExpression" not in params:
        raise CacheValueError(
            "query needs a KeyConditionExpression.",
            hint=f"pass e.g. KeyConditionExpression='{cmd.kn} = :k' with "
            "ExpressionAttributeValues={':k': 'user_001'}; use scan to read without a key.",
        )
    return _paged(cmd, "Query", params)


def _scan(cmd: _Command, data: dict[str, Any]) -> Any:
    return _paged(cmd, "Scan", cmd.only(data, _SCAN_PARAMS))


def _entry(cmd: _Command, data: Mapping[str, Any], name: str) -> tuple[Any, Any] | None:
    """The one entry of ``data`` named ``name`` (any case): (spelling, value), or None."""
    found = [(k, v) for k, v in data.items() if str(k).lower() == name.lower()]
    if len(found) > 1:
        raise cmd.duplicate((k for k, _ in found), name)
    return found[0] if found else None


def _list_of(cmd: _Command, data: Mapping[str, Any], name: str) -> list[Any]:
    entry = _entry(cmd, data, name)
    value: Any = [] if entry is None else entry[1]
    if not isinstance(value, (list, tuple)):
        raise CacheValueError(
            f"{cmd.action}: '{name}' must be a list, got {type(value).__name__}.",
            hint=f"pass {name}=[...].",
        )
    return list(value)


def _distinct(
    cmd: _Command,
    keys: list[dict[str, Any]],
    what: str,
    hint: str = "DynamoDB refuses a batch that names one key twice: pass each key once.",
) -> None:
    """Refuse a batch naming one key twice, naming the duplicates (at most 5 shown).

    DynamoDB refuses such a request with a ValidationException ("Provided list of item
    keys contains duplicates") that names none of them, and the batch helpers split a
    long list into requests of 100 or 25, where a duplicate across two requests would
    not even be refused: it is checked here, before anything is sent.
    """
    seen: set[str] = set()
    twice: dict[str, None] = {}
    for key in keys:
        value = str(key[cmd.kn]["S"])
        if value in seen:
            twice[value] = None
        seen.add(value)
    if twice:
        shown = ", ".join(repr(k[:80]) for k in list(twice)[:5])
        more = f" and {len(twice) - 5} more" if len(twice) > 5 else ""
        raise CacheValueError(
            f"{cmd.action}: {what} name {len(twice)} key(s) more than once: {shown}{more}.",
            hint=hint,
        )


def _batch_get_item(cmd: _Command, data: dict[str, Any]) -> Any:
    keys = [cmd.key(cmd.mapping(k, "each key")) for k in _list_of(cmd, data, "keys")]
    _distinct(cmd, keys, "the keys")
    rest = {k: v for k, v in data.items() if str(k).lower() != "keys"}
    controls = cmd.only(rest, _READ_CONTROLS, also=("keys",))
    consistent = controls.pop("ConsistentRead", None)
    if consistent is None:
        consistent = bool(cmd.cache.settings["consistentRead"])
    flow = get_batches(cmd.table, keys, consistent=consistent, projection=controls, checked=True)
    items = cmd.cache._drive(flow)
    return [from_item(item) for item in items]


def _batch_write_item(cmd: _Command, data: dict[str, Any]) -> Any:
    unknown = [k for k in data if str(k).lower() not in ("put", "delete")]
    if unknown:
        raise cmd.unknown(unknown[0], ("put", "delete"))
    puts = []
    for item in _list_of(cmd, data, "put"):
        cmd.require_key(cmd.mapping(item, "each item"))
        puts.append({"PutRequest": {"Item": to_item(item)}})
    deletes = [
        {"DeleteRequest": {"Key": cmd.key(cmd.mapping(k, "each key"))}}
        for k in _list_of(cmd, data, "delete")
    ]
    written = [r["PutRequest"]["Item"] for r in puts] + [r["DeleteRequest"]["Key"] for r in deletes]
    _distinct(cmd, written, "put and delete")
    cmd.cache._drive(write_batches(cmd.table, puts + deletes, checked=True))
    return {"put": len(puts), "delete": len(deletes)}


_TRANSACT_CONTROLS = (
    "ConditionExpression",
    "ExpressionAttributeNames",
    "ExpressionAttributeValues",
    "ReturnValuesOnConditionCheckFailure",
)
_TRANSACT_PARAMS = {
    "Put": _TRANSACT_CONTROLS,
    "Update": ("UpdateExpression", *_TRANSACT_CONTROLS),
    "Delete": _TRANSACT_CONTROLS,
    "ConditionCheck": _TRANSACT_CONTROLS,
}
"""What each kind of transaction item may carry besides its Item/Key (TableName is the
cache's own)."""

_TRANSACT_REQUIRED = {"Update": "UpdateExpression", "ConditionCheck": "ConditionExpression"}

_TRANSACT_KINDS = {
    "put": "Put",
    "update": "Update",
    "delete": "Delete",
    "conditioncheck": "ConditionCheck",
}

_TRANSACT_TOP = ("items", "TransactItems", "ClientRequestToken")
"""The top level of ``transactWriteItems``'s data (``items`` and ``TransactItems`` are one
list, spelled as in Lucee and as in DynamoDB)."""


def _transact_action(cmd: _Command, action: Any) -> dict[str, Any]:
    action = cmd.mapping(action, "each transaction item")
    if len(action) != 1:
        raise CacheValueError(
            "transactWriteItems: each item needs exactly one of Put, Update, Delete, "
            f"ConditionCheck; got {sorted(map(str, action))}.",
            hint="pass e.g. {'Put': {'Item': {...}}}.",
        )
    ((raw_kind, body),) = action.items()
    kind = _TRANSACT_KINDS.get(str(raw_kind).lower())
    if kind is None:
        raise CacheValueError(
            f"transactWriteItems: unknown action {raw_kind!r}.",
            hint="use Put, Update, Delete or ConditionCheck.",
        )
    spec = dict(cmd.mapping(body, kind))
    named = _entry(cmd, spec, "TableName")
    if named is not None and named[1] != cmd.table:
        # DynamoDBCommand works on its cache's table only: a caller must not reach
        # another table through the cache's credentials.
        raise CacheValueError(
            f"transactWriteItems: {kind} names table {str(named[1])!r:.80}, but this command "
            f"works on the cache's table '{cmd.table}' only.",
            hint="leave TableName out; use the cache configured on the other table.",
        )
    target = "Item" if kind == "Put" else "Key"
    found = _entry(cmd, spec, target)
    rest = {k: v for k, v in spec.items() if str(k).lower() not in ("tablename", target.lower())}
    converted = cmd.only(rest, _TRANSACT_PARAMS[kind], also=(target, "TableName"))
    required = _TRANSACT_REQUIRED.get(kind)
    if required is not None and required not in converted:
        raise CacheValueError(
            f"transactWriteItems: each {kind} needs {'an' if kind == 'Update' else 'a'} "
            f"{required}.",
            hint=f"pass e.g. {{'{kind}': {{'Key': {{'{cmd.kn}': ...}}, "
            f"'{required}': {_EXAMPLES[required]}}}}}.",
        )
    converted["TableName"] = cmd.table
    value = None if found is None else found[1]
    if kind == "Put":
        item = cmd.mapping(value, "Put.Item")
        cmd.require_key(item)
        converted["Item"] = to_item(item)
    else:
        converted["Key"] = cmd.key(cmd.mapping(value, f"{kind}.Key"))
    return {kind: converted}


def _transact_write_items(cmd: _Command, data: dict[str, Any]) -> Any:
    top = cmd.only(data, _TRANSACT_TOP)
    if "items" in top and "TransactItems" in top:
        raise CacheValueError(
            "transactWriteItems: both 'items' and 'TransactItems' are given; they are one "
            "list, so one of them would be dropped.",
            hint="pass the transaction's items once, as 'items'.",
        )
    actions = _list_of(cmd, top, "items") or _list_of(cmd, top, "TransactItems")
    if not actions:
        raise CacheValueError(
            "transactWriteItems needs a non-empty 'items' list.",
            hint="pass {'items': [{'Put': {'Item': {...}}}, {'Update': {...}}]}.",
        )
    converted = [_transact_action(cmd, a) for a in actions]
    keys = [next(iter(c.values())).get("Key") or next(iter(c.values()))["Item"] for c in converted]
    _distinct(
        cmd,
        [{cmd.kn: k[cmd.kn]} for k in keys],
        "the items",
        hint="DynamoDB refuses a transaction with two actions on one item: combine them "
        "into one action per key.",
    )
    token = {k: v for k, v in top.items() if k == "ClientRequestToken"}
    if len(token.get("ClientRequestToken", "")) > 36:
        raise CacheValueError(
            "transactWriteItems: ClientRequestToken must be 1 to 36 characters, got "
            f"{len(token['ClientRequestToken'])}.",
            hint="pass e.g. ClientRequestToken=str(uuid.uuid4()) (36 characters), the same "
            "one when you repeat the transaction.",
        )
    cmd.send("TransactWriteItems", TransactItems=converted, **token)
    return None


ACTIONS: dict[str, tuple[str, bool, Callable[[_Command, dict[str, Any]], Any]]] = {
    "putitem": ("putItem", True, _put_item),
    "getitem": ("getItem", False, _get_item),
    "updateitem": ("updateItem", True, _update_item),
    "deleteitem": ("deleteItem", True, _delete_item),
    "query": ("query", False, _query),
    "scan": ("scan", False, _scan),
    "batchgetitem": ("batchGetItem", False, _batch_get_item),
    "batchwriteitem": ("batchWriteItem", True, _batch_write_item),
    "transactwriteitems": ("transactWriteItems", True, _transact_write_items),
}
"""lower-case action -> (display name, writes?, handler)."""


def run_command(cache: DynamoDBCache, action: str, data: Mapping[str, Any]) -> Any:
    """Run ``action`` with ``data`` on ``cache``'s table; see the module docstring."""
    names = [name for name, _, _ in ACTIONS.values()]
    entry = ACTIONS.get(action.lower()) if isinstance(action, str) else None
    if entry is None:
        guess = suggest(str(action)[:200], names)
        raise CacheValueError(
            f"unknown DynamoDBCommand action {str(action)!r:.80}."
            + (f" Did you mean '{guess}'?" if guess else ""),
            hint=f"use one of: {', '.join(names)}.",
        )
    name, writes, handler = entry
    if not isinstance(data, Mapping):
        raise CacheValueError(
            f"{name}: data must be a struct/dict, got {type(data).__name__}.",
            hint="pass the item, key or parameters as a dict.",
        )
    if writes and cache.read_only:
        raise ReadOnlyCacheError(
            f"cache '{cache.name}' is read-only; dynamodb_command('{name}') writes and is "
            "not allowed.",
            hint="set readOnly to false in the cache's configuration to allow writes; the "
            "read actions (getItem, query, scan, batchGetItem) still work.",
        )
    return handler(_Command(cache, name), dict(data))


def dynamodb_command(action: str, data: Mapping[str, Any], cache_name: str | None = None) -> Any:
    """Lucee's ``DynamoDBCommand(action, data [, cacheName])`` on a configured cache.

    ``cache_name`` None uses the default cache. The cache must be a DynamoDB cache.
    """
    from .cache import DynamoDBCache

    try:
        registry = importlib.import_module("cachehub.registry")
    except ImportError:
        raise ConfigError(
            "dynamodb_command needs cachehub's cache registry, which is not available.",
            hint="call DynamoDBCache(...).command(action, data) directly.",
        ) from None
    cache = registry.get_caches().get(cache_name)
    if not isinstance(cache, DynamoDBCache):
        shown = "the default cache" if cache_name is None else f"cache '{cache_name}'"
        raise ConfigError(
            f"dynamodb_command: {shown} is a {type(cache).__name__}, not a DynamoDB cache.",
            hint="pass the name of a cache whose class is 'dynamodb' "
            "(org.lucee.extension.aws.dynamodb.DynamoDBCache).",
        )
    return cache.command(action, data)
