"""In-process caches: cachehub MemoryCache against a locked cachetools LRUCache and the peers.

Two value shapes (a ~200 B record and a ~10 KB page of records), five single-threaded
operations (get hit, get miss, put, put with a TTL, get_many) and two throughput workloads
(8 threads sharing one cache, 4 processes each with their own). Targets (issue #17):

* ``serialize: false`` within 1.1x a cachetools ``LRUCache`` guarded by a ``threading.Lock``
  (what a thread-safe cache built on cachetools costs) on get hit, get miss, put and TTL put;
* the default (copying) configuration no slower than the copying peers, cachelib
  ``SimpleCache`` and Django ``LocMemCache`` (both pickle), on get, put and get_many.
"""

from __future__ import annotations

import gc
import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import cachetools
from cachehub_memory import MemoryCache

from .harness import (
    Case,
    Config,
    Measurement,
    Row,
    Section,
    Settle,
    Target,
    by_op,
    measure_interleaved,
    steady_allocator,
)
from .peers import configure_django, missing, optional

__all__ = [
    "BASELINE",
    "CACHEHUB_DEFAULT",
    "CACHEHUB_FAST",
    "COPYING_PEERS",
    "OPS",
    "SHAPES",
    "THREADS",
    "PROCESSES",
    "VALUE",
    "run",
]

BASELINE = "cachetools LRUCache + Lock"
CACHEHUB_FAST = "cachehub memory serialize=false"
CACHEHUB_DEFAULT = "cachehub memory (default)"
CACHELIB = "cachelib SimpleCache"
DJANGO = "Django LocMemCache"
DOGPILE = "dogpile.cache memory"
COPYING_PEERS = (CACHELIB, DJANGO)
"""Peers that pickle values like cachehub's default encodes them (reads return copies)."""

TTL = 300
"""Seconds of lifetime of the TTL puts; nothing expires during a run."""
THREADS = 8
PROCESSES = 4
FAST_TARGET = Target("<= 1.1x locked LRUCache", 1.1)
COPY_TARGET = Target("<= 1.0x copying peer", 1.0)


def _record(i: int) -> dict[str, Any]:
    """A typical small cached record: ~200 bytes pickled or encoded."""
    return {
        "id": i,
        "name": f"user-{i}",
        "email": f"user{i}@example.com",
        "roles": ["admin", "editor"],
        "score": 3.14 + i,
        "active": i % 2 == 0,
        "bio": f"bio of user {i} " * 5,
    }


VALUE: dict[str, Any] = _record(42)
"""The ~200 B shape (also used by the scale section)."""

PAGE: dict[str, Any] = {"page": 1, "size": 64, "items": [_record(i) for i in range(64)]}
"""The ~10 KB shape: a page of records, as a cached query result or API response."""

SHAPES: dict[str, Any] = {"200 B": VALUE, "10 KB": PAGE}
OPS = ("get hit", "get miss", "put", "put ttl", "get_many")
_MISS = object()


@dataclass(frozen=True, slots=True)
class _Impl:
    """One library behind the five operations (bound methods wherever possible)."""

    name: str
    get: Callable[[str], Any]
    put: Callable[[str, Any], Any]
    put_ttl: Callable[[str, Any], Any] | None
    get_many: Callable[[list[str]], Any]


def _locked_lru(size: int) -> _Impl:
    """The baseline: what a thread-safe cache on cachetools costs (cachetools' own
    ``@cached(lock=...)`` guards the cache the same way)."""
    data: cachetools.LRUCache[str, Any] = cachetools.LRUCache(maxsize=size)
    lock = threading.Lock()
    get = data.get

    def get_one(key: str) -> Any:
        with lock:
            return get(key)

    def put(key: str, value: Any) -> None:
        with lock:
            data[key] = value

    def get_many(keys: list[str]) -> dict[str, Any]:
        found = {}
        with lock:
            for key in keys:
                value = get(key, _MISS)
                if value is not _MISS:
                    found[key] = value
        return found

    def put_ttl(key: str, value: Any) -> None:
        # LRUCache has no per-entry lifetime: a TTL put is held to its plain put. Through
        # the same two-argument wrapper as every other TTL put (which pass the TTL on),
        # so the wrapper's call is timed on both sides of the ratio, not on one only.
        put(key, value)

    return _Impl(BASELINE, get_one, put, put_ttl, get_many)


def _cachehub(size: int, *, serialize: bool) -> _Impl:
    cache = MemoryCache(maxsize=size, serialize=serialize)
    put = cache.put

    def put_ttl(key: str, value: Any) -> None:
        put(key, value, TTL)

    name = CACHEHUB_DEFAULT if serialize else CACHEHUB_FAST
    return _Impl(name, cache.get, put, put_ttl, cache.get_many)


