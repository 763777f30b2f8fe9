"""Instructions: the client side of the undecided CPU rows, counted by callgrind.

The time rows of issues #17 and #20 compare client CPU on a shared machine, whose noise
(an A/A control spans 0.93-1.09) is as wide as their margins. This section counts the
instructions the client executes instead: ``valgrind --tool=callgrind`` counts them
exactly, and the same work gives the same count with the other cores loaded or not
(CodSpeed measures CPU benchmarks the same way).

Design. Servers (moto via ``cachehub local-dynamodb``, redis-server) are children of
this, untraced, process. Each group's rounds run in ``Sizes.processes`` worker processes
(``python -m benchmarks.instructions``) under callgrind: a worker connects, fills what the
gets read, then in each of its rounds runs every implementation's case in an order rotated
by the round, once uncounted (first-call costs; an async case's warm burst) and once
counted. A tiny C helper (compiled at run time from valgrind's ``callgrind.h``) zeroes
callgrind's counters right before the counted run and dumps them right after, labelled with
the round and the case, so imports, setup and the fill never reach a figure. Hash seeds,
dict layouts, socket readiness and moto's replies differ between rounds and processes,
which gives each row a real spread. The report gives the median instructions per
operation, the median of the per-round ratios to the baseline with their inter-quartile
range, and the verdict by the rule every section applies (``harness.verdict_of``).
"""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import gc
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
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
    moto_process,
    op_cases,
)
from .report import fmt_verdict

__all__ = ["GROUPS", "MARKER_SOURCE", "Sizes", "measure", "run"]

MARKER_SOURCE = """#include <valgrind/callgrind.h>
void cg_zero(void) { CALLGRIND_ZERO_STATS; }
void cg_dump(const char *label) { CALLGRIND_DUMP_STATS_AT(label); }
int cg_running(void) { return RUNNING_ON_VALGRIND; }
"""
"""Callgrind's client requests (valgrind's documented way for a program to zero and dump
the counters) as C functions the worker calls through ctypes: Python cannot emit them."""

GROUPS: tuple[str, ...] = ("dynamodb", "redis", "memory", "async-dynamodb")
"""Worker kinds, each in its own processes: the rows of issues #17 and #20."""

AGAIN = " (again)"
"""Suffix of the A/A control: the baseline's own code as a second implementation."""


@dataclasses.dataclass(frozen=True, slots=True)
class Sizes:
    """How much one worker measures: callgrind runs code ~50x slower than the CPU."""

    rounds: int
    processes: int
    """Worker processes per group; round r runs in process r % processes. A process costs
    its imports and client construction (~2G instructions for aiobotocore's), so rounds
    share processes; more than one still puts other hash seeds into the spread."""
    ops: int
    """Operations per counted run of Redis single operations."""
    aws_ops: int
    """Operations per counted run of DynamoDB single operations (~4M instructions each)."""
    keys: int
    """Keys read per counted get_many run (memory: batches of 100)."""
    tasks: int
    """Concurrent tasks of an async round."""

    @classmethod
    def of(cls, cfg: Config) -> Sizes:
        """The full run's sizes, or tiny ones for ``--quick``."""
        if cfg.quick:
            return cls(rounds=2, processes=1, ops=3, aws_ops=2, keys=100, tasks=3)
        return cls(rounds=6, processes=2, ops=50, aws_ops=10, keys=200, tasks=20)


# --------------------------------------------------------------------- parent side


class InstructionsUnavailable(RuntimeError):
    """valgrind, its headers or a C compiler is missing: the section says which."""


