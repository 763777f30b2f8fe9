"""Table bootstrap on first use: discover or create the table, then enable native TTL.

Least privilege: only ``DescribeTable`` is mandatory. ``CreateTable`` is needed only when
the table is missing; ``DescribeTimeToLive``/``UpdateTimeToLive`` are optional - when they
are denied or unsupported the cache warns once and keeps working, because expiry is
enforced on every read anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Protocol

from botocore.exceptions import WaiterError

from cachehub.errors import (
    CacheBackendError,
    CacheError,
    CachePermissionError,
    CacheThrottledError,
    CacheUnavailableError,
    ConfigError,
)

from .errors import CallContext, backend_error, error_code, guarded, is_unsupported
from .items import ACCESSED, CREATED, HITS, IDLE, ITEM_ATTRIBUTES, MODIFIED, TTL, VALUE

__all__ = ["bootstrap_table", "Caller"]

_WAIT = {"Delay": 2, "MaxAttempts": 90}  # up to 3 minutes for a new table to turn ACTIVE


class Caller(Protocol):
    """``call(operation, **params)``: one DynamoDB request, errors already translated."""

    def __call__(self, operation: str, /, **params: Any) -> dict[str, Any]: ...


def _cause_code(exc: BaseException) -> str:
    cause = backend_error(exc)
    return error_code(cause) if cause is not None else ""


def _not_an_item_attribute(name: str, table: str, hint: str) -> str:
    """``name``, unless it is an attribute every cache item holds (ConfigError).

    A partition key named ``value`` or ``createdTime`` was replaced by that attribute in
    every item written (put() failed with a KeyError), one named ``deadline`` or ``ttl``
    by its expiry (put() "succeeded" and get() missed).
    """
    if name in ITEM_ATTRIBUTES:
        raise ConfigError(
            f"table '{table}': the partition key name '{name}' is also an attribute every "
            "cache item holds, so the cache cannot store items in it.",
            hint=hint,
        )
    return name


def _key_name(desc: dict[str, Any], table: str) -> str:
    """The string partition key of an existing table, or a ConfigError explaining why not."""
    schema = desc.get("KeySchema", [])
    hash_keys = [k["AttributeName"] for k in schema if k.get("KeyType") == "HASH"]
    range_keys = [k["AttributeName"] for k in schema if k.get("KeyType") == "RANGE"]
    fix = (
        "point tableName at a table whose only key is a string partition key, or at a new "
        "table name (the cache creates it)."
    )
    if range_keys:
        raise ConfigError(
            f"table '{table}' has a sort key '{range_keys[0]}'; a cache table must have a "
            "partition key only.",
            hint=fix,
        )
    if len(hash_keys) != 1:
        raise ConfigError(f"table '{table}' has no partition key.", hint=fix)
    name = str(hash_keys[0])
    types = {d["AttributeName"]: d["AttributeType"] for d in desc.get("AttributeDefinitions", [])}
    if types.get(name, "S") != "S":
        raise ConfigError(
            f"table '{table}' has a partition key '{name}' of type {types[name]}; cache keys "
            "are strings (type S).",
            hint=fix,
        )
    return _not_an_item_attribute(name, table, fix)


_PAST_NAMES: Final = frozenset({CREATED, MODIFIED, ACCESSED, IDLE, HITS, VALUE})
"""Item attributes that hold a time already past or a small number (an idle span, a hit
count, a counter): DynamoDB's TTL reads them as a date before now."""


def _ttl_warning(table: str, attribute: str) -> str:
    """The warning for a table whose native TTL is on ``attribute``, not ``timeToLive``.

    With TTL on an attribute the items hold for another purpose (``createdTime``,
    ``idleTime``...) DynamoDB reads it as a date in the past and deletes live entries: the
    warning must say so, not that DynamoDB leaves them alone.
    """
    head = f"table '{table}' has TTL on attribute '{attribute}', not '{TTL}'; "
    if attribute in _PAST_NAMES:
        return (
            head + f"the items hold '{attribute}' as a time already past or a small number, "
            "so DynamoDB deletes LIVE entries within about 48 hours of their writing; point "
            f"the table's TTL at '{TTL}'."
        )
    return head + "expired cache entries are never returned, but DynamoDB may not delete them."