def _cachelib(size: int) -> _Impl | str:
    mod = optional("cachelib")
    if mod is None:
        return missing("cachelib")
    # default_timeout=0: a plain put never expires, like the others' plain put.
    cache = mod.SimpleCache(threshold=size, default_timeout=0)
    setter = cache.set

    def put_ttl(key: str, value: Any) -> None:
        setter(key, value, TTL)

    return _Impl(CACHELIB, cache.get, setter, put_ttl, lambda keys: cache.get_many(*keys))


def _django(size: int) -> _Impl | str:
    locmem = optional("django.core.cache.backends.locmem") if configure_django() else None
    if locmem is None:
        return missing("django")
    cache = locmem.LocMemCache(
        "cachehub-bench", {"TIMEOUT": None, "OPTIONS": {"MAX_ENTRIES": size}}
    )
    setter = cache.set

    def put_ttl(key: str, value: Any) -> None:
        setter(key, value, TTL)

    return _Impl(DJANGO, cache.get, setter, put_ttl, cache.get_many)


def _dogpile(size: int) -> _Impl | str:
    mod = optional("dogpile.cache")
    if mod is None:
        return missing("dogpile.cache")
    # dogpile's region has one expiration_time for all entries: no per-put TTL case.
    region = mod.make_region().configure("dogpile.cache.memory")
    return _Impl(DOGPILE, region.get, region.set, None, region.get_multi)


_FACTORIES: tuple[tuple[str, Callable[[int], _Impl | str]], ...] = (
    (BASELINE, _locked_lru),
    (CACHEHUB_FAST, lambda size: _cachehub(size, serialize=False)),
    (CACHEHUB_DEFAULT, lambda size: _cachehub(size, serialize=True)),
    (CACHELIB, _cachelib),
    (DJANGO, _django),
    (DOGPILE, _dogpile),
)


def _impls(size: int, section: Section | None = None) -> list[_Impl]:
    """Every implementation available; absent peers noted in ``section``."""
    made: list[_Impl] = []
    for name, make in _FACTORIES:
        impl = make(size)
        if isinstance(impl, str):
            if section is not None:
                section.notes.append(f"{name}: {impl}")
                section.measurements.append(Measurement("*", name, float("nan"), [], skipped=impl))
            continue
        made.append(impl)
    return made


