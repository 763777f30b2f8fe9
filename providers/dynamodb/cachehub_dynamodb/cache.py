"""Amazon DynamoDB as a cachehub provider (Lucee's ``DynamoDBCache`` extension).

One table holds the cache; the item layout is in :mod:`.items`. Every single-key operation
costs exactly one request, and a read never writes (idle-time entries add one UpdateItem
per read to slide their expiry; ``hitCounts`` adds one deferred UpdateItem per key read
per ``hitFlushInterval``); batches use BatchGetItem/BatchWriteItem; listing uses a
key-only Scan filtered server-side by key prefix. See docs/dynamodb.md for the request budget.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import re
import threading
import zlib
from collections.abc import Callable, Hashable, Mapping
from contextlib import closing
from contextvars import ContextVar
from decimal import ROUND_FLOOR, Decimal
from time import perf_counter
from typing import Any, ClassVar, Final, TypeGuard, TypeVar, cast

from botocore import xform_name
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from cachehub.api import COUNTER_RANGE, HIT_COUNT_MAX, LOCK_HORIZON, counter_overflow
from cachehub.provider import (
    HIT_OPTIONS,
    MISSING,
    NO_EXPIRY,
    YIELD_LOOP,
    CacheBackendError,
    CacheError,
    CacheOutcomeUnknownError,
    CachePermissionError,
    CacheValueError,
    Call,
    ConfigError,
    CorruptEntryError,
    Emit,
    Entry,
    Expiry,
    Flow,
    FlowCache,
    InvalidKeyError,
    KeyFilter,
    Option,
    PendingHits,
    Stream,
    decoded,
    decodes_inline,
    encoded,
    not_an_int,
    off_loop,
    pull,
    rebatched,
    request_id,
    scrub,
    stretch_due,
)

from .batch import get_batches, write_batches
from .client import (
    abandon_async_client,
    check_host,
    make_async_client,
    make_client,
    normalize_host,
    resolve_region,
    validate,
)
from .errors import (
    CallContext,
    ConditionFailedError,
    ForeignEntryError,
    ItemTooLargeError,
    ReplyCutError,
    backend_error,
    error_code,
    never_left,
    translate,
)
from .flow import request
from .flush import flush_workers, update_all
from .items import (
    CONSTANTS,
    CREATED,
    DEADLINE,
    ENTRY,
    EXPIRED,
    EXPIRY_ATTRIBUTES,
    IDLE,
    INTERNAL,
    ITEM_GROWTH,
    LIVE,
    LOCK_FENCE,
    LOCK_HOLDER,
    LOCK_RELEASED,
    LOCK_UNTIL,
    LUCEE_TTL,
    MAX_ITEM_BYTES,
    MAX_KEY_BYTES,
    MODIFIED,
    ORIGINAL_KEY,
    OWNED,
    PLACEHOLDERS,
    REQUEST,
    TTL,
    VALUE,
    Item,
    Version,
    build_item,
    consistent_key,
    decode_value,
    encode_value,
    expiry_attrs,
    expiry_of,
    fresh_attrs,
    hashed_prefix,
    internal_key,
    is_live,
    item_size,
    needs_owner_check,
    num,
    owner_condition,
    owns,
    partition_value,
    read_attributes,
    same_deadline,
    same_version,
    to_entry,
    version_of,
)
from .scan import scan_pages
from .table import bootstrap_table

__all__ = ["DynamoDBCache"]

_INCR_ROUNDS: Final = 5
_ADD_HITS: Final = " ADD #hc :h"
"""The clause that carries pending hits in an update of the entry (the slide, ``touch``,
``incr``): see :meth:`DynamoDBCache._update_with_hits`."""
MAX_ATTEMPTS: Final = 20
"""The most attempts per request (``maxAttempts``): botocore backs off between them, so a
count of 10**30 made every call against an endpoint that is down retry for ever."""
MAX_LIVE_TIMEOUT_MS: Final = 86_400_000
"""The longest ``liveTimeout`` (a day; Lucee's own default is an hour): botocore turns it
into a socket deadline, and 10**13 ms overflowed the platform's time_t on every request,
reported as an unexpected backend error."""
MAX_CONNECTIONS: Final = 1_000
"""The largest ``maxConnections``: urllib3 fills its pool's queue with one slot per
connection when the client is made (10**7 took 15 s and 180 MB, 10**30 never returned),
and a hit-count flush runs half as many threads."""
MAX_SCAN_SEGMENTS: Final = 64
"""The most ``scanSegments``: each segment's page is fetched by a thread (or task) of its
own and held until the round ends; 10**6 exhausted the threads, 10**30 the memory."""
_RESEND_ROUNDS: Final = 3
"""Sends of a conditional delete whose replies keep getting lost (each one checked)."""
_SHORT_KEY: Final = MAX_KEY_BYTES // 4
"""Storage keys this short fit DynamoDB's key limit in any encoding: used as they are."""

_KNOWN_TABLES: dict[tuple[str, str, str], str] = {}
"""(endpoint, region, table) -> partition-key name, for tables bootstrapped by this process:
later caches on the same table skip DescribeTable/DescribeTimeToLive."""
_PLACEHOLDER = re.compile(r"[#:][A-Za-z0-9_]+")
SCAN_PAGE_ITEMS: Final = 1000
"""Items per Scan page when keys are listed (keys, get_all, clear)."""
LOCK_GRACE: Final = 3600
"""Seconds a lock item outlives its last holding before native TTL may delete it: longer
than any clock skew, so a fence restarted from a writer's clock stays above the old ones."""
_LOCK: Final = {"S": "lock"}
HELD_BY_HOLDER: Final = (
    "#int = :lock AND #ok = :ok AND #holder = :t AND attribute_type(#lu, :n) AND #lu > :now"
)
"""Condition of release and extend: the lock is still this token's. A ``lockUntil`` of
another type (another program's) fails it as a lost lock; the explicit type test keeps
moto, which fails a comparison across types with a 500, evaluating it."""
T = TypeVar("T")
_METHODS: dict[str, str] = {}
"""DynamoDB operation name -> client method name (``GetItem`` -> ``get_item``)."""

_PAGES: Final = frozenset({"Scan", "Query", "BatchGetItem"})
"""Operations whose reply can be a page of up to 1 MB (1,000 keys, 100 items of 20 KB):
the async shell hands the loop back between parsing such a reply and using it."""

_ONCE: ContextVar[bool] = ContextVar("cachehub_dynamodb_once", default=False)
"""True while this thread or task sends a write that must not be re-sent blind (a context
variable: concurrent tasks of one event loop each have their own)."""


class _ReplyLost(Exception):
    """A guarded write's reply was lost after it was sent: it may have been applied."""


def _header(http: Any, name: str) -> str | None:
    value = http.headers.get(name)
    return None if value is None else str(value)


def _body(http: Any) -> bytes:
    body = getattr(http, "_content", None)  # read by both clients before the hook runs
    return body if isinstance(body, bytes) else b""


def _incomplete(http: Any) -> bool:
    """Whether a 2xx reply to a guarded write was cut short on its way back.

    DynamoDB answers every request with an ``x-amzn-RequestId`` header and a JSON body
    (``{}`` at least), checksummed by ``x-amz-crc32``. A reply cut in its headers parses
    as a 200 with no headers and an empty body (http.client reads to the close), which
    botocore turns into ``{}`` - an answer the write never gave; one cut after its
    checksum header fails the checksum, which botocore answers by re-sending the write.
    Either way the write was applied (the status says so) and its answer is lost.
    """
    body = _body(http)
    if _header(http, "x-amzn-requestid") is None or not body:
        return True
    checksum = _header(http, "x-amz-crc32")
    if checksum is not None:
        return not checksum.isdigit() or zlib.crc32(body) & 0xFFFFFFFF != int(checksum)
    length = _header(http, "content-length")
    if length is not None:
        return not length.isdigit() or int(length) != len(body)
    try:  # neither checksum nor length: the body must at least be whole JSON
        return not isinstance(json.loads(body), dict)
    except ValueError:
        return True


def _no_blind_resend(
    caught_exception: Exception | None = None,
    response: Any = None,
    attempts: int = 1,
    operation: Any = None,
    max_sends: int = _RESEND_ROUNDS,
    **_: Any,
) -> int | None:
    """botocore ``needs-retry`` hook: stop the re-send of a guarded write that may have landed.

    botocore re-sends a request after a read timeout or a dropped connection, which for
    ``incr`` or ``add`` applies the write twice when only the reply was lost. For the
    writes sent by :meth:`DynamoDBCache._write_once` this raises :class:`_ReplyLost`
    instead (out of botocore, to the cache), which then reads the item to learn the
    outcome. So does a success reply that arrived incomplete (:func:`_incomplete`):
    botocore would answer it with ``{}`` or re-send it after its checksum failed. Only
    failures that prove the request never left (:func:`.never_left`) and whole 4xx
    replies (throttling...) keep botocore's retries; a 5xx reply is a lost reply too (an
    internal error may follow an applied write); an incomplete 4xx reply (a refusal -
    nothing was applied - whose reason was cut off) is re-sent at once, for its reason,
    up to ``max_sends`` sends in all (the cache's ``maxAttempts``, at most 3).

    Every other request keeps botocore's retries, and a success reply cut in its
    headers is sent again (at most ``max_sends`` sends, then :class:`.ReplyCutError`).
    """
    http = response[0] if isinstance(response, tuple) and response else None
    if not _ONCE.get():
        # Any other request is safe to send again (reads, puts, conditional writes whose
        # re-send is recognised): only a success reply cut in its headers needs this
        # hook, since botocore reads its empty body as ``{}`` - for a GetItem, a miss of
        # a present key. One cut in its body fails the checksum, and botocore re-sends.
        if http is None or not 200 <= http.status_code < 300 or _body(http):
            return None
        if attempts < max_sends:
            return 0
        raise ReplyCutError(operation=getattr(operation, "name", "the request"))
    if caught_exception is not None:
        if isinstance(caught_exception, (HTTPClientError, BotoConnectionError)) and not never_left(
            caught_exception
        ):
            raise _ReplyLost from caught_exception
        return None
    if http is None:
        return None
    if http.status_code >= 500:
        # InternalServerError and ServiceUnavailable do not say the write was not
        # applied (DynamoDB's error handling guide: "the request may have succeeded").
        raise _ReplyLost
    if http.status_code < 200 or not _incomplete(http):
        return None
    if http.status_code < 300:
        raise _ReplyLost
    return 0 if attempts < max_sends else None


_SCHEMA_CHANGED: Final = re.compile(
    "key element does not match the schema|missing the key|key schema", re.IGNORECASE
)


def _table_changed(exc: ClientError) -> bool:
    """Whether ``exc`` says the table is gone, or no longer has the key this cache found."""
    code = error_code(exc)
    if code == "ResourceNotFoundException":
        return True
    message = str(exc.response.get("Error", {}).get("Message", ""))
    return code == "ValidationException" and _SCHEMA_CHANGED.search(message) is not None


def _wants_lucee(settings: Mapping[str, Any]) -> bool:
    """Whether raw settings ask for ``itemFormat: "lucee"`` (names are case-insensitive)."""
    for name, value in settings.items():
        if str(name).lower() == "itemformat" and str(value).strip().lower() == "lucee":
            return True
    return False


class DynamoDBCache(FlowCache[Any]):
    """A distributed cache in one DynamoDB table; also serves :func:`dynamodb_command`.

    Construction never touches the network: the boto3 client is created on first use
    (one per cache, shared by all threads) and the table is then described, or created
    with native TTL enabled (see :mod:`.table`).
    """

    backend_errors: ClassVar[tuple[type[Exception], ...]] = (BotoCoreError, ClientError)
    options: ClassVar[tuple[Option, ...]] = (
        Option(
            "tableName",
            str,
            None,
            "the DynamoDB table holding the cache; created on first use if missing.",
            required=True,
            aliases=("table",),
        ),
        Option(
            "primaryKey",
            str,
            "cacheKey",
            "partition key name used when the cache creates the table; an existing "
            "table's own partition key is discovered and used instead.",
        ),
        Option(
            "region",
            str,
            None,
            "AWS region such as 'us-east-1' (default: AWS_DEFAULT_REGION / ~/.aws/config; "
            "'us-east-1' when only host is set).",
            aliases=("location",),
        ),
        Option(
            "host",
            str,
            None,
            "endpoint URL, e.g. http://localhost:8000 for DynamoDB Local (no scheme: https://).",
            aliases=("server", "endpoint"),
        ),
        Option(
            "accessKeyId",
            str,
            None,
            "AWS access key id; leave unset (with secretkey) to use the default credential "
            "chain or an IAM role.",
            secret=True,
            aliases=("accesskey", "awsAccessKeyId"),
        ),
        Option(
            "secretkey",
            str,
            None,
            "AWS secret access key (set with accessKeyId).",
            secret=True,
            aliases=("awsSecretKey",),
        ),
        Option("sessionToken", str, None, "session token for temporary credentials.", secret=True),
        Option(
            "liveTimeout",
            int,
            10_000,
            "connect and read timeout of each request in milliseconds.",
            minimum=1,
            maximum=MAX_LIVE_TIMEOUT_MS,
        ),
        Option("consistentRead", bool, False, "use strongly consistent reads (twice the cost)."),
        Option(
            "retryMode",
            str,
            "standard",
            "botocore retry mode: 'standard' or 'adaptive' (client-side rate limiting).",
            choices=("standard", "adaptive"),
        ),
        Option(
            "maxAttempts",
            int,
            3,
            "attempts per request, first one included.",
            minimum=1,
            maximum=MAX_ATTEMPTS,
        ),
        Option(
            "maxConnections",
            int,
            10,
            "HTTP connection pool size of the client.",
            minimum=1,
            maximum=MAX_CONNECTIONS,
        ),
        Option(
            "scanSegments",
            int,
            1,
            "parallel Scan segments for keys/count/clear.",
            minimum=1,
            maximum=MAX_SCAN_SEGMENTS,
        ),
        Option(
            "itemFormat",
            str,
            "cachehub",
            "item layout: 'cachehub' (default) or 'lucee', the Lucee DynamoDB extension's "
            "own layout, to share a table with a Lucee application (docs/lucee-interop.md).",
            choices=("cachehub", "lucee"),
        ),
        *HIT_OPTIONS,
    )

    on_foreign_entry: Callable[[ForeignEntryError], None] | None = None
    """Called with each entry ``get_all()`` skips because it cannot be read (issue #18);
    None: a warning in the cache's log. Set it on an instance to collect them."""

    def __new__(cls, settings: Mapping[str, Any] | None = None, /, **kwargs: Any) -> Any:
        # Hook (issue #18): itemFormat "lucee" selects the Lucee layout (lucee.py).
        if cls is DynamoDBCache and _wants_lucee({**(settings or {}), **kwargs}):
            from .lucee import LuceeDynamoDBCache

            return super().__new__(LuceeDynamoDBCache)
        return super().__new__(cls)

    @classmethod
    def backend_identity(cls, settings: Mapping[str, Any]) -> Hashable:
        """The table, on its endpoint (``host``) or in its region."""
        host = normalize_host(settings["host"])
        if host:
            where: str = host.rstrip("/").lower()
        else:
            where = resolve_region(settings, f"cache class {cls.__name__}")
        return ("dynamodb", where, settings["tableName"].strip())

    def __init__(self, settings: Mapping[str, Any] | None = None, /, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        where = f"cache '{self.name}' (DynamoDBCache)"
        table = self.settings["tableName"].strip()
        if not table:
            raise ConfigError(
                f"{where}: setting 'tableName' is empty.",
                hint="set tableName to the DynamoDB table the cache should use.",
            )
        self.table_name: str = table
        self.settings["host"] = normalize_host(self.settings["host"])
        self.region: str = resolve_region(self.settings, where)
        check_host(self.settings["host"], where)
        # Shown in messages: a host with user:password@ is masked (the client gets it raw).
        self.endpoint: str = scrub(
            self.settings["host"] or f"https://dynamodb.{self.region}.amazonaws.com"
        )
        self._table_id = (self.endpoint, self.region, self.table_name)
        self._consistent: bool = self.settings["consistentRead"]
        self._hashed = {"S": hashed_prefix(self.namespace)}  # see items.OWNED
        self._secrets = tuple(
            str(v)
            for v in (
                self.settings["accessKeyId"],
                self.settings["secretkey"],
                self.settings["sessionToken"],
            )
            if v
        )
        self._key_name: str | None = None
        self._boot_lock = threading.Lock()
        self._projection: tuple[str, dict[str, Any]] | None = None

    # ------------------------------------------------------------------ connection

    def _forked(self) -> None:
        super()._forked()
        self._boot_lock = threading.Lock()  # a parent thread may have held it

    @property
    def client(self) -> Any:
        """The cache's boto3 DynamoDB client, created on first use (no table check)."""
        return self._connection()

    def _connect(self) -> Any:
        client = make_client(self.region, self.settings)
        client.meta.events.register_first("needs-retry.dynamodb", self._resend_guard())
        return client

    def _resend_guard(self) -> Callable[..., int | None]:
        """:func:`_no_blind_resend` for this cache's clients (its ``maxAttempts``)."""
        sends = min(_RESEND_ROUNDS, int(self.settings["maxAttempts"]))
        return functools.partial(_no_blind_resend, max_sends=sends)

    def _translate(self, exc: Exception) -> CacheError:
        return translate(exc, self._ctx("CreateClient"))

    @property
    def key_name(self) -> str:
        """The table's partition-key name; bootstraps the table on first use."""
        name = self._key_name
        if name is None:
            with self._boot_lock:
                if self._key_name is None:
                    self._key_name = _KNOWN_TABLES.get(self._table_id)
                if self._key_name is None:
                    self._key_name = _KNOWN_TABLES[self._table_id] = bootstrap_table(
                        self._checked_call,
                        self.client,
                        self._ctx("DescribeTable"),
                        self.settings["primaryKey"],
                        self._warn_once,
                        lambda msg: self.log.info("cache '%s': %s", self.name, msg),
                    )
                name = self._key_name
        return name

    def connect(self) -> None:
        """Create the client and bootstrap the table now instead of on first use."""
        _ = self.key_name

    def _ctx(self, operation: str) -> CallContext:
        return CallContext(
            operation,
            self.table_name,
            self._key_name or self.settings["primaryKey"],
            self.endpoint,
            self._secrets,
        )

    def _request_error(self, operation: str, exc: BotoCoreError | ClientError) -> CacheError:
        """The typed error of a failed request (both clients raise botocore's exceptions)."""
        if isinstance(exc, ClientError) and operation != "DescribeTable" and _table_changed(exc):
            # The table vanished, or was recreated with another key: bootstrap (and maybe
            # recreate it, or adopt or refuse its new key) on the next call.
            self._key_name = None
            _KNOWN_TABLES.pop(self._table_id, None)
        return translate(exc, self._ctx(operation))

    def _send_request(self, operation: str, /, **params: Any) -> dict[str, Any]:
        """One DynamoDB request; every failure becomes a typed cachehub error.

        The hot path is one dict lookup and the client method: the error context is
        built only when a call fails.
        """
        method = _METHODS.get(operation) or _METHODS.setdefault(operation, xform_name(operation))
        with self._use() as client:
            try:
                return getattr(client, method)(**params)  # type: ignore[no-any-return]
            except (ClientError, BotoCoreError) as exc:
                raise self._request_error(operation, exc) from None  # see errors.backend_error

    def _reply_lost(self, operation: str) -> None:
        self.log.info(
            "cache '%s': the reply to a %s was lost; reading the item to learn whether "
            "it was applied.",
            self.name,
            operation,
        )

    def _write_once(self, operation: str, /, **params: Any) -> dict[str, Any] | None:
        """A non-idempotent write that is never re-sent blind: its reply, or None if lost.

        None means the request was sent but its reply never came (read timeout, dropped
        connection): it may or may not have been applied, and the caller finds out from
        the item (its ``requestId``) instead of letting botocore apply it twice.
        """
        token = _ONCE.set(True)
        try:
            return self._send_request(operation, **params)
        except _ReplyLost:
            self._reply_lost(operation)
            return None
        finally:
            _ONCE.reset(token)

    # ------------------------------------------------------------------ flow I/O
    #
    # The steps of .flow, as pairs the core's drivers call: ``_x`` for RemoteCache._drive
    # (boto3, blocking), ``_ax`` for RemoteCache._adrive (aiobotocore, this loop's).

    def _request(
        self, operation: str, params: dict[str, Any], once: bool = False, checked: bool = False
    ) -> Any:
        if checked:
            return self._checked_call(operation, **params)
        if once:
            return self._write_once(operation, **params)
        return self._send_request(operation, **params)

    async def _arequest(
        self, operation: str, params: dict[str, Any], once: bool = False, checked: bool = False
    ) -> Any:
        method = _METHODS.get(operation) or _METHODS.setdefault(operation, xform_name(operation))
        token = _ONCE.set(once)
        try:
            lease = self._ajoin() or await self._ause()
            with lease as client:
                if checked:
                    validate(client, operation, params)
                reply = await getattr(client, method)(**params)
            if operation in _PAGES:
                # botocore parsed this page in the callback that read it; what the flow
                # does with it (and the next request) gets a callback of its own.
                await asyncio.sleep(0)
            return reply
        except _ReplyLost:
            if not once:
                raise
            self._reply_lost(operation)
            return None
        except (ClientError, BotoCoreError) as exc:
            raise self._request_error(operation, exc) from None  # see errors.backend_error
        finally:
            _ONCE.reset(token)

    def _ready(self) -> None:
        """The table bootstrap, as a flow step (:attr:`key_name` does it on first use)."""
        self.key_name  # noqa: B018 - the property bootstraps

    # ------------------------------------------------------------------ async client

    async def _aconnect(self) -> Any:
        """A new aiobotocore client for this cache, bound to the running event loop."""
        client = await make_async_client(self.region, self.settings)
        client.meta.events.register_first("needs-retry.dynamodb", self._resend_guard())
        return client

    def _abandon(self, client: Any) -> None:
        abandon_async_client(client)

    async def _aready(self) -> None:
        """Bootstrap the table once, off the loop: it runs on the boto3 client in a
        worker thread (DescribeTable, maybe CreateTable and its waiter), once per table
        and process; every later request goes through the async client."""
        if self._key_name is None:
            # A table this process bootstrapped already needs no worker thread: N tasks
            # starting together on a new cache would each start one (thread starts and
            # GIL hand-offs on the loop's thread) only to read this dict.
            self._key_name = _KNOWN_TABLES.get(self._table_id)
        if self._key_name is None:
            await asyncio.to_thread(lambda: self.key_name)

    async def _adrive(self, flow: Flow[T]) -> T:
        """:meth:`RemoteCache._adrive`, after the table bootstrap (:meth:`_aready`)."""
        if self._key_name is None:
            await self._aready()
        return await super()._adrive(flow)

    def _recorded(self, op: str, key: str, rid: str) -> Flow[Item]:
        """After a lost reply: the item write ``rid`` left, else :class:`CacheOutcomeUnknownError`.

        An item still carrying ``rid`` was written by that call and by no write after it
        (every ``incr``/``add`` sets its own id, ``put`` replaces the item). Anything else -
        no item, another id - cannot tell "never applied" from "applied, then overwritten".
        """
        item, _, _ = yield from self._get_item(key, consistent=True, verify=False)
        mark = None if item is None else item.get(REQUEST)
        if (
            item is not None
            and isinstance(mark, dict)
            and mark.get("S") == rid
            and owns(item, key, self.key_name)
        ):
            return item
        raise self._unknown(op, key)

    def _unknown(self, op: str, key: str) -> CacheOutcomeUnknownError:
        return CacheOutcomeUnknownError(
            f"the reply to {op}() of key {self._user_key(key)!r:.80} on DynamoDB table "
            f"'{self.table_name}' was lost, and the item no longer shows whether the write "
            "was applied; it was not re-sent, so it is applied at most once.",
            hint="read the key to see its current state before deciding to repeat the call.",
        )

    def _delete_unknown(self, key: str) -> CacheOutcomeUnknownError:
        return CacheOutcomeUnknownError(
            f"the reply to delete() of key {self._user_key(key)!r:.80} on DynamoDB table "
            f"'{self.table_name}' was lost; the entry is gone now, but whether this call "
            "removed a live one (True) or found none (False) cannot be known.",
            hint="the delete itself is done; treat the answer as unknown, not as False.",
        )

    def _checked_call(self, operation: str, /, **params: Any) -> dict[str, Any]:
        """:meth:`_send_request` after botocore's parameter validation, which the client skips.

        For parameters the provider does not build itself: ``dynamodb_command``'s, and the
        bootstrap's (the table name comes from the settings). Invalid ones fail as with a
        default boto3 client, before anything is sent.
        """
        try:
            validate(self._connection(), operation, params)
        except BotoCoreError as exc:
            raise translate(exc, self._ctx(operation)) from None  # see errors.backend_error
        return self._send_request(operation, **params)

    # ------------------------------------------------------------------ request helpers

    def _expr(self, *expressions: str, values: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """ExpressionAttributeNames/Values holding exactly the placeholders used."""
        used = set(_PLACEHOLDER.findall(" ".join(expressions)))
        names = {ph: attr for ph, attr in PLACEHOLDERS.items() if ph in used}
        if "#pk" in used:
            names["#pk"] = self.key_name
        out: dict[str, Any] = {}
        if names:
            out["ExpressionAttributeNames"] = names
        picked = {k: v for k, v in {**CONSTANTS, **(values or {})}.items() if k in used}
        if picked:
            out["ExpressionAttributeValues"] = picked
        return out

    def _key(self, storage_key: str) -> tuple[dict[str, Any], str]:
        pk, _ = partition_value(storage_key, self.namespace)
        return {self.key_name: {"S": pk}}, pk

    def _pk(self, storage_key: str) -> str:
        """The partition key value of ``storage_key`` (short keys are their own)."""
        if len(storage_key) <= _SHORT_KEY:
            return storage_key
        return partition_value(storage_key, self.namespace)[0]

    def _owner(self, storage_key: str, pk: str) -> tuple[str, dict[str, Any]] | None:
        """The owner condition for writes to ``pk``, or None where no other key can be."""
        return owner_condition(storage_key, pk) if needs_owner_check(storage_key, pk) else None

    def _own(self, storage_key: str, pk: str) -> tuple[str, dict[str, Any]]:
        """The condition that the item at ``pk``, if any, is ``storage_key``'s own, for every
        key: what reads check with :func:`owns`. At a key's own partition key an item whose
        ``originalKey`` names another key is another program's: a miss to every read, so
        ``touch``, ``delete`` and ``incr`` must not act on it either (``put``, ``add`` and
        ``incr`` replace it, as Redis replaces a foreign value)."""
        return owner_condition(storage_key, pk)

    def _collision(self, storage_key: str, pk: str) -> InvalidKeyError:
        return InvalidKeyError(
            f"key {self._user_key(storage_key)!r:.80} maps to DynamoDB partition key "
            f"{pk!r:.120}, which holds the entry of another key (its originalKey differs); "
            "cachehub does not overwrite it.",
            hint="partition keys ending in 'sha256:<64 hex digits>' hold hashed long keys: "
            "use another key, or remove the item with dynamodb_command('DeleteItem', ...).",
        )

    def _check_owner(self, storage_key: str, pk: str) -> Flow[None]:
        """After a failed owner-conditional write: raise if another key holds ``pk``."""
        item, _, _ = yield from self._get_item(storage_key, consistent=True, verify=False)
        if item is not None and not owns(item, storage_key, self.key_name):
            raise self._collision(storage_key, pk)

    def _storable(self, storage_key: str, value: Any, now: float) -> None:
        self._item(storage_key, value, NO_EXPIRY, now)  # the encoding and the 400 KB limit

    def _item(
        self, storage_key: str, value: Any, expiry: Expiry, now: float, shared: Item | None = None
    ) -> Item:
        """A fresh item, refusing values beyond DynamoDB's 400 KB item limit up front."""
        encoded = encode_value(value, self.codec, storage_key)
        kn = self._key_name or self.key_name
        item = build_item(
            kn, storage_key, encoded, expiry, now, shared=shared, namespace=self.namespace
        )
        # Exact sizing only near the limit: the key (as partition key and originalKey) and
        # the metadata attributes take at most 8 bytes per key character + 1 KB.
        limit = MAX_ITEM_BYTES - ITEM_GROWTH
        raw = encoded.get("B")
        if raw is not None and len(raw) + 8 * len(storage_key) + 1024 <= limit:
            return item
        size = item_size(item)
        if size > limit:
            raise CacheValueError(
                f"the value for key {self._user_key(storage_key)!r:.80} needs a {size}-byte "
                f"item; DynamoDB items are limited to {MAX_ITEM_BYTES} bytes (400 KB), "
                f"after compression, of which {ITEM_GROWTH} stay free for the stamps later "
                "reads and writes add.",
                hint="store large values elsewhere (e.g. S3) and cache a reference, or split "
                "them over several keys.",
            )
        return item

    def _item_flow(
        self, storage_key: str, value: Any, expiry: Expiry, now: float, shared: Item | None = None
    ) -> Flow[Item]:
        """:meth:`_item` in a flow: a heavy value is encoded off the event loop."""
        return (yield from encoded(value, self._item, storage_key, value, expiry, now, shared))

    def _value_flow(self, item: Item, key: str) -> Flow[Any]:
        """The value ``item`` holds: codec bytes of a large value decoded off the event
        loop (:func:`decoded`); anything else through :func:`decode_value`."""
        raw = item.get(VALUE)
        if raw is not None and "B" in raw:
            return (yield from decoded(self.codec.loads, raw["B"], key))
        return decode_value(item, self.codec, key)

    def _loads_large(self, large: list[tuple[str, bytes]]) -> dict[str, Any]:
        """``key: value`` of each ``(key, codec bytes)``: an :func:`off_loop` step's work."""
        loads = self.codec.loads
        return {key: loads(data, key) for key, data in large}

    def _get_item(
        self,
        storage_key: str,
        *,
        consistent: bool | None = None,
        attributes: list[str] | None = None,
        verify: bool = True,
    ) -> Flow[tuple[dict[str, Any] | None, dict[str, Any], str]]:
        """The item of ``storage_key``; None when absent or (``verify``) another key's."""
        pk = self._pk(storage_key)
        kn = self._key_name or self.key_name
        key = {kn: {"S": pk}}
        params = {
            "TableName": self.table_name,
            "Key": key,
            "ConsistentRead": self._consistent if consistent is None else consistent,
        }
        if attributes is not None:  # top-level attributes only: see items.read_attributes
            params["AttributesToGet"] = attributes
        reply = yield request("GetItem", params)
        item: dict[str, Any] | None = reply.get("Item")
        if verify and item is not None and not owns(item, storage_key, kn):
            return None, key, pk  # a hashed entry of another key: a miss, left alone
        return item, key, pk

    # ------------------------------------------------------------------ hit accounting

    def _slide(
        self, pk: str, key: dict[str, Any], item: Item, now: float, *, versioned: bool = True
    ) -> Flow[None]:
        """Idle entries must slide their deadline for every process: one UpdateItem.
        ``versioned``: ``item`` was read with its version stamps (see read_attributes)."""
        expiry = expiry_of(item)
        if expiry.idle is None:  # an idleTime that is no Number (another program's): no slide
            return
        attrs = expiry_attrs(expiry, now)
        update = "SET #la = :now, #dl = :dl, #ttl = :ttl"
        cond, values = same_version(version_of(item)) if versioned else same_deadline(item)
        values.update({":now": num(now), ":dl": attrs[DEADLINE], ":ttl": attrs[TTL]})
        if self.counts_hits:  # the same request carries the count: no extra cost
            update += _ADD_HITS
            values[":h"] = {"N": str(1 + self._take_hits(pk, version_of(item)))}
        # If the entry was replaced meanwhile, the new version keeps its own expiry.
        try:
            yield from self._update_if(key, update, cond, values)
        except ItemTooLargeError:
            # Written at the limit by another program (this cache keeps ITEM_GROWTH free):
            # the read still answers; the entry keeps its deadline instead of sliding.
            self._warn_once(
                f"no-slide:{pk}",
                f"an idle entry of {self._user_key(pk)!r:.80} is too close to DynamoDB's "
                "400 KB item limit to have its deadline moved; it expires at its old one.",
            )

    def _write_hits_flow(self, pending: dict[str, PendingHits]) -> Flow[None]:
        """Pending hit counts and last-access times: one conditional UpdateItem per key.

        The updates are sent concurrently, up to ``maxConnections // 2`` at a time; a
        read never waits for them. Counts of entries replaced meanwhile are dropped
        (they belonged to the old entry).
        """
        kn = self.key_name
        update = "SET #la = :la, #hf = :hf ADD #hc :h"
        # Exactly once: botocore re-sends an UpdateItem whose reply was lost, and ADD is
        # not idempotent. Each flush stamps its id; a re-send finds it and fails.
        once = "(attribute_not_exists(#hf) OR #hf <> :hf)"
        # A count another program made negative or huge (38 digits: one more is refused
        # as a Number overflow, which failed the read that flushed) is left as it is, for
        # metadata() to report (items.hit_count); ours never passes HIT_COUNT_MAX.
        once += " AND (attribute_not_exists(#hc) OR #hc BETWEEN :h0 AND :hx)"
        flush = {"S": request_id()}
        names: dict[str, dict[str, str]] = {}  # per condition: built once per flush
        requests = []
        for pk, hits in pending.items():
            same, values = same_version(cast(Version, hits.version))
            cond = f"{same} AND {once}"
            if cond not in names:
                names[cond] = self._expr(update, cond)["ExpressionAttributeNames"]
            values[":la"] = num(hits.accessed)
            values[":hf"] = flush
            values[":h"] = {"N": str(hits.hits)}
            values[":h0"] = {"N": "0"}
            values[":hx"] = {"N": str(max(0, HIT_COUNT_MAX - hits.hits))}
            requests.append(
                {
                    "TableName": self.table_name,
                    "Key": {kn: {"S": pk}},
                    "UpdateExpression": update,
                    "ConditionExpression": cond,
                    "ExpressionAttributeNames": names[cond],
                    "ExpressionAttributeValues": values,
                }
            )
        yield from update_all(requests, flush_workers(self.settings["maxConnections"]))

    # ------------------------------------------------------------------ the flows
    #
    # Each primitive is a flow (see .flow), written once: FlowCache's ``_x`` drives it on
    # the boto3 client, ``_ax`` on this event loop's aiobotocore client. The subclass for
    # Lucee's layout overrides the flows, and both shells follow.

    def _get_flow(self, key: str, now: float) -> Flow[Any]:
        item, k, pk = yield from self._get_item(key)
        if not item or not is_live(item, now):
            return MISSING
        value = yield from self._value_flow(item, key)
        if IDLE in item:
            yield from self._slide(pk, k, item, now)
        elif self.counts_hits:
            self._hits.count(pk, version_of(item), now)
        return value

    def _get_entry_flow(self, key: str, now: float) -> Flow[Entry | None]:
        item, _, pk = yield from self._get_item(key)
        if not item or not is_live(item, now):
            return None
        entry = to_entry(item, (yield from self._value_flow(item, key)), key)
        return self._with_pending(entry, pk, version_of(item))

    def _exists_flow(self, key: str, now: float) -> Flow[bool]:
        kn = self._key_name or self.key_name
        attributes = [kn, *EXPIRY_ATTRIBUTES, ORIGINAL_KEY]
        item, _, _ = yield from self._get_item(key, attributes=attributes)
        return bool(item) and is_live(item or {}, now)

    def _set_flow(self, key: str, value: Any, expiry: Expiry, now: float) -> Flow[None]:
        item = yield from self._item_flow(key, value, expiry, now)
        pk = item[self.key_name]["S"]
        owner = self._owner(key, pk)
        if owner is None:
            yield request("PutItem", {"TableName": self.table_name, "Item": item})
        elif not (yield from self._put_if(item, owner[0], now, owner[1])):
            raise self._collision(key, pk)
        self._forget(pk)
        yield from self._flush_due_flow()

    def _put_if(
        self,
        item: Item,
        cond: str,
        now: float,
        values: Mapping[str, Any] | None = None,
        *,
        once: tuple[str, str] | None = None,
    ) -> Flow[bool]:
        """PutItem under ``cond`` (which may use ``#pk``, ``:now`` and ``values``); False if
        it failed.

        ``once`` is ``(operation, storage key)`` for a write that must apply at most once
        (``add``): the item carries a fresh ``requestId`` and a lost reply is resolved by
        reading it back (:meth:`_recorded`), never by a blind re-send.
        """
        params = self._expr(cond, values={":now": num(now), **(values or {})})
        params.update(TableName=self.table_name, ConditionExpression=cond)
        try:
            if once is None:
                yield request("PutItem", {**params, "Item": item})
                return True
            rid = request_id()
            params["Item"] = {**item, REQUEST: {"S": rid}}
            reply = yield request("PutItem", params, once=True)
        except ConditionFailedError:
            return False
        if reply is None:
            yield from self._recorded(once[0], once[1], rid)
        return True

    def _add_flow(self, key: str, value: Any, expiry: Expiry, now: float) -> Flow[bool]:
        item = yield from self._item_flow(key, value, expiry, now)
        pk = item[self.key_name]["S"]
        cond, values = f"attribute_not_exists(#pk) OR {EXPIRED}", {}
        owner = self._owner(key, pk)
        if owner is not None:
            cond, values = f"({cond}) AND {owner[0]}", owner[1]
        else:  # another program's item at the key's own partition key is a miss: replaced
            own, values = self._own(key, pk)
            cond = f"{cond} OR NOT {own}"
        if not (yield from self._put_if(item, cond, now, values, once=("add", key))):
            if owner is not None:
                yield from self._check_owner(key, pk)
            return False
        self._forget(pk)
        yield from self._flush_due_flow()
        return True

    def _delete_flow(self, key: str, now: float) -> Flow[bool]:
        k, pk = self._key(key)
        own, values = self._own(key, pk)
        params = {"ConditionExpression": own, **self._expr(own, values=values)}
        sent = {"TableName": self.table_name, "Key": k, "ReturnValues": "ALL_OLD", **params}
        try:
            reply = yield request("DeleteItem", sent, once=True)
            if reply is None:
                # The reply was lost. Deleting twice removes nothing more, so the delete is
                # sent once more - but a blind re-send would answer False for the entry the
                # first send removed. What the second send finds tells: an item, so the first
                # did not land; nothing, and the answer cannot be known.
                reply = yield request("DeleteItem", sent, once=True)
                if reply is None or not reply.get("Attributes"):
                    raise self._delete_unknown(key)
            old = reply.get("Attributes")
        except ConditionFailedError:
            return False  # another key's hashed entry, or another program's: not ours
        self._forget(pk)
        yield from self._flush_due_flow()
        return bool(old) and is_live(old or {}, now)

    def _delete_if_equal_flow(self, key: str, value: Any, now: float) -> Flow[bool]:
        item, k, pk = yield from self._get_item(key, consistent=True)
        if not item or not is_live(item, now) or (yield from self._value_flow(item, key)) != value:
            return False
        cond, values = same_version(version_of(item))
        if VALUE in item:
            cond, values[":raw"] = f"#v = :raw AND {cond}", item[VALUE]
        owner = self._owner(key, pk)
        if owner is not None:
            cond = f"{cond} AND {owner[0]}"
            values.update(owner[1])
        params = self._expr(cond, values=values)
        params.update(TableName=self.table_name, Key=k, ConditionExpression=cond)
        for _ in range(_RESEND_ROUNDS):
            try:
                reply = yield request("DeleteItem", params, once=True)
            except ConditionFailedError:
                return False
            if reply is not None:
                self._forget(pk)
                return True
            # The reply was lost. While the very version read above is still stored, the
            # delete did not land, and sending it again is safe. Once the item is gone,
            # the entry that held `value` was removed - by this call, or by a delete of
            # that same entry racing it within one round trip: True either way, as the
            # caller's entry no longer exists. A newer version cannot tell: unknown.
            now_item, _, _ = yield from self._get_item(key, consistent=True, verify=False)
            if now_item is None:
                self._forget(pk)
                return True
            if version_of(now_item) != version_of(item):
                raise self._unknown("delete_if_equal", key)
        raise self._unknown("delete_if_equal", key)

    def _incr_flow(self, key: str, delta: int, now: float) -> Flow[int]:
        k, pk = self._key(key)
        original = key if pk != key else None
        rid = request_id()  # one per call: a round only repeats after a definite refusal
        base = (
            "SET #v = if_not_exists(#v, :zero) + :d, #up = :now, #cr = if_not_exists(#cr, :now),"
            " #rq = :rid"
        )
        if original is not None:
            base += ", #ok = :ok"
        # Counters are signed 64-bit (COUNTER_RANGE): a Number can go to 38 digits, so
        # the old value must leave room for the delta, or the update is refused.
        low = max(COUNTER_RANGE[0], COUNTER_RANGE[0] - delta)
        high = min(COUNTER_RANGE[-1], COUNTER_RANGE[-1] - delta)
        cond = (
            f"attribute_not_exists(#pk) OR ({LIVE} AND attribute_type(#v, :n)"
            " AND #v BETWEEN :lo AND :hi)"
        )
        cond = f"({cond}) AND {self._own(key, pk)[0]}"
        for _ in range(_INCR_ROUNDS):
            hits = self._take_hits(pk)
            update = base + (_ADD_HITS if hits else "")
            values = {
                ":zero": {"N": "0"},
                ":d": {"N": str(delta)},
                ":lo": {"N": str(low)},
                ":hi": {"N": str(high)},
                ":now": num(now),
                ":h": {"N": str(hits)},
                ":ok": {"S": original or ""},
                ":sk": {"S": key},
                ":rid": {"S": rid},
            }
            params = {
                "TableName": self.table_name,
                "Key": k,
                "UpdateExpression": update,
                "ConditionExpression": cond,
                # The item as it was: the counter is old + delta (exact: Number arithmetic),
                # and a refused fraction can be put back whole (_undo_fractional_incr).
                "ReturnValues": "ALL_OLD",
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                **self._expr(update, cond, values=values),
            }
            try:
                try:
                    result = yield request("UpdateItem", params, once=True)
                except CorruptEntryError:
                    # Another program's hitCount refused the ADD of the hits this round
                    # carried, and nothing was applied: the next round goes without them
                    # (see _update_with_hits).
                    if not hits:
                        raise
                    continue
                before: Item | None = None
                if result is None:  # the reply was lost: the item tells whether it landed
                    after = yield from self._recorded("incr", key, rid)
                else:
                    before = result.get("Attributes") or {}
                    after = _incremented(before, delta)
                yield from self._flush_due_flow()
                yield from self._undo_fractional_incr(k, after, delta, before, rid)
                return self._counter(key, after)
            except ConditionFailedError as exc:
                old = _old_item(exc)
                if old is None:
                    old, _, _ = yield from self._get_item(key, consistent=True, verify=False)
                if old is None:
                    continue  # deleted meanwhile: the next round creates it
                if not owns(old, key, self.key_name):
                    if self._owner(key, pk) is not None:
                        raise self._collision(key, pk) from None
                    # another program's item at the key's own partition key: replaced
                elif is_live(old, now):
                    current = _number_value(old)
                    if current is not None:
                        overflow = counter_overflow(self._user_key(key), current, delta)
                        if overflow is not None:
                            raise overflow from None
                    attr = old.get(VALUE)
                    raw = attr.get("B") if isinstance(attr, dict) else None
                    if raw is not None and not decodes_inline(raw):
                        # Decoded to name its type: a large value off the loop.
                        raise (yield off_loop(self._not_a_number, key, old)) from None
                    raise self._not_a_number(key, old) from None
            if (yield from self._reset(key, delta, now)):  # the old entry expired: start afresh
                return delta
        raise CacheBackendError(
            f"incr of key {self._user_key(key)!r:.80} kept conflicting with concurrent writes.",
            hint="retry the call; avoid mixing put() and incr() on one key under contention.",
        )

    def _reset(self, key: str, delta: int, now: float) -> Flow[bool]:
        """Replace an expired entry by a fresh counter, unless someone else rewrote it."""
        item = build_item(
            self.key_name, key, {"N": str(delta)}, Expiry(), now, namespace=self.namespace
        )
        pk = item[self.key_name]["S"]
        owner = self._owner(key, pk)
        once = ("incr", key)
        if owner is None:  # another program's item there is replaced, as an expired one
            own, values = self._own(key, pk)
            cond = f"{EXPIRED} OR NOT {own}"
            return (yield from self._put_if(item, cond, now, values, once=once))
        return (
            yield from self._put_if(item, f"{EXPIRED} AND {owner[0]}", now, owner[1], once=once)
        )

    def _counter(self, key: str, item: Item) -> int:
        """The counter an incr left in ``item`` (read back after a lost reply, too)."""
        attr = item.get(VALUE)
        if not isinstance(attr, dict) or "N" not in attr:
            raise self._not_a_number(key, item)
        try:
            return int(attr["N"])
        except (TypeError, ValueError):
            raise self._not_a_number(key, item) from None

    def _not_a_number(self, key: str, item: Item) -> CacheValueError:
        if VALUE not in item:
            held = "dict (an item without a value attribute)"
        else:
            try:
                value = decode_value(item, self.codec, key)
            except CacheError:
                value = held = "undecodable value"
            else:
                held = type(value).__name__
            if type(value) is int:  # stored as codec bytes, not as a Number a counter is
                held = (
                    "int stored as codec bytes"
                    if value in COUNTER_RANGE
                    else "int outside the signed 64-bit range of counters"
                )
        return not_an_int(self._user_key(key), held)

    def _touch_flow(self, key: str, expiry: Expiry, now: float) -> Flow[bool]:
        k, pk = self._key(key)
        attrs = expiry_attrs(expiry, now)
        by_attr = {attr: ph for ph, attr in PLACEHOLDERS.items()}
        sets = ["#up = :now"]
        hits = self._take_hits(pk)
        values: dict[str, Any] = {":now": num(now), ":h": {"N": str(hits)}}
        for attr, value in attrs.items():
            ph = by_attr[attr]
            sets.append(f"{ph} = :{ph[1:]}")
            values[f":{ph[1:]}"] = value
        removed = [by_attr[a] for a in ("deadline", "timeToLive", "expiresAt", "idleTime")]
        removed = [ph for ph in removed if PLACEHOLDERS[ph] not in attrs]
        update = "SET " + ", ".join(sets)
        if removed:
            update += " REMOVE " + ", ".join(removed)
        if hits:
            update += _ADD_HITS
        own, owner_values = self._own(key, pk)
        cond = f"attribute_exists(#pk) AND {LIVE} AND {own}"
        values.update(owner_values)
        try:
            yield from self._update_with_hits(k, update, cond, values)
        except ConditionFailedError:
            return False
        yield from self._flush_due_flow()
        return True

    # ------------------------------------------------------------------ scans

    def _scan_params(self, flt: KeyFilter, now: float, *, keys_only: bool) -> dict[str, Any]:
        live = f"{LIVE} AND {ENTRY} AND {OWNED}"  # internal and foreign items are not entries
        filt = f"(begins_with(#pk, :p) OR begins_with(#ok, :p)) AND {live}" if flt.prefix else live
        params: dict[str, Any] = {
            "TableName": self.table_name,
            "FilterExpression": filt,
            "ConsistentRead": self._consistent,
        }
        exprs = [filt]
        if keys_only:
            params["ProjectionExpression"] = "#pk, #ok, #dl, #ttl, #lttl"
            exprs.append(params["ProjectionExpression"])
            # A 1 MB page of keys is ~25,000 items, ~20 MB once botocore has parsed them:
            # smaller pages keep the client's memory flat whatever the table size.
            params["Limit"] = SCAN_PAGE_ITEMS
        values = {":p": {"S": flt.prefix}, ":now": num(now), ":hashed": self._hashed}
        params.update(self._expr(*exprs, values=values))
        return params

    def _filter(self, flt: KeyFilter) -> KeyFilter:
        """The filter as this layout matches it (Lucee's: case-insensitive)."""
        return flt

    def _list_params(self, flt: KeyFilter, now: float) -> dict[str, Any]:
        """The key-only Scan that lists the entries ``flt`` may select."""
        return self._scan_params(flt, now, keys_only=True)

    def _listed(self, item: Item, flt: KeyFilter, now: float) -> tuple[dict[str, Any], str] | None:
        """``(DynamoDB key, storage key)`` of a scanned item ``flt`` selects, else None."""
        kn = self.key_name
        storage_key = consistent_key(item, kn)  # None: a forged originalKey
        if storage_key is None or not flt.matches(storage_key) or not is_live(item, now):
            return None
        return {kn: item[kn]}, storage_key

    def _listed_flow(self, flt: KeyFilter, now: float) -> Stream[tuple[dict[str, Any], str]]:
        """Stream ``(DynamoDB key, storage key)`` of live items selected by ``flt``."""
        yield Call("ready")  # the async shell bootstraps the table off the loop
        flt = self._filter(flt)
        with closing(scan_pages(self._list_params(flt, now), self._segments)) as pages:
            while (batch := (yield from pull(pages))) is not None:
                items = (item for page in batch for item in page.get("Items", []))
                yield Emit([x for item in items if (x := self._listed(item, flt, now))])

    @property
    def _segments(self) -> int:
        return int(self.settings["scanSegments"])

    def _scan_flow(self, flt: KeyFilter, now: float) -> Stream[str]:
        with closing(self._listed_flow(flt, now)) as listed:
            while (batch := (yield from pull(listed))) is not None:
                yield Emit([storage_key for _, storage_key in batch])

    def _count_params(self, flt: KeyFilter, now: float) -> dict[str, Any] | None:
        """A server-side ``Select=COUNT`` Scan for ``flt``, or None to count listed keys."""
        if not flt.prefix_only:  # only the prefix is server-side: match the rest here
            return None
        return self._scan_params(flt, now, keys_only=False)

    def _count_flow(self, flt: KeyFilter, now: float) -> Flow[int]:
        yield Call("ready")
        params = self._count_params(flt, now)
        if params is None:
            return (yield from super()._count_flow(flt, now))  # the listed keys, counted
        counted = 0
        with closing(scan_pages({**params, "Select": "COUNT"}, self._segments)) as pages:
            while (batch := (yield from pull(pages))) is not None:
                counted += sum(int(page.get("Count", 0)) for page in batch)
        return counted

    def _clear_flow(self, flt: KeyFilter, now: float) -> Flow[int]:
        return (yield from self._delete_listed(self._listed_flow(flt, now)))

    def _delete_listed(self, listed: Stream[tuple[dict[str, Any], str]]) -> Flow[int]:
        """Delete the items a scan lists (``(DynamoDB key, storage key)``), 25 per
        BatchWriteItem, as the scan goes: one batch of keys is held at a time."""
        removed = 0
        with closing(rebatched(listed, 25)) as batches:
            while (batch := (yield from pull(batches))) is not None:
                removed += yield from self._delete_items([key for key, _ in batch])
        return removed

    def _delete_items(self, keys: list[dict[str, Any]]) -> Flow[int]:
        """Delete the items of up to 25 DynamoDB keys listed by a scan."""
        kn = self.key_name
        self._forget(*(key[kn]["S"] for key in keys))
        requests = [{"DeleteRequest": {"Key": key}} for key in keys]
        return (yield from write_batches(self.table_name, requests))

    def _get_all_flow(self, flt: KeyFilter, now: float) -> Flow[dict[str, Any]]:
        """``get_all`` that skips undecodable entries instead of failing as a whole (#18):
        the keys in chunks of ``CONVERT_CHUNK``, each read by ``tolerant_chunk``."""
        from .lucee import CONVERT_CHUNK, tolerant_chunk

        result: dict[str, Any] = {}
        strip = len(self.namespace)
        with closing(rebatched(self._scan_flow(flt, now), CONVERT_CHUNK)) as keys:
            while (chunk := (yield from pull(keys))) is not None:
                for sk, value in (yield from tolerant_chunk(self, list(chunk), now)).items():
                    result[sk[strip:]] = value
        return result

    def _get_all(self, flt: KeyFilter, now: float) -> dict[str, Any]:
        return self._drive(self._get_all_flow(flt, now))

    async def _aget_all(self, flt: KeyFilter, now: float) -> dict[str, Any]:
        return await self._adrive(self._get_all_flow(flt, now))

    # ------------------------------------------------------------------ batches

    def _read_projection(self, kn: str) -> dict[str, Any]:
        """BatchGetItem parameters asking only for :func:`.items.read_attributes`."""
        cached = self._projection
        if cached is None or cached[0] != kn:  # the key name changes only on re-bootstrap
            attributes = read_attributes(kn, versions=self.counts_hits)
            self._projection = cached = (kn, {"AttributesToGet": attributes})
        return cached[1]

    def _get_many_flow(self, keys: list[str], now: float) -> Flow[dict[str, Any]]:
        kn = self.key_name
        storage: dict[str, str] = {}
        for storage_key in keys:
            storage[self._pk(storage_key)] = storage_key
        found: dict[str, Any] = {}
        large: list[tuple[str, bytes]] = []  # decoded off the loop, all in one step
        plain: list[tuple[str, Version]] = []
        idle: list[tuple[str, Item]] = []
        loads = self.codec.loads
        counting = self.counts_hits
        requested = [{kn: {"S": pk}} for pk in storage]
        projection: dict[str, Any] | None = self._read_projection(kn)
        # Reads ask only for what they need. An item without ``value`` (dual access) reads
        # as a dict of *all* its attributes: those few are read again in full, in a second
        # round of BatchGetItem.
        while requested:
            foreign: list[dict[str, Any]] = []
            items = yield from get_batches(
                self.table_name, requested, consistent=self._consistent, projection=projection
            )
            began = perf_counter()
            for i, item in enumerate(items):
                if i and stretch_due(began):
                    yield YIELD_LOOP  # the async shell's loop runs others between stretches
                    began = perf_counter()
                pk = item[kn]["S"]
                found_key = storage.get(pk)
                # owns() and is_live() inlined for the common item (its own partition key,
                # no expiry): this loop is most of the client CPU cachehub adds to the batch.
                if found_key is None:
                    continue
                original = item.get(ORIGINAL_KEY)
                if original is None:
                    if pk != found_key:
                        continue
                elif original.get("S") != found_key:
                    continue
                expiring = DEADLINE in item or TTL in item or LUCEE_TTL in item
                if expiring and not is_live(item, now):
                    continue
                raw = item.get(VALUE)
                if raw is not None and "B" in raw:
                    if decodes_inline(raw["B"]):
                        found[found_key] = loads(raw["B"], found_key)
                    else:
                        large.append((found_key, raw["B"]))
                elif raw is None and projection is not None:
                    foreign.append({kn: item[kn]})
                    continue
                else:
                    found[found_key] = decode_value(item, self.codec, found_key)
                if IDLE in item:
                    idle.append((pk, item))
                elif counting:
                    plain.append((pk, version_of(item)))
            requested, projection = foreign, None
        if large:  # before any read is counted or slid: a cancel here leaves none
            found.update((yield off_loop(self._loads_large, large)))
        if plain:
            self._hits.count_many(plain, now)
        for pk, item in idle:
            yield from self._slide(pk, {kn: item[kn]}, item, now, versioned=counting)
        return found

    def _set_many_flow(self, items: dict[str, Any], expiry: Expiry, now: float) -> Flow[None]:
        kn = self.key_name
        shared = fresh_attrs(expiry, now)  # the same stamp and expiry for the whole batch
        built = []
        began = perf_counter()
        for i, (key, value) in enumerate(items.items()):
            if i and stretch_due(began):
                yield YIELD_LOOP  # the async shell's loop runs others between stretches
                began = perf_counter()
            item = yield from self._item_flow(key, value, expiry, now, shared)
            if needs_owner_check(key, item[kn]["S"]):
                # conditional: never over another key
                yield from self._set_flow(key, value, expiry, now)
            else:
                built.append(item)
        # Forgotten first: a batch cancelled half-way must not leave stale counts behind.
        self._forget(*(i[kn]["S"] for i in built))
        yield from write_batches(self.table_name, [{"PutRequest": {"Item": i}} for i in built])
        yield from self._flush_due_flow()

    def _delete_many_flow(self, keys: list[str], now: float) -> Flow[int]:
        kn = self.key_name
        checked = [k for k in keys if needs_owner_check(k, self._pk(k))]
        if checked:  # conditional deletes, one by one: never another key's hashed entry
            done = set(checked)
            rest = [k for k in keys if k not in done]
            removed = 0
            for k in checked:
                removed += yield from self._delete_flow(k, now)
            if rest:
                removed += yield from self._delete_many_flow(rest, now)
            return removed
        pks = list(dict.fromkeys(self._pk(k) for k in keys))
        requested = [{kn: {"S": pk}} for pk in pks]
        projection = {"AttributesToGet": [kn, *EXPIRY_ATTRIBUTES, ORIGINAL_KEY]}
        # A key-only read first: BatchWriteItem cannot say which deleted items were live.
        found = yield from get_batches(
            self.table_name, requested, consistent=True, projection=projection
        )
        # Here every key is its own partition key (checked keys were deleted above).
        live = sum(1 for item in found if is_live(item, now) and owns(item, item[kn]["S"], kn))
        # Another program's item at a key (its originalKey names another) is a miss: kept.
        foreign = {item[kn]["S"] for item in found if not owns(item, item[kn]["S"], kn)}
        requests = [{"DeleteRequest": {"Key": k}} for k in requested if k[kn]["S"] not in foreign]
        self._forget(*pks)
        yield from write_batches(self.table_name, requests)
        yield from self._flush_due_flow()
        return live

    # ------------------------------------------------------------------ internal space: locks
    #
    # One item per lock (items.internal_key), marked ``cachehubInternal = lock``. Deadlines
    # are the writer's clock: with clocks skewed by at most S seconds, a lock may be taken
    # over up to S seconds early; the fence (``lockFence``, ADDed by every new holder)
    # lets a resource refuse the stale holder. See "Locks and clocks" in docs/dynamodb.md.

    def _lock_item(self, name: str) -> tuple[dict[str, Any], str]:
        pk, original = internal_key(self.namespace, name)
        return {self.key_name: {"S": pk}}, original

    def _lock_update(
        self, name: str, update: str, cond: str, values: dict[str, Any]
    ) -> Flow[tuple[dict[str, Any] | None, Item | None]]:
        """One conditional UpdateItem on a lock item: ``(new attributes, None)`` when it
        was applied, ``(None, the item as it was)`` when the condition failed."""
        key, original = self._lock_item(name)
        values = {**values, ":lock": _LOCK, ":ok": {"S": original}}
        params = {
            "TableName": self.table_name,
            "Key": key,
            "UpdateExpression": update,
            "ConditionExpression": cond,
            "ReturnValues": "UPDATED_NEW",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            **self._expr(update, cond, values=values),
        }
        try:
            reply = yield request("UpdateItem", params)
        except ConditionFailedError as exc:
            old = _old_item(exc)
            if old is None:
                read = {"TableName": self.table_name, "Key": key, "ConsistentRead": True}
                old = (yield request("GetItem", read)).get("Item")
            return None, self._checked_lock(name, old)
        return reply.get("Attributes", {}), None

    def _checked_lock(self, name: str, item: Item | None) -> Item | None:
        """``item`` if it is this lock's internal item (or None); else a typed error."""
        if item is None:
            return None
        _, original = self._lock_item(name)
        if item.get(INTERNAL) != _LOCK or item.get(ORIGINAL_KEY) != {"S": original}:
            raise CorruptEntryError(
                f"the DynamoDB item of lock {self._user_key(name)!r:.120} is not a cachehub "
                "lock item (another program wrote it).",
                hint="delete the item with dynamodb_command('DeleteItem', ...), or give the "
                "caches a namespace of their own.",
            )
        return item

    def _fence(self, name: str, item: Item) -> int:
        """The item's fence; a fence that is no whole Number is a typed error."""
        fence = _fence_number(item)
        if fence is not None and fence == fence.to_integral_value():
            return int(fence)
        raise CorruptEntryError(
            f"the DynamoDB item of lock {self._user_key(name)!r:.120} holds a fence that "
            "is not a whole number (another program wrote it).",
            hint="delete the item with dynamodb_command('DeleteItem', ...); the next "
            "holder starts a new fence above the old ones.",
        )

    @staticmethod
    def _lock_live(item: Item, token: str | None, now: float) -> bool:
        """Whether ``item`` is held (by ``token``, when given) at ``now``."""
        holder = item.get(LOCK_HOLDER, {}).get("S")
        until = num_of(item, LOCK_UNTIL)
        if until > now + LOCK_HORIZON:  # another program's: free, as acquire reads it
            return False
        return holder is not None and (token is None or holder == token) and now < until

    def _lock_acquire_flow(self, name: str, token: str, ttl: float, now: float) -> Flow[int | None]:
        until = now + ttl
        holding = "SET #holder = :t, #lu = :until, #int = :lock, #ok = :ok, #ttl = :gone, "
        # Free: no holder, or its lockUntil is past, missing, no Number or beyond
        # LOCK_HORIZON (another program's item must not block the lock forever). Never
        # for the token that released it last: that request arrived after its give-back.
        free = (
            "(attribute_not_exists(#pk) OR (#int = :lock AND #ok = :ok AND "
            "(NOT attribute_type(#lu, :n) OR #lu > :far OR "
            "attribute_not_exists(#holder) OR #lu <= :now) AND "
            "(attribute_not_exists(#rel) OR #rel <> :t)))"
        )
        values = {
            ":t": {"S": token},
            ":far": num(now + LOCK_HORIZON),
            ":until": num(until),
            ":gone": {"N": str(math.ceil(until + LOCK_GRACE))},
            ":now": num(now),
            ":one": {"N": "1"},
            ":top": _top(now),
        }
        # A fence no cachehub writer produces (see _restarted_fence) is never added to:
        # + 1 on 9.9E+125 overflows DynamoDB's 38 digits, and would fail every acquire.
        ours = f"(attribute_not_exists(#fence) OR {_FENCE_IN_REACH})"
        update = holding + "#fence = if_not_exists(#fence, :base) + :one REMOVE #rel"
        values[":base"] = {"N": str(_clock_fence(now))}  # a new item: above old fences
        new, old = yield from self._lock_update(name, update, f"{free} AND {ours}", values)
        if new is None and old is not None and not self._lock_live(old, None, now):
            # Free, with a fence no cachehub writer produces: restart it from the clock.
            update = holding + "#fence = :fence REMOVE #rel"
            values[":fence"] = {"N": str(_restarted_fence(old, now))}
            cond = f"{free} AND NOT {_FENCE_IN_REACH}"
            new, old = yield from self._lock_update(name, update, cond, values)
        if new is None and old is not None and self._lock_live(old, token, now):
            new = old  # this token's own lock: a retried request, answered with its fence
        if new is None:
            return None
        fence = _fence_number(new)
        if _in_reach(fence, now) and fence == fence.to_integral_value():
            return int(fence)
        # A fraction within reach (1.5 + 1: DynamoDB's conditions cannot tell it from a
        # whole Number), or one planted since: the lock is this token's, its fence replaced.
        return (yield from self._refenced_flow(name, token, new, now))

    def _refenced_flow(self, name: str, token: str, new: Item, now: float) -> Flow[int | None]:
        """Replace the fence of the lock this token holds by a whole one in reach."""
        fence = _restarted_fence(new, now)
        values = {":t": {"S": token}, ":now": num(now), ":fence": {"N": str(fence)}}
        done, old = yield from self._lock_update(
            name, "SET #fence = :fence", HELD_BY_HOLDER, values
        )
        if done is not None:
            return fence
        if old is not None and self._lock_live(old, token, now):
            return self._fence(name, old)
        return None

    def _lock_release_flow(self, name: str, token: str, now: float) -> Flow[bool]:
        update = "SET #rel = :t, #ttl = :gone REMOVE #holder, #lu"
        cond = HELD_BY_HOLDER
        values = {
            ":t": {"S": token},
            ":gone": {"N": str(math.ceil(now + LOCK_GRACE))},
            ":now": num(now),
        }
        new, old = yield from self._lock_update(name, update, cond, values)
        if new is not None:
            return True
        return old is not None and old.get(LOCK_RELEASED) == {"S": token}  # a retry

    def _lock_extend_flow(self, name: str, token: str, ttl: float, now: float) -> Flow[bool]:
        until = now + ttl
        update = "SET #lu = :until, #ttl = :gone"
        cond = HELD_BY_HOLDER
        values = {
            ":t": {"S": token},
            ":until": num(until),
            ":gone": {"N": str(math.ceil(until + LOCK_GRACE))},
            ":now": num(now),
        }
        new, _ = yield from self._lock_update(name, update, cond, values)
        return new is not None

    def _lock_holder_flow(self, name: str, now: float) -> Flow[str | None]:
        key, _ = self._lock_item(name)
        read = {"TableName": self.table_name, "Key": key, "ConsistentRead": True}
        reply = yield request("GetItem", read)
        item = self._checked_lock(name, reply.get("Item"))
        if item is None or not self._lock_live(item, None, now):
            return None
        return str(item[LOCK_HOLDER]["S"])

    def _internal_params(self) -> dict[str, Any]:
        """The Scan listing this namespace's internal (lock) items."""
        filt = "#int = :lock AND begins_with(#ok, :p)"
        values = {":lock": _LOCK, ":p": {"S": self.namespace + "\x00"}}
        return {
            "TableName": self.table_name,
            "FilterExpression": filt,
            "ProjectionExpression": "#pk, #ok",
            "ConsistentRead": True,
            "Limit": SCAN_PAGE_ITEMS,
            **self._expr(filt, "#pk, #ok", values=values),
        }

    def _internal_of_ours(self, item: Item) -> bool:
        """Whether a scanned internal item is this namespace's (not one that starts with
        this one and a NUL)."""
        ns, kn = self.namespace, self.key_name
        return internal_key(ns, ns + _original(item)[len(ns) + 1 :]) == (
            item[kn].get("S"),
            _original(item),
        )

    def _internal_listed_flow(self) -> Stream[tuple[dict[str, Any], str]]:
        """``(DynamoDB key, original key)`` of this namespace's internal (lock) items."""
        yield Call("ready")
        kn = self.key_name
        with closing(scan_pages(self._internal_params(), self._segments)) as pages:
            while (batch := (yield from pull(pages))) is not None:
                items = (item for page in batch for item in page.get("Items", []))
                ours = [item for item in items if self._internal_of_ours(item)]
                yield Emit([({kn: item[kn]}, _original(item)) for item in ours])

    def _clear_internal_flow(self, now: float) -> Flow[int]:
        return (yield from self._delete_listed(self._internal_listed_flow()))

    # ------------------------------------------------------------------ DynamoDBCommand

    def command(self, action: str, data: Mapping[str, Any] | None = None) -> Any:
        """Run a DynamoDB action on this cache's table (Lucee's ``DynamoDBCommand``).

        See :func:`cachehub_dynamodb.dynamodb_command` for the actions and parameters.
        """
        from .command import run_command

        return run_command(self, action, data or {})

    # ------------------------------------------------------------------ incr on fractions

    def _undo_fractional_incr(
        self, k: Item, item: Item, delta: int, before: Item | None, rid: str
    ) -> Flow[None]:
        """Take back an incr that landed on a fractional Number (``1.5`` -> ``2.5``).

        DynamoDB's conditions cannot tell an integer Number from a fraction, so an item
        another writer (Lucee, DynamoDBCommand) left as ``N 1.5`` passes incr's check and
        is added to. The item is put back as it was ``before`` - value, stamps and request
        id - while this incr's request id is still on it (a later write is never
        overwritten); :meth:`_counter` then raises the typed error. After a lost reply
        (``before`` unknown) only the value is restored. Integers, the normal case, cost
        nothing here.
        """
        attr = item.get(VALUE)
        if not isinstance(attr, dict) or "N" not in attr:
            return
        try:
            written = Decimal(attr["N"])
        except ArithmeticError:
            return
        if written == written.to_integral_value():
            return
        values: dict[str, Any] = {":old": {"N": str(written - delta)}, ":rid": {"S": rid}}
        sets, removed = ["#v = :old"], []
        if before is not None:
            for ph, attribute in (("#up", MODIFIED), ("#cr", CREATED), ("#rq", REQUEST)):
                if attribute in before:
                    sets.append(f"{ph} = :was{ph[1:]}")
                    values[f":was{ph[1:]}"] = before[attribute]
                else:
                    removed.append(ph)
        update = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removed) if removed else "")
        yield from self._update_if(k, update, "#rq = :rid", values)

    def _update_if(
        self, key: dict[str, Any], update: str, cond: str, values: dict[str, Any]
    ) -> Flow[None]:
        """One conditional UpdateItem whose failed condition is an answer, not an error:
        the item changed meanwhile, and the newer version stands."""
        try:
            yield from self._update_with_hits(key, update, cond, values)
        except ConditionFailedError:
            return

    def _update_with_hits(
        self, key: dict[str, Any], update: str, cond: str, values: dict[str, Any]
    ) -> Flow[Any]:
        """One conditional UpdateItem that may carry pending hits (``ADD #hc :h``).

        DynamoDB refuses the whole update when the ADD fails: another program's hitCount
        of 38 digits (one more overflows) or of another type (CorruptEntryError, see
        .errors). The update is then sent once more without the hits, which are dropped
        (``metadata()`` reports the count): the slide, touch or incr they rode on is not
        lost with them.
        """

        def params(expression: str) -> dict[str, Any]:
            return {
                "TableName": self.table_name,
                "Key": key,
                "UpdateExpression": expression,
                "ConditionExpression": cond,
                **self._expr(expression, cond, values=values),
            }

        try:
            return (yield request("UpdateItem", params(update)))
        except CorruptEntryError:
            if _ADD_HITS not in update:
                raise
        return (yield request("UpdateItem", params(update.replace(_ADD_HITS, ""))))

    # ------------------------------------------------------------------ info

    def _info(self, now: float) -> dict[str, Any]:
        """DescribeTable and DescribeTimeToLive: two requests, no scan.

        ``itemCount`` and ``sizeBytes`` are the table's, as DynamoDB reports them (it
        refreshes them about every six hours), across every namespace sharing it.
        """
        table = self._send_request("DescribeTable", TableName=self.table_name)["Table"]
        try:
            ttl = self._send_request("DescribeTimeToLive", TableName=self.table_name)
            ttl_desc: dict[str, Any] = ttl.get("TimeToLiveDescription", {})
        except CachePermissionError:
            ttl_desc = {"TimeToLiveStatus": "unknown (dynamodb:DescribeTimeToLive is denied)"}
        billing = table.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED")
        facts: dict[str, Any] = {
            "endpoint": self.endpoint,
            "region": self.region,
            "table": self.table_name,
            "tableStatus": table.get("TableStatus"),
            "itemCount": table.get("ItemCount"),
            "sizeBytes": table.get("TableSizeBytes"),
            "keySchema": _key_schema(table.get("KeySchema", [])),
            "billingMode": billing,
            "ttlStatus": ttl_desc.get("TimeToLiveStatus"),
            "ttlAttribute": ttl_desc.get("AttributeName"),
            "indexes": [
                {
                    "name": index.get("IndexName"),
                    "kind": kind,
                    "status": index.get("IndexStatus", "ACTIVE"),
                    "keySchema": _key_schema(index.get("KeySchema", [])),
                }
                for kind, field_name in (
                    ("global", "GlobalSecondaryIndexes"),
                    ("local", "LocalSecondaryIndexes"),
                )
                for index in table.get(field_name, [])
            ],
        }
        if billing == "PROVISIONED":
            throughput = table.get("ProvisionedThroughput", {})
            facts["readCapacityUnits"] = throughput.get("ReadCapacityUnits")
            facts["writeCapacityUnits"] = throughput.get("WriteCapacityUnits")
        return facts


def _key_schema(schema: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"name": str(k.get("AttributeName")), "type": str(k.get("KeyType"))} for k in schema]


