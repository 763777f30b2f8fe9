"""The Redis provider: one string per entry, native commands on the hot paths.

``get`` is one ``GET``, ``put`` one ``SET ... PX``, ``get_many`` one ``MGET`` and
``exists`` one ``GETRANGE``: the same commands hand-written redis-py code sends. A plain
read writes nothing; with ``hitCounts`` on, reads are counted in process and written back
in batches (:class:`cachehub.provider.RemoteCache`). An idle-time entry's read is written
at once: it slides the deadline for every client. Operations that must check an entry
before changing it are Lua scripts (:mod:`.scripts`).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, Final, cast

from redis import exceptions as rx
from redis.cluster import RedisCluster

from cachehub.config import LuceeOption
from cachehub.filters import WILDCARDS, compile_filter
from cachehub.provider import (
    HIT_OPTIONS,
    MISSING,
    CacheError,
    CacheValueError,
    CorruptEntryError,
    Entry,
    Expiry,
    KeyFilter,
    Option,
    PendingHits,
    RemoteCache,
    chunks,
    not_an_int,
)

from . import scripts as lua
from .connection import (
    LUCEE_OPTIONS,
    OPTIONS,
    ConnectionPlan,
    acquire_client,
    plan_connection,
    release_client,
)
from .dispatch import MAX_KEYS, Call, Client, Key, evalsha, run_calls, split
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
    corrupt,
    pack,
    pxat,
    unpack,
)
from .errors import REDIS_ERRORS, translate
from .records import record_key, record_ms, request_id
from .scripts import LuaScript

__all__ = ["RedisCache", "redis_glob"]

_INT64: Final = range(-(2**63), 2**63)
_SCAN_COUNT: Final = 1000
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
INTERNAL: Final = b"\xff"
"""Separates the namespace from an internal key (a lock): ``<namespace>\\xff<lock id>``.
The byte 0xFF never occurs in UTF-8, so no user key can spell an internal key, scans
(which decode keys as UTF-8 and ask for strings) never return one, and ``clear()`` never
removes one. Locks are hashes, see :data:`.scripts.LOCK_ACQUIRE`."""
LOCK_GRACE_MS: Final = 60_000
"""How long a lock's hash outlives its last holding (keeps its fence counting up)."""


def _escape_glob(literal: str) -> str:
    return "".join("\\" + ch if ch in _GLOB_SPECIALS else ch for ch in literal)


def _glob_stars(flt: KeyFilter) -> int:
    """How many ``*`` of the full Redis glob are followed by more pattern.

    Redis before 6.2.11 / 7.0.9 matches globs by recursion that retries every star at
    every position: ``k`` such stars cost ``O(n**k)`` on an ``n``-byte key, a stall of
    the whole server. One star is ``O(n * m)`` on every version, and a trailing star is
    answered at once.
    """
    stars = sum(1 for t in flt.tokens if t in WILDCARDS)
    return stars - (flt.tokens[-1] == "*")


def redis_glob(flt: KeyFilter) -> str:
    """The ``SCAN MATCH`` pattern selecting (a superset of) the keys ``flt`` matches.

    Redis matches bytes: its ``?`` is one byte, while the filter's ``?`` is one character
    (up to 4 UTF-8 bytes), so ``?`` becomes ``*`` and the filter itself decides. A pattern
    that would make Redis backtrack (more than one inner star, see :func:`_glob_stars`)
    is pushed down as its literal prefix only; the client then matches the rest in
    linear time (:meth:`cachehub.filters.KeyFilter.matches`).
    """
    if _glob_stars(flt) > 1:
        return _escape_glob(flt.prefix) + "*"
    body = "".join("*" if t in WILDCARDS else _escape_glob(t) for t in flt.tokens)
    return _escape_glob(flt.namespace) + body


def _exact_glob(flt: KeyFilter) -> bool:
    """Whether :func:`redis_glob` selects exactly the filter's keys (literals and ``*``).

    UTF-8 literals compared byte by byte can only match at character boundaries, so
    without ``?`` the byte-level glob and the character-level filter agree - when the
    whole pattern was pushed down, not just its prefix.
    """
    return "?" not in flt.tokens and _glob_stars(flt) <= 1


def _wrong_type(exc: rx.ResponseError) -> bool:
    """Whether a command failed only because the key holds another Redis type."""
    return str(exc).startswith("WRONGTYPE")