def _ops_for(cfg: Config, shape: str) -> int:
    """Operations per round: a 10 KB value costs ~20x a 200 B one to copy, but rounds of
    one get_many(100) of copies varied by 10% (the allocator's state): four per round."""
    return cfg.ops if shape == "200 B" else max(cfg.batch, cfg.ops // 5)


def _cases(impl: _Impl, shape: str, value: Any, n: int, batch: int) -> list[Case]:
    hits = [f"hit:{i}" for i in range(n)]
    misses = [f"miss:{i}" for i in range(n)]
    puts = [f"put:{i}" for i in range(n)]
    batches = [hits[i : i + batch] for i in range(0, n, batch)]
    for key in hits:
        impl.put(key, value)
    get, put, get_many = impl.get, impl.put, impl.get_many

    def get_hits() -> None:
        for key in hits:
            get(key)

    def get_misses() -> None:
        for key in misses:
            get(key)

    def put_all() -> None:
        for key in puts:
            put(key, value)

    def get_batches() -> None:
        for keys in batches:
            get_many(keys)

    cpu = time.thread_time_ns  # see Case.timer: steady on a loaded machine
    cases = [
        Case(f"get hit {shape}", impl.name, get_hits, n, timer=cpu),
        Case(f"get miss {shape}", impl.name, get_misses, n, timer=cpu),
        Case(f"put {shape}", impl.name, put_all, n, timer=cpu),
    ]
    if impl.put_ttl is not None:
        put_ttl = impl.put_ttl

        def put_all_ttl() -> None:
            for key in puts:
                put_ttl(key, value)

        cases.append(Case(f"put ttl {shape}", impl.name, put_all_ttl, n, timer=cpu))
    # Per key read, so the 200 B and 10 KB rows compare with get hit.
    cases.append(Case(f"get_many({batch}) {shape}", impl.name, get_batches, n, timer=cpu))
    return cases


def run(cfg: Config) -> Section:
    """Single-threaded operations on both shapes, then the throughput workloads."""
    section = Section("memory", "Memory provider", BASELINE)
    allocator = steady_allocator()
    cases: list[Case] = []
    for shape, value in SHAPES.items():
        n = _ops_for(cfg, shape)
        # Never evict during the run: eviction is not what is compared.
        for impl in _impls(4 * n, section if shape == "200 B" else None):
            cases.extend(_cases(impl, shape, value, n, cfg.batch))
    for group in by_op(cases):
        section.measurements.extend(
            measure_interleaved(group, cfg.memory_rounds, settle=_settle(group[0].op, cfg))
        )
    for shape in SHAPES:
        _single_rows(section, shape, cfg.batch)
    _throughput(section, cfg)
    section.notes += [*_notes(cfg), allocator]
    return section


def _fast_target(op: str) -> Target | None:
    """serialize=false's target on ``op``: only the 200 B single operations (references
    cost the same at any size) other than get_many, and the throughput workloads."""
    if op.endswith(" 200 B"):
        return None if op.startswith("get_many") else FAST_TARGET
    return FAST_TARGET if "9:1 get:put" in op else None


def _settle(op: str, cfg: Config) -> Settle:
    """More rounds for ``op`` while one of its target rows is undecided (see Settle)."""
    targets = [(CACHEHUB_DEFAULT, peer, COPY_TARGET.max_ratio) for peer in COPYING_PEERS]
    fast = _fast_target(op)
    if fast is not None:
        targets.append((CACHEHUB_FAST, BASELINE, fast.max_ratio))
    return Settle(tuple(targets), cfg.settle_rounds)


def _single_rows(section: Section, shape: str, batch: int) -> None:
    for op in ("get hit", "get miss", "put", "put ttl", f"get_many({batch})"):
        name = f"{op} {shape}"
        base = section.find(name, BASELINE)
        fast = section.find(name, CACHEHUB_FAST)
        default = section.find(name, CACHEHUB_DEFAULT)
        if base is not None and fast is not None:
            section.rows.append(
                Row.compare(name, CACHEHUB_FAST, fast, BASELINE, base, _fast_target(name))
            )
        if default is None:
            continue
        for peer in COPYING_PEERS:
            theirs = section.find(name, peer)
            if theirs is not None:
                section.rows.append(
                    Row.compare(name, CACHEHUB_DEFAULT, default, peer, theirs, COPY_TARGET)
                )


# ------------------------------------------------------------------ throughput

_MIX_PUT_EVERY = 10
"""Throughput workload: a put every 10th operation, gets (all hits) otherwise."""


def _workload(impl: _Impl, keys: Sequence[str], value: Any, ops: int) -> None:
    """``ops`` operations on ``impl``: 9 gets to 1 put, cycling over ``keys``."""
    get, put = impl.get, impl.put
    count = len(keys)
    for i in range(ops):
        key = keys[i % count]
        if i % _MIX_PUT_EVERY:
            get(key)
        else:
            put(key, value)


def _thread_case(impl: _Impl, keys: Sequence[str], value: Any, ops: int) -> Case:
    """``THREADS`` threads sharing ``impl``, each doing ``ops`` operations; one round
    is the wall time from the start signal to the last thread done."""

    def run_threads() -> None:
        start = threading.Barrier(THREADS + 1)

        def worker(offset: int) -> None:
            # Each thread starts at another key, so they contend on the lock, not a key.
            mine = [*keys[offset:], *keys[:offset]]
            start.wait()
            _workload(impl, mine, value, ops)

        step = len(keys) // THREADS
        threads = [threading.Thread(target=worker, args=(t * step,)) for t in range(THREADS)]
        for thread in threads:
            thread.start()
        start.wait()
        for thread in threads:
            thread.join()

    # CPU time of the whole process (all its threads): the work the threads do, lock
    # hand-overs included, without the time other tenants of the machine take.
    return Case(
        f"{THREADS} threads, 9:1 get:put",
        impl.name,
        run_threads,
        THREADS * ops,
        timer=time.process_time_ns,
    )


def _child(conn: Connection, names: list[str], size: int, keys: list[str], ops: int) -> None:
    """A throughput process: builds every implementation once, then runs the workload of
    the one named in each request and answers when done (until it reads None)."""
    impls = {impl.name: impl for impl in _impls(size) if impl.name in names}
    for impl in impls.values():
        for key in keys:
            impl.put(key, VALUE)
    conn.send("ready")
    while (name := conn.recv()) is not None:
        gc.disable()  # as in the parent's timed rounds
        try:
            started = time.thread_time_ns()
            _workload(impls[name], keys, VALUE, ops)
            spent = time.thread_time_ns() - started
        finally:
            gc.enable()
        conn.send((name, spent))


@contextmanager
def _processes(
    names: list[str], size: int, keys: list[str], ops: int
) -> Iterator[list[Connection]]:
    """``PROCESSES`` worker processes (see :func:`_child`), stopped on exit."""
    # fork: the children inherit the imported modules; the parent runs no other thread.
    ctx = multiprocessing.get_context("fork")
    conns: list[Connection] = []
    children = []
    try:
        for _ in range(PROCESSES):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_child, args=(child, names, size, keys, ops), daemon=True)
            proc.start()
            child.close()
            conns.append(parent)
            children.append(proc)
        for conn in conns:
            if not conn.poll(120) or conn.recv() != "ready":
                raise RuntimeError("a throughput process did not start")
        yield conns
    finally:
        for conn in conns:
            try:
                conn.send(None)
            except OSError:
                continue  # already gone
        for proc in children:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=10)


