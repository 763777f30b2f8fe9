"""AWS failures -> typed cachehub errors carrying the spec's troubleshooting advice.

Nothing raw from botocore escapes the provider: :func:`translate` maps every exception of
a DynamoDB call, and scrubs the configured credentials from any text it reuses.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProxyConnectionError,
    ReadTimeoutError,
)
from urllib3.exceptions import NewConnectionError

from cachehub.errors import CacheThrottledError
from cachehub.provider import (
    CacheBackendError,
    CacheError,
    CachePermissionError,
    CacheUnavailableError,
    CacheValueError,
    ConfigError,
    CorruptEntryError,
    ErrorRule,
    scrub,
    translate_error,
)

__all__ = [
    "ForeignEntryError",
    "describe_item",
    "ConditionFailedError",
    "ReplyCutError",
    "ItemTooLargeError",
    "CallContext",
    "translate",
    "never_left",
    "guarded",
    "error_code",
    "backend_error",
    "is_unsupported",
    "THROTTLING_CODES",
    "TABLE",
]


class ForeignEntryError(CorruptEntryError):
    """One item of the table cannot be read as a cache entry (issue #18).

    Raised for the entry's key alone, and handed to the cache's ``on_foreign_entry``
    callback when ``get_all()`` skips it: ``key`` is the user key (or the partition key
    value, when scanning), ``found`` a short description of what the item holds (its
    attribute names and types, and the first bytes of a binary ``value``), never the
    whole value.
    """

    def __init__(self, message: str, *, key: str, found: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.key = key
        self.found = found


_PEEK = 16
"""Leading bytes of a binary value shown in a ForeignEntryError."""


def describe_item(item: Any) -> str:
    """What an item holds, for a :class:`ForeignEntryError`: ``name:TYPE`` for each
    attribute (``value`` with its size and first bytes), bounded in length."""
    if not isinstance(item, dict):
        return f"a {type(item).__name__}, not an item"
    parts = []
    for name, attr in list(item.items())[:20]:
        kind = next(iter(attr), "?") if isinstance(attr, dict) and attr else "?"
        text = f"{str(name)[:40]}:{kind}"
        raw = attr.get(kind) if isinstance(attr, dict) else None
        if name == "value" and isinstance(raw, (bytes, bytearray)):
            text += f" {len(raw)} bytes {bytes(raw[:_PEEK]).hex()}"
        elif name == "value" and isinstance(raw, str):
            text += f" {len(raw)} chars"
        elif name != "value" and kind == "N":
            text += f"={str(raw)[:24]}"
        parts.append(text)
    if len(item) > 20:
        parts.append(f"... {len(item) - 20} more")
    return ", ".join(parts)


THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "Throttling",
    }
)
TOKEN_CODES = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
        "MissingAuthenticationTokenException",
        "IncompleteSignatureException",
        "InvalidClientTokenId",
    }
)
UNAVAILABLE_CODES = frozenset({"InternalServerError", "ServiceUnavailable", "InternalFailure"})

LOCAL_HINT = (
    "for DynamoDB Local or the LocalDynamoDB test server set host, e.g. http://localhost:8000"
)


class ConditionFailedError(CacheBackendError):
    """A ``ConditionExpression`` given to ``dynamodb_command`` was not met."""


@dataclass(frozen=True, slots=True)
class CallContext:
    """What a translated error may mention: the call, the table and its key."""

    operation: str
    table: str
    key_name: str
    endpoint: str
    secrets: tuple[str, ...] = ()

    def scrub(self, text: str) -> str:
        """``text`` with every configured credential (and URL password, token) masked."""
        return scrub(text, self.secrets)


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ClientError, or ''."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def backend_error(exc: BaseException) -> BaseException | None:
    """The botocore exception a typed error was translated from, or None.

    Translated errors are raised ``from None``, as every provider's are: botocore's text
    (an endpoint URL with its userinfo or a token in its query) would otherwise reach any
    logged traceback. The original stays as ``__context__``, which tracebacks do not show
    then, for the code that needs its error code or its returned item.
    """
    cause = exc.__cause__ or exc.__context__
    return cause if isinstance(cause, (BotoCoreError, ClientError)) else None


_MISSING_INDEX: Final = (
    r"invalid index|specified index|index\b.{0,80}\b(?:not found|does not exist)"
)


class ItemTooLargeError(CacheValueError):
    """DynamoDB refused a write whose item would pass its 400 KB limit."""


class ReplyCutError(BotoCoreError):  # type: ignore[misc]  # botocore is untyped here
    """A 2xx reply that arrived without its body, on every send (see
    :func:`.cache._no_blind_resend`): botocore would have parsed it as ``{}``."""

    fmt = "The reply to {operation} was cut short on every send."


def never_left(exc: Exception) -> bool:
    """Whether ``exc`` proves the request never reached the server: connecting failed.

    Only a connect timeout, a failed connect to or through an HTTP proxy, or an
    :class:`EndpointConnectionError` wrapping a failed connect (urllib3's
    ``NewConnectionError``, aiohttp's ``ClientConnectorError``, a DNS failure). botocore
    raises it only for those; aiobotocore raises it for *every* aiohttp
    ``ClientConnectionError``, a connection reset after the request was sent included,
    which may follow an applied write: a lost reply like any other. So does one that
    wraps nothing (no proof either way).
    """
    if isinstance(exc, (ConnectTimeoutError, ProxyConnectionError)):
        return True
    if not isinstance(exc, EndpointConnectionError):
        return False
    wrapped = exc.kwargs.get("error")
    if isinstance(wrapped, (NewConnectionError, socket.gaierror)):
        return True
    aiohttp = sys.modules.get("aiohttp")  # imported by aiobotocore if the async shell ran
    connector_error = getattr(aiohttp, "ClientConnectorError", None)
    return connector_error is not None and isinstance(wrapped, connector_error)


TABLE: Final = (
    # AWS error codes of a ClientError ({op}, {table}, {key_name}: the call; {code} and
    # {text}: the error's code and scrubbed message).
    ErrorRule(
        CacheThrottledError,
        "DynamoDB throttled {op} on table '{table}' after every retry ({code}: {text}).",
        "switch the table to on-demand billing (PAY_PER_REQUEST) or raise its provisioned "
        "capacity; maxAttempts and retryMode='adaptive' retry longer.",
        codes=THROTTLING_CODES,
    ),
    ErrorRule(
        CachePermissionError,
        "DynamoDB rejected the credentials for {op}: the security token included in the "
        "request is invalid ({code}).",
        "verify accessKeyId/secretkey (or the default credential chain) and that they have "
        f"not expired; {LOCAL_HINT}.",
        codes=TOKEN_CODES,
    ),
    ErrorRule(
        CachePermissionError,
        "access denied: dynamodb:{op} on table '{table}' ({text}).",
        "allow dynamodb:{op} on the table in the IAM policy (see the recommended policy in "
        "docs/dynamodb.md).",
        codes=frozenset({"AccessDeniedException"}),
    ),
    # DynamoDB Local and moto say ResourceNotFound for a missing index: the table exists.
    ErrorRule(
        CacheValueError,
        "{op} on table '{table}': the index named in IndexName does not exist ({text}).",
        "check IndexName and its case against the table's indexes (`cachehub info NAME` "
        "lists them), or add the index with UpdateTable.",
        codes=frozenset({"ResourceNotFoundException", "ValidationException"}),
        text=_MISSING_INDEX,
    ),
    ErrorRule(
        CacheBackendError,
        "table '{table}' was not found during {op} ({text}).",
        "the cache creates its table on its first read or write (or cache.connect()); "
        "if that ran, verify the IAM policy includes dynamodb:CreateTable, or create the "
        "table yourself; check region and host.",
        codes=frozenset({"ResourceNotFoundException"}),
    ),
    ErrorRule(
        ConditionFailedError,
        "{op} on table '{table}': the ConditionExpression was not met.",
        "read the item again and retry, or relax the condition.",
        codes=frozenset({"ConditionalCheckFailedException"}),
    ),
    ErrorRule(
        ConditionFailedError,
        "{op} on table '{table}' was cancelled: {text}",
        "the reasons list one entry per action; fix or retry the failing ones.",
        codes=frozenset({"TransactionCanceledException"}),
    ),
    ErrorRule(
        ItemTooLargeError,
        "{op} on table '{table}': the item exceeds DynamoDB's 400 KB limit ({text}).",
        "store large values elsewhere (e.g. S3) and cache a reference.",
        codes=frozenset({"ValidationException"}),
        text="item size|size has exceeded",
    ),
    # The cache's own updates add only to hitCount (ADD) and to a counter whose type and
    # range the condition checked: a refused addition is another program's hitCount.
    ErrorRule(
        CorruptEntryError,
        "{op} on table '{table}': a Number the update adds to is out of DynamoDB's range or "
        "of another type ({text}).",
        "another program wrote the item's hitCount (38 digits, or not a Number): delete the "
        "item, put() the key again, or remove the attribute (UpdateItem REMOVE hitCount).",
        codes=frozenset({"ValidationException"}),
        text="number overflow|incorrect data type",
    ),
    # DynamoDB: "Type mismatch for Index Key value Expected: S Actual: B IndexName: x";
    # the partition-key hint below blamed the key the caller had named correctly.
    ErrorRule(
        CacheValueError,
        "{op} on table '{table}': a secondary index of the table is keyed on an attribute "
        "this item holds with another type ({text}).",
        "key the index on an attribute the cache does not write (value, deadline, "
        "createdTime... see 'Item layout' in docs/dynamodb.md), or give the cache a table "
        "of its own.",
        codes=frozenset({"ValidationException"}),
        text="index key|indexname:",
    ),
    ErrorRule(
        CacheValueError,
        "{op} on table '{table}': {text}",
        "the table's partition key is '{key_name}' (a string); pass it with exactly that "
        "name and case.",
        codes=frozenset({"ValidationException"}),
        text="key",
    ),
    ErrorRule(
        CacheValueError,
        "{op} on table '{table}' was rejected: {text}",
        "check the expression syntax and that every :placeholder and #name is defined and used.",
        codes=frozenset({"ValidationException"}),
    ),
    ErrorRule(
        CacheUnavailableError,
        "DynamoDB is unavailable for {op} ({code}: {text}).",
        "retry later; raise maxAttempts for more automatic retries.",
        codes=UNAVAILABLE_CODES,
    ),
    ErrorRule(
        CacheBackendError,
        "DynamoDB {op} on table '{table}' failed: {code}: {text}",
        types=(ClientError,),
    ),
    # botocore's own exceptions ({endpoint}: where the client sends requests).
    ErrorRule(
        CacheUnavailableError,
        "DynamoDB at {endpoint} answered {op} with a reply cut short (the connection "
        "closed before a whole reply), on every send.",
        "something between this client and DynamoDB (a proxy, a load balancer, a NAT "
        "gateway) closes connections mid-reply: check it, then retry.",
        types=(ReplyCutError, ConnectionClosedError),
    ),
    ErrorRule(
        CacheUnavailableError,
        "unable to connect to DynamoDB at {endpoint} during {op}.",
        f"check host and region and that the endpoint is reachable; {LOCAL_HINT}.",
        types=(EndpointConnectionError, ConnectTimeoutError),
    ),
    ErrorRule(
        CacheUnavailableError,
        "DynamoDB at {endpoint} did not answer {op} within liveTimeout.",
        "check the network path to DynamoDB, or raise liveTimeout (milliseconds).",
        types=(ReadTimeoutError,),
    ),
    ErrorRule(
        CachePermissionError,
        "no AWS credentials were found for DynamoDB.",
        "set accessKeyId and secretkey, or configure the default chain (environment, "
        f"~/.aws/credentials, IAM role); {LOCAL_HINT} with dummy credentials.",
        types=(NoCredentialsError, PartialCredentialsError),
    ),
    ErrorRule(
        ConfigError,
        "no AWS region is configured for DynamoDB.",
        "set region (e.g. 'us-east-1') in the cache settings or AWS_DEFAULT_REGION.",
        types=(NoRegionError,),
    ),
    ErrorRule(
        CacheBackendError,
        "DynamoDB {op} failed: {text}",
        "check host, region and credentials.",
        types=(BotoCoreError,),
    ),
    ErrorRule(CacheBackendError, "DynamoDB {op} failed: {kind}: {text}"),
)
"""botocore's failures as cachehub errors, first match wins: the spec's troubleshooting
advice, one row per AWS error code or botocore exception."""


def translate(exc: BaseException, ctx: CallContext) -> CacheError:
    """The cachehub error for a botocore/boto3 failure of ``ctx.operation``."""
    if isinstance(exc, CacheError):
        return exc
    if isinstance(exc, EndpointConnectionError) and not never_left(exc):
        # aiobotocore's name for a connection closed or reset mid-reply, too
        exc = ConnectionClosedError(endpoint_url=exc.kwargs.get("endpoint_url", ""))
    if isinstance(exc, ClientError):
        error: Any = exc.response.get("Error", {})
        text = str(error.get("Message") or error.get("Code") or "no message")
    else:
        text = str(exc)
    return translate_error(
        TABLE,
        exc,
        code=error_code(exc),
        text=ctx.scrub(text),
        op=ctx.operation,
        table=ctx.table,
        key_name=ctx.key_name,
        endpoint=ctx.endpoint,
        kind=type(exc).__name__,
    )


def is_unsupported(exc: BaseException, codes: Iterable[str] = ()) -> bool:
    """Whether an optional call failed because it is denied or not implemented here."""
    code = error_code(exc)
    return code in {"AccessDeniedException", "UnknownOperationException", *codes} or (
        isinstance(exc, ClientError) and code.startswith(("Unsupported", "NotImplemented"))
    )


@contextmanager
def guarded(ctx: CallContext) -> Iterator[None]:
    """Translate any botocore failure inside the block (not chained: see
    :func:`backend_error`)."""
    try:
        yield
    except CacheError:
        raise
    except (BotoCoreError, ClientError) as exc:
        raise translate(exc, ctx) from None