_FENCE_IN_REACH: Final = "(attribute_type(#fence, :n) AND #fence >= :one AND #fence < :top)"
"""Condition: the fence is one a cachehub writer can have produced and add one to (see
:func:`_top`)."""


def _clock_fence(now: float) -> int:
    """The writer's clock in microseconds: where a lock item's fence starts."""
    return int(now * 1_000_000)


def _top(now: float) -> dict[str, str]:
    """The highest fence a cachehub writer can have produced, as a DynamoDB Number.

    Fences start at the clock in microseconds and grow by one per holder, far slower than
    the clock; LOCK_GRACE covers the clock skew. A larger fence is another program's.
    """
    return {"N": str(_clock_fence(now + LOCK_GRACE))}


def _fence_number(item: Item) -> Decimal | None:
    """The item's fence as a finite Number, or None (missing, another type, NaN)."""
    try:
        fence = Decimal(str(item[LOCK_FENCE]["N"]))
    except (KeyError, TypeError, ArithmeticError):
        return None
    return fence if fence.is_finite() else None


def _in_reach(fence: Decimal | None, now: float) -> TypeGuard[Decimal]:
    """Whether ``fence`` lies where cachehub's fences do: above 0, at most :func:`_top`."""
    return fence is not None and 0 < fence <= Decimal(_top(now)["N"])


