"""Async: 1,000 concurrent tasks doing get/put, cachehub's async shell against raw clients.

Redis: ``cache.aio()`` of a RedisCache against raw ``redis.asyncio`` (same codec), aiocache
and cashews, on one suite-owned redis-server. DynamoDB: ``cache.aio()`` of a DynamoDBCache
against raw aiobotocore calls (same codec), on moto in a child process. One event loop
per backend, kept across rounds; a round is one ``asyncio.gather`` of ``tasks`` coroutines,
each one get (a hit) or one put. Rounds of the implementations run interleaved and the
report gives the median of the per-round ratios with their inter-quartile range.

A provider whose async primitives are the worker-thread defaults (no native client) is
reported as "not available", never measured through threads as if it were native.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .harness import (
    Case,
    Config,
    Measurement,
    Row,
    Section,
    Target,
    by_op,
    load_note,
    measure_interleaved,
)
from .harness import moto_process as _moto_process
from .memory import VALUE
from .peers import missing, optional
from .report import fmt_ns

__all__ = ["DYNAMO_BASELINE", "REDIS_BASELINE", "CACHEHUB", "native_async", "run"]

TASKS = 1_000
"""Concurrent tasks per round in a full run (``Config.quick`` uses a handful)."""
REDIS_BASELINE = "redis.asyncio (raw, same codec)"
DYNAMO_BASELINE = "aiobotocore (raw, same codec)"
DYNAMO_SAME_ITEM = "aiobotocore (raw, same item)"
"""Raw puts of the very item cachehub writes (its ``createdTime`` too): between it and
the baseline is the cost of the item format in the server, between cachehub and it the
cost of cachehub's own code."""
CACHEHUB = "cachehub cache.aio()"
AIOCACHE = "aiocache RedisCache"
CASHEWS = "cashews (redis)"
KEY = "cacheKey"
POOL = 50
"""Connections of every Redis client (cachehub's, raw redis.asyncio's, the peers')."""

Op = Callable[[int], Awaitable[object]]
"""One task's work: the operation on key number ``i``."""


def native_async(cache: Any) -> bool:
    """Whether ``cache`` has its own async primitives (not the worker-thread defaults)."""
    from cachehub.api import BaseCache

    return type(cache)._aget is not BaseCache._aget


def _tasks(cfg: Config) -> int:
    return 20 if cfg.quick else TASKS


def _case(loop: asyncio.AbstractEventLoop, op: str, impl: str, work: Op, n: int) -> Case:
    async def burst() -> None:
        await asyncio.gather(*(work(i) for i in range(n)))

    return Case(op, impl, lambda: loop.run_until_complete(burst()), n)


def _cases(
    loop: asyncio.AbstractEventLoop, backend: str, impl: str, get: Op, put: Op, n: int
) -> list[Case]:
    return [
        _case(loop, f"{backend}: {n} tasks get", impl, get, n),
        _case(loop, f"{backend}: {n} tasks put", impl, put, n),
    ]


def run(cfg: Config) -> Section:
    """Measure concurrent get/put through the async shell on Redis and on DynamoDB."""
    section = Section("async", "Async API (1,000 concurrent tasks)", REDIS_BASELINE)
    load = os.getloadavg()[0]
    section.notes.append(
        "Each round is one asyncio.gather of the tasks on one event loop, timed by wall "
        "clock (the loop waits on the network); ratios are the median of per-round ratios "
        "against the raw async client of the same backend, and a verdict is given only "
        "where the whole inter-quartile range is on one side of the target."
    )
    section.notes.append(
        f"Redis: {cfg.rounds} rounds. DynamoDB: {_aws_rounds(cfg)} rounds (moto answers one "
        "request at a time, so a round of 1,000 tasks takes seconds); its ratios compare "
        "time per request, which moto dominates."
    )
    section.notes.append(load_note(load))
    _redis(section, cfg)
    _dynamodb(section, cfg)
    return section


