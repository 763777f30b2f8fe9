"""The Redis provider: one hash per entry, one round trip per operation (batches too)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from itertools import islice
from typing import Any, ClassVar, Final

from redis import exceptions as rx

from cachehub.api import MISSING, BaseCache, Entry, Expiry
from cachehub.config import Option
from cachehub.errors import CacheError, CacheValueError
from cachehub.filters import KeyFilter

from . import scripts as lua
from .connection import OPTIONS, ConnectionPlan, acquire_client, plan_connection, release_client
from .dispatch import Call, Client, Key, run_calls, split
from .errors import translate
from .scripts import LuaScript

__all__ = ["RedisCache", "redis_glob"]

_INT64: Final = range(-(2**63), 2**63)
_SCAN_COUNT: Final = 1000
_GLOB_SPECIALS: Final = frozenset("*?[]\\")

_NO_EXPIRY_ARGS: Final[tuple[str, ...]] = ()


def _escape_glob(literal: str) -> str:
    return "".join("\\" + ch if ch in _GLOB_SPECIALS else ch for ch in literal)


def redis_glob(flt: KeyFilter) -> str:
    """The ``SCAN MATCH`` pattern selecting (a superset of) the keys ``flt`` matches."""
    body = "".join(t if t in ("*", "?") else _escape_glob(t) for t in flt.tokens)
    return _escape_glob(flt.namespace) + body


def _num(raw: bytes | None) -> float | None:
    return None if raw is None else float(raw)


def _expiry_args(expiry: Expiry) -> tuple[str, ...]:
    """The expiry as script arguments; trailing "none"s are left out (the scripts read nil).

    repr() keeps every digit; Lua compares numerically and stores the string as is.
    """
    x, d = expiry.expires_at, expiry.idle
    if d is None:
        return _NO_EXPIRY_ARGS if x is None else (repr(x),)
    return ("" if x is None else repr(x), repr(d))


class RedisCache(BaseCache):
    """A cache on Redis: a single server, a Redis Cluster, or a Sentinel-managed primary.

    Each entry is one hash holding the value and its metadata (see docs/redis.md); every
    operation is one Lua script run by ``EVALSHA``, so each is atomic and one round trip,
    batches included (one per node in a cluster). The client is created lazily on first
    use and shared by all threads (redis-py pools).
    """

    options: ClassVar[tuple[Option, ...]] = OPTIONS
    distributed: ClassVar[bool] = True

    def __init__(self, settings: Any = None, /, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        where = f"cache '{self.name}' ({type(self).__name__})"
        self._plan: ConnectionPlan = plan_connection(self.settings, where)
        self._client_lock = threading.Lock()
        self._redis: Client | None = None
        # Bound once: the hot paths below run for every get/put.
        self._dumps = self.codec.dumps
        self._loads = self.codec.loads

    # ------------------------------------------------------------------ connection

    @property
    def endpoint(self) -> str:
        """Where this cache connects, safe to show (never includes a password)."""
        return self._plan.endpoint

    def _client(self) -> Client:
        """The shared client, created on first use."""
        client = self._redis
        if client is not None:
            return client
        with self._client_lock:
            if self._redis is None:
                self.log.debug("cache '%s': connecting to Redis at %s", self.name, self.endpoint)
                try:
                    self._redis = acquire_client(self._plan, self.settings["retries"])
                except rx.RedisError as exc:
                    raise self._translate(exc) from None
            return self._redis

    def _translate(self, exc: rx.RedisError) -> CacheError:
        """The typed cachehub error for a redis-py error (secrets scrubbed)."""
        return translate(exc, self.endpoint, self._plan.secrets)

    def _close(self) -> None:
        with self._client_lock:
            client, self._redis = self._redis, None
        if client is not None:
            try:
                release_client(self._plan, self.settings["retries"], client)
            except rx.RedisError as exc:
                raise self._translate(exc) from None

    # ------------------------------------------------------------------ encoding

    def _pack(self, value: Any) -> tuple[str, bytes]:
        """``('i', digits)`` for a 64-bit int (so incr is HINCRBY), else ``('v', codec bytes)``."""
        if type(value) is int and value in _INT64:
            return "i", str(value).encode()
        return "v", self._dumps(value)

    def _value(self, reply: Any) -> Any:
        """A GET script reply as a value: bulk = codec bytes, ``[digits]`` = native int."""
        if reply is None:
            return MISSING
        if type(reply) is bytes:
            return self._loads(reply)
        return int(reply[0])

    def _entry(self, flat: Sequence[bytes]) -> Entry:
        fields = dict(zip(flat[::2], flat[1::2], strict=True))
        value = int(fields[b"i"]) if b"i" in fields else self._loads(fields[b"v"])
        return Entry(
            value=value,
            created=float(fields[b"c"]),
            modified=float(fields[b"m"]),
            accessed=float(fields[b"a"]),
            hits=int(fields.get(b"h", b"0")),
            expires_at=_num(fields.get(b"x")),
            idle=_num(fields.get(b"d")),
        )

    # ------------------------------------------------------------------ single-key primitives

    def _eval(self, script: LuaScript, key: str, *args: Any) -> Any:
        """Run one script on one key: a single EVALSHA round trip.

        ``now`` is passed as a float: redis-py encodes floats with repr(), every digit.
        """
        client = self._redis
        if client is None:
            client = self._client()
        try:
            return client.execute_command("EVALSHA", script.sha, 1, key, *args)  # type: ignore[no-untyped-call]
        except rx.NoScriptError:
            try:  # the server lost its scripts (restart, SCRIPT FLUSH): load, then repeat
                client.script_load(script.source)
                return client.execute_command("EVALSHA", script.sha, 1, key, *args)  # type: ignore[no-untyped-call]
            except rx.RedisError as exc:
                raise self._translate(exc) from None
        except rx.RedisError as exc:
            raise self._translate(exc) from None

    def _get(self, key: str, now: float) -> Any:
        return self._value(self._eval(lua.GET, key, now))

    def _get_entry(self, key: str, now: float) -> Entry | None:
        flat = self._eval(lua.ENTRY, key, now)
        return None if flat is None else self._entry(flat)

    def _exists(self, key: str, now: float) -> bool:
        return bool(self._eval(lua.EXISTS, key, now))

    def _set(self, key: str, value: Any, expiry: Expiry, now: float) -> None:
        if type(value) is int and value in _INT64:
            self._eval(lua.SET, key, now, "i", value, *_expiry_args(expiry))
        else:
            self._eval(lua.SET, key, now, "v", self._dumps(value), *_expiry_args(expiry))

    def _add(self, key: str, value: Any, expiry: Expiry, now: float) -> bool:
        return bool(self._eval(lua.ADD, key, now, *self._pack(value), *_expiry_args(expiry)))

    def _delete(self, key: str, now: float) -> bool:
        return bool(self._eval(lua.DELETE, key, now))

    def _delete_if_equal(self, key: str, value: Any, now: float) -> bool:
        return bool(self._eval(lua.DELETE_IF_EQUAL, key, now, *self._pack(value)))

    def _incr(self, key: str, delta: int, now: float) -> int:
        if delta not in _INT64:
            raise CacheValueError(
                f"incr delta {delta} does not fit in 64 bits.",
                hint="Redis counters are signed 64-bit integers; use a smaller delta.",
            )
        kind, payload = self._eval(lua.INCR, key, now, delta)
        if kind == b"n":
            return int(payload)
        user_key = self._user_key(key)
        if kind == b"e":
            raise CacheValueError(
                f"cannot incr key {user_key!r:.200} by {delta}: the result would not fit "
                "in a signed 64-bit integer.",
                hint="Redis counters are 64-bit; reset the counter or use a smaller delta.",
            )
        current = self._loads(payload)
        raise CacheValueError(
            f"cannot incr key {user_key!r:.200}: it holds a {type(current).__name__}, "
            "not a 64-bit int.",
            hint="incr/decr only work on entries created by incr or put with an int.",
        )

    def _touch(self, key: str, expiry: Expiry, now: float) -> bool:
        x, d = expiry.expires_at, expiry.idle
        stamps = ("" if x is None else repr(x), "" if d is None else repr(d))
        return bool(self._eval(lua.TOUCH, key, now, *stamps))

    # ------------------------------------------------------------------ batches

    def _run_calls(self, script: LuaScript, calls: Sequence[Call]) -> list[Any]:
        """Run several script calls in one round trip (one per node in a cluster)."""
        if not calls:
            return []
        client = self._client()
        try:
            return run_calls(client, script, calls)
        except rx.RedisError as exc:
            raise self._translate(exc) from None

    def _groups(self, keys: Sequence[Key]) -> list[list[Key]]:
        """``keys`` in groups one script call may take (same hash slot in a cluster)."""
        client = self._client()
        try:
            return split(client, keys)
        except rx.RedisError as exc:
            raise self._translate(exc) from None

    def _get_many(self, keys: list[str], now: float) -> dict[str, Any]:
        groups = self._groups(keys)
        replies = self._run_calls(lua.GET_MANY, [(group, (now,)) for group in groups])
        found: dict[str, Any] = {}
        for group, values in zip(groups, replies, strict=True):
            for key, reply in zip(group, values, strict=True):
                if reply is not None:
                    found[key] = self._value(reply)  # type: ignore[index]
        return found

    def _set_many(self, items: dict[str, Any], expiry: Expiry, now: float) -> None:
        x, d = expiry.expires_at, expiry.idle
        head = (now, "" if x is None else repr(x), "" if d is None else repr(d))
        calls: list[Call] = []
        for group in self._groups(list(items)):
            args: list[Any] = [*head]
            for key in group:
                args.extend(self._pack(items[key]))  # type: ignore[index]
            calls.append((group, args))
        self._run_calls(lua.SET_MANY, calls)

    def _delete_many(self, keys: list[str], now: float) -> int:
        calls = [(group, (now,)) for group in self._groups(keys)]
        return sum(self._run_calls(lua.DELETE_MANY, calls))

    # ------------------------------------------------------------------ scans

    def _scan_batches(self, flt: KeyFilter, mode: str, now: float) -> Iterator[tuple[Any, ...]]:
        """Per SCAN batch, the keys checked and the SCAN_CHECK replies for them, in ``mode``.

        SCAN (never KEYS) with a MATCH on the namespaced pattern and TYPE hash; in a
        cluster redis-py scans every primary. Each batch is then checked against ``now``
        by one script call per hash slot, in one round trip (per node in a cluster).
        Memory stays flat: one batch at a time.
        """
        client = self._client()
        try:
            found = client.scan_iter(match=redis_glob(flt), count=_SCAN_COUNT, _type="hash")
            while raw := list(islice(found, _SCAN_COUNT)):
                batch = [k for k in dict.fromkeys(raw) if self._selects(flt, k)]
                if not batch:
                    continue
                groups = split(client, batch, _SCAN_COUNT)  # one call per SCAN batch
                calls = [(group, (now, mode)) for group in groups]
                yield groups, run_calls(client, lua.SCAN_CHECK, calls)
        except rx.RedisError as exc:
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

    def _count(self, flt: KeyFilter, now: float) -> int:
        return sum(sum(counts) for _, counts in self._scan_batches(flt, "c", now))

    def _clear(self, flt: KeyFilter, now: float) -> int:
        # The script re-checks liveness atomically, so a racing write is counted once.
        return sum(sum(counts) for _, counts in self._scan_batches(flt, "u", now))
