"""The Redis provider: one string per entry, native commands on the hot paths.

``get`` is one ``GETRANGE`` (a ``GET`` that stops after the largest entry the cache
reads, see ``maxValueSize``), ``put`` one ``SET ... PX``, ``get_many`` one
:data:`.scripts.READ_MANY` call and ``exists`` one ``GETRANGE`` of the header: one
command each, as hand-written redis-py code sends. A plain
read writes nothing; with ``hitCounts`` on, reads are counted in process and written back
in batches (:class:`cachehub.provider.RemoteCache`). An idle-time entry's read is written
at once: it slides the deadline for every client. Operations that must check an entry
before changing it are Lua scripts (:mod:`.scripts`).

Async (``cache.aio()``): the same commands through a ``redis.asyncio`` client per event
loop. A primitive of more than one step is written once, as a *flow* (``_*_flow``, see
:class:`cachehub.provider.Call`) that both shells drive; the I/O methods come in pairs
(``_command``/``_acommand``, ``_eval``/``_aeval``...), each sending one request.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Hashable, Iterator, Mapping, Sequence
from contextlib import closing
from itertools import compress
from operator import itemgetter
from time import perf_counter
from typing import Any, ClassVar, Final, TypeAlias, cast

from redis import exceptions as rx

from cachehub import provider
from cachehub.codec import PAYLOAD_OVERHEAD
from cachehub.config import LuceeOption
from cachehub.filters import WILDCARDS, compile_filter
from cachehub.provider import (
    COUNTER_RANGE,
    FIRST_STRETCH,
    HIT_OPTIONS,
    INFLATION,
    MISSING,
    NO_EXPIRY,
    OFF_LOOP_BYTES,
    ON_LOOP,
    YIELD_LOOP,
    CacheError,
    CacheUnavailableError,
    CacheValueError,
    Call,
    CancelWatch,
    CorruptEntryError,
    Emit,
    Entry,
    Expiry,
    Flow,
    FlowCache,
    KeyFilter,
    Option,
    PendingHits,
    Stream,
    batch_limit,
    decoded,
    decodes_inline,
    encoded,
    heavy,
    not_an_int,
    off_loop,
    pull,
    rebatched,
    stretched,
)

from . import scripts as lua
from .connection import (
    LUCEE_OPTIONS,
    OPTIONS,
    ConnectionPlan,
    abandon_async_client,
    acquire_client,
    build_async_client,
    plan_connection,
    release_client,
    sentinel_clients,
)
from .dispatch import (
    LOOP_MAX_KEYS,
    MAX_KEYS,
    RETRYABLE,
    AsyncClient,
    Client,
    Command,
    Key,
    aevalsha,
    as_eval,
    asend,
    evalsha,
    is_cluster,
    send,
    split,
)
from .dispatch import Call as ScriptCall
from .entry import (
    DOUBLE,
    FOREVER,
    HEADER_SIZE,
    INT,
    KIND_CODEC,
    KIND_INT,
    MAGIC,
    Header,
    Offsets,
    common_head,
    corrupt,
    oversized,
    pack,
    pxat,
    sound_stamps,
    unpack,
)
from .errors import REDIS_ERRORS, RedisPermissionError, translate
from .records import record_key, record_ms, request_id
from .scripts import LuaScript

__all__ = ["RedisCache", "acl_key_rule", "redis_glob"]

_INT64: Final = COUNTER_RANGE
"""Ints stored natively (kind INT): the signed 64 bits Redis counts in, as every counter."""
_SCAN_COUNT: Final = 1000
"""Keys per SCAN page (COUNT, a hint) and per checked scan batch; the async shell's SCAN
pages are smaller (:data:`.dispatch.LOOP_MAX_KEYS`, see :func:`batch_limit`)."""
ScanState: TypeAlias = dict[str | None, int]
"""The SCAN cursors still to follow: per node name in a cluster, else one (name None).
None before the first page; empty once every node's scan is complete."""
_GLOB_SPECIALS: Final = frozenset("*?[]\\")
_NAN: Final = float("nan")
_NO_TTL: Final = ""
"""Script argument for "no TTL" (and "no now": the server decides)."""
_CREATED: Final = slice(Offsets.CREATED, Offsets.MODIFIED)
"""The created stamp's bytes: the entry version that counted reads belong to."""
_EXPIRES: Final = Offsets.EXPIRES
"""Where the expiry policy bytes (expiry, idle) start: FOREVER there = never expires."""
_PLAIN: Final = bytes((MAGIC, KIND_CODEC))
"""The first two header bytes of an entry holding codec bytes."""
_PLAIN_END: Final = bytes((MAGIC, KIND_CODEC + 1))
"""The least string greater than every string starting with :data:`_PLAIN`."""
_UNCOMMON: Final = object()
"""What :meth:`RedisCache._read_common` returns for an entry its fast path does not read."""
_POLICY: Final = itemgetter(slice(_EXPIRES, HEADER_SIZE))
"""An entry's expiry policy bytes, cut by a C-level callable (``map`` over a batch)."""
_STAMP: Final = itemgetter(_CREATED)
INTERNAL: Final = b"\xff"
"""Separates the namespace from an internal key (a lock): ``<namespace>\\xff<lock id>``.
The byte 0xFF never occurs in UTF-8, so no user key can spell an internal key, scans
(which decode keys as UTF-8 and ask for strings) never return one, and ``clear()`` never
removes one. Locks are hashes, see :data:`.scripts.LOCK_ACQUIRE`."""
LOCK_GRACE_MS: Final = 60_000
"""How long a lock's hash outlives its last holding (keeps its fence counting up)."""


def _escape_glob(literal: str) -> str:
    return "".join("\\" + ch if ch in _GLOB_SPECIALS else ch for ch in literal)


def acl_key_rule(namespace: str) -> str:
    """The ACL key pattern (``ACL SETUSER ... ~<pattern>``) of a namespace's keys: its
    entries, their request records and its locks all start with the namespace."""
    return f"~{_escape_glob(namespace)}*"


def _glob_stars(flt: KeyFilter) -> int:
    """How many ``*`` of the full Redis glob are followed by more pattern.

    Redis before 6.2.11 / 7.0.9 matches globs by recursion that retries every star at
    every position: ``k`` such stars cost ``O(n**k)`` on an ``n``-byte key, a stall of
    the whole server. Even one such star is ``O(n * m)`` on every version (``m``: the
    pattern after it), over every name the scan passes, and names are another program's
    to choose: one planted 8 MB name stalled the server 4 s for a 200-character filter.
    Only a trailing star is answered at once.
    """
    stars = sum(1 for t in flt.tokens if t in WILDCARDS)
    return stars - (flt.tokens[-1] == "*")


def redis_glob(flt: KeyFilter) -> str:
    """The ``SCAN MATCH`` pattern selecting (a superset of) the keys ``flt`` matches.

    Redis matches bytes: its ``?`` is one byte, while the filter's ``?`` is one character
    (up to 4 UTF-8 bytes), so ``?`` becomes ``*`` and the filter itself decides. A pattern
    with a star followed by more pattern (see :func:`_glob_stars`) is pushed down as its
    literal prefix only; the client then matches the rest in linear time
    (:meth:`cachehub.filters.KeyFilter.matches`).
    """
    if _glob_stars(flt):
        return _escape_glob(flt.prefix) + "*"
    body = "".join("*" if t in WILDCARDS else _escape_glob(t) for t in flt.tokens)
    return _escape_glob(flt.namespace) + body


def _exact_glob(flt: KeyFilter) -> bool:
    """Whether :func:`redis_glob` selects exactly the filter's keys (literals and ``*``).

    UTF-8 literals compared byte by byte can only match at character boundaries, so
    without ``?`` the byte-level glob and the character-level filter agree - when the
    whole pattern was pushed down, not just its prefix.
    """
    return "?" not in flt.tokens and not _glob_stars(flt)


def _wrong_type(exc: rx.ResponseError) -> bool:
    """Whether a command failed only because the key holds another Redis type."""
    return str(exc).startswith("WRONGTYPE")