def _marker_lib(workdir: Path) -> Path:
    """Compile the client-request helper into ``workdir``; raise what is missing."""
    if shutil.which("valgrind") is None:
        raise InstructionsUnavailable("valgrind is not installed (apt-get install valgrind)")
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None:
        raise InstructionsUnavailable("no C compiler (cc) to build the callgrind helper")
    source, lib = workdir / "cgmark.c", workdir / "cgmark.so"
    source.write_text(MARKER_SOURCE, encoding="ascii")
    done = subprocess.run(
        [cc, "-O2", "-shared", "-fPIC", "-o", str(lib), str(source)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise InstructionsUnavailable(
            "could not build the callgrind helper (valgrind/callgrind.h missing?): "
            f"{done.stderr.strip()[:200]}"
        )
    return lib


_DESC = re.compile(r"^desc: Trigger: Client Request: (.*)$", re.M)
_SUMMARY = re.compile(r"^summary: (\d+)$", re.M)


def parse_dumps(files: Sequence[Path]) -> dict[tuple[int, str, str], float]:
    """Instructions per operation of each labelled dump: ``(round, op, impl) -> count / ops``.

    A dump's ``summary`` is the instructions executed since the counters were last zeroed
    (callgrind's format: the total of the events it collected).
    """
    counts: dict[tuple[int, str, str], int] = {}
    ops: dict[tuple[int, str, str], int] = {}
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        desc, summary = _DESC.search(text), _SUMMARY.search(text)
        if desc is None or summary is None:
            continue  # the dump at program termination: everything outside the regions
        r, op, impl, n = desc.group(1).split("\t")
        key = (int(r), op, impl)
        # One file per thread of a dump (--separate-threads): a region's threads add up.
        counts[key] = counts.get(key, 0) + int(summary.group(1))
        ops[key] = int(n)
    return {key: count / ops[key] for key, count in counts.items()}


def _worker_round(
    spec: dict[str, Any], workdir: Path, timeout: float
) -> dict[tuple[int, str, str], float]:
    """Run one worker under callgrind and read its dumps."""
    out = workdir / f"p{spec['process']}-{spec['group']}"
    out.mkdir()
    command = [
        "valgrind",
        "--tool=callgrind",
        # One count per thread: callgrind otherwise hands a thread's pending cost to the
        # next dump, and the event loop's executor thread that built the aiobotocore
        # client (~1.7G instructions) landed in the first async region (352M per get,
        # against 3.5M in every later one).
        "--separate-threads=yes",
        f"--callgrind-out-file={out}/cg.%p",
        sys.executable,
        "-m",
        "benchmarks.instructions",
        json.dumps(spec),
    ]
    root = str(Path(__file__).resolve().parent.parent)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH")))),
    }
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-3:]
        raise RuntimeError(f"worker {spec['group']} failed: {' / '.join(tail)[:300]}")
    # Numbered files are the labelled dumps (cg.<pid>.<n>-<thread>); the unnumbered one
    # is what ran outside every region (imports, client construction in a worker thread).
    return parse_dumps(sorted(out.glob("cg.*.*-*")))


@contextmanager
def _servers(groups: Sequence[str]) -> Iterator[dict[str, str]]:
    """The servers the groups need, each in its own untraced process."""
    with ExitStack() as stack:
        where: dict[str, str] = {}
        if any(g.endswith("dynamodb") for g in groups):
            where["endpoint"] = stack.enter_context(moto_process())
        if "redis" in groups:
            from cachehub_redis.server import RedisServer

            where["redis"] = stack.enter_context(RedisServer()).url
        yield where