def _process_case(name: str, conns: list[Connection], ops: int) -> Case:
    """One round: every process runs the workload of ``name`` at once. Timed by the CPU
    time the processes report (summed), for the reason given in :func:`_thread_case`."""
    spent = [0]

    def run_processes() -> None:
        for conn in conns:
            conn.send(name)
        for conn in conns:
            # poll: a child that died answers EOF at once rather than never.
            if not conn.poll(600):
                raise RuntimeError(f"a throughput process did not finish {name}")
            done, cpu_ns = conn.recv()
            if done != name:
                raise RuntimeError(f"a throughput process answered {done} for {name}")
            spent[0] += cpu_ns

    return Case(
        f"{PROCESSES} processes, 9:1 get:put",
        name,
        run_processes,
        PROCESSES * ops,
        timer=lambda: spent[0],
    )


def _throughput(section: Section, cfg: Config) -> None:
    """Fixed work spread over threads or processes; time per op is wall time / all ops,
    so a ratio below 1 means more throughput than the baseline."""
    # Rounds of ~2,000 operations a thread: the GIL and the lock hand-overs between eight
    # threads make short rounds vary by 20% (a quarter of that gave IQRs 0.25x wide).
    ops = max(100, cfg.ops)
    keys = [f"tp:{i}" for i in range(1000)]
    impls = [i for i in _impls(4 * len(keys)) if i.name != DOGPILE]
    for impl in impls:
        for key in keys:
            impl.put(key, VALUE)
    threads = [_thread_case(impl, keys, VALUE, ops) for impl in impls]
    settle = _settle(threads[0].op, cfg)
    section.measurements.extend(measure_interleaved(threads, cfg.memory_rounds, settle=settle))
    with _processes([i.name for i in impls], 4 * len(keys), keys, ops) as conns:
        procs = [_process_case(impl.name, conns, ops) for impl in impls]
        settle = _settle(procs[0].op, cfg)
        section.measurements.extend(measure_interleaved(procs, cfg.memory_rounds, settle=settle))
    for op in (threads[0].op, procs[0].op):
        base = section.find(op, BASELINE)
        fast = section.find(op, CACHEHUB_FAST)
        default = section.find(op, CACHEHUB_DEFAULT)
        if base is None:
            continue
        if fast is not None:
            section.rows.append(
                Row.compare(op, CACHEHUB_FAST, fast, BASELINE, base, _fast_target(op))
            )
        if default is None:
            continue
        section.rows.append(Row.compare(op, CACHEHUB_DEFAULT, default, BASELINE, base, None))
        for peer in COPYING_PEERS:
            theirs = section.find(op, peer)
            if theirs is not None:
                section.rows.append(
                    Row.compare(op, CACHEHUB_DEFAULT, default, peer, theirs, COPY_TARGET)
                )


def _notes(cfg: Config) -> list[str]:
    default = MemoryCache()
    small, page = (len(default.codec.dumps(value)) for value in SHAPES.values())
    return [
        f"Shapes: a record ({small} bytes encoded by the safe codec) and a page of "
        f"64 records ({page} bytes).",
        "serialize=false stores references, like cachetools and dogpile; the default stores "
        "encoded copies, like cachelib SimpleCache and Django LocMemCache (both pickle), so it "
        "is held to those copying peers.",
        "The baseline is a cachetools LRUCache behind a threading.Lock: a thread-safe cache "
        "built on cachetools. It has no per-entry lifetime, so the TTL put "
        f"({TTL} s) is held to its plain put; the peers' TTL put passes them the same timeout. "
        "Every TTL put, the baseline's included, is called through the same two-argument "
        "wrapper, so its frame is on both sides of each ratio.",
        "get_many is timed per key read (batches of the configured size).",
        f"Rounds: {cfg.memory_rounds} per operation; an operation with a target row whose "
        f"range straddles its target after them runs on to {cfg.settle_rounds} rounds and "
        "is decided on all of them (the rounds column).",
        f"Throughput: a 9:1 get:put mix over 1,000 keys of the 200 B shape; {THREADS} threads "
        f"share one cache, {PROCESSES} processes have one each (a process cache is not shared). "
        "Time/op is the CPU time of all threads (or all processes) over all operations, so a "
        "ratio below 1.0 is more throughput per core; single-operation rows are timed by the "
        "CPU time of the measuring thread.",
    ]