def _relative_ms(deadline: float, now: float) -> int:
    """Milliseconds from ``now`` to ``deadline``, rounded up (never early), at least 1."""
    return max(1, math.ceil((deadline - now) * 1000))


class RedisCache(FlowCache[Client]):
    """A cache on Redis: a single server, a Redis Cluster, or a Sentinel-managed primary.

    Each entry is one string: a 50-byte header (timestamps, hit count, expiry) and the
    value (see :mod:`cachehub_redis.entry` and docs/redis.md). Every operation is one
    round trip, batches included (one per node in a cluster). The client is created
    lazily on first use and shared by all threads (redis-py pools).
    """

    options: ClassVar[tuple[Option, ...]] = (*OPTIONS, *HIT_OPTIONS)
    lucee_options: ClassVar[tuple[LuceeOption, ...]] = LUCEE_OPTIONS
    backend_errors: ClassVar[tuple[type[Exception], ...]] = REDIS_ERRORS
    lock_clock: ClassVar[str] = "server"
    loop_batch_limit: ClassVar[int | None] = LOOP_MAX_KEYS

    def __init__(self, settings: Any = None, /, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        where = f"cache '{self.name}' ({type(self).__name__})"
        self._plan: ConnectionPlan = plan_connection(self.settings, where)
        self._record_ms = record_ms(self.settings)  # 0: never re-sent, nothing to record
        # Whose clock decides expiry (docs/redis.md, "Time and clocks"): the server's, with
        # relative TTLs; a cache given its own clock= (tests, simulations) decides by that
        # clock instead, with absolute deadlines, so expiry is testable without sleeping.
        self._judge = kwargs.get("clock") is not None
        self._ttl_cmd = "PXAT" if self._judge else "PX"
        # Bound once: the hot paths below run for every get/put.
        self._dumps = self.codec.dumps
        self._loads = self.codec.loads
        self._eviction_checked = False
        # Reads stop one byte past the largest entry this cache accepts, on the server
        # (GETRANGE): a planted string of any size costs at most that much to download,
        # and the extra byte tells it from one of exactly the largest size.
        self._most = self.codec.max_value_size + PAYLOAD_OVERHEAD
        self._read_end = HEADER_SIZE + self._most
        # GETRANGE's bounds as redis-py would encode them, once: its encoder runs a chain
        # of isinstance checks and a repr() per int argument of every command (6,400 of
        # the 29,000 client instructions a get hit added to a GET, docs/benchmarks.md).
        self._read_to = b"%d" % self._read_end
        # Longest entry whose value is decoded where it is read, whatever its payload (a
        # compressed one weighs INFLATION times its size); a longer one is decoded there
        # when decodes_inline() says so, else by an off_loop step (a worker thread in the
        # async shell). The length alone settles the usual small entry.
        self._inline_end = min(self._read_end, HEADER_SIZE + OFF_LOOP_BYTES // INFLATION - 1)

    @classmethod
    def backend_identity(cls, settings: Mapping[str, Any]) -> Hashable:
        """The server (or cluster, or Sentinel service) and database these settings use.

        ``url`` and ``host``/``port``/``db`` spellings of one server are equal, as are
        ``localhost``, ``127.0.0.1`` and ``::1``.
        """
        return plan_connection(dict(settings), f"cache class {cls.__name__}").store

    # ------------------------------------------------------------------ connection

    @property
    def endpoint(self) -> str:
        """Where this cache connects, safe to show (never includes a password)."""
        return self._plan.endpoint

    def _connect(self) -> Client:
        self.log.debug("cache '%s': connecting to Redis at %s", self.name, self.endpoint)
        return acquire_client(self._plan, self.settings["retries"])

    def _interrupted(self, client: Client) -> bool:
        # redis-py is not interrupt-safe: an interrupt between sending a command and
        # reading its reply gives the connection back to the pool with the reply unread
        # (the next command on it read that reply: a get answered another key's value),
        # and one inside the pool's own get_connection/release leaves a connection counted
        # in use, which after some thousand interrupts exhausted the pool for good.
        return True

    def _disconnect(self, client: Client) -> None:
        release_client(self._plan, self.settings["retries"], client)

    async def _aconnect(self) -> AsyncClient:
        self.log.debug("cache '%s': async client for Redis at %s", self.name, self.endpoint)
        client = build_async_client(self._plan, self.settings["retries"])
        if self._plan.mode == "cluster":
            # The topology is learnt with the client (off the loop, .topology), which
            # every task of the loop awaits: a command sent before it is known goes to a
            # random node and comes back MOVED, and five of those rebuild the whole
            # slot table in one loop callback (redis-py's reinitialize_steps).
            try:
                await cast(Any, client).initialize()
            except BaseException:
                # Not kept by anyone: closed here (a failed or cancelled build).
                with contextlib.suppress(Exception):
                    await self._adisconnect(client)
                raise
        return client

    def _abandon(self, client: AsyncClient) -> None:
        abandon_async_client(client)

    async def _adisconnect(self, client: AsyncClient) -> None:
        await super()._adisconnect(client)
        # Through Sentinel, the Sentinels' own clients too: each asyncio.run's client
        # left a connection to a Sentinel open for the collector to find.
        for sentinel in sentinel_clients(client):
            await super()._adisconnect(sentinel)

    def _translate(self, exc: Exception) -> CacheError:
        """The typed cachehub error for a redis-py error (secrets scrubbed)."""
        cluster = self._plan.mode == "cluster"
        key_rule = acl_key_rule(self.namespace)
        return translate(exc, self.endpoint, self._plan.secrets, key_rule, cluster)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ commands

    def _command(self, *args: Any) -> Any:
        """One native command; a key of another Redis type answers None (not an entry)."""
        with self._use() as client:
            try:
                return client.execute_command(*args)  # type: ignore[no-untyped-call]
            except REDIS_ERRORS as exc:
                self._unless_wrong_type(exc)
                return None

    def _memory(self) -> dict[str, Any] | None:
        """INFO memory (of one node), or None when this ACL user may not run INFO."""
        with self._use() as client:
            try:
                return _one_node(client.info("memory"))
            except REDIS_ERRORS as exc:
                _unless_refused(self._translate(exc))
                return None

    async def _amemory(self) -> dict[str, Any] | None:
        watch = CancelWatch()
        lease = self._ajoin() or await self._ause()
        with lease as client:
            try:
                reply = await client.info("memory")
            except REDIS_ERRORS as exc:
                watch.check(exc)
                _unless_refused(self._translate(exc))
                return None
        watch.check()
        return _one_node(reply)

    def _unless_wrong_type(self, exc: Exception) -> None:
        """Raise a native command's error as the typed cachehub error, unless the key only
        holds another Redis type: not an entry, which the command answers as None."""
        if not (isinstance(exc, rx.ResponseError) and _wrong_type(exc)):
            raise self._translate(exc) from None

    def _eval(self, script: LuaScript, key: Key, *args: Any) -> Any:
        """Run one script on one key: a single EVALSHA round trip."""
        with self._use() as client:
            return self._guarded(evalsha, client, script, (key,), args)

    def _eval_once(self, script: LuaScript, key: str, *args: Any) -> Any:
        """Run a non-idempotent script on one key, applied once even if re-sent.

        The call gets a request record key (see :mod:`.records`) that a re-send after a
        lost reply shares, and the record's lifetime as its last argument.
        """
        with self._use() as client:
            ms = self._record_ms
            keys: tuple[Key, ...] = (key,)
            if ms:
                keys = (key, record_key(key, request_id(), is_cluster(client)))
            return self._guarded(evalsha, client, script, keys, (*args, ms))

    def _with_record(self, group: list[Key], cluster: bool) -> list[Key]:
        """A batch call's keys plus its request record (see :mod:`.records`), when the
        client may re-send: the batch script then answers a re-send with the first
        attempt's outcome instead of applying (and counting) again."""
        if not self._record_ms:
            return group
        # The record shares the first key's slot: a batch call's keys share one.
        return [*group, record_key(cast(str, group[0]), request_id(), cluster)]

    def _send(self, commands: Sequence[Command]) -> list[Any]:
        """Several commands in one round trip (one per node in a cluster); error replies
        come back in place (see :meth:`_batch_flow`)."""
        with self._use() as client:
            return self._guarded(send, client, commands)

    def _groups(self, keys: Sequence[Key], size: int = MAX_KEYS) -> list[list[Key]]:
        """``keys`` in groups one script call may take (same hash slot in a cluster)."""
        return self._guarded(split, self._connection(), keys, size)

    def _scan_page(
        self, state: ScanState | None, match: str | bytes, kind: str, count: int
    ) -> tuple[ScanState, list[bytes]]:
        """One SCAN page (COUNT ``count``), in one round trip: the cursors left to follow
        and the page's names, those longer than any key cachehub writes left out in the
        server (:data:`.scripts.SCAN_NAMES`)."""
        with self._use() as client:
            state, name, node = _scan_at(client, state)
            args = (state[name], match, count, kind, *self._names_args(kind))
            reply = self._guarded(lambda: evalsha(client, lua.SCAN_NAMES, (), args, **node))
        return _scan_next(state, name, reply)

    def _names_args(self, kind: str) -> tuple[int, int]:
        """The namespace's length in bytes and characters, as :data:`.scripts.SCAN_NAMES`
        takes it: a lock's (kind hash) with the 0xFF byte after it (:data:`INTERNAL`)."""
        extra = kind == "hash"
        return len(self.namespace.encode()) + extra, len(self.namespace) + extra

    def _cluster(self) -> bool:
        """Whether the client talks to a Redis Cluster (no request sent)."""
        return is_cluster(self._connection())

    # The async twins: one request each, on the running loop's redis.asyncio client.

    async def _acommand(self, *args: Any) -> Any:
        # The running loop's client without a coroutine frame once it exists (hot path).
        watch = CancelWatch()  # a cancel redis-py swallowed is raised
        lease = self._ajoin() or await self._ause()
        with lease as client:
            try:
                reply = await client.execute_command(*args)
            except REDIS_ERRORS as exc:
                watch.check(exc)
                self._unless_wrong_type(exc)
                return None
        watch.check()
        return reply

    async def _aeval(self, script: LuaScript, key: Key, *args: Any) -> Any:
        with await self._ause() as client:
            return await self._aguarded(aevalsha, client, script, (key,), args)

    async def _aeval_once(self, script: LuaScript, key: str, *args: Any) -> Any:
        with await self._ause() as client:
            ms = self._record_ms
            keys: tuple[Key, ...] = (key,)
            if ms:
                keys = (key, record_key(key, request_id(), is_cluster(client)))
            return await self._aguarded(aevalsha, client, script, keys, (*args, ms))

    async def _asend(self, commands: Sequence[Command]) -> list[Any]:
        with await self._ause() as client:
            return await self._aguarded(asend, client, commands)

    async def _agroups(self, keys: Sequence[Key], size: int = MAX_KEYS) -> list[list[Key]]:
        return split(await self._aconnection(), keys, size)

    async def _ascan_page(
        self, state: ScanState | None, match: str | bytes, kind: str, count: int
    ) -> tuple[ScanState, list[bytes]]:
        with await self._ause() as client:
            state, name, node = _scan_at(client, state)
            args = (state[name], match, count, kind, *self._names_args(kind))
            reply = await self._aguarded(lambda: aevalsha(client, lua.SCAN_NAMES, (), args, **node))
        return _scan_next(state, name, reply)

    async def _acluster(self) -> bool:
        return is_cluster(await self._aconnection())

    async def _aeval_keyless(self, script: LuaScript, *args: Any) -> Any:
        with await self._ause() as client:
            return await self._aguarded(aevalsha, client, script, (), args)

    # ------------------------------------------------------------------ time

    def _ttl(self, deadline: float | None, now: float) -> tuple[str, int | str]:
        """The ``(command, ms)`` TTL arguments for an entry dying at ``deadline``.

        ``PX`` milliseconds from ``now``: the server applies them by its own clock, so a
        client whose clock is off still gets the span it asked for. ``PXAT`` (absolute)
        only when this cache's own clock decides (see ``_judge``); ``('', '')`` for none.
        A ``now`` in the past counts from the present: ``restore`` stamps a copy with its
        original's last access, and the server counts the span from when it receives it,
        so measured from the old stamp an idle copy got its whole idle time again and
        outlived its original.
        """
        if deadline is None:
            return _NO_TTL, _NO_TTL
        if self._judge:
            return "PXAT", cast(int, pxat(deadline))
        return "PX", _relative_ms(deadline, max(now, self._clock()))

    def _server_cap(self, expiry: Expiry, now: float) -> int | str:
        """The absolute cap of an idle entry as ms from ``now``, for a script to place on
        the server's clock (``server_cap`` in :mod:`.scripts`); '' when there is none, or
        when this cache's own clock decides."""
        if self._judge or expiry.idle is None or expiry.expires_at is None:
            return _NO_TTL
        return _relative_ms(expiry.expires_at, max(now, self._clock()))  # as in _ttl

    def _now_arg(self, now: float) -> float | str:
        """``now`` for a script that may judge liveness: '' when the server decides."""
        return now if self._judge else _NO_TTL

    def _alive(self, head: Header, now: float) -> bool:
        """Whether a stored header is alive: Redis still holding it is enough, unless
        this cache's own clock decides."""
        return not self._judge or head.alive(now)

    # ------------------------------------------------------------------ encoding

    def _storable(self, storage_key: str, value: Any, now: float) -> None:
        self._blob(storage_key, value, NO_EXPIRY, now)  # the codec, and maxValueSize

    def _blob(self, key: str, value: Any, expiry: Expiry, now: float) -> bytes:
        """The stored form of a fresh entry: a native int when it fits 64 bits."""
        if type(value) is int and value in _INT64:
            return pack(KIND_INT, INT.pack(value), now, now, expiry.expires_at, expiry.idle)
        return pack(KIND_CODEC, self._dumps(value, key), now, now, expiry.expires_at, expiry.idle)

    def _payload(self, key: str, value: Any) -> tuple[bytes, bytes]:
        """``(kind byte, payload)`` as stored, to compare a value with an entry's."""
        if type(value) is int and value in _INT64:
            return b"i", INT.pack(value)
        return b"v", self._dumps(value, key)

    def _read_common(self, key: str, raw: bytes | None, now: float) -> Any:
        """The value of a stored entry read at ``now``, for the common cases, which need no
        request: MISSING for no entry, the value of codec bytes that never expire (no
        header to unpack, the read counted in process); else ``_UNCOMMON``.

        Both shells' get call it before building a flow (a generator, driven) for the rest:
        :meth:`_read_flow` reads any entry, and writes an idle entry's read at once
        (:meth:`_slide`), since it moves the deadline every client sees.
        """
        if not raw:  # GETRANGE answers b"" for a missing key
            return MISSING
        # A header whose stamps unpack() would refuse is not common, nor is a value cut
        # short (oversized): the flow raises. Nor a large value: the flow decodes it
        # off the event loop.
        if common_head(raw) and (
            len(raw) <= self._inline_end
            or (len(raw) <= self._read_end and decodes_inline(raw, HEADER_SIZE))
        ):
            if self.counts_hits:
                self._hits.count(key, raw[_CREATED], now)
            return self._loads(raw[HEADER_SIZE:], key)
        return _UNCOMMON

    def _read_flow(self, key: str, raw: bytes | None, now: float) -> Flow[Any]:
        """The value of a stored entry read at ``now`` (MISSING when absent or dead)."""
        value = self._read_common(key, raw, now)
        if value is not _UNCOMMON or not raw:
            return value
        found: dict[str, Any] = {}
        counted: list[tuple[str, bytes]] = []
        large: list[tuple[str, bytes]] = []
        idle = self._check(key, raw, now, found, counted, large)
        if large:  # decoded before the read is counted or slid: a cancel here leaves none
            found[key] = yield from decoded(self._loads, raw[HEADER_SIZE:], key)
        if counted:
            self._count_read(key, counted[0][1], now)
        elif idle is not None:
            yield from self._slide_flow([idle], now)
        return found.get(key, MISSING)

    def _check(
        self,
        key: str,
        raw: bytes,
        now: float,
        found: dict[str, Any],
        counted: list[tuple[str, bytes]],
        large: list[tuple[str, bytes]],
    ) -> tuple[str, bytes, Expiry] | None:
        """Decode a stored entry into ``found[key]`` when it is alive at ``now``; a large
        value (not :func:`~cachehub.provider.decodes_inline`) goes to ``large`` as
        ``(key, raw)`` instead, for the flow to decode off the event loop.

        A plain entry's read goes to ``counted``; for an idle entry, whose read must be
        recorded at once, returns ``(key, created stamp bytes, expiry)``.
        """
        head = unpack(raw, key)
        if head is None:
            return None
        if len(raw) > self._read_end:
            raise oversized(key, self._most)
        if not self._alive(head, now):
            return None
        if head.kind != KIND_INT and not decodes_inline(raw, HEADER_SIZE):
            large.append((key, raw))
        else:
            found[key] = self._value(key, head.kind, raw)
        if head.idle is None:
            counted.append((key, raw[_CREATED]))
            return None
        return key, raw[_CREATED], head.expiry

    def _value(self, key: str, kind: int, raw: bytes) -> Any:
        """The value stored after the header: a native int, or codec bytes."""
        if kind == KIND_INT:
            if len(raw) != HEADER_SIZE + INT.size:
                raise corrupt(key, f"an int entry holds {len(raw) - HEADER_SIZE} bytes, not 8")
            return INT.unpack_from(raw, HEADER_SIZE)[0]
        return self._loads(raw[HEADER_SIZE:], key)

    def _loads_large(self, large: list[tuple[str, bytes]]) -> dict[str, Any]:
        """The values of ``large`` (see :meth:`_check`): an :func:`off_loop` step's work."""
        loads = self._loads
        return {key: loads(raw[HEADER_SIZE:], key) for key, raw in large}

    def _slide_flow(self, reads: Sequence[tuple[str, bytes, Expiry]], now: float) -> Flow[None]:
        """Record reads of idle entries at once: hit count, access time, new Redis TTL.

        ``reads`` holds ``(key, created stamp bytes, expiry)`` per entry read.
        """
        stamp = DOUBLE.pack(now)
        yield from self._record_reads_flow(
            {
                key: (
                    created,
                    1 + self._take_hits(key, created) if self.counts_hits else 0,
                    stamp,
                    self._slide_ttl(expiry, now),
                )
                for key, created, expiry in reads
            }
        )

    def _slide_ttl(self, expiry: Expiry, now: float) -> int | str:
        """The new TTL of an idle entry read at ``now``: its idle time, relative. The
        script cuts it to what is left of an absolute cap by the *server's* clock, which
        the cap was placed on when written (:meth:`_server_cap`), so a skewed reader moves
        no deadline past the cap, nor ends an entry before it. With this cache's own clock
        deciding: its absolute deadline by that clock."""
        if self._judge:
            return self._ttl(expiry.deadline(now), now)[1]
        return _ms(cast(float, expiry.idle))

    def _record_reads_flow(
        self, reads: dict[str, tuple[bytes, int, bytes, int | str]]
    ) -> Flow[None]:
        """RECORD_READS for ``key: (created stamp, hits, access stamp, ttl ms or '')``.

        One script call per group of keys (per hash slot in a cluster), one round trip.
        """
        groups = yield Call("groups", list(reads), (yield batch_limit(MAX_KEYS)))
        cluster = yield Call("cluster")
        calls: list[ScriptCall] = []
        for group in groups:
            args: list[Any] = [self._record_ms, self._ttl_cmd]
            for key in group:
                args.extend(reads[key])
            calls.append((self._with_record(group, cluster), args))
        yield from self._calls_flow(lua.RECORD_READS, calls)

    @staticmethod
    def _hit_reads(pending: dict[str, PendingHits]) -> dict[str, tuple[bytes, int, bytes, str]]:
        # the version is the created stamp's 8 bytes, as the script compares them
        return {
            key: (cast(bytes, read.version), read.hits, DOUBLE.pack(read.accessed), _NO_TTL)
            for key, read in pending.items()
        }

    def _write_hits_flow(self, pending: dict[str, PendingHits]) -> Flow[None]:
        """Counted reads (hit counts, last access): RECORD_READS, one round trip per node.

        Reads of entries replaced or deleted meanwhile are dropped by the script.
        """
        yield from self._record_reads_flow(dict(self._hit_reads(pending)))

    # ------------------------------------------------------------------ single-key primitives

    def _get(self, key: str, now: float) -> Any:
        # _command's GETRANGE inlined (one frame fewer on the hottest path), with its
        # arguments given as the bytes redis-py would encode them to (see _read_to).
        with self._use() as client:
            try:
                raw = client.execute_command(  # type: ignore[no-untyped-call]
                    "GETRANGE", key.encode(), b"0", self._read_to
                )
            except REDIS_ERRORS as exc:
                self._unless_wrong_type(exc)
                raw = None
        value = self._read_common(key, raw, now)
        if value is _UNCOMMON:
            value = self._drive(self._read_flow(key, raw, now))
        if self._hits.due():
            self._after_write()
        return value

    async def _aget(self, key: str, now: float) -> Any:
        # _acommand's GETRANGE inlined: one coroutine fewer to create, await and finish on the
        # hottest async path (a coroutine costs more than a plain call, see the async
        # frame counts in tests/test_redis_async.py).
        watch = CancelWatch()  # a cancel redis-py swallowed is raised
        lease = self._ajoin() or await self._ause()
        with lease as client:
            try:
                raw = await client.execute_command("GETRANGE", key.encode(), b"0", self._read_to)
            except REDIS_ERRORS as exc:
                watch.check(exc)
                self._unless_wrong_type(exc)
                raw = None
        watch.check()
        value = self._read_common(key, raw, now)
        if value is _UNCOMMON:
            value = await self._adrive(self._read_flow(key, raw, now))
        if self._hits.due():
            await self._aafter_write()
        return value

    def _get_entry_flow(self, key: str, now: float) -> Flow[Entry | None]:
        server_now = now
        if self._judge:
            raw, pttl = (yield Call("command", "GETRANGE", key, 0, self._read_end)), -1
        else:
            reply = yield Call("eval", lua.ENTRY, key, self._read_end)
            raw, pttl = (None, -1) if reply is None else reply[:2]
            if reply is not None:
                server_now = int(reply[2]) + int(reply[3]) / 1e6
        head = unpack(raw, key) if raw else None
        if head is not None and len(raw) > self._read_end:
            raise oversized(key, self._most)
        if head is None or not self._alive(head, now):
            return None
        expires_at, accessed = head.expires_at, head.accessed
        if pttl >= 0:
            # The server's clock decides: its remaining TTL, seen from this clock, is the
            # deadline (the writer's stamped one is off by the writer's skew).
            deadline = now + pttl / 1000
            if head.idle is None:
                expires_at = deadline
            else:
                accessed = min(now, deadline - head.idle)  # the read that slid it last
                if expires_at is not None:  # a cap on the server's clock, seen from ours
                    expires_at += now - server_now
        elif not self._judge and head.idle is None:
            # No TTL on the server (another program's PERSIST): Redis keeps it for good,
            # and get() serves it; the header's deadline, long past, is no longer its own.
            expires_at = None
        if head.kind != KIND_INT and not decodes_inline(raw, HEADER_SIZE):
            value = yield from decoded(self._loads, raw[HEADER_SIZE:], key)
        else:
            value = self._value(key, head.kind, raw)
        if not head.hits.is_integer():  # reads count it on; only its metadata is refused
            raise corrupt(key, f"its header holds a hit count of {head.hits!r}, not a whole number")
        entry = Entry(
            value,
            head.created,
            head.modified,
            accessed,
            int(head.hits),
            expires_at,
            head.idle,
        )
        return self._with_pending(entry, key, raw[_CREATED])

    def _exists(self, key: str, now: float) -> bool:
        return self._head_alive(key, self._command("GETRANGE", key, 0, HEADER_SIZE - 1), now)

    async def _aexists(self, key: str, now: float) -> bool:
        raw = await self._acommand("GETRANGE", key, 0, HEADER_SIZE - 1)
        return self._head_alive(key, raw, now)

    def _head_alive(self, key: str, raw: bytes | None, now: float) -> bool:
        head = None if raw is None else unpack(raw, key)
        return head is not None and self._alive(head, now)

    def _set_command(self, key: str, blob: bytes, expiry: Expiry, now: float) -> tuple[Any, ...]:
        """The ``SET`` command storing a fresh entry (``blob``, see :meth:`_blob`)."""
        deadline = expiry.deadline(now)
        if deadline is None:
            return "SET", key, blob
        return ("SET", key, blob, *self._ttl(deadline, now))

    def _capped_set_args(
        self, blob: bytes, expiry: Expiry, now: float, cap: int | str
    ) -> tuple[Any, ...]:
        """SET_MANY's arguments storing one idle entry whose cap the server places."""
        return (*self._ttl(expiry.deadline(now), now), cap, blob)

    def _set(self, key: str, value: Any, expiry: Expiry, now: float) -> None:
        blob = self._blob(key, value, expiry, now)
        cap = self._server_cap(expiry, now)
        if cap == _NO_TTL:
            self._command(*self._set_command(key, blob, expiry, now))
        else:  # rare: an idle entry with a cap, placed on the server's clock by a script
            self._eval(lua.SET_MANY, key, *self._capped_set_args(blob, expiry, now, cap))
        self._hits.forget(key)
        if self._hits.due():
            self._after_write()

    async def _aset(self, key: str, value: Any, expiry: Expiry, now: float) -> None:
        # A heavy value is encoded off the loop (inline here, not through a flow or a
        # coroutine: the hot path, see tests/test_redis_async.py's frame counts).
        if heavy(value):
            blob = await provider.run_off_loop(self._blob, key, value, expiry, now)
        else:
            blob = self._blob(key, value, expiry, now)
        cap = self._server_cap(expiry, now)
        if cap == _NO_TTL:
            await self._acommand(*self._set_command(key, blob, expiry, now))
        else:
            args = self._capped_set_args(blob, expiry, now, cap)
            await self._aeval(lua.SET_MANY, key, *args)
        self._hits.forget(key)
        if self._hits.due():
            await self._aafter_write()

    def _add_flow(self, key: str, value: Any, expiry: Expiry, now: float) -> Flow[bool]:
        blob = yield from encoded(value, self._blob, key, value, expiry, now)
        ttl = self._ttl(expiry.deadline(now), now)
        cap = self._server_cap(expiry, now)
        added = bool((yield Call("eval_once", lua.ADD, key, self._now_arg(now), blob, *ttl, cap)))
        if added:
            self._hits.forget(key)
        return added

    def _delete(self, key: str, now: float) -> bool:
        self._hits.forget(key)
        return bool(self._eval_once(lua.DELETE, key, self._now_arg(now)))

    async def _adelete(self, key: str, now: float) -> bool:
        self._hits.forget(key)
        return bool(await self._aeval_once(lua.DELETE, key, self._now_arg(now)))

    def _delete_if_equal_flow(self, key: str, value: Any, now: float) -> Flow[bool]:
        payload = self._payload(key, value)
        reply = yield Call("eval_once", lua.DELETE_IF_EQUAL, key, self._now_arg(now), *payload)
        if reply:
            self._hits.forget(key)
        return bool(reply)

    def _incr_flow(self, key: str, delta: int, now: float) -> Flow[int]:
        if delta not in _INT64:
            raise CacheValueError(
                f"incr delta {delta} does not fit in 64 bits.",
                hint="Redis counters are signed 64-bit integers; use a smaller delta.",
            )
        fresh = pack(KIND_INT, INT.pack(delta), now, now, None, None)
        stamp = INT.unpack(DOUBLE.pack(now))[0]  # the double's bytes, for BITFIELD SET i64
        reply = yield Call(
            "eval_once", lua.INCR, key, self._now_arg(now), delta, fresh, stamp, self._most
        )
        kind = reply[0]
        if kind == b"n":
            return int(INT.unpack(reply[1])[0])
        if kind == b"c":
            raise corrupt(key, f"an int entry holds {reply[1]} bytes, not 8")
        if kind == b"x":
            raise _unsound(key, reply[1])
        user_key = self._user_key(key)
        if kind == b"e":
            raise CacheValueError(
                f"cannot incr key {user_key!r:.200} by {delta}: the result would not fit "
                "in a signed 64-bit integer.",
                hint="Redis counters are 64-bit; reset the counter or use a smaller delta.",
            )
        if len(reply[1]) > self._most:
            raise oversized(key, self._most)
        current = yield from decoded(self._loads, reply[1], key)  # a large one off the loop
        raise not_an_int(user_key, type(current).__name__, "a 64-bit int")

    def _touch_args(self, expiry: Expiry, now: float) -> tuple[Any, ...]:
        x, d = expiry.expires_at, expiry.idle
        policy = DOUBLE.pack(_NAN if x is None else x) + DOUBLE.pack(_NAN if d is None else d)
        ttl = self._ttl(expiry.deadline(now), now)
        cap = self._server_cap(expiry, now)
        return (self._now_arg(now), DOUBLE.pack(now), policy, *ttl, cap)

    def _touch(self, key: str, expiry: Expiry, now: float) -> bool:
        return _touched(key, self._eval(lua.TOUCH, key, *self._touch_args(expiry, now)))

    async def _atouch(self, key: str, expiry: Expiry, now: float) -> bool:
        reply = await self._aeval(lua.TOUCH, key, *self._touch_args(expiry, now))
        return _touched(key, reply)

    # ------------------------------------------------------------------ batches

    def _mget_flow(self, keys: list[str]) -> Flow[list[Any]]:
        """The stored strings of ``keys``, each cut one byte past the largest entry read
        (:data:`.scripts.READ_MANY`): one call per group of keys (per 500 keys, 100 in the
        async shell, and per hash slot in a cluster), one round trip (one per node in a
        cluster)."""
        if not keys:
            return []
        groups = yield Call("groups", keys, (yield batch_limit(MAX_KEYS)))
        end = (self._read_end,)
        if len(groups) == 1:
            return (yield from self._calls_flow(lua.READ_MANY, [(keys, end)]))[0]  # type: ignore[no-any-return]
        replies = yield from self._calls_flow(lua.READ_MANY, [(group, end) for group in groups])
        if not (yield Call("cluster")):  # groups in order: the replies are too
            return [raw for reply in replies for raw in reply]
        found: dict[Key, Any] = {}
        for group, reply in zip(groups, replies, strict=True):
            found.update(zip(group, reply, strict=True))
        return [found[key] for key in keys]

    def _get_many(self, keys: list[str], now: float) -> dict[str, Any]:
        """The sync shell's batch read. On a single server a batch up to ``MAX_KEYS`` is
        one :data:`.scripts.READ_MANY` call, sent here directly: the flow only reads its
        replies (no grouping, no ``Call`` round through the driver); a cluster's batch
        takes the whole flow."""
        if 0 < len(keys) <= MAX_KEYS and not is_cluster(self._connection()):
            with self._use() as client:
                raws = self._guarded(evalsha, client, lua.READ_MANY, keys, (self._read_end,))
            return self._drive(self._get_many_flow(keys, now, raws))
        return self._drive(self._get_many_flow(keys, now))

    def _get_many_flow(
        self, keys: list[str], now: float, raws: list[Any] | None = None
    ) -> Flow[dict[str, Any]]:
        """The live entries among ``keys``; ``raws``: their stored strings, when already
        read (:meth:`_get_many`), else one round trip (:meth:`_mget_flow`)."""
        given = raws is not None
        if raws is None:
            raws = yield from self._mget_flow(keys)
        hit_keys: list[str] = list(compress(keys, raws))  # a miss is None
        hits: list[bytes] = list(filter(None, raws))
        if len(raws) > MAX_KEYS:  # the loop runs others between the last reply and the decode
            yield YIELD_LOOP
        large: list[tuple[str, bytes]] = []  # decoded off the loop, all in one step
        if given or len(hits) <= FIRST_STRETCH:  # given: the sync shell's, no loop
            found, idle = self._decode_hits(hit_keys, hits, now, large)
        else:
            # Decoded in stretches of LOOP_STRETCH seconds, the loop running others
            # between two: values are stored compressed, their size says nothing of the work.
            found, idle = {}, []

            def decode(span: range) -> None:
                part, slid = self._decode_hits(
                    hit_keys[span.start : span.stop], hits[span.start : span.stop], now, large
                )
                found.update(part)
                idle.extend(slid)

            yield from stretched(decode, len(hits))
        if large:
            found.update((yield off_loop(self._loads_large, large)))
        if idle:
            yield from self._slide_flow(idle, now)
        if self._hits.due():
            yield from self._flush_due_flow()
        return found

    def _decode_hits(
        self,
        hit_keys: list[str],
        hits: list[bytes],
        now: float,
        large: list[tuple[str, bytes]],
    ) -> tuple[dict[str, Any], list[tuple[str, bytes, Expiry]]]:
        """The live entries among the stored strings ``hits`` of ``hit_keys`` (no miss),
        their reads counted; and the idle ones read, whose reads must be recorded at once
        (see :meth:`_check`). Large values are left to the caller, in ``large``."""
        # This is most of the client time cachehub adds to an MGET. The usual batch
        # holds only common entries (codec bytes that never expire, see _read): checked
        # with C-level calls, then decoded in one pass, with no Python step per key beyond
        # the codec's.
        # Every hit starts with _PLAIN when the least and the greatest do (bytes compare
        # lexicographically; no string starting with _PLAIN reaches _PLAIN_END). Every
        # hit's policy bytes are FOREVER when their concatenation is FOREVER repeated: a
        # shorter string's cut is shorter, so the lengths could not add up. C-level passes,
        # no call per key.
        loads, inline = self._loads, decodes_inline
        end = self._inline_end
        if not hits or (
            min(hits) >= _PLAIN
            and max(hits) < _PLAIN_END
            and b"".join(map(_POLICY, hits)) == FOREVER * len(hits)
            and max(map(len, hits)) <= end
            and sound_stamps(hits)
        ):
            if self.counts_hits:
                self._hits.count_many(list(zip(hit_keys, map(_STAMP, hits), strict=True)), now)
            # A comprehension, not map: the codec is Python, and a call from the eval loop
            # is cheaper than one from map's C loop (no re-entry per value).
            return {
                k: loads(raw[HEADER_SIZE:], k) for k, raw in zip(hit_keys, hits, strict=True)
            }, []
        # Otherwise the common entries first, in one comprehension, then the others.
        # startswith at an offset compares in place (slices would copy the bytes).
        found = {
            k: loads(raw[HEADER_SIZE:], k)
            for k, raw in zip(hit_keys, hits, strict=True)
            if raw.startswith(_PLAIN)
            and raw.startswith(FOREVER, _EXPIRES)
            and (len(raw) <= end or (len(raw) <= self._read_end and inline(raw, HEADER_SIZE)))
            and sound_stamps((raw,))
        }
        counted: list[tuple[str, bytes]] = []
        if self.counts_hits:
            counted = [
                (k, raw[_CREATED]) for k, raw in zip(hit_keys, hits, strict=True) if k in found
            ]
        idle: list[tuple[str, bytes, Expiry]] = []
        if len(found) < len(hits):  # other entries: headers to check
            check = self._check
            for key, raw in zip(hit_keys, hits, strict=True):
                if key not in found:
                    read = check(key, raw, now, found, counted, large)
                    if read is not None:
                        idle.append(read)
        if counted and self.counts_hits:
            self._hits.count_many(counted, now)
        return found, idle

    def _set_many(self, items: dict[str, Any], expiry: Expiry, now: float) -> None:
        """The sync shell's batch write. Entries that never expire, up to ``MAX_KEYS`` on a
        single server: one ``MSET`` sent here directly, as :meth:`_mset_flow` would send it
        (no grouping, no driver); anything else takes the flow."""
        if 0 < len(items) <= MAX_KEYS and expiry.deadline(now) is None and not self._cluster():
            blobs = self._blobs(items, expiry, now)
            with self._use() as client:
                self._guarded(client.execute_command, "MSET", *blobs)
            self._hits.forget(*items)
            self._after_write()
            return
        self._drive(self._set_many_flow(items, expiry, now))

    def _set_many_flow(self, items: dict[str, Any], expiry: Expiry, now: float) -> Flow[None]:
        deadline = expiry.deadline(now)
        if deadline is None:
            yield from self._mset_flow((yield from self._blobs_flow(items, expiry, now)))
        else:
            yield from self._set_many_ttl_flow(items, expiry, deadline, now)
        self._hits.forget(*items)
        yield from self._flush_due_flow()

    def _blobs(self, items: dict[str, Any], expiry: Expiry, now: float) -> list[Any]:
        """:meth:`_blobs_flow` in one go: the sync shell's direct ``MSET`` (no loop)."""
        try:
            next(self._blobs_flow(items, expiry, now, math.inf, weigh=False))
        except StopIteration as done:
            return cast(list[Any], done.value)
        raise AssertionError("an endless stretch yielded")  # pragma: no cover

    def _blobs_flow(
        self,
        items: dict[str, Any],
        expiry: Expiry,
        now: float,
        stretch: float | None = None,
        *,
        weigh: bool | None = None,
    ) -> Flow[list[Any]]:
        """``[key, stored form, key, stored form, ...]`` of a batch (see :meth:`_blob`).

        Every entry of a batch shares its stamps and expiry, so the two possible headers
        are packed once, not once per entry. Encoded in stretches of
        :data:`~cachehub.provider.LOOP_STRETCH` seconds, the event loop running others
        between two (:data:`YIELD_LOOP`; the sync driver goes on), or ``stretch``. With
        ``weigh`` (by default: on an event loop, :data:`ON_LOOP`), a :func:`heavy` value
        is encoded off the loop, in a step of its own.
        """
        if stretch is None:
            stretch = provider.LOOP_STRETCH
        if weigh is None:
            weigh = yield ON_LOOP
        x, d = expiry.expires_at, expiry.idle
        codec_head = pack(KIND_CODEC, b"", now, now, x, d)
        int_head = pack(KIND_INT, b"", now, now, x, d)
        dumps, ints, pack_int = self._dumps, _INT64, INT.pack
        flat: list[Any] = []
        add = flat.append
        began = perf_counter()
        for i, (key, value) in enumerate(items.items()):
            if not i % 8 and i and perf_counter() - began >= stretch:  # read every 8 values
                yield YIELD_LOOP
                began = perf_counter()
            add(key)
            if type(value) is int and value in ints:
                add(int_head + pack_int(value))
            elif weigh and heavy(value):
                add(codec_head + (yield off_loop(dumps, value, key)))
                began = perf_counter()  # the loop ran others meanwhile
            else:
                add(codec_head + dumps(value, key))
        return flat

    def _mset_flow(self, flat: list[Any]) -> Flow[None]:
        """Entries that never expire (``flat`` as :meth:`_blobs_flow` builds it): ``MSET``, the
        native command (atomic per call), per 500 keys (100 in the async shell, and per
        hash slot in a cluster), one round trip (one per node in a cluster)."""
        groups = yield Call("groups", flat[::2], (yield batch_limit(MAX_KEYS)))
        if len(groups) == 1:
            commands: list[Command] = [("MSET", *flat)]
        else:
            blobs = dict(zip(flat[::2], flat[1::2], strict=True))
            commands = [("MSET", *(x for k in group for x in (k, blobs[k]))) for group in groups]
        yield from self._batch_flow(commands)

    def _calls_flow(self, script: LuaScript, calls: Sequence[ScriptCall]) -> Flow[list[Any]]:
        """Every script call's reply, in order: one round trip (one per node in a cluster)."""
        if not calls:
            return []
        sha = script.sha
        commands = [("EVALSHA", sha, len(keys), *keys, *args) for keys, args in calls]
        return (yield from self._batch_flow(commands, script))

    def _batch_flow(
        self, commands: list[Command], script: LuaScript | None = None
    ) -> Flow[list[Any]]:
        """Every command's reply, in order: one round trip (one per node in a cluster).

        A command the server could not complete (see :data:`.dispatch.RETRYABLE`: an
        unknown script, a slot moving) is repeated through the main client, as ``EVAL`` of
        ``script`` if it was unknown; any other error reply is raised, typed.
        """
        replies: list[Any] = yield Call("send", commands)
        again = [i for i, reply in enumerate(replies) if isinstance(reply, Exception)]
        if not again:
            return replies
        for i in again:
            if not isinstance(replies[i], RETRYABLE):
                raise self._translate(replies[i])
        unknown = [i for i in again if isinstance(replies[i], rx.NoScriptError)]
        if script is not None and unknown:
            # A server that lost its scripts (restart, SCRIPT FLUSH) refuses the whole
            # batch: send it again as a batch of EVALs (one round trip per node), not one
            # by one; they had not run, so each applies once.
            resent = yield Call("send", [as_eval(commands[i], script) for i in unknown])
            for i, reply in zip(unknown, resent, strict=True):
                replies[i] = reply
            again = [i for i in again if isinstance(replies[i], Exception)]
        for i in again:
            [replies[i]] = yield Call("send", [commands[i]])
            if isinstance(replies[i], Exception):
                raise self._translate(replies[i])
        return replies

    def _set_many_ttl_flow(
        self, items: dict[str, Any], expiry: Expiry, deadline: float, now: float
    ) -> Flow[None]:
        """Entries with a TTL (``MSET`` takes none): the SET_MANY script, one round trip."""
        ttl = self._ttl(deadline, now)
        flat = yield from self._blobs_flow(items, expiry, now)
        blobs = dict(zip(flat[::2], flat[1::2], strict=True))
        calls: list[ScriptCall] = []
        for group in (yield Call("groups", list(items), (yield batch_limit(MAX_KEYS)))):
            args: list[Any] = [*ttl, self._server_cap(expiry, now)]
            args.extend(blobs[key] for key in group)
            calls.append((group, args))
        yield from self._calls_flow(lua.SET_MANY, calls)

    def _delete_many_flow(self, keys: list[str], now: float) -> Flow[int]:
        self._hits.forget(*keys)
        now_arg, ms = self._now_arg(now), self._record_ms
        groups = yield Call("groups", keys, (yield batch_limit(MAX_KEYS)))
        cluster = yield Call("cluster")
        calls = [(self._with_record(group, cluster), (now_arg, ms)) for group in groups]
        return sum((yield from self._calls_flow(lua.DELETE_MANY, calls)))

    # ------------------------------------------------------------------ scans

    def _keys_flow(self, match: str | bytes, kind: str) -> Stream[bytes]:
        """The keys of every SCAN page (MATCH ``match``, TYPE ``kind``), page by page; in a
        cluster every primary is scanned. SCAN, never KEYS: the server is not blocked.

        COUNT is :data:`_SCAN_COUNT` in the sync shell, :data:`.dispatch.LOOP_MAX_KEYS` in
        the async one (:func:`batch_limit`): redis-py parses a page in one callback of the
        event loop. Each page needs the cursor of the one before: smaller pages are more
        round trips, on the loop only."""
        count = yield batch_limit(_SCAN_COUNT)
        state: ScanState | None = None
        while state != {}:
            state, page = yield Call("scan_page", state, match, kind, count)
            yield Emit(page)

    def _batches_flow(self, flt: KeyFilter, mode: str, now: float) -> Stream[tuple[Any, ...]]:
        """Per SCAN batch, the keys checked and the SCAN_CHECK replies for them, in ``mode``.

        SCAN with a MATCH on the namespaced pattern and TYPE string, its pages re-cut to
        batches of ``_SCAN_COUNT`` keys (COUNT is only a hint). Each batch is then checked
        against ``now`` by one script call per hash slot (and per ``_SCAN_COUNT`` keys,
        :data:`.dispatch.LOOP_MAX_KEYS` in the async shell), in one round trip (per node
        in a cluster). Memory stays flat: one batch at a time.
        """
        size = yield batch_limit(_SCAN_COUNT)
        found = rebatched(self._keys_flow(redis_glob(flt), "string"), _SCAN_COUNT)
        with closing(found):
            while (raw := (yield from pull(found))) is not None:
                yield YIELD_LOOP  # the loop runs others between a SCAN reply and its check
                batch: list[Key] = [k for k in dict.fromkeys(raw) if self._selects(flt, k)]
                if batch:
                    groups = yield Call("groups", batch, size)  # one call per group
                    calls = [(group, (self._now_arg(now), mode)) for group in groups]
                    flags = yield from self._calls_flow(lua.SCAN_CHECK, calls)
                    yield Emit([(groups, flags)])

    @staticmethod
    def _selects(flt: KeyFilter, key: bytes) -> bool:
        try:
            return flt.matches(key.decode())
        except UnicodeDecodeError:
            return False  # cachehub writes UTF-8 keys only: not one of ours

    def _scan_flow(self, flt: KeyFilter, now: float) -> Stream[str]:
        with closing(self._batches_flow(flt, "k", now)) as batches:
            while (checked := (yield from pull(batches))) is not None:
                for groups, flags in checked:
                    yield Emit(list(_live_keys(groups, flags)))

    def _server_pages_flow(self, flt: KeyFilter, mode: str, now: float) -> Flow[int | None]:
        """Count (mode 'c') or clear (mode 'u') page by page inside the server.

        One SCAN_PAGE call per SCAN page: the keys never travel to the client. Only on a
        single server (a cluster spreads keys over nodes and slots) and for filters the
        Redis glob matches exactly; None otherwise, and the caller scans client-side.
        """
        if not _exact_glob(flt) or (yield Call("cluster")):
            return None
        pattern, cursor, total = redis_glob(flt), b"0", 0
        while True:
            cursor, n = yield Call(
                "eval_keyless",
                lua.SCAN_PAGE,
                cursor,
                pattern,
                _SCAN_COUNT,
                self._now_arg(now),
                mode,
                *self._names_args("string"),
            )
            total += int(n)
            if cursor == b"0":
                return total

    def _eval_keyless(self, script: LuaScript, *args: Any) -> Any:
        with self._use() as client:
            return self._guarded(evalsha, client, script, (), args)

    def _count_flow(self, flt: KeyFilter, now: float) -> Flow[int]:
        return (yield from self._pages_or_scan_flow(flt, "c", now))

    def _clear_flow(self, flt: KeyFilter, now: float) -> Flow[int]:
        # The scripts re-check liveness atomically, so a racing write is counted once.
        return (yield from self._pages_or_scan_flow(flt, "u", now))

    def _pages_or_scan_flow(self, flt: KeyFilter, mode: str, now: float) -> Flow[int]:
        """Count or clear (``mode``) inside the server when it can, else by SCAN batches."""
        total = yield from self._server_pages_flow(flt, mode, now)
        if total is not None:
            return total
        total = 0
        with closing(self._batches_flow(flt, mode, now)) as batches:
            while (checked := (yield from pull(batches))) is not None:
                total += sum(sum(counts) for _, counts in checked)
        return total

    # ------------------------------------------------------------------ internal space: locks

    def _internal_key(self, name: str) -> bytes:
        """The Redis key of lock ``name`` (namespace, 0xFF, lock id): no user key's form."""
        ns = self.namespace
        return ns.encode() + INTERNAL + name[len(ns) :].encode("utf-8", "surrogatepass")

    def _lock_reply(self, name: str, reply: Any) -> Any:
        if reply == b"x":
            raise CorruptEntryError(
                f"Redis key for lock {self._user_key(name)!r:.120} holds another type, "
                "not a cachehub lock.",
                hint="another program wrote to cachehub's internal key space; delete the "
                "key, or give the caches a namespace of their own.",
            )
        return reply

    def _lock_acquire_flow(self, name: str, token: str, ttl: float, now: float) -> Flow[int | None]:
        if not self._eviction_checked:
            # Once per cache: a lock's hash has a TTL, so any eviction policy may drop it
            # while held (docs/redis.md, "Eviction policies"): say so before it matters.
            # An unreachable server is no answer: raised, and asked again next time (taken
            # as done, the lock's own command then waited through a second timeout).
            try:
                memory = yield Call("memory")
            except CacheUnavailableError:
                raise
            except CacheError:  # a diagnostic: a server or proxy refusing INFO keeps its locks
                memory = None
            self._eviction_checked = True
            risk = eviction_risk(memory)
            if risk is not None:
                self.log.warning("cache '%s' (Redis at %s): %s", self.name, self.endpoint, risk)
        key = self._internal_key(name)
        reply = self._lock_reply(
            name, (yield Call("eval", lua.LOCK_ACQUIRE, key, token, _ms(ttl), LOCK_GRACE_MS))
        )
        return int(reply[1]) if reply[0] == b"1" else None

    def _lock_release_flow(self, name: str, token: str, now: float) -> Flow[bool]:
        key = self._internal_key(name)
        reply = yield Call("eval", lua.LOCK_RELEASE, key, token, LOCK_GRACE_MS)
        return bool(self._lock_reply(name, reply) == b"1")

    def _lock_extend_flow(self, name: str, token: str, ttl: float, now: float) -> Flow[bool]:
        key = self._internal_key(name)
        reply = yield Call("eval", lua.LOCK_EXTEND, key, token, _ms(ttl), LOCK_GRACE_MS)
        return bool(self._lock_reply(name, reply) == b"1")

    def _lock_holder_flow(self, name: str, now: float) -> Flow[str | None]:
        reply = self._lock_reply(
            name, (yield Call("eval", lua.LOCK_HOLDER, self._internal_key(name)))
        )
        # errors="replace": a token another program planted need not be UTF-8.
        return reply[1].decode(errors="replace") if reply[0] == b"1" else None

    def _clear_internal_flow(self, now: float) -> Flow[int]:
        pattern = _escape_glob(self.namespace).encode() + INTERNAL + b"*"
        removed = 0
        with closing(rebatched(self._keys_flow(pattern, "hash"), _SCAN_COUNT)) as found:
            while (batch := (yield from pull(found))) is not None:
                for key in dict.fromkeys(batch):  # one key per call: cluster slots differ
                    removed += int((yield Call("command", "UNLINK", key)) or 0)
        return removed

    # ------------------------------------------------------------------ info

    def _info(self, now: float) -> dict[str, Any]:
        """INFO server and memory, and the live entries of the namespace (a SCAN).

        INFO is in ACL category @dangerous, which a shared Redis's users often lack
        (``+@all -@dangerous``): then the server's facts are None and ``serverInfo``
        says which rule would show them; the cache's own facts stay.
        """
        refused: str | None = None
        try:
            with self._use() as client:
                server = _one_node(client.info("server"))
                memory = _one_node(client.info("memory"))
        except REDIS_ERRORS as exc:
            error = self._translate(exc)
            if not isinstance(error, RedisPermissionError):
                raise error from None
            server, memory = {}, {}
            refused = f"refused to this ACL user (grant {error.rule} to show it)"
        return {
            "serverInfo": refused or "ok",
            "endpoint": self.endpoint,
            "mode": self._plan.mode,
            "serverVersion": server.get("redis_version"),
            "serverMode": server.get("redis_mode"),
            "usedMemory": memory.get("used_memory"),
            "usedMemoryHuman": memory.get("used_memory_human"),
            "maxMemory": memory.get("maxmemory"),
            "maxMemoryPolicy": memory.get("maxmemory_policy"),
            "count": self._count(compile_filter(None, self.namespace), now),
        }


def _unsound(key: str, head: bytes) -> CorruptEntryError:
    """The error for an entry whose header a script found unsound (its ``sound``): the
    one :func:`.entry.unpack` raises for it, which names the field."""
    try:
        unpack(head, key)
    except CorruptEntryError as exc:
        return exc
    return corrupt(key, "its header holds fields cachehub never writes")


def _touched(key: str, reply: Any) -> bool:
    """TOUCH's reply: whether the live entry got its new expiry (a header: unsound)."""
    if isinstance(reply, bytes):
        raise _unsound(key, reply)
    return bool(reply)


def _scan_at(
    client: Client | AsyncClient, state: ScanState | None
) -> tuple[ScanState, str | None, dict[str, Any]]:
    """The cursors to follow (every primary's at 0 before the first page of a cluster),
    the node of the next page (None: the single server) and its routing option."""
    if state is None:
        nodes = cast(Any, client).get_primaries() if is_cluster(client) else [None]
        state = {None if node is None else node.name: 0 for node in nodes}
    name = next(iter(state))
    if name is None:
        return state, None, {}
    return state, name, {"target_nodes": cast(Any, client).get_node(node_name=name)}


def _scan_next(state: ScanState, name: str | None, reply: Any) -> tuple[ScanState, list[bytes]]:
    """The cursors left to follow after node ``name``'s page ``reply`` (cursor, names)."""
    cursor, keys = reply
    following = dict(state)
    if int(cursor):
        following[name] = int(cursor)
    else:  # that node's scan is complete (the others may not have started: cursor 0)
        del following[name]
    return following, keys


def _live_keys(groups: list[list[Any]], flags: list[Any]) -> Iterator[str]:
    """The live keys of one checked SCAN batch (SCAN_CHECK replies per group)."""
    for group, marks in zip(groups, flags, strict=True):
        # marks holds b"1" (live) or b"0" per key: as ints, 49 or 48.
        yield from (k.decode() for k, m in zip(group, marks, strict=True) if m == 49)


def _unless_refused(error: CacheError) -> None:
    """Nothing for a refused INFO (a shared Redis's users often lack ``@dangerous``, see
    docs/redis.md, "Sharing a Redis"): an unknown fact, never an error; else ``error``."""
    if isinstance(error, RedisPermissionError):
        return
    raise error


def eviction_risk(memory: Mapping[str, Any] | None) -> str | None:
    """What the server's ``maxmemory-policy`` may evict of cachehub's keys, or None when
    it evicts nothing (``noeviction``, or no ``maxmemory``) or INFO was refused.

    Locks and request records (:mod:`.records`) carry a TTL: every policy but
    ``noeviction`` may drop them under memory pressure, ``volatile-ttl`` first of all
    (their TTLs are the shortest). Counters and entries without expiry have none: only the
    ``allkeys-*`` policies drop those.
    """
    if not memory:
        return None
    policy = str(memory.get("maxmemory_policy", "noeviction"))
    try:
        limited = int(memory.get("maxmemory") or 0) > 0
    except (TypeError, ValueError):  # a Redis-like server's own INFO shape: unknown
        limited = True
    if policy == "noeviction" or not limited:
        return None
    also = " and counters and entries without expiry," if policy.startswith("allkeys") else ""
    return (
        f"maxmemory-policy is {policy}: when memory is full Redis may evict held locks{also} "
        "and the request records that keep a re-sent incr/add/lock from applying twice. "
        "An evicted lock can be taken by another client before its holder learns at its "
        "next extend or release (LockLostError); use a Redis with maxmemory-policy "
        "noeviction for locks and counters (docs: Redis, 'Eviction policies')."
    )


def _one_node(reply: Any) -> dict[str, Any]:
    """INFO of one server; a cluster answers per node (the first is shown)."""
    if isinstance(reply, dict) and reply and "redis_version" not in reply:
        nodes = [v for v in reply.values() if isinstance(v, dict)]
        if nodes and len(nodes) == len(reply):
            return nodes[0]
    return reply if isinstance(reply, dict) else {}


def _ms(seconds: float) -> int:
    """Whole milliseconds for a lock ttl, rounded up (never shorter than asked), >= 1."""
    return max(1, math.ceil(seconds * 1000))