def measure(
    groups: Sequence[str], sizes: Sizes, *, jobs: int = 0, timeout: float = 1800.0
) -> dict[tuple[str, str], list[float]]:
    """Instructions per operation of every ``(op, impl)``, one value per round.

    Round r of every group runs before round r + 1 of any; within a worker the
    implementations run in an order rotated by r. ``jobs`` workers run at once (0: all of
    them): a count does not depend on what else runs, so they may share the machine, and
    each is mostly one core's work for minutes.
    """
    results: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="cachehub-instr-") as tmp, _servers(groups) as where:
        workdir = Path(tmp)
        lib = _marker_lib(workdir)
        specs = [
            {
                "group": g,
                "process": p,
                "rounds": list(range(p, sizes.rounds, sizes.processes)),
                "lib": str(lib),
                "sizes": dataclasses.asdict(sizes),
                **where,
            }
            for p in range(sizes.processes)
            for g in groups
        ]
        counted: dict[tuple[int, str, str], float] = {}
        with ThreadPoolExecutor(max_workers=jobs or len(specs)) as pool:
            for counts in pool.map(lambda spec: _worker_round(spec, workdir, timeout), specs):
                counted.update(counts)
    for (_, op, impl), value in sorted(counted.items()):  # by round: pairs line up
        results.setdefault((op, impl), []).append(value)
    return results


# --------------------------------------------------------------------- worker side


def _sync_cases(base: Adapter, mine: Adapter, n: int) -> list[Case]:
    """get hit / get miss / put of the baseline, cachehub and the A/A control (the
    baseline's adapter again), after storing the ``n`` keys the hits read."""
    adapters = [base, mine, dataclasses.replace(base, impl=base.impl + AGAIN)]
    hits = [f"hit:{i}" for i in range(n)]
    for adapter in adapters[:2]:
        for key in hits:
            adapter.put(key, _value())
    cases: list[Case] = []
    for adapter in adapters:
        made = op_cases(
            adapter,
            hits=hits,
            misses=[f"miss:{i}" for i in range(n)],
            puts=[f"put:{i}" for i in range(n)],
            batches=[],
            value=_value(),
        )
        cases += [c for c in made if not c.op.startswith("get_many")]
    return cases


def _value() -> Any:
    from .memory import VALUE

    return VALUE


def _dynamodb(spec: dict[str, Any], stack: ExitStack) -> list[Case]:
    from cachehub_dynamodb import DynamoDBCache

    from . import dynamodb as d

    n, r = spec["sizes"]["aws_ops"], spec["process"]
    endpoint = spec["endpoint"]
    cache = DynamoDBCache(
        tableName=f"instr_ch_{r}", host=endpoint, region=d.REGION, **d.CREDENTIALS
    )
    stack.callback(cache.close)
    raw = d.RawTable(d.raw_boto_client(endpoint), f"instr_raw_{r}", cache.codec)
    base = Adapter(d.BASELINE, raw.get, raw.put, raw.get_many)
    return _sync_cases(base, Adapter(d.CACHEHUB, cache.get, cache.put, cache.get_many), n)


def _redis(spec: dict[str, Any], stack: ExitStack) -> list[Case]:
    import redis as redis_py
    from cachehub_redis import RedisCache

    from . import redis as rd

    n, url = spec["sizes"]["ops"], spec["redis"]
    cache = RedisCache(url=url, namespace=f"ch{spec['process']}:")
    client = redis_py.Redis.from_url(url)
    stack.callback(client.close)
    stack.callback(cache.close)
    mine = Adapter(rd.CACHEHUB, cache.get, cache.put, cache.get_many)
    return _sync_cases(rd._raw(client, cache.codec), mine, n)


def _memory(spec: dict[str, Any], _stack: ExitStack) -> list[Case]:
    from . import memory as m

    keys = spec["sizes"]["keys"]
    peer = m._cachelib(keys)
    again = m._cachelib(keys)
    if isinstance(peer, str) or isinstance(again, str):
        raise RuntimeError(peer if isinstance(peer, str) else str(again))
    impls = [
        peer,
        m._cachehub(keys, serialize=True),
        dataclasses.replace(again, name=peer.name + AGAIN),
    ]
    cases: list[Case] = []
    for impl in impls:
        made = m._cases(impl, "10 KB", m.PAGE, keys, 100)
        cases += [c for c in made if c.op.startswith("get_many")]
    return cases


