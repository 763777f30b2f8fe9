"""The Redis provider: one hash per entry, one round trip per operation."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import islice
from typing import Any, ClassVar, Final

from redis import Redis
from redis import exceptions as rx
from redis.cluster import RedisCluster
from redis.commands.core import Script

from cachehub.api import MISSING, BaseCache, Entry, Expiry
from cachehub.config import Option
from cachehub.errors import CacheValueError
from cachehub.filters import KeyFilter

from .connection import OPTIONS, ConnectionPlan, acquire_client, plan_connection, release_client
from .errors import translate
from .scripts import ScriptSet, register_scripts

__all__ = ["RedisCache", "redis_glob"]

_INT64: Final = range(-(2**63), 2**63)
_SCAN_COUNT: Final = 1000
_GLOB_SPECIALS: Final = frozenset("*?[]\\")

Client = Redis | RedisCluster


def _escape_glob(literal: str) -> str:
    return "".join("\\" + ch if ch in _GLOB_SPECIALS else ch for ch in literal)


def redis_glob(flt: KeyFilter) -> str:
    """The ``SCAN MATCH`` pattern selecting (a superset of) the keys ``flt`` matches."""
    body = "".join(t if t in ("*", "?") else _escape_glob(t) for t in flt.tokens)
    return _escape_glob(flt.namespace) + body


def _num(raw: bytes | None) -> float | None:
    return None if raw is None else float(raw)


def _alive(x: bytes | None, d: bytes | None, a: bytes | None, now: float) -> bool:
    expiry = Expiry(_num(x), _num(d))
    deadline = expiry.deadline(_num(a) or 0.0)
    return deadline is None or now < deadline


def _expiry_args(expiry: Expiry) -> tuple[str, str]:
    # repr() keeps every digit; Lua compares numerically and stores the string as is.
    return (
        "" if expiry.expires_at is None else repr(expiry.expires_at),
        "" if expiry.idle is None else repr(expiry.idle),
    )


class RedisCache(BaseCache):
    """A cache on Redis: a single server, a Redis Cluster, or a Sentinel-managed primary.

    Each entry is one hash holding the value and its metadata (see docs/redis.md); the
    single-key operations are Lua scripts, so each is atomic and one round trip. The
    client is created lazily on first use and shared by all threads (redis-py pools).
    """

    options: ClassVar[tuple[Option, ...]] = OPTIONS
    distributed: ClassVar[bool] = True

    def __init__(self, settings: Any = None, /, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        where = f"cache '{self.name}' ({type(self).__name__})"
        self._plan: ConnectionPlan = plan_connection(self.settings, where)
        self._client_lock = threading.Lock()
        self._redis: Client | None = None
        self._scripts: ScriptSet | None = None

    # ------------------------------------------------------------------ connection

    @property
    def endpoint(self) -> str:
        """Where this cache connects, safe to show (never includes a password)."""
        return self._plan.endpoint

    def _conn(self) -> tuple[Client, ScriptSet]:
        """The shared client and its scripts, created on first use."""
        client, scripts = self._redis, self._scripts
        if client is not None and scripts is not None:
            return client, scripts
        with self._client_lock:
            if self._redis is None or self._scripts is None:
                self.log.debug("cache '%s': connecting to Redis at %s", self.name, self.endpoint)
                with self._errors():
                    client = acquire_client(self._plan, self.settings["retries"])
                self._scripts = register_scripts(client)
                self._redis = client
            return self._redis, self._scripts

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Raise redis-py errors as typed cachehub errors (secrets scrubbed)."""
        try:
            yield
        except rx.RedisError as exc:
            raise translate(exc, self.endpoint, self._plan.secrets) from None

    def _close(self) -> None:
        with self._client_lock:
            client, self._redis, self._scripts = self._redis, None, None
        if client is not None:
            with self._errors():
                release_client(self._plan, self.settings["retries"], client)

    # ------------------------------------------------------------------ encoding

    def _pack(self, value: Any) -> tuple[str, bytes]:
        """``('i', digits)`` for a 64-bit int (so incr is HINCRBY), else ``('v', codec bytes)``."""
        if type(value) is int and value in _INT64:
            return "i", str(value).encode()
        return "v", self.codec.dumps(value)

    def _unpack(self, kind: bytes, payload: bytes) -> Any:
        return int(payload) if kind == b"i" else self.codec.loads(payload)

    def _entry(self, flat: Sequence[bytes]) -> Entry:
        fields = dict(zip(flat[::2], flat[1::2], strict=True))
        value = int(fields[b"i"]) if b"i" in fields else self.codec.loads(fields[b"v"])
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

    def _call(self, pick: str, key: str, *args: Any) -> Any:
        """Run one script on one key: a single EVALSHA round trip."""
        client, scripts = self._conn()
        script: Script = getattr(scripts, pick)
        with self._errors():
            return script(keys=[key], args=args, client=client)

    def _get(self, key: str, now: float) -> Any:
        found = self._call("get", key, repr(now))
        return MISSING if found is None else self._unpack(found[0], found[1])

    def _get_entry(self, key: str, now: float) -> Entry | None:
        flat = self._call("entry", key, repr(now))
        return None if flat is None else self._entry(flat)

    def _exists(self, key: str, now: float) -> bool:
        return bool(self._call("exists", key, repr(now)))

    def _set(self, key: str, value: Any, expiry: Expiry, now: float) -> None:
        self._call("set", key, repr(now), *self._pack(value), *_expiry_args(expiry))

    def _add(self, key: str, value: Any, expiry: Expiry, now: float) -> bool:
        return bool(self._call("add", key, repr(now), *self._pack(value), *_expiry_args(expiry)))

    def _delete(self, key: str, now: float) -> bool:
        return bool(self._call("delete", key, repr(now)))

    def _delete_if_equal(self, key: str, value: Any, now: float) -> bool:
        return bool(self._call("delete_if_equal", key, repr(now), *self._pack(value)))

    def _incr(self, key: str, delta: int, now: float) -> int:
        if delta not in _INT64:
            raise CacheValueError(
                f"incr delta {delta} does not fit in 64 bits.",
                hint="Redis counters are signed 64-bit integers; use a smaller delta.",
            )
        kind, payload = self._call("incr", key, repr(now), str(delta))
        if kind == b"n":
            return int(payload)
        user_key = self._user_key(key)
        if kind == b"e":
            raise CacheValueError(
                f"cannot incr key {user_key!r:.200} by {delta}: the result would not fit "
                "in a signed 64-bit integer.",
                hint="Redis counters are 64-bit; reset the counter or use a smaller delta.",
            )
        current = self.codec.loads(payload)
        raise CacheValueError(
            f"cannot incr key {user_key!r:.200}: it holds a {type(current).__name__}, "
            "not a 64-bit int.",
            hint="incr/decr only work on entries created by incr or put with an int.",
        )

    def _touch(self, key: str, expiry: Expiry, now: float) -> bool:
        return bool(self._call("touch", key, repr(now), *_expiry_args(expiry)))

    # ------------------------------------------------------------------ batches

    def _batch(self, pick: str, calls: Sequence[tuple[str | bytes, tuple[Any, ...]]]) -> list[Any]:
        """Run one script per key in a single pipelined round trip (one per node in a cluster).

        EVALSHA is sent directly: redis-py's pipeline would otherwise ask SCRIPT EXISTS
        first, a second round trip. redis-py's cluster pipeline refuses EVALSHA, so in a
        cluster the calls are grouped by owning node and pipelined to each node.
        """
        if not calls:
            return []
        client, scripts = self._conn()
        script: Script = getattr(scripts, pick)
        results: list[Any] = [None] * len(calls)
        with self._errors():
            if isinstance(client, RedisCluster):
                groups: dict[str, tuple[Redis, list[int]]] = {}
                for i, (key, _) in enumerate(calls):
                    node = client.get_node_from_key(key)  # type: ignore[no-untyped-call]
                    groups.setdefault(node.name, (node.redis_connection, []))[1].append(i)
                for node_client, indices in groups.values():
                    self._pipeline(node_client, script, calls, indices, results)
            else:
                self._pipeline(client, script, calls, range(len(calls)), results)
            for i, result in enumerate(results):
                if isinstance(result, (rx.NoScriptError, rx.AskError, rx.TryAgainError)):
                    # The node lost its script cache (a restart) or the slot is moving:
                    # the Script call through the main client reloads / follows redirects.
                    key, args = calls[i]
                    results[i] = script(keys=[key], args=args, client=client)
                elif isinstance(result, Exception):
                    raise result
        return results

    @staticmethod
    def _pipeline(
        client: Redis,
        script: Script,
        calls: Sequence[tuple[str | bytes, tuple[Any, ...]]],
        indices: Sequence[int],
        results: list[Any],
    ) -> None:
        pipe = client.pipeline(transaction=False)
        for i in indices:
            key, args = calls[i]
            pipe.evalsha(script.sha, 1, key, *args)
        for i, result in zip(indices, pipe.execute(raise_on_error=False), strict=True):
            results[i] = result

    def _get_many(self, keys: list[str], now: float) -> dict[str, Any]:
        stamp = (repr(now),)
        results = self._batch("get", [(k, stamp) for k in keys])
        return {
            key: self._unpack(found[0], found[1])
            for key, found in zip(keys, results, strict=True)
            if found is not None
        }

    def _set_many(self, items: dict[str, Any], expiry: Expiry, now: float) -> None:
        tail = _expiry_args(expiry)
        self._batch("set", [(k, (repr(now), *self._pack(v), *tail)) for k, v in items.items()])

    def _delete_many(self, keys: list[str], now: float) -> int:
        return sum(self._batch("delete", [(k, (repr(now),)) for k in keys]))

    # ------------------------------------------------------------------ scans

    def _live_batches(self, flt: KeyFilter, now: float) -> Iterator[list[bytes]]:
        """Batches of storage keys (bytes) of live entries selected by ``flt``.

        SCAN (never KEYS) with a MATCH on the namespaced pattern and TYPE hash; in a
        cluster redis-py scans every primary. Each batch's expiry fields are then read in
        one pipelined round trip and checked against ``now``.
        """
        client, _ = self._conn()
        with self._errors():
            found = client.scan_iter(match=redis_glob(flt), count=_SCAN_COUNT, _type="hash")
            while raw := list(islice(found, _SCAN_COUNT)):
                batch = [k for k in dict.fromkeys(raw) if self._selects(flt, k)]
                if not batch:
                    continue
                pipe = client.pipeline(transaction=False)
                for key in batch:
                    pipe.hmget(key, ["x", "d", "a", "c"])
                fields = pipe.execute(raise_on_error=False)
                yield [
                    key
                    for key, f in zip(batch, fields, strict=True)
                    # c (created) marks a cachehub entry; errors mean the key changed type.
                    if not isinstance(f, Exception)
                    and f[3] is not None
                    and _alive(f[0], f[1], f[2], now)
                ]

    @staticmethod
    def _selects(flt: KeyFilter, key: bytes) -> bool:
        try:
            return flt.matches(key.decode())
        except UnicodeDecodeError:
            return False  # cachehub writes UTF-8 keys only: not one of ours

    def _scan(self, flt: KeyFilter, now: float) -> Iterator[str]:
        for batch in self._live_batches(flt, now):
            yield from (k.decode() for k in batch)

    def _count(self, flt: KeyFilter, now: float) -> int:
        return sum(len(batch) for batch in self._live_batches(flt, now))

    def _clear(self, flt: KeyFilter, now: float) -> int:
        removed = 0
        for batch in self._live_batches(flt, now):
            # The delete script re-checks liveness atomically, so a racing write is counted once.
            removed += sum(self._batch("delete", [(k, (repr(now),)) for k in batch]))
        return removed
