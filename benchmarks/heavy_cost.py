"""What :func:`cachehub.provider.heavy` costs an async put (#20): a script, not a test.

``python -m benchmarks.heavy_cost`` prints, for typical values, the CPU microseconds of
one ``heavy(value)`` call (``timeit``, best of 5) beside the loop thread's CPU for one
``await cache.aio().put(key, value)`` on a local Redis server (started here on a free
loopback port, stopped at the end), and the ratio. The rule (docs/async.md): the walk
must stay under ~2% of the put it guards. Not part of ``python -m benchmarks``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import functools
import shutil
import socket
import subprocess
import sys
import time
import timeit
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cachehub.provider import heavy
from cachehub.query import Query

PUTS = 2000


@dataclass
class _User:
    id: int
    name: str
    tags: list[str]


def _values() -> dict[str, Any]:
    row = {"id": 1, "name": "Ada", "email": "ada@example.com", "active": True, "score": 9.5}
    return {
        "int": 42,
        "short str": "hello world",
        "datetime": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        "uuid": uuid.uuid4(),
        "decimal": decimal.Decimal("1.25"),
        "8 ints (tuple)": tuple(range(8)),
        "16 ints (list)": list(range(16)),
        "row dict (5 fields)": row,
        "20 rows": [dict(row, id=i) for i in range(20)],
        "dataclass": _User(1, "Ada", ["a", "b"]),
        "query 10x3": Query(("a", "b", "c"), tuple((i, "x", None) for i in range(10))),
        "1 KB str": "x" * 1024,
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _put_cpu(values: dict[str, Any]) -> dict[str, float]:
    """The loop thread's CPU seconds per put of each value (async Redis, one task)."""
    from cachehub_redis import RedisCache  # the provider is optional for the script

    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server not on PATH: only heavy()'s own cost can be printed")
    port = _free_port()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        cache = RedisCache(host="127.0.0.1", port=port)
        # The safe codec refuses dataclasses: the pickle codec stores that one.
        pickled = RedisCache(
            host="127.0.0.1", port=port, codec="pickle", signingKey="heavy-cost-script-key"
        )
        for _ in range(100):  # the server accepts within a second
            try:
                cache.put("probe", 1)
                break
            except Exception:
                time.sleep(0.01)

        async def run() -> dict[str, float]:
            cost: dict[str, float] = {}
            for name, value in values.items():
                shell = (pickled if isinstance(value, _User) else cache).aio()
                await shell.put("warm", value)
                start = time.thread_time()
                for i in range(PUTS):
                    await shell.put(f"k{i % 50}", value)
                cost[name] = (time.thread_time() - start) / PUTS
            await cache.aio().close()
            await pickled.aio().close()
            return cost

        try:
            return asyncio.run(run())
        finally:
            cache.close()
            pickled.close()
    finally:
        server.terminate()
        server.wait(10)


def _best(call: Callable[[], object], number: int = 20_000) -> float:
    return min(timeit.repeat(call, number=number, repeat=5)) / number


def main() -> None:
    """Print heavy()'s cost per value beside an async Redis put's."""
    values = _values()
    puts = _put_cpu(values)
    print(f"{'value':<22}{'heavy() us':>12}{'put us':>10}{'share':>9}")
    for name, value in values.items():
        walk = _best(functools.partial(heavy, value))
        print(
            f"{name:<22}{walk * 1e6:>12.2f}{puts[name] * 1e6:>10.1f}"
            f"{walk / puts[name] * 100:>8.2f}%"
        )


if __name__ == "__main__":
    main()