class _Bootstrap:
    def __init__(
        self,
        call: Caller,
        client: Any,
        ctx: CallContext,
        primary_key: str,
        warn: Callable[[str, str], None],
        info: Callable[[str], None],
    ) -> None:
        self.call, self.client, self.ctx = call, client, ctx
        self.table = ctx.table
        self.primary_key = primary_key
        self.warn, self.info = warn, info

    def run(self) -> str:
        try:
            desc = self.call("DescribeTable", TableName=self.table)["Table"]
        except CacheBackendError as exc:
            if _cause_code(exc) != "ResourceNotFoundException":
                raise
            return self._create()
        if desc.get("TableStatus") == "CREATING":
            self._wait()
        name = _key_name(desc, self.table)
        if name != self.primary_key:
            self.info(
                f"table '{self.table}' exists with partition key '{name}'; using it "
                f"(primaryKey '{self.primary_key}' only applies to new tables)."
            )
        self._check_ttl()
        return name

    def _create(self) -> str:
        _not_an_item_attribute(
            self.primary_key,
            self.table,
            "set primaryKey to another name, such as the default 'cacheKey' (names are "
            "case-sensitive).",
        )
        try:
            self.call(
                "CreateTable",
                TableName=self.table,
                KeySchema=[{"AttributeName": self.primary_key, "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": self.primary_key, "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
        except CacheBackendError as exc:
            code = _cause_code(exc)
            if code == "ResourceInUseException":  # another process is creating it right now
                self._wait()
                return _key_name(
                    self.call("DescribeTable", TableName=self.table)["Table"], self.table
                )
            if isinstance(exc, CachePermissionError) or is_unsupported(backend_error(exc) or exc):
                raise CachePermissionError(
                    f"table '{self.table}' does not exist and dynamodb:CreateTable was denied "
                    f"({code or type(exc).__name__}).",
                    hint="verify the IAM policy includes dynamodb:CreateTable (see "
                    "docs/dynamodb.md), or create the table with a string partition key "
                    f"'{self.primary_key}' yourself; also check region and host.",
                ) from exc
            raise
        self.info(f"created table '{self.table}' (partition key '{self.primary_key}', on demand).")
        self._wait()
        self._enable_ttl()
        return self.primary_key

    def _wait(self) -> None:
        with guarded(self.ctx):
            try:
                self.client.get_waiter("table_exists").wait(
                    TableName=self.table, WaiterConfig=_WAIT
                )
            except WaiterError as exc:
                reason = exc.last_response.get("Error", exc)
                raise CacheBackendError(
                    f"table '{self.table}' did not become ACTIVE: {reason}",
                    hint="check the table in the AWS console; it may still be creating.",
                ) from None

    def _optional(self, action: str, fn: Callable[[], Any]) -> Any:
        """Run an optional TTL call; warn once and go on if it is denied or unsupported."""
        try:
            return fn()
        except (CacheUnavailableError, CacheThrottledError):
            raise
        except CacheError as exc:
            code = _cause_code(exc) or type(exc).__name__
            self.warn(
                action,
                f"dynamodb:{action} on table '{self.table}' failed ({code}); the cache keeps "
                "working and never returns expired entries, but DynamoDB will not delete them "
                f"by itself. Enable TTL on attribute '{TTL}' or allow dynamodb:{action}.",
            )
            return None

    def _enable_ttl(self) -> None:
        self._optional(
            "UpdateTimeToLive",
            lambda: self.call(
                "UpdateTimeToLive",
                TableName=self.table,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL},
            ),
        )

    def _check_ttl(self) -> None:
        described = self._optional(
            "DescribeTimeToLive", lambda: self.call("DescribeTimeToLive", TableName=self.table)
        )
        if described is None:
            return
        ttl = described.get("TimeToLiveDescription", {})
        status, attribute = ttl.get("TimeToLiveStatus"), ttl.get("AttributeName")
        if status in ("ENABLED", "ENABLING"):
            if attribute != TTL:
                self.warn("ttl-attribute", _ttl_warning(self.table, str(attribute)))
            return
        if status == "DISABLING":
            return
        self._enable_ttl()


def bootstrap_table(
    call: Caller,
    client: Any,
    ctx: CallContext,
    primary_key: str,
    warn: Callable[[str, str], None],
    info: Callable[[str], None],
) -> str:
    """Make the table usable and return its partition-key name (Primary Key Discovery)."""
    return _Bootstrap(call, client, ctx, primary_key, warn, info).run()