def _aws_rounds(cfg: Config) -> int:
    return cfg.aws_rounds if cfg.quick else max(5, cfg.aws_rounds // 4)


def _measure(section: Section, cases: list[Case], rounds: int) -> None:
    for group in by_op(cases):
        section.measurements += measure_interleaved(group, rounds)


def _compare(section: Section, baseline: str, impl: str, target: Target) -> None:
    backend = "Redis" if baseline == REDIS_BASELINE else "DynamoDB"
    for m in list(section.measurements):
        if m.impl != impl or m.skipped is not None or not m.op.startswith(backend):
            continue
        base = section.find(m.op, baseline)
        if base is not None:
            section.rows.append(Row.compare(m.op, impl, m, baseline, base, target))


# ---------------------------------------------------------------------- Redis


def _redis(section: Section, cfg: Config) -> None:
    try:
        from cachehub_redis import RedisCache
        from cachehub_redis.server import RedisServer
    except ImportError:
        section.notes.append("Redis: skipped: provider not installed (cachehub_redis)")
        return
    import redis.asyncio as aredis

    n = _tasks(cfg)
    with RedisServer() as server:
        cache = RedisCache(url=server.url, namespace="aio:", maxConnections=POOL)
        if not native_async(cache):
            section.measurements.append(
                Measurement(
                    "*",
                    CACHEHUB,
                    float("nan"),
                    [],
                    skipped="not available: RedisCache has no native async primitives yet",
                )
            )
            cache.close()
            return
        loop = asyncio.new_event_loop()
        try:
            shell = cache.aio()
            # The same pool as the cache's: POOL connections, tasks wait for a free one.
            raw = aredis.Redis(
                connection_pool=aredis.BlockingConnectionPool.from_url(
                    server.url, max_connections=POOL
                )
            )
            codec = cache.codec

            async def raw_get(i: int) -> object:
                blob: Any = await raw.get(f"raw:{i}")
                return None if blob is None else codec.loads(blob)

            async def raw_put(i: int) -> object:
                return await raw.set(f"raw:{i}", codec.dumps(VALUE))

            async def mine_get(i: int) -> object:
                return await shell.get(f"k{i}")

            async def mine_put(i: int) -> object:
                await shell.put(f"k{i}", VALUE)
                return None

            cases = _cases(loop, "Redis", REDIS_BASELINE, raw_get, raw_put, n)
            cases += _cases(loop, "Redis", CACHEHUB, mine_get, mine_put, n)
            for case in cases:  # fill the keys the gets read
                if case.op.endswith("put"):
                    case.run()
            for impl, (get, put) in _redis_peers(section, server.host, server.port).items():
                peer_cases = _cases(loop, "Redis", impl, get, put, n)
                try:
                    peer_cases[1].run()  # its puts fill the keys its gets read
                except Exception as exc:  # a peer that fails is reported, not fatal
                    section.measurements.append(
                        Measurement("*", impl, float("nan"), [], skipped=f"failed: {exc!r:.120}")
                    )
                    continue
                cases += peer_cases
            _measure(section, cases, cfg.rounds)
            loop.run_until_complete(shell.close())
            loop.run_until_complete(raw.aclose())
        finally:
            loop.close()
            cache.close()
    _compare(section, REDIS_BASELINE, CACHEHUB, Target("<= 1.15x raw redis.asyncio", 1.15))
    for peer in (AIOCACHE, CASHEWS):
        if any(m.impl == peer and m.skipped is None for m in section.measurements):
            for m in [m for m in section.measurements if m.impl == CACHEHUB]:
                other = section.find(m.op, peer)
                if other is not None and m.skipped is None:
                    section.rows.append(
                        Row.compare(m.op, CACHEHUB, m, peer, other, Target(f"ahead of {peer}", 1.0))
                    )


def _redis_peers(section: Section, host: str, port: int) -> dict[str, tuple[Op, Op]]:
    """aiocache and cashews on the same server, each with its default (pickle) codec."""
    peers: dict[str, tuple[Op, Op]] = {}
    aiocache = optional("aiocache")
    if aiocache is None:
        section.measurements.append(
            Measurement("*", AIOCACHE, float("nan"), [], skipped=missing("aiocache"))
        )
    else:
        import redis.asyncio as aredis

        ac = aiocache.Cache(aiocache.Cache.REDIS, endpoint=host, port=port, namespace="ac")
        # aiocache's own pool refuses the 51st concurrent task: the same waiting pool as
        # every other client instead.
        ac.client.connection_pool = aredis.BlockingConnectionPool(
            host=host, port=port, max_connections=POOL
        )

        async def ac_get(i: int) -> object:
            return await ac.get(f"k{i}")

        async def ac_put(i: int) -> object:
            return await ac.set(f"k{i}", VALUE)

        peers[AIOCACHE] = (ac_get, ac_put)
    cashews = optional("cashews")
    if cashews is None:
        section.measurements.append(
            Measurement("*", CASHEWS, float("nan"), [], skipped=missing("cashews"))
        )
    else:
        cw = cashews.Cache()
        cw.setup(f"redis://{host}:{port}/0", max_connections=POOL)

        async def cw_get(i: int) -> object:
            return await cw.get(f"cw:{i}")

        async def cw_put(i: int) -> object:
            return await cw.set(f"cw:{i}", VALUE)

        peers[CASHEWS] = (cw_get, cw_put)
    return peers


# ---------------------------------------------------------------------- DynamoDB


def _dynamodb(section: Section, cfg: Config) -> None:
    try:
        from cachehub_dynamodb import DynamoDBCache
        from cachehub_dynamodb.client import make_async_client
    except ImportError:
        section.notes.append("DynamoDB: skipped: provider not installed (cachehub_dynamodb)")
        return
    n = _tasks(cfg)
    with _moto_process() as endpoint:
        settings = {
            "tableName": "bench_async",
            "host": endpoint,
            "region": "us-east-1",
            "accessKeyId": "bench",
            "secretkey": "bench",
            "maxConnections": 100,
        }
        cache = DynamoDBCache(settings, namespace="aio:")
        cache.connect()  # the table, before anything is timed
        loop = asyncio.new_event_loop()
        try:
            shell = cache.aio()
            raw = loop.run_until_complete(make_async_client("us-east-1", cache.settings))
            codec, table, kn = cache.codec, cache.table_name, cache.key_name

            async def raw_get(i: int) -> object:
                reply = await raw.get_item(TableName=table, Key={kn: {"S": f"raw:{i}"}})
                item = reply.get("Item")
                return None if item is None else codec.loads(item["value"]["B"])

            async def raw_put(i: int) -> object:
                item = {kn: {"S": f"raw:{i}"}, "value": {"B": codec.dumps(VALUE)}}
                return await raw.put_item(TableName=table, Item=item)

            async def raw_put_same_item(i: int) -> object:
                item = {
                    kn: {"S": f"same:{i}"},
                    "value": {"B": codec.dumps(VALUE)},
                    "createdTime": {"N": format(time.time(), ".6f")},
                }
                return await raw.put_item(TableName=table, Item=item)

            async def mine_get(i: int) -> object:
                return await shell.get(f"k{i}")

            async def mine_put(i: int) -> object:
                await shell.put(f"k{i}", VALUE)
                return None

            cases = _cases(loop, "DynamoDB", DYNAMO_BASELINE, raw_get, raw_put, n)
            cases += _cases(loop, "DynamoDB", CACHEHUB, mine_get, mine_put, n)
            cases.append(
                _case(loop, f"DynamoDB: {n} tasks put", DYNAMO_SAME_ITEM, raw_put_same_item, n)
            )
            for case in cases:
                if case.op.endswith("put"):
                    case.run()
            _measure(section, cases, _aws_rounds(cfg))
            loop.run_until_complete(shell.close())
            loop.run_until_complete(raw.close())
        finally:
            loop.close()
            cache.close()
    _compare(section, DYNAMO_BASELINE, CACHEHUB, Target("<= 1.10x raw aiobotocore", 1.10))
    _put_breakdown(section, f"DynamoDB: {n} tasks put")


def _put_breakdown(section: Section, op: str) -> None:
    """What a DynamoDB put's time is made of: the server (moto, the item it stores) or the
    client (CPU of this thread, where cachehub's code runs)."""
    base = section.find(op, DYNAMO_BASELINE)
    if base is None:
        return
    rows = []
    for impl in (DYNAMO_BASELINE, DYNAMO_SAME_ITEM, CACHEHUB):
        m = section.find(op, impl)
        if m is None:
            continue
        paired = sorted(a / b for a, b in zip(m.rounds_ns, base.rounds_ns, strict=True))
        rows.append(
            [
                impl,
                fmt_ns(m.ns_per_op),
                f"{statistics.median(paired):.2f}x",
                f"{m.cpu_us_per_op:.0f} µs" if m.cpu_us_per_op is not None else "-",
            ]
        )
    section.extra_tables.append(
        (
            f"{op}: where the time goes (the same rounds; client CPU is this process's "
            "event-loop thread, the server is moto in a child process)",
            ["implementation", "time/op", "x raw (median of rounds)", "client CPU/op"],
            rows,
        )
    )