def _async_dynamodb(spec: dict[str, Any], stack: ExitStack) -> list[Case]:
    from cachehub_dynamodb import DynamoDBCache
    from cachehub_dynamodb.client import make_async_client

    from . import aio

    n, r = spec["sizes"]["tasks"], spec["process"]
    settings = {
        "tableName": f"instr_aio_{r}",
        "host": spec["endpoint"],
        "region": "us-east-1",
        "accessKeyId": "bench",
        "secretkey": "bench",
        "maxConnections": 100,
    }
    cache = DynamoDBCache(settings, namespace="aio:")
    cache.connect()
    stack.callback(cache.close)
    loop = asyncio.new_event_loop()
    stack.callback(loop.close)
    shell = cache.aio()
    raw = loop.run_until_complete(make_async_client("us-east-1", cache.settings))
    stack.callback(lambda: loop.run_until_complete(raw.close()))
    stack.callback(lambda: loop.run_until_complete(shell.close()))
    ops = aio._ops("DynamoDB", n, 1)
    warm = min(n, aio.WARM_TASKS)
    raw_get, raw_put = aio.dynamo_raw_ops(raw, cache.codec, cache.table_name, cache.key_name)
    cases = aio._cases(loop, ops, aio.DYNAMO_BASELINE, raw_get, raw_put, n, 1, warm)
    cases += aio._cases(loop, ops, aio.CACHEHUB, *aio.shell_ops(shell), n, 1, warm)
    cases += aio._cases(loop, ops, aio.DYNAMO_BASELINE + AGAIN, raw_get, raw_put, n, 1, warm)
    for case in cases:
        if case.op == ops[1]:
            case.run()  # the puts fill the keys the gets read
    return cases


_BUILDERS: dict[str, Callable[[dict[str, Any], ExitStack], list[Case]]] = {
    "dynamodb": _dynamodb,
    "redis": _redis,
    "memory": _memory,
    "async-dynamodb": _async_dynamodb,
}


def worker(spec: dict[str, Any]) -> None:
    """One round of one group, run under callgrind by :func:`measure`."""
    lib = ctypes.CDLL(spec["lib"])
    lib.cg_dump.argtypes = [ctypes.c_char_p]
    with ExitStack() as stack:
        cases = _BUILDERS[spec["group"]](spec, stack)
        for group, r in [(g, r) for r in spec["rounds"] for g in by_op(cases)]:
            shift = r % len(group)
            for case in group[shift:] + group[:shift]:
                if case.setup is not None:
                    case.setup()  # an async case's warm burst: that round's work, uncounted
                else:
                    case.run()  # first-call costs, uncounted: the counters are zeroed next
                gc.collect()
                gc.disable()  # a collection would land in one implementation's count
                try:
                    lib.cg_zero()
                    case.run()
                    lib.cg_dump(f"{r}\t{case.op}\t{case.impl}\t{case.ops}".encode())
                finally:
                    gc.enable()


# --------------------------------------------------------------------- the section


def _targets() -> list[tuple[str, str, str, Target, str]]:
    """``(group, impl, baseline, target, issue)`` of every target row, in report order."""
    from . import aio, dynamodb, memory, redis

    return [
        ("dynamodb", dynamodb.CACHEHUB, dynamodb.BASELINE, dynamodb.SINGLE_TARGET, "#17"),
        ("redis", redis.CACHEHUB, redis.BASELINE, Target("<= 1.10x raw redis-py", 1.10), "#17"),
        ("memory", memory.CACHEHUB_DEFAULT, "cachelib SimpleCache", memory.COPY_TARGET, "#17"),
        (
            "async-dynamodb",
            aio.CACHEHUB,
            aio.DYNAMO_BASELINE,
            Target("<= 1.10x raw aiobotocore", aio.DYNAMO_TARGET),
            "#20",
        ),
    ]


