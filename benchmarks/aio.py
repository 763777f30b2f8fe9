"""Async: 1,000 concurrent tasks doing get/put, cachehub's async shell against raw clients.

Redis: ``cache.aio()`` of a RedisCache against raw ``redis.asyncio`` (same codec), aiocache
and cashews, on one suite-owned redis-server. DynamoDB: ``cache.aio()`` of a DynamoDBCache
against raw aiobotocore calls (same codec), on moto in a child process. One event loop
per backend, kept across rounds; a round is one ``asyncio.gather`` of ``tasks`` coroutines,
each doing a few gets (hits) or puts one after another. Rounds of the implementations run
interleaved and the report gives the median of the per-round ratios with their
inter-quartile range; an operation whose target rows are undecided after its rounds gets
more (:class:`~benchmarks.harness.Settle`).

Rounds are timed by the CPU time of the event-loop thread: the servers run in other
processes, so that is the client's own work - what cachehub adds - and time the thread
spends waiting for a core on a shared machine does not count. The wall-clock ratios of
the same rounds are reported beside them.

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
    Settle,
    Target,
    by_op,
    load_note,
    measure_interleaved,
    quartiles,
    steady_allocator,
)
from .harness import moto_process as _moto_process
from .memory import VALUE
from .peers import missing, optional
from .report import fmt_ns

__all__ = [
    "CACHEHUB",
    "DYNAMO_BASELINE",
    "REDIS_BASELINE",
    "dynamo_raw_ops",
    "native_async",
    "run",
    "shell_ops",
]

TASKS = 1_000
"""Concurrent tasks per round in a full run (``Config.quick`` uses a handful)."""
OPS_PER_TASK = 4
"""Operations each Redis task does one after another in a full run (a round of 4,000).
One gather of 1,000 one-op tasks lasts ~80 ms on a quiet machine: a burst of load moves
one such round's ratio by 20% or more. Four times the work per round narrows the spread
of the per-round ratios. DynamoDB rounds (moto answers one request at a time) already
last seconds with one op per task."""
REDIS_TARGET = 1.15
DYNAMO_TARGET = 1.10
REDIS_BASELINE = "redis.asyncio (raw, same codec)"
DYNAMO_BASELINE = "aiobotocore (raw, same codec)"
DYNAMO_SAME_ITEM = "aiobotocore (raw, same item)"
"""Raw requests on the very items cachehub stores (its attributes, its ``createdTime``
on a put; a get reads cachehub's items): between it and the baseline is the cost of the
item format in the client and server, between cachehub and it the cost of cachehub's
own code."""
DYNAMO_AGAIN = "aiobotocore (raw, again)"
"""The baseline's own code measured again as a second implementation in the same rounds
(an A/A control): its ratio to the baseline is the measurement's noise and nothing else,
so its range says how narrow a decided row's range can be."""
WARM_TASKS = 100
"""Untimed tasks before each DynamoDB round, doing that round's work (every implementation
alike). They run the timers the previous implementation's round left on the loop, and
reopen connections aiohttp closed after 12 s idle (aiobotocore's keep-alive timeout,
shorter than the gap between one implementation's rounds when a round lasts seconds): the
timed round paid for those in some rounds and not in others."""
CACHEHUB = "cachehub cache.aio()"
AIOCACHE = "aiocache RedisCache"
CASHEWS = "cashews (redis)"
KEY = "cacheKey"
POOL = 50
"""Connections of every Redis client (cachehub's, raw redis.asyncio's, the peers')."""

Op = Callable[[int], Awaitable[object]]
"""One operation on key number ``i``."""


def native_async(cache: Any) -> bool:
    """Whether ``cache`` has its own async primitives (not the worker-thread defaults)."""
    from cachehub.api import BaseCache

    return type(cache)._aget is not BaseCache._aget


def dynamo_raw_ops(raw: Any, codec: Any, table: str, key_name: str) -> tuple[Op, Op]:
    """The baseline's get and put: raw aiobotocore requests on keys ``raw:<i>``, the value
    encoded with cachehub's codec (also measured in instructions: benchmarks.instructions)."""

    async def raw_get(i: int) -> object:
        reply = await raw.get_item(TableName=table, Key={key_name: {"S": f"raw:{i}"}})
        item = reply.get("Item")
        return None if item is None else codec.loads(item["value"]["B"])

    async def raw_put(i: int) -> object:
        item = {key_name: {"S": f"raw:{i}"}, "value": {"B": codec.dumps(VALUE)}}
        return await raw.put_item(TableName=table, Item=item)

    return raw_get, raw_put


def shell_ops(shell: Any) -> tuple[Op, Op]:
    """cachehub's get and put through an async shell (``cache.aio()``) on keys ``k<i>``."""

    async def mine_get(i: int) -> object:
        return await shell.get(f"k{i}")

    async def mine_put(i: int) -> object:
        await shell.put(f"k{i}", VALUE)
        return None

    return mine_get, mine_put


def _tasks(cfg: Config) -> int:
    return 20 if cfg.quick else TASKS


def _per_task(cfg: Config) -> int:
    return 2 if cfg.quick else OPS_PER_TASK


def _case(
    loop: asyncio.AbstractEventLoop,
    op: str,
    impl: str,
    work: Op,
    n: int,
    per_task: int = 1,
    warm: int = 0,
) -> Case:
    """``n`` concurrent tasks, task ``t`` doing ``work`` on keys ``t``, ``t + n``, ...
    (``per_task`` of them, one after another); the same wrapper for every implementation,
    so both sides of a ratio do the same work around the operation.

    With ``warm``, each round is preceded (untimed) by a burst of ``warm`` tasks doing the
    same work: see :data:`WARM_TASKS`."""

    async def task(t: int) -> None:
        for j in range(per_task):
            await work(t + j * n)

    async def burst(tasks: int) -> None:
        await asyncio.gather(*(task(t) for t in range(tasks)))

    return Case(
        op,
        impl,
        lambda: loop.run_until_complete(burst(n)),
        n * per_task,
        setup=(lambda: loop.run_until_complete(burst(warm))) if warm else None,
        timer=time.thread_time_ns,  # the loop thread's CPU: see the module docstring
    )


def _ops(backend: str, n: int, per_task: int) -> tuple[str, str]:
    """The get and put operation names of ``backend``'s rows."""
    each = f" x {per_task}" if per_task > 1 else ""
    return f"{backend}: {n} tasks{each} get", f"{backend}: {n} tasks{each} put"


def _cases(
    loop: asyncio.AbstractEventLoop,
    ops: tuple[str, str],
    impl: str,
    get: Op,
    put: Op,
    n: int,
    per_task: int,
    warm: int = 0,
) -> list[Case]:
    return [
        _case(loop, ops[0], impl, get, n, per_task, warm),
        _case(loop, ops[1], impl, put, n, per_task, warm),
    ]


def run(cfg: Config) -> Section:
    """Measure concurrent get/put through the async shell on Redis and on DynamoDB."""
    section = Section("async", "Async API (1,000 concurrent tasks)", REDIS_BASELINE)
    load = os.getloadavg()[0]
    allocator = steady_allocator()
    section.notes.append(
        "Each round is one asyncio.gather of the tasks on one event loop; Redis tasks do "
        f"{_per_task(cfg)} operations each, one after another, DynamoDB tasks one. Rounds "
        "are timed by the CPU time of the event-loop thread (the servers run in other "
        "processes: this is the client's work, and waiting for a core on a shared machine "
        "does not count); the wall-clock ratios of the same rounds are in the table below "
        "the measurements. Ratios are the median of per-round ratios against the raw async "
        "client of the same backend, and a verdict is given only where the whole "
        "inter-quartile range is on one side of the target."
    )
    section.notes.append(
        f"Redis: {cfg.rounds} rounds, and an operation with an undecided target row runs on "
        f"to {_settle_rounds(cfg, cfg.rounds)}. DynamoDB: {_aws_rounds(cfg)} rounds, on to "
        f"{_settle_rounds(cfg, _aws_rounds(cfg))} (moto answers one request at a time, so a "
        "round of 1,000 tasks takes seconds). Each DynamoDB round is preceded, untimed, by "
        f"{WARM_TASKS} tasks doing the same work (every implementation alike): they run the "
        "timers the previous round left on the loop and reopen connections aiohttp closed "
        "after 12 s idle. The moto server keeps client connections open (HTTP/1.1 "
        "keep-alive, as DynamoDB does); before, every request was a new TCP connection, "
        "about half of the client CPU per request and the noisiest part of it. The row "
        f"'{DYNAMO_AGAIN}' is the baseline's own code measured again in the same rounds: its "
        "range is the measurement's noise."
    )
    section.notes.append(allocator)
    section.notes.append(load_note(load))
    _redis(section, cfg)
    _dynamodb(section, cfg)
    return section


def _aws_rounds(cfg: Config) -> int:
    # 15 of the full run's 41: a round of 1,000 requests lasts seconds on moto
    return cfg.aws_rounds if cfg.quick else max(5, cfg.aws_rounds * 3 // 8)


def _settle_rounds(cfg: Config, rounds: int) -> int:
    """Where an undecided operation stops: twice its rounds (four times, as the memory
    section's cap, would take this section past ten minutes), within ``settle_rounds``."""
    return min(cfg.settle_rounds, 2 * rounds)


def _measure(section: Section, cases: list[Case], rounds: int, settle: Settle) -> None:
    for group in by_op(cases):
        section.measurements += measure_interleaved(group, rounds, settle=settle)


def _compare(section: Section, baseline: str, impl: str, target: Target | None) -> None:
    backend = "Redis" if baseline == REDIS_BASELINE else "DynamoDB"
    for m in list(section.measurements):
        if m.impl != impl or m.skipped is not None or not m.op.startswith(backend):
            continue
        base = section.find(m.op, baseline)
        if base is not None:
            section.rows.append(Row.compare(m.op, impl, m, baseline, base, target))


def _wall_table(section: Section, backend: str, baseline: str) -> None:
    """The wall-clock ratios of the rounds the targets rest on (their CPU ratios beside)."""
    rows = []
    for m in section.measurements:
        if m.skipped is not None or not m.op.startswith(backend) or m.impl == baseline:
            continue
        base = section.find(m.op, baseline)
        if base is None or len(base.wall_rounds_ns) != len(m.wall_rounds_ns):
            continue
        cells = [m.op, m.impl]
        clocks = ((m.rounds_ns, base.rounds_ns), (m.wall_rounds_ns, base.wall_rounds_ns))
        for mine, theirs in clocks:
            q1, q2, q3 = quartiles([a / b for a, b in zip(mine, theirs, strict=True)])
            cells.append(f"{q2:.2f}x ({q1:.2f}-{q3:.2f})")
        cells.append(fmt_ns(statistics.median(m.wall_rounds_ns)))
        rows.append(cells)
    if rows:
        section.extra_tables.append(
            (
                f"{backend}: CPU and wall-clock ratios of the same rounds (x {baseline})",
                ["op", "implementation", "CPU: median (IQR)", "wall: median (IQR)", "wall/op"],
                rows,
            )
        )


# ---------------------------------------------------------------------- Redis


def _redis(section: Section, cfg: Config) -> None:
    try:
        from cachehub_redis import RedisCache
        from cachehub_redis.server import RedisServer
    except ImportError:
        section.notes.append("Redis: skipped: provider not installed (cachehub_redis)")
        return
    import redis.asyncio as aredis

    n, k = _tasks(cfg), _per_task(cfg)
    ops = _ops("Redis", n, k)
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
            # The client the cache builds: POOL connections that tasks wait for, and its
            # socket timeouts. redis.asyncio arms a timer per read under a socket timeout
            # (asyncio.timeout), which a raw client without one skipped: per get, a timer
            # pushed on and popped off the loop's heap, about 7 Python calls of 240
            # (counted with sys.setprofile). Same client, same work: the ratio is then
            # cachehub's own code.
            wait = cache.settings["socketTimeout"]
            raw = aredis.Redis(
                connection_pool=aredis.BlockingConnectionPool.from_url(
                    server.url,
                    max_connections=POOL,
                    timeout=wait,
                    socket_timeout=wait,
                    socket_connect_timeout=cache.settings["socketConnectTimeout"],
                )
            )
            codec = cache.codec

            async def raw_get(i: int) -> object:
                blob: Any = await raw.get(f"raw:{i}")
                return None if blob is None else codec.loads(blob)

            async def raw_put(i: int) -> object:
                return await raw.set(f"raw:{i}", codec.dumps(VALUE))

            mine_get, mine_put = shell_ops(shell)

            section.notes.append(
                f"Redis: raw redis.asyncio is configured as cachehub's client is: a blocking "
                f"pool of {POOL} connections and the same socket timeouts ({wait:g} s), "
                "each of which arms an asyncio timer per read."
            )
            cases = _cases(loop, ops, REDIS_BASELINE, raw_get, raw_put, n, k)
            cases += _cases(loop, ops, CACHEHUB, mine_get, mine_put, n, k)
            for case in cases:  # fill the keys the gets read
                if case.op.endswith("put"):
                    case.run()
            for impl, (get, put) in _redis_peers(section, server.host, server.port).items():
                peer_cases = _cases(loop, ops, impl, get, put, n, k)
                try:
                    peer_cases[1].run()  # its puts fill the keys its gets read
                except Exception as exc:  # a peer that fails is reported, not fatal
                    section.measurements.append(
                        Measurement("*", impl, float("nan"), [], skipped=f"failed: {exc!r:.120}")
                    )
                    continue
                cases += peer_cases
            targets = (
                (CACHEHUB, REDIS_BASELINE, REDIS_TARGET),
                (CACHEHUB, AIOCACHE, 1.0),
                (CACHEHUB, CASHEWS, 1.0),
            )
            settle = Settle(targets, _settle_rounds(cfg, cfg.rounds))
            _measure(section, cases, cfg.rounds, settle)
            loop.run_until_complete(shell.close())
            loop.run_until_complete(raw.aclose())
        finally:
            loop.close()
            cache.close()
    _compare(section, REDIS_BASELINE, CACHEHUB, Target("<= 1.15x raw redis.asyncio", REDIS_TARGET))
    for peer in (AIOCACHE, CASHEWS):
        if any(m.impl == peer and m.skipped is None for m in section.measurements):
            for m in [m for m in section.measurements if m.impl == CACHEHUB]:
                other = section.find(m.op, peer)
                if other is not None and m.skipped is None:
                    section.rows.append(
                        Row.compare(m.op, CACHEHUB, m, peer, other, Target(f"ahead of {peer}", 1.0))
                    )
    _wall_table(section, "Redis", REDIS_BASELINE)


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
    get_op, put_op = _ops("DynamoDB", n, 1)
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

            raw_get, raw_put = dynamo_raw_ops(raw, codec, table, kn)

            async def raw_get_same_item(i: int) -> object:
                # cachehub's own items (its puts wrote them), decoded the same way
                reply = await raw.get_item(TableName=table, Key={kn: {"S": f"aio:k{i}"}})
                item = reply.get("Item")
                return None if item is None else codec.loads(item["value"]["B"])

            async def raw_put_same_item(i: int) -> object:
                item = {
                    kn: {"S": f"same:{i}"},
                    "value": {"B": codec.dumps(VALUE)},
                    "createdTime": {"N": format(time.time(), ".6f")},
                }
                return await raw.put_item(TableName=table, Item=item)

            mine_get, mine_put = shell_ops(shell)
            ops, warm = (get_op, put_op), min(n, WARM_TASKS)
            cases = _cases(loop, ops, DYNAMO_BASELINE, raw_get, raw_put, n, 1, warm)
            cases += _cases(loop, ops, CACHEHUB, mine_get, mine_put, n, 1, warm)
            cases += _cases(
                loop, ops, DYNAMO_SAME_ITEM, raw_get_same_item, raw_put_same_item, n, 1, warm
            )
            cases += _cases(loop, ops, DYNAMO_AGAIN, raw_get, raw_put, n, 1, warm)
            for case in cases:
                if case.op == put_op:
                    case.run()
            rounds = _aws_rounds(cfg)
            target = ((CACHEHUB, DYNAMO_BASELINE, DYNAMO_TARGET),)
            settle = Settle(target, _settle_rounds(cfg, rounds))
            _measure(section, cases, rounds, settle)
            loop.run_until_complete(shell.close())
            loop.run_until_complete(raw.close())
        finally:
            loop.close()
            cache.close()
    _compare(section, DYNAMO_BASELINE, CACHEHUB, Target("<= 1.10x raw aiobotocore", DYNAMO_TARGET))
    _compare(section, DYNAMO_BASELINE, DYNAMO_AGAIN, None)  # the A/A control: noise only
    _wall_table(section, "DynamoDB", DYNAMO_BASELINE)
    _breakdown(section, get_op)
    _breakdown(section, put_op)


def _breakdown(section: Section, op: str) -> None:
    """What a DynamoDB operation's time is made of: the item format (raw requests on
    cachehub's items) or cachehub's own code, in client CPU and in wall clock."""
    base = section.find(op, DYNAMO_BASELINE)
    if base is None:
        return
    rows = []
    for impl in (DYNAMO_BASELINE, DYNAMO_AGAIN, DYNAMO_SAME_ITEM, CACHEHUB):
        m = section.find(op, impl)
        if m is None or len(m.rounds_ns) != len(base.rounds_ns):
            continue
        cpu = statistics.median(a / b for a, b in zip(m.rounds_ns, base.rounds_ns, strict=True))
        walls = zip(m.wall_rounds_ns, base.wall_rounds_ns, strict=True)
        wall = statistics.median(a / b for a, b in walls)
        rows.append(
            [
                impl,
                fmt_ns(m.ns_per_op),
                f"{cpu:.2f}x",
                fmt_ns(statistics.median(m.wall_rounds_ns)),
                f"{wall:.2f}x",
            ]
        )
    section.extra_tables.append(
        (
            f"{op}: where the time goes (the same rounds; client CPU is this process's "
            "event-loop thread, the server is moto in a child process)",
            ["implementation", "client CPU/op", "x raw (CPU)", "wall/op", "x raw (wall)"],
            rows,
        )
    )