def _relative_ms(deadline: float, now: float) -> int:
    """Milliseconds from ``now`` to ``deadline``, rounded up (never early), at least 1."""
    return max(1, math.ceil((deadline - now) * 1000))


class RedisCache(RemoteCache[Client]):
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

    def _disconnect(self, client: Client) -> None:
        release_client(self._plan, self.settings["retries"], client)

    def _translate(self, exc: Exception) -> CacheError:
        """The typed cachehub error for a redis-py error (secrets scrubbed)."""
        return translate(exc, self.endpoint, self._plan.secrets)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ commands

    def _command(self, *args: Any) -> Any:
        """One native command; a key of another Redis type answers None (not an entry)."""
        client = self._conn or self._connection()
        try:
            return client.execute_command(*args)  # type: ignore[no-untyped-call]
        except rx.ResponseError as exc:
            if _wrong_type(exc):
                return None
            raise self._translate(exc) from None
        except REDIS_ERRORS as exc:
            raise self._translate(exc) from None

    def _eval(self, script: LuaScript, key: Key, *args: Any) -> Any:
        """Run one script on one key: a single EVALSHA round trip."""
        return self._guarded(evalsha, self._conn or self._connection(), script, (key,), args)

    def _eval_once(self, script: LuaScript, key: str, *args: Any) -> Any:
        """Run a non-idempotent script on one key, applied once even if re-sent.

        The call gets a request record key (see :mod:`.records`) that a re-send after a
        lost reply shares, and the record's lifetime as its last argument.
        """
        client = self._conn or self._connection()
        ms = self._record_ms
        keys: tuple[Key, ...] = (key,)
        if ms:
            keys = (key, record_key(key, request_id(), isinstance(client, RedisCluster)))
        return self._guarded(evalsha, client, script, keys, (*args, ms))

    def _with_record(self, group: list[Key]) -> list[Key]:
        """A batch call's keys plus its request record (see :mod:`.records`), when the
        client may re-send: the batch script then answers a re-send with the first
        attempt's outcome instead of applying (and counting) again."""
        if not self._record_ms:
            return group
        cluster = isinstance(self._conn or self._connection(), RedisCluster)
        # The record shares the first key's slot: a batch call's keys share one.
        return [*group, record_key(cast(str, group[0]), request_id(), cluster)]

    def _run_calls(self, script: LuaScript, calls: Sequence[Call]) -> list[Any]:
        """Run several script calls in one round trip (one per node in a cluster)."""
        if not calls:
            return []
        return self._guarded(run_calls, self._conn or self._connection(), script, calls)

    def _groups(self, keys: Sequence[Key]) -> list[list[Key]]:
        """``keys`` in groups one script call may take (same hash slot in a cluster)."""
        return self._guarded(split, self._conn or self._connection(), keys)

    # ------------------------------------------------------------------ time

    def _ttl(self, deadline: float | None, now: float) -> tuple[str, int | str]:
        """The ``(command, ms)`` TTL arguments for an entry dying at ``deadline``.

        ``PX`` milliseconds from ``now``: the server applies them by its own clock, so a
        client whose clock is off still gets the span it asked for. ``PXAT`` (absolute)
        only when this cache's own clock decides (see ``_judge``); ``('', '')`` for none.
        """
        if deadline is None:
            return _NO_TTL, _NO_TTL
        if self._judge:
            return "PXAT", cast(int, pxat(deadline))
        return "PX", _relative_ms(deadline, now)

    def _now_arg(self, now: float) -> float | str:
        """``now`` for a script that may judge liveness: '' when the server decides."""
        return now if self._judge else _NO_TTL

    def _alive(self, head: Header, now: float) -> bool:
        """Whether a stored header is alive: Redis still holding it is enough, unless
        this cache's own clock decides."""
        return not self._judge or head.alive(now)

    # ------------------------------------------------------------------ encoding

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

    def _read(self, key: str, raw: bytes | None, now: float) -> Any:
        """The value of a stored entry read at ``now`` (MISSING when absent or dead).

        Counts the read: in process for plain entries; an idle entry's read is written
        at once (:meth:`_slide`), since it moves the deadline every client sees.
        """
        if raw is None:
            return MISSING
        if raw.startswith(_PLAIN) and raw.startswith(FOREVER, _EXPIRES):
            # The common entry: codec bytes that never expire. No header to unpack.
            if self.counts_hits:
                self._hits.count(key, raw[_CREATED], now)
            return self._loads(raw[HEADER_SIZE:], key)
        found: dict[str, Any] = {}
        counted: list[tuple[str, bytes]] = []
        idle = self._check(key, raw, now, found, counted)
        if counted:
            self._count_read(key, counted[0][1], now)
        elif idle is not None:
            self._slide([idle], now)
        return found.get(key, MISSING)

    def _check(
        self,
        key: str,
        raw: bytes,
        now: float,
        found: dict[str, Any],
        counted: list[tuple[str, bytes]],
    ) -> tuple[str, bytes, Expiry] | None:
        """Decode a stored entry into ``found[key]`` when it is alive at ``now``.

        A plain entry's read goes to ``counted``; for an idle entry, whose read must be
        recorded at once, returns ``(key, created stamp bytes, expiry)``.
        """
        head = unpack(raw, key)
        if head is None or not self._alive(head, now):
            return None
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

    def _slide(self, reads: Sequence[tuple[str, bytes, Expiry]], now: float) -> None:
        """Record reads of idle entries at once: hit count, access time, new Redis TTL.

        ``reads`` holds ``(key, created stamp bytes, expiry)`` per entry read.
        """
        stamp = DOUBLE.pack(now)
        # The new TTL is relative (server clock); an idle entry's absolute cap, if it has
        # one, is judged by this process's clock (off by at most the skew, docs/redis.md).
        self._record_reads(
            {
                key: (
                    created,
                    1 + self._take_hits(key, created) if self.counts_hits else 0,
                    stamp,
                    self._ttl(expiry.deadline(now), now)[1],
                )
                for key, created, expiry in reads
            }
        )

    def _record_reads(self, reads: dict[str, tuple[bytes, int, bytes, int | str]]) -> None:
        """RECORD_READS for ``key: (created stamp, hits, access stamp, ttl ms or '')``.

        One script call per group of keys (per hash slot in a cluster), one round trip.
        """
        calls: list[Call] = []
        for group in self._groups(list(reads)):
            args: list[Any] = [self._record_ms, self._ttl_cmd]
            for key in group:
                args.extend(reads[key])  # type: ignore[index]
            calls.append((self._with_record(group), args))
        self._run_calls(lua.RECORD_READS, calls)

    def _write_hits(self, pending: dict[str, PendingHits]) -> None:
        """Counted reads (hit counts, last access): RECORD_READS, one round trip per node.

        Reads of entries replaced or deleted meanwhile are dropped by the script.
        """
        # the version is the created stamp's 8 bytes, as the script compares them
        self._record_reads(
            {
                key: (cast(bytes, read.version), read.hits, DOUBLE.pack(read.accessed), _NO_TTL)
                for key, read in pending.items()
            }
        )

    # ------------------------------------------------------------------ single-key primitives

    def _get(self, key: str, now: float) -> Any:
        value = self._read(key, self._command("GET", key), now)
        if self._hits.due():
            self._after_write()
        return value

    def _get_entry(self, key: str, now: float) -> Entry | None:
        if self._judge:
            raw, pttl = self._command("GET", key), -1
        else:
            reply = self._eval(lua.ENTRY, key)
            raw, pttl = (None, -1) if reply is None else reply
        head = None if raw is None else unpack(raw, key)
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
        entry = Entry(
            self._value(key, head.kind, raw),
            head.created,
            head.modified,
            accessed,
            int(head.hits),
            expires_at,
            head.idle,
        )
        return self._with_pending(entry, key, raw[_CREATED])

    def _exists(self, key: str, now: float) -> bool:
        raw = self._command("GETRANGE", key, 0, HEADER_SIZE - 1)
        head = None if raw is None else unpack(raw, key)
        return head is not None and self._alive(head, now)

    def _set(self, key: str, value: Any, expiry: Expiry, now: float) -> None:
        blob = self._blob(key, value, expiry, now)
        deadline = expiry.deadline(now)
        if deadline is None:
            self._command("SET", key, blob)
        else:
            self._command("SET", key, blob, *self._ttl(deadline, now))
        self._hits.forget(key)
        if self._hits.due():
            self._after_write()

    def _add(self, key: str, value: Any, expiry: Expiry, now: float) -> bool:
        blob = self._blob(key, value, expiry, now)
        ttl = self._ttl(expiry.deadline(now), now)
        added = bool(self._eval_once(lua.ADD, key, self._now_arg(now), blob, *ttl))
        if added:
            self._hits.forget(key)
        return added

    def _delete(self, key: str, now: float) -> bool:
        self._hits.forget(key)
        return bool(self._eval_once(lua.DELETE, key, self._now_arg(now)))

    def _delete_if_equal(self, key: str, value: Any, now: float) -> bool:
        payload = self._payload(key, value)
        deleted = bool(self._eval_once(lua.DELETE_IF_EQUAL, key, self._now_arg(now), *payload))
        if deleted:
            self._hits.forget(key)
        return deleted

    def _incr(self, key: str, delta: int, now: float) -> int:
        if delta not in _INT64:
            raise CacheValueError(
                f"incr delta {delta} does not fit in 64 bits.",
                hint="Redis counters are signed 64-bit integers; use a smaller delta.",
            )
        fresh = pack(KIND_INT, INT.pack(delta), now, now, None, None)
        stamp = INT.unpack(DOUBLE.pack(now))[0]  # the double's bytes, for BITFIELD SET i64
        reply = self._eval_once(lua.INCR, key, self._now_arg(now), delta, fresh, stamp)
        kind = reply[0]
        if kind == b"n":
            return int(INT.unpack(reply[1])[0])
        user_key = self._user_key(key)
        if kind == b"e":
            raise CacheValueError(
                f"cannot incr key {user_key!r:.200} by {delta}: the result would not fit "
                "in a signed 64-bit integer.",
                hint="Redis counters are 64-bit; reset the counter or use a smaller delta.",
            )
        current = self._loads(reply[1], key)
        raise not_an_int(user_key, type(current).__name__, "a 64-bit int")

    def _touch(self, key: str, expiry: Expiry, now: float) -> bool:
        x, d = expiry.expires_at, expiry.idle
        policy = DOUBLE.pack(_NAN if x is None else x) + DOUBLE.pack(_NAN if d is None else d)
        ttl = self._ttl(expiry.deadline(now), now)
        return bool(self._eval(lua.TOUCH, key, self._now_arg(now), DOUBLE.pack(now), policy, *ttl))

    # ------------------------------------------------------------------ batches

    def _mget(self, keys: list[str]) -> list[Any]:
        """The stored strings of ``keys``: ``MGET``, one round trip (per node in a cluster)."""
        if not keys:
            return []
        client = self._conn or self._connection()
        try:
            if isinstance(client, RedisCluster):
                return client.mget_nonatomic(keys)
            if len(keys) <= MAX_KEYS:
                return client.execute_command("MGET", *keys)  # type: ignore[no-any-return,no-untyped-call]
            # Chunks, so one command never holds the server for long; pipelined.
            pipe = client.pipeline(transaction=False)
            for i in range(0, len(keys), MAX_KEYS):
                pipe.execute_command("MGET", *keys[i : i + MAX_KEYS])  # type: ignore[no-untyped-call]
            return [raw for chunk in pipe.execute() for raw in chunk]
        except REDIS_ERRORS as exc:
            raise self._translate(exc) from None

    def _get_many(self, keys: list[str], now: float) -> dict[str, Any]:
        stored = [(k, raw) for k, raw in zip(keys, self._mget(keys), strict=True) if raw]
        # The common entry first, in comprehensions (this loop is most of the client time
        # cachehub adds to an MGET): codec bytes that never expire, see _read.
        # startswith at an offset compares in place (slices would copy the bytes).
        plain = [
            (k, raw)
            for k, raw in stored
            if raw.startswith(_PLAIN) and raw.startswith(FOREVER, _EXPIRES)
        ]
        loads = self._loads
        found = {k: loads(raw[HEADER_SIZE:], k) for k, raw in plain}
        counted = [(k, raw[_CREATED]) for k, raw in plain] if self.counts_hits else []
        idle: list[tuple[str, bytes, Expiry]] = []
        if len(plain) < len(stored):
            check = self._check
            for key, raw in stored:
                if key not in found:
                    read = check(key, raw, now, found, counted)
                    if read is not None:
                        idle.append(read)
        if counted and self.counts_hits:
            self._hits.count_many(counted, now)
        if idle:
            self._slide(idle, now)
        if self._hits.due():
            self._after_write()
        return found

    def _set_many(self, items: dict[str, Any], expiry: Expiry, now: float) -> None:
        deadline = expiry.deadline(now)
        if deadline is None:
            self._mset(self._blobs(items, expiry, now))
        else:
            self._set_many_ttl(items, expiry, deadline, now)
        self._hits.forget(*items)
        self._after_write()

    def _blobs(self, items: dict[str, Any], expiry: Expiry, now: float) -> list[Any]:
        """``[key, stored form, key, stored form, ...]`` of a batch (see :meth:`_blob`).

        Every entry of a batch shares its stamps and expiry, so the two possible headers
        are packed once, not once per entry.
        """
        x, d = expiry.expires_at, expiry.idle
        codec_head = pack(KIND_CODEC, b"", now, now, x, d)
        int_head = pack(KIND_INT, b"", now, now, x, d)
        dumps, ints, pack_int = self._dumps, _INT64, INT.pack
        flat: list[Any] = []
        add = flat.append
        for key, value in items.items():
            add(key)
            if type(value) is int and value in ints:
                add(int_head + pack_int(value))
            else:
                add(codec_head + dumps(value, key))
        return flat

    def _mset(self, flat: list[Any]) -> None:
        """Entries that never expire (``flat`` as :meth:`_blobs` builds it): ``MSET``, the
        native command (atomic per call), one round trip (per node in a cluster, one
        ``MSET`` per hash slot there)."""
        client = self._conn or self._connection()
        try:
            if isinstance(client, RedisCluster):
                client.mset_nonatomic(dict(zip(flat[::2], flat[1::2], strict=True)))
            elif len(flat) <= 2 * MAX_KEYS:
                client.execute_command("MSET", *flat)  # type: ignore[no-untyped-call]
            else:  # chunks, so one command never holds the server for long; pipelined
                pipe = client.pipeline(transaction=False)
                for i in range(0, len(flat), 2 * MAX_KEYS):
                    pipe.execute_command("MSET", *flat[i : i + 2 * MAX_KEYS])  # type: ignore[no-untyped-call]
                pipe.execute()
        except REDIS_ERRORS as exc:
            raise self._translate(exc) from None

    def _set_many_ttl(
        self, items: dict[str, Any], expiry: Expiry, deadline: float, now: float
    ) -> None:
        """Entries with a TTL (``MSET`` takes none): the SET_MANY script, one round trip."""
        ttl = self._ttl(deadline, now)
        calls: list[Call] = []
        for group in self._groups(list(items)):
            args: list[Any] = [*ttl]
            args.extend(self._blob(key, items[key], expiry, now) for key in group)  # type: ignore[index,arg-type]
            calls.append((group, args))
        self._run_calls(lua.SET_MANY, calls)

    def _delete_many(self, keys: list[str], now: float) -> int:
        self._hits.forget(*keys)
        now_arg, ms = self._now_arg(now), self._record_ms
        calls = [(self._with_record(group), (now_arg, ms)) for group in self._groups(keys)]
        return sum(self._run_calls(lua.DELETE_MANY, calls))

    # ------------------------------------------------------------------ scans

    def _scan_batches(self, flt: KeyFilter, mode: str, now: float) -> Iterator[tuple[Any, ...]]:
        """Per SCAN batch, the keys checked and the SCAN_CHECK replies for them, in ``mode``.

        SCAN (never KEYS) with a MATCH on the namespaced pattern and TYPE string; in a
        cluster redis-py scans every primary. Each batch is then checked against ``now``
        by one script call per hash slot, in one round trip (per node in a cluster).
        Memory stays flat: one batch at a time.
        """
        client = self._conn or self._connection()
        try:
            found = client.scan_iter(match=redis_glob(flt), count=_SCAN_COUNT, _type="string")
            for raw in chunks(found, _SCAN_COUNT):
                batch = [k for k in dict.fromkeys(raw) if self._selects(flt, k)]
                if not batch:
                    continue
                groups = split(client, batch, _SCAN_COUNT)  # one call per SCAN batch
                calls = [(group, (self._now_arg(now), mode)) for group in groups]
                yield groups, run_calls(client, lua.SCAN_CHECK, calls)
        except REDIS_ERRORS as exc:
            raise self._translate(exc) from None

    @staticmethod
    def _selects(flt: KeyFilter, key: bytes) -> bool:
        try:
            return flt.matches(key.decode())
        except UnicodeDecodeError:
            return False  # cachehub writes UTF-8 keys only: not one of ours

    def _scan(self, flt: KeyFilter, now: float) -> Iterator[str]:
        for groups, flags in self._scan_batches(flt, "k", now):
            for group, marks in zip(groups, flags, strict=True):
                # marks holds b"1" (live) or b"0" per key: as ints, 49 or 48.
                yield from (k.decode() for k, m in zip(group, marks, strict=True) if m == 49)

    def _server_pages(self, flt: KeyFilter, mode: str, now: float) -> int | None:
        """Count (mode 'c') or clear (mode 'u') page by page inside the server.

        One SCAN_PAGE call per SCAN page: the keys never travel to the client. Only on a
        single server (a cluster spreads keys over nodes and slots) and for filters the
        Redis glob matches exactly; None otherwise, and the caller scans client-side.
        """
        client = self._conn or self._connection()
        if isinstance(client, RedisCluster) or not _exact_glob(flt):
            return None
        pattern, cursor, total = redis_glob(flt), b"0", 0
        while True:
            cursor, n = self._eval_keyless(
                lua.SCAN_PAGE, cursor, pattern, _SCAN_COUNT, self._now_arg(now), mode
            )
            total += int(n)
            if cursor == b"0":
                return total

    def _eval_keyless(self, script: LuaScript, *args: Any) -> Any:
        return self._guarded(evalsha, self._conn or self._connection(), script, (), args)

    def _count(self, flt: KeyFilter, now: float) -> int:
        total = self._server_pages(flt, "c", now)
        if total is not None:
            return total
        return sum(sum(counts) for _, counts in self._scan_batches(flt, "c", now))

    def _clear(self, flt: KeyFilter, now: float) -> int:
        # The scripts re-check liveness atomically, so a racing write is counted once.
        total = self._server_pages(flt, "u", now)
        if total is not None:
            return total
        return sum(sum(counts) for _, counts in self._scan_batches(flt, "u", now))

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

    def _lock_acquire(self, name: str, token: str, ttl: float, now: float) -> int | None:
        key = self._internal_key(name)
        reply = self._lock_reply(
            name, self._eval(lua.LOCK_ACQUIRE, key, token, _ms(ttl), LOCK_GRACE_MS)
        )
        return int(reply[1]) if reply[0] == b"1" else None

    def _lock_release(self, name: str, token: str, now: float) -> bool:
        key = self._internal_key(name)
        return bool(
            self._lock_reply(name, self._eval(lua.LOCK_RELEASE, key, token, LOCK_GRACE_MS)) == b"1"
        )

    def _lock_extend(self, name: str, token: str, ttl: float, now: float) -> bool:
        key = self._internal_key(name)
        reply = self._eval(lua.LOCK_EXTEND, key, token, _ms(ttl), LOCK_GRACE_MS)
        return bool(self._lock_reply(name, reply) == b"1")

    def _lock_holder(self, name: str, now: float) -> str | None:
        reply = self._lock_reply(name, self._eval(lua.LOCK_HOLDER, self._internal_key(name)))
        # errors="replace": a token another program planted need not be UTF-8.
        return reply[1].decode(errors="replace") if reply[0] == b"1" else None

    def _clear_internal(self, now: float) -> int:
        pattern = _escape_glob(self.namespace).encode() + INTERNAL + b"*"
        client = self._conn or self._connection()
        removed = 0
        try:
            found = client.scan_iter(match=pattern, count=_SCAN_COUNT, _type="hash")
            for batch in chunks(found, _SCAN_COUNT):
                for key in dict.fromkeys(batch):  # one key per call: cluster slots differ
                    removed += int(client.unlink(key))
        except rx.RedisError as exc:
            raise self._translate(exc) from None
        return removed

    # ------------------------------------------------------------------ info

    def _info(self, now: float) -> dict[str, Any]:
        """INFO server and memory, and the live entries of the namespace (a SCAN)."""
        client = self._connection()
        try:
            server = _one_node(client.info("server"))
            memory = _one_node(client.info("memory"))
        except REDIS_ERRORS as exc:
            raise self._translate(exc) from None
        return {
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