def rows(results: dict[tuple[str, str], list[float]]) -> list[Row]:
    """Target rows and A/A control rows (no target) from per-round counts."""
    out: list[Row] = []
    ops = list(dict.fromkeys(op for op, _ in results))
    for _group, impl, baseline, target, _issue in _targets():
        for op in ops:
            base = results.get((op, baseline))
            if base is None:
                continue
            for who, goal in ((impl, target), (baseline + AGAIN, None)):
                mine = results.get((op, who))
                if mine is None or len(mine) != len(base):
                    continue
                fake = Measurement(op, who, statistics.median(mine), mine)
                ref = Measurement(op, baseline, statistics.median(base), base)
                out.append(Row.compare(op, who, fake, baseline, ref, goal))
    return out


def _table(found: list[Row]) -> tuple[str, list[str], list[list[str]]]:
    body = []
    for row in found:
        spread = row.iqr
        body.append(
            [
                row.op,
                row.impl,
                f"{row.ns_per_op:,.0f}",
                row.baseline,
                f"{row.baseline_ns:,.0f}",
                f"{row.ratio:.3f}x",
                "-" if spread is None else f"{spread[0]:.3f}-{spread[1]:.3f}x",
                "- (A/A control)" if row.target is None else row.target.label,
                fmt_verdict(row.verdict),
                str(len(row.ratios)),
            ]
        )
    header = [
        "op",
        "implementation",
        "instructions/op",
        "baseline",
        "baseline instructions/op",
        "ratio (median)",
        "IQR",
        "target",
        "verdict",
        "rounds",
    ]
    return "Client instructions per operation (callgrind)", header, body


def run(cfg: Config, groups: Sequence[str] = GROUPS) -> Section:
    """Count the client's instructions for the rows of issues #17 and #20."""
    section = Section("instructions", "Instruction counts (client side, callgrind)", "-")
    sizes = Sizes.of(cfg)
    try:
        results = measure(groups, sizes)
    except InstructionsUnavailable as exc:
        section.skipped = f"skipped: {exc}"
        return section
    found = rows(results)
    section.extra_tables.append(_table(found))
    section.notes += [
        "What is counted: the instructions the client process executes in the measured "
        "operations (Python interpreter, C extensions, libc, user space only), by "
        "valgrind's callgrind, which executes the same work to the same count on a quiet "
        "or a loaded machine. Servers (moto, redis-server) run in other, untraced "
        "processes. A ratio here is how much more work cachehub's client does than the "
        "baseline for the same operations.",
        "What is not counted: cache and branch misses (an instruction is an instruction), "
        "time in the kernel (syscalls: sockets, memory mapping), and waiting (for the "
        "server, the network, the GIL, a core). The time rows of the other sections, "
        "which include all of that, stay the measure of speed; an instruction ratio "
        "decides only how much client work cachehub adds.",
        f"Method: {sizes.rounds} rounds in {sizes.processes} processes per group under "
        "callgrind (other hash seeds, other socket timings); in each round every "
        "implementation runs its operation once uncounted (first-call costs) and once "
        "counted, in an order rotated each round. Redis: "
        f"{sizes.ops} operations per count; DynamoDB: {sizes.aws_ops}; memory: get_many of "
        f"{sizes.keys} keys in batches of 100, per key read; async: one gather of "
        f"{sizes.tasks} tasks (the time rows use 1,000; each task does the same one "
        "request, and fewer tasks keep a callgrind round to minutes). The '(again)' rows "
        "are the baseline's own code as a second implementation (A/A control): their "
        "range is the method's own spread.",
    ]
    missed = [r for r in found if r.verdict == "not met"]
    if missed:
        section.notes.append(
            "Not met in instructions: "
            + "; ".join(f"{r.op} ({r.impl}, {r.ratio:.2f}x)" for r in missed)
            + ". Where the extra instructions go: the text above this page's generated part."
        )
    return section


def main(argv: Sequence[str]) -> int:
    """Worker entry point: ``python -m benchmarks.instructions '<spec json>'``."""
    worker(json.loads(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
