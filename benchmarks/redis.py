"""Redis: cachehub RedisCache against raw redis-py and peer libraries, on one real server.

The suite starts its own ``redis-server`` (``cachehub_redis.server.RedisServer``) so
that nothing else talks to it: ``INFO commandstats`` deltas are then exactly the
commands each operation sent.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import islice
from typing import Any

from .harness import (
    Adapter,
    Case,
    Config,
    Measurement,
    Row,
    Section,
    Target,
    by_op,
    load_note,
    measure_interleaved,
    op_cases,
)
from .memory import VALUE
from .peers import configure_django, missing, optional

__all__ = ["BASELINE", "CACHEHUB", "command_counter", "count_round_trips", "run"]

BASELINE = "redis-py (raw, same codec)"
CACHEHUB = "cachehub RedisCache"
FLOOR = "floor: redis-py EVALSHA of INCRBY only"
"""What any script-based incr costs: one EVALSHA whose script does nothing but INCRBY."""
NO_RECORD = "cachehub RedisCache, retries 0 (no request record)"
"""incr without its request record: what exactly-once by records costs on top."""
CLEAR_FILTER = "clr:*"
_FILL_CHUNK = 1000


def command_counter(client: Any) -> Callable[[], int]:
    """Total commands the server executed, excluding the INFO calls made to read it."""

    def count() -> int:
        stats: dict[str, dict[str, int]] = client.info("commandstats")
        calls = sum(int(s["calls"]) for s in stats.values())
        return calls - int(stats.get("cmdstat_info", {}).get("calls", 0))

    return count


@contextmanager
def count_round_trips() -> Iterator[Callable[[], int]]:
    """Count client round trips: every ``send_packed_command`` of any redis-py connection.

    redis-py sends a single command, or a whole pipeline, with one such call. Server-side
    ``commandstats`` cannot tell these apart, and it also counts the commands a Lua script
    runs. The wrapper costs time, so it is only installed for a separate, untimed pass.
    """
    from redis.connection import AbstractConnection

    original: Callable[..., None] = AbstractConnection.send_packed_command
    sent = 0

    def send(self: Any, command: Any, check_health: bool = True) -> None:
        nonlocal sent
        sent += 1
        original(self, command, check_health)

    AbstractConnection.send_packed_command = send  # type: ignore[method-assign]
    try:
        yield lambda: sent
    finally:
        AbstractConnection.send_packed_command = original  # type: ignore[method-assign]


def measure_with_trips(cases: list[Case], rounds: int, *, warmup: bool = True) -> list[Measurement]:
    """:func:`measure_interleaved`, then one untimed pass per case counting round trips."""
    results = measure_interleaved(cases, rounds, warmup=warmup)
    for case, result in zip(cases, results, strict=True):
        if case.setup is not None:
            case.setup()
        with count_round_trips() as trips:
            case.run()
            result.round_trips_per_op = trips() / case.ops
        if result.round_trips_per_op and result.cpu_us_per_op is not None:
            # A "request" to Redis is a round trip; commandstats also counts script internals.
            result.cpu_us_per_request = result.cpu_us_per_op / result.round_trips_per_op
    return results


def _chunks(keys: list[str], size: int) -> Iterator[list[str]]:
    it = iter(keys)
    while chunk := list(islice(it, size)):
        yield chunk


def _raw(client: Any, codec: Any) -> Adapter:
    dumps, loads = codec.dumps, codec.loads
    get, mget, set_ = client.get, client.mget, client.set

    def get_one(key: str) -> Any:
        data = get("raw:" + key)
        return None if data is None else loads(data)

    def put(key: str, value: Any) -> None:
        set_("raw:" + key, dumps(value))

    def get_many(keys: list[str]) -> dict[str, Any]:
        values = mget(["raw:" + k for k in keys])
        return {k: loads(v) for k, v in zip(keys, values, strict=True) if v is not None}

    return Adapter(BASELINE, get_one, put, get_many)


def _cachelib(port: int, prefix: str) -> Any:
    mod = optional("cachelib")
    return None if mod is None else mod.RedisCache(host="127.0.0.1", port=port, key_prefix=prefix)


def _peers(url: str, port: int) -> list[Adapter | tuple[str, str]]:
    peers: list[Adapter | tuple[str, str]] = []
    cl = _cachelib(port, "cl:")
    if cl is None:
        peers.append(("cachelib RedisCache", missing("cachelib")))
    else:
        peers.append(Adapter("cachelib RedisCache", cl.get, cl.set, lambda ks: cl.get_many(*ks)))
    django_redis = optional("django.core.cache.backends.redis") if configure_django() else None
    if django_redis is not None:
        dj = django_redis.RedisCache(url, {"KEY_PREFIX": "dj", "TIMEOUT": 300})
        peers.append(Adapter("Django RedisCache", dj.get, dj.set, dj.get_many))
    else:
        peers.append(("Django RedisCache", missing("django")))
    dogpile = optional("dogpile.cache")
    if dogpile is None:
        peers.append(("dogpile.cache redis", missing("dogpile.cache")))
    else:
        region = dogpile.make_region(key_mangler=lambda k: "dp:" + k).configure(
            "dogpile.cache.redis", expiration_time=300, arguments={"url": url}
        )
        peers.append(Adapter("dogpile.cache redis", region.get, region.set, region.get_multi))
    return peers


def run(cfg: Config) -> Section:
    """Measure the four operations and clear(filter) against a suite-owned redis-server."""
    section = Section("redis", "Redis provider", BASELINE, request_label="commands/op (server)")
    section.notes.append(load_note(os.getloadavg()[0]))  # ratios hold within a run; say how busy
    try:
        from cachehub_redis import RedisCache
        from cachehub_redis.server import RedisServer
    except ImportError:
        section.skipped = "skipped: provider not installed (cachehub_redis)"
        return section
    import redis as redis_py

    with RedisServer() as server:
        url, port = server.url, server.port
        info = redis_py.Redis.from_url(url)
        counter = command_counter(info)
        cache = RedisCache(url=url, namespace="ch:")
        raw = redis_py.Redis.from_url(url)
        adapters: list[Adapter] = [
            _raw(raw, cache.codec),
            Adapter(CACHEHUB, cache.get, cache.put, cache.get_many),
        ]
        for peer in _peers(url, port):
            if isinstance(peer, Adapter):
                adapters.append(peer)
            else:
                section.measurements.append(
                    Measurement("*", peer[0], float("nan"), [], skipped=peer[1])
                )
        n = cfg.remote_ops
        hits = [f"hit:{i}" for i in range(n)]
        misses = [f"miss:{i}" for i in range(n)]
        puts = [f"put:{i}" for i in range(n)]
        batches = list(_chunks(hits, cfg.batch))[: max(1, n // cfg.batch)]
        cases: list[Case] = []
        for adapter in adapters:
            for key in hits:
                adapter.put(key, VALUE)
            cases.extend(
                op_cases(
                    adapter,
                    hits=hits,
                    misses=misses,
                    puts=puts,
                    batches=batches,
                    value=VALUE,
                    counter=counter,
                )
            )
        once = RedisCache(url=url, namespace="nr:", retries=0)
        cases.extend(_write_cases(cfg, cache, once, raw, counter))
        section.notes.append(
            "incr runs one EVALSHA: GETRANGE of the header (and one byte past an int's 8) and "
            "one BITFIELD, plus its request record's GETRANGE and SET PX when the client may "
            f"re-send. '{FLOOR}' is the least any script-based incr costs (dispatch alone); "
            f"'{NO_RECORD}' is cachehub's incr without the record (docs/redis.md, "
            "'Counters')."
        )
        section.notes.append(
            "get_many(100) runs one EVALSHA of READ_MANY: a GETRANGE per key, bounded by "
            "maxValueSize, because MGET cannot be bounded and a value planted under the "
            "namespace would be downloaded whole (docs/redis.md, 'Values larger than "
            "maxValueSize'). That is 101 server commands against MGET's one: the cost of "
            "the bound is this row's distance from raw redis-py."
        )
        for group in by_op(cases):
            section.measurements.extend(measure_with_trips(group, cfg.rounds))
        _clear_cases(section, cfg, cache, raw, port, counter)
        try:
            cache.close()
            once.close()
        finally:
            info.close()
            raw.close()
    _targets(section)
    return section


def _write_cases(
    cfg: Config, cache: Any, once: Any, raw: Any, counter: Callable[[], int]
) -> list[Case]:
    """put_many and incr (issue #17): raw redis-py's MSET and INCRBY against cachehub's;
    ``once`` is a cache with ``retries: 0`` (its incr writes no request record)."""
    dumps = cache.codec.dumps
    items = {f"pm:{i}": VALUE for i in range(cfg.batch)}
    rounds_of_batches = max(1, cfg.remote_ops // cfg.batch)
    n = cfg.remote_ops

    def raw_put_many() -> None:
        for _ in range(rounds_of_batches):
            raw.mset({"raw:" + k: dumps(v) for k, v in items.items()})

    def cachehub_put_many() -> None:
        for _ in range(rounds_of_batches):
            cache.put_many(items)

    def raw_incr() -> None:
        for _ in range(n):
            raw.incrby("raw:counter", 1)

    def cachehub_incr() -> None:
        for _ in range(n):
            cache.incr("counter", 1)

    # The design's reference points (docs/redis.md, "Counters"), measured in the same
    # rounds: the script dispatch floor, and cachehub's incr without a request record.
    only_incrby = raw.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")

    def floor_incr() -> None:
        for _ in range(n):
            only_incrby(keys=["floor:counter"], args=[1])

    def no_record_incr() -> None:
        for _ in range(n):
            once.incr("counter", 1)

    op = f"put_many({cfg.batch})"
    return [
        Case(op, BASELINE, raw_put_many, rounds_of_batches, counter=counter),
        Case(op, CACHEHUB, cachehub_put_many, rounds_of_batches, counter=counter),
        Case("incr", BASELINE, raw_incr, n, counter=counter),
        Case("incr", CACHEHUB, cachehub_incr, n, counter=counter),
        Case("incr", FLOOR, floor_incr, n, counter=counter),
        Case("incr", NO_RECORD, no_record_incr, n, counter=counter),
    ]


def _clear_cases(
    section: Section, cfg: Config, cache: Any, raw: Any, port: int, counter: Callable[[], int]
) -> None:
    total = cfg.clear_keys_redis
    op = f"clear(filter), {total:,} keys"
    keys = [f"clr:{i}" for i in range(total)]
    blob = cache.codec.dumps(VALUE)
    rounds = min(cfg.rounds, 7)  # each round refills ``total`` keys: keep the run short

    def fill_cachehub() -> None:
        for chunk in _chunks(keys, _FILL_CHUNK):
            cache.put_many(dict.fromkeys(chunk, VALUE))

    def fill_raw(prefix: str) -> Callable[[], None]:
        def fill() -> None:
            for chunk in _chunks(keys, _FILL_CHUNK):
                raw.mset({prefix + k: blob for k in chunk})

        return fill

    def clear_raw() -> None:
        # SCAN + UNLINK in batches: what a careful hand-written clear does.
        batch: list[bytes] = []
        for key in raw.scan_iter(match="raw:" + CLEAR_FILTER, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                raw.unlink(*batch)
                batch = []
        if batch:
            raw.unlink(*batch)

    cases = [
        Case(op, BASELINE, clear_raw, 1, setup=fill_raw("raw:"), counter=counter),
        Case(
            op, CACHEHUB, lambda: cache.clear(CLEAR_FILTER), 1, setup=fill_cachehub, counter=counter
        ),
    ]
    # cachelib can only clear its whole key_prefix: give it a prefix holding just these keys.
    cl = _cachelib(port, "clc:")
    if cl is None:
        section.measurements.append(
            Measurement(op, "cachelib RedisCache", float("nan"), [], skipped=missing("cachelib"))
        )
    else:
        cases.append(
            Case(op, "cachelib RedisCache", cl.clear, 1, setup=fill_raw("clc:"), counter=counter)
        )
    for impl in ("Django RedisCache", "dogpile.cache redis"):
        section.measurements.append(
            Measurement(
                op,
                impl,
                float("nan"),
                [],
                skipped="no filtered clear (clear() flushes the db)"
                if impl.startswith("Django")
                else "no clear operation",
            )
        )
    section.measurements.extend(measure_with_trips(cases, rounds, warmup=False))
    section.notes.append(
        f"clear(filter) removes {total:,} matching keys while other keys stay; raw redis-py "
        "is SCAN MATCH + UNLINK in batches of 1000; cachelib's clear() (KEYS prefix* + DEL) "
        "removes its whole key_prefix, which here holds exactly those keys."
    )


def _targets(section: Section) -> None:
    """The issue's targets: single ops <= 1.10x raw; batches and incr <= 1.15x raw (issue
    #17 item 4: every op, each still one round trip); clear faster than the peers."""
    ops = list(dict.fromkeys(m.op for m in section.measurements if m.skipped is None))
    for op in ops:
        base, mine = section.find(op, BASELINE), section.find(op, CACHEHUB)
        if base is None or mine is None:
            continue
        clearing = op.startswith("clear")
        near_raw = None if clearing else Target("<= 1.10x raw redis-py", 1.10)
        if op == "incr" or op.startswith(("put_many", "get_many")):
            # Issue #17 item 4: <= 1.15x and still one round trip. A batch once had only the
            # round-trip goal, which let a 1.21x get_many read as "met".
            near_raw = Target("<= 1.15x raw redis-py, 1 round trip", 1.15, max_round_trips=1)
        section.rows.append(
            Row.compare(
                op,
                CACHEHUB,
                mine,
                BASELINE,
                base,
                near_raw,
                mine.requests_per_op,
            )
        )
        for reference in (FLOOR, NO_RECORD):
            ref = section.find(op, reference)
            if ref is not None:  # incr's reference points, against the same baseline
                section.rows.append(
                    Row.compare(op, reference, ref, BASELINE, base, None, ref.requests_per_op)
                )
        peers = [
            m
            for m in section.measurements
            if m.op == op
            and m.skipped is None
            and m.impl not in (BASELINE, CACHEHUB, FLOOR, NO_RECORD)
        ]
        if peers:
            best = min(peers, key=lambda m: m.ns_per_op)
            section.rows.append(
                Row.compare(
                    op,
                    CACHEHUB,
                    mine,
                    f"fastest peer: {best.impl}",
                    best,
                    Target("faster than every peer", 1.0) if clearing else None,
                    mine.requests_per_op,
                )
            )
