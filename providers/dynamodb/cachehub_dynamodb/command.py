"""``dynamodb_command``: Lucee's ``DynamoDBCommand()`` - direct item access on a cache's table.

Values go in and come out as plain Python (str, int, float, Decimal, bool, None, bytes,
list, dict, set). Parameter names follow DynamoDB's and are matched case-insensitively,
as in Lucee. Actions (case-insensitive):

* ``putItem`` - ``data`` is the item (ReturnValues/ConditionExpression/Expression* are
  taken out); returns the old item with ``ReturnValues: ALL_OLD``, else None.
* ``getItem`` - ``data`` is the key (or ``{"key": {...}}``); returns a dict or None.
* ``updateItem`` - ``key``, ``UpdateExpression``, ``ExpressionAttributeValues``,
  ``ExpressionAttributeNames``, ``ConditionExpression``, ``ReturnValues``; returns the
  returned attributes or None.
* ``deleteItem`` - ``data`` is the key (plus ReturnValues/ConditionExpression...).
* ``query`` / ``scan`` - return a list of items, following pagination; ``Limit`` caps
  the items *evaluated* (before filtering), as in DynamoDB.
* ``batchGetItem`` - ``{"keys": [...]}``; returns the items found (any order).
* ``batchWriteItem`` - ``{"put": [items], "delete": [keys]}``; returns the counts.
* ``transactWriteItems`` - ``{"items": [{"Put": {"Item": ...}}, {"Update": ...}, ...]}``,
  every item on the cache's table (a ``TableName`` naming another table is refused).

A failed ``ConditionExpression`` raises :class:`~cachehub_dynamodb.ConditionFailedError`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from cachehub.config import suggest
from cachehub.errors import CacheValueError, ConfigError

from .batch import get_batches, write_batches
from .convert import from_item, to_item

if TYPE_CHECKING:
    from .cache import DynamoDBCache

__all__ = ["dynamodb_command", "run_command", "ACTIONS"]

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


class _Command:
    """One call: the cache, the action's display name and helpers shared by actions."""

    def __init__(self, cache: DynamoDBCache, action: str) -> None:
        self.cache = cache
        self.action = action
        self.kn = cache.key_name
        self.table = cache.table_name

    def call(self, operation: str, /, **params: Any) -> dict[str, Any]:
        return self.cache._checked_call(operation, TableName=self.table, **params)

    def pop(self, data: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
        """Take the control parameters ``names`` (any case) out of ``data``, converted."""
        wanted = {n.lower(): n for n in names}
        taken: dict[str, Any] = {}
        for raw in list(data):
            canonical = wanted.get(str(raw).lower())
            if canonical is not None and raw != self.kn:
                taken[canonical] = data.pop(raw)
        return self.params(taken)

    def params(self, taken: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(taken)
        for name in ("ExpressionAttributeValues", "ExclusiveStartKey"):
            if name in out:
                out[name] = to_item(self.mapping(out[name], name))
        if "ExpressionAttributeNames" in out:
            out["ExpressionAttributeNames"] = {
                str(k): str(v)
                for k, v in self.mapping(out["ExpressionAttributeNames"], "names").items()
            }
        if "Limit" in out:
            out["Limit"] = self.positive(out["Limit"], "Limit")
        return out

    def mapping(self, value: Any, what: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise CacheValueError(
                f"{self.action}: {what} must be a struct/dict, got {type(value).__name__}.",
                hint=f"pass {what} as a dict such as {{':v': 1}}.",
            )
        return value

    def positive(self, value: Any, what: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise CacheValueError(
                f"{self.action}: {what} must be a positive integer, got {value!r}.",
                hint=f"pass e.g. {what}=10.",
            )
        return value

    def key(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """The partition key from ``data`` (flat, or nested under ``key``), validated."""
        nested = next((v for k, v in data.items() if str(k).lower() == "key"), None)
        if isinstance(nested, Mapping) and self.kn.lower() != "key":
            data = nested
        self.require_key(data)
        extra = sorted(str(k) for k in data if k != self.kn)
        if extra:
            raise CacheValueError(
                f"{self.action}: the key may only hold the partition key '{self.kn}', "
                f"but also has {extra}.",
                hint=f"pass {{'{self.kn}': <key>}} and put other values in the expression "
                "parameters.",
            )
        return to_item(data)

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

    def only(self, data: Mapping[str, Any], allowed: tuple[str, ...]) -> dict[str, Any]:
        """``data`` restricted to ``allowed`` parameters (any case); unknown ones raise."""
        by_lower = {a.lower(): a for a in allowed}
        taken: dict[str, Any] = {}
        for raw, value in data.items():
            canonical = by_lower.get(str(raw).lower())
            if canonical is None:
                guess = suggest(str(raw), allowed)
                raise CacheValueError(
                    f"{self.action}: unknown parameter '{raw}'."
                    + (f" Did you mean '{guess}'?" if guess else ""),
                    hint=f"supported parameters: {', '.join(allowed)}.",
                )
            taken[canonical] = value
        return self.params(taken)

    def attributes(self, response: Mapping[str, Any]) -> dict[str, Any] | None:
        found = response.get("Attributes")
        return from_item(found) if found else None


def _put_item(cmd: _Command, data: dict[str, Any]) -> Any:
    controls = cmd.pop(data, _WRITE_CONTROLS)
    cmd.require_key(data)
    return cmd.attributes(cmd.call("PutItem", Item=to_item(data), **controls))


def _get_item(cmd: _Command, data: dict[str, Any]) -> Any:
    controls = cmd.pop(data, _READ_CONTROLS)
    found = cmd.call("GetItem", Key=cmd.key(data), **controls).get("Item")
    return from_item(found) if found else None


def _update_item(cmd: _Command, data: dict[str, Any]) -> Any:
    controls = cmd.pop(data, ("UpdateExpression", *_WRITE_CONTROLS))
    if "UpdateExpression" not in controls:
        raise CacheValueError(
            "updateItem needs an UpdateExpression.",
            hint="pass e.g. UpdateExpression='SET age = age + :inc' with "
            "ExpressionAttributeValues={':inc': 1}.",
        )
    return cmd.attributes(cmd.call("UpdateItem", Key=cmd.key(data), **controls))


def _delete_item(cmd: _Command, data: dict[str, Any]) -> Any:
    controls = cmd.pop(data, _WRITE_CONTROLS)
    return cmd.attributes(cmd.call("DeleteItem", Key=cmd.key(data), **controls))


def _paged(cmd: _Command, operation: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Follow pagination; ``Limit`` caps the items evaluated over all pages."""
    limit = params.pop("Limit", None)
    results: list[dict[str, Any]] = []
    evaluated = 0
    while True:
        if limit is not None:
            params["Limit"] = limit - evaluated
        page = cmd.call(operation, **params)
        results.extend(from_item(item) for item in page.get("Items", []))
        evaluated += int(page.get("ScannedCount", page.get("Count", 0)))
        last = page.get("LastEvaluatedKey")
        if not last or (limit is not None and evaluated >= limit):
            return results
        params["ExclusiveStartKey"] = last


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


def _list_of(cmd: _Command, data: Mapping[str, Any], name: str) -> list[Any]:
    value: Any = next((v for k, v in data.items() if str(k).lower() == name), [])
    if not isinstance(value, (list, tuple)):
        raise CacheValueError(
            f"{cmd.action}: '{name}' must be a list, got {type(value).__name__}.",
            hint=f"pass {name}=[...].",
        )
    return list(value)


def _distinct(cmd: _Command, keys: list[dict[str, Any]], what: str) -> None:
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
            hint="DynamoDB refuses a batch that names one key twice: pass each key once.",
        )


def _batch_get_item(cmd: _Command, data: dict[str, Any]) -> Any:
    keys = [cmd.key(cmd.mapping(k, "each key")) for k in _list_of(cmd, data, "keys")]
    _distinct(cmd, keys, "the keys")
    rest = {k: v for k, v in data.items() if str(k).lower() != "keys"}
    controls = cmd.only(rest, _READ_CONTROLS)
    consistent = bool(controls.pop("ConsistentRead", cmd.cache.settings["consistentRead"]))
    flow = get_batches(cmd.table, keys, consistent=consistent, projection=controls, checked=True)
    items = cmd.cache._drive(flow)
    return [from_item(item) for item in items]


def _batch_write_item(cmd: _Command, data: dict[str, Any]) -> Any:
    unknown = [k for k in data if str(k).lower() not in ("put", "delete")]
    if unknown:
        raise CacheValueError(
            f"batchWriteItem: unknown parameter {unknown[0]!r}.",
            hint="pass {'put': [items...], 'delete': [keys...]}.",
        )
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

_TRANSACT_KINDS = {
    "put": "Put",
    "update": "Update",
    "delete": "Delete",
    "conditioncheck": "ConditionCheck",
}


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
    table = next((v for k, v in spec.items() if str(k).lower() == "tablename"), cmd.table)
    if table != cmd.table:
        # DynamoDBCommand works on its cache's table only: a caller must not reach
        # another table through the cache's credentials.
        raise CacheValueError(
            f"transactWriteItems: {kind} names table {str(table)!r:.80}, but this command "
            f"works on the cache's table '{cmd.table}' only.",
            hint="leave TableName out; use the cache configured on the other table.",
        )
    rest = {k: v for k, v in spec.items() if k not in ("Item", "Key")}
    rest.pop(next((k for k in rest if str(k).lower() == "tablename"), ""), None)
    converted = cmd.only(rest, _TRANSACT_PARAMS[kind])
    converted["TableName"] = cmd.table
    if kind == "Put":
        item = cmd.mapping(spec.get("Item"), "Put.Item")
        cmd.require_key(item)
        converted["Item"] = to_item(item)
    else:
        converted["Key"] = cmd.key(cmd.mapping(spec.get("Key"), f"{kind}.Key"))
    return {kind: converted}


def _transact_write_items(cmd: _Command, data: dict[str, Any]) -> Any:
    actions = _list_of(cmd, data, "items") or _list_of(cmd, data, "transactitems")
    if not actions:
        raise CacheValueError(
            "transactWriteItems needs a non-empty 'items' list.",
            hint="pass {'items': [{'Put': {'Item': {...}}}, {'Update': {...}}]}.",
        )
    converted = [_transact_action(cmd, a) for a in actions]
    cmd.cache._checked_call("TransactWriteItems", TransactItems=converted)
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
        guess = suggest(str(action), names)
        raise CacheValueError(
            f"unknown DynamoDBCommand action {action!r}."
            + (f" Did you mean '{guess}'?" if guess else ""),
            hint=f"use one of: {', '.join(names)}.",
        )
    name, writes, handler = entry
    if not isinstance(data, Mapping):
        raise CacheValueError(
            f"{name}: data must be a struct/dict, got {type(data).__name__}.",
            hint="pass the item, key or parameters as a dict.",
        )
    if writes:
        cache._writable(f"dynamodb_command('{name}')")
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