def _restarted_fence(item: Item, now: float) -> int:
    """The fence that replaces one no cachehub writer produces: the clock in microseconds
    plus one, as on a new lock item - or one above a fraction within reach of the clock,
    so the fence never goes down from a value a holder may have been given."""
    start = _clock_fence(now)
    fence = _fence_number(item)
    if _in_reach(fence, now):
        start = max(start, int(fence.to_integral_value(rounding=ROUND_FLOOR)))
    return start + 1


def num_of(item: Item, name: str) -> float:
    """A Number attribute of a lock item as a float (absent or unreadable: -inf, "past")."""
    try:
        return float(item[name]["N"])
    except (KeyError, TypeError, ValueError):
        return float("-inf")


def _original(item: Item) -> str:
    return str(item.get(ORIGINAL_KEY, {}).get("S", ""))


def _incremented(before: Item, delta: int) -> Item:
    """The item an incr left, from the item as it was (``ReturnValues: ALL_OLD``): its
    Number plus ``delta``, or ``delta`` where there was none (``if_not_exists``)."""
    attr = before.get(VALUE)
    old = attr.get("N") if isinstance(attr, dict) else None
    total = Decimal(old if isinstance(old, str) else 0) + delta
    return {**before, VALUE: {"N": str(total)}}


def _number_value(item: Item) -> int | None:
    """The integer a Number ``value`` attribute holds, or None (no Number, not an int).

    Read as DynamoDB writes Numbers, exponents included: another program's ``9.99E+125``
    is an int (outside any counter's range), not "not an int". One past the counter
    range stands for an int too long to be worth building.
    """
    attr = item.get(VALUE)
    if not isinstance(attr, dict) or not isinstance(attr.get("N"), str):
        return None
    try:
        number = Decimal(attr["N"])
    except ArithmeticError:
        return None
    if not number.is_finite() or number != number.to_integral_value():
        return None
    if number.adjusted() > 40:  # DynamoDB's own Numbers end at 10**126
        return COUNTER_RANGE.stop if number > 0 else COUNTER_RANGE.start - 1
    return int(number)


def _old_item(exc: ConditionFailedError) -> Item | None:
    """The item a failed conditional write returned (ReturnValuesOnConditionCheckFailure)."""
    cause = backend_error(exc)
    if isinstance(cause, ClientError):
        response: Any = cause.response
        item = response.get("Item")
        if item:
            return dict(item)
    return None


# The Lucee item layout subclasses DynamoDBCache, so the hook above imports it lazily;
# loaded with this module (which whatever first touches the class imports), a first
# get_all() or Lucee-format cache never imports (compiles, reads from disk) it on an
# event loop. Last, since lucee.py imports DynamoDBCache from here.
from . import lucee as _lucee  # noqa: E402, F401  isort: skip
