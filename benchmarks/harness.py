"""Timing primitives shared by every section: cases, rounds, medians, results.

A *case* is one implementation doing one operation ``ops`` times per round. Each
round is timed with ``perf_counter_ns``; the reported figure is the median
nanoseconds per operation over the rounds, so one noisy round (GC, another process
on the machine) does not move the result. Ratios are always taken between cases
measured in the same run, on the same backend instance.
"""

from __future__ import annotations

import ctypes
import gc
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "load_note",
    "moto_process",
    "Case",
    "Config",
    "Measurement",
    "Row",
    "Section",
    "Settle",
    "Target",
    "Verdict",
    "quartiles",
    "verdict_of",
    "Adapter",
    "machine_info",
    "by_op",
    "measure",
    "measure_interleaved",
    "op_cases",
    "skipped",
    "steady_allocator",
]


@dataclass(frozen=True, slots=True)
class Config:
    """Sizes for one run: ``quick`` shrinks every count so all sections finish fast."""

    quick: bool
    rounds: int
    """Rounds for the codec and Redis cases. Many short rounds rather than a few long
    ones: a burst of load on this shared machine then spoils a few of many paired
    rounds, which the median of the per-round ratios ignores."""
    memory_rounds: int
    """Rounds for the in-process cases: each is cheap, and the differences between
    implementations are a few percent, so many short rounds (timed by CPU time, see
    :attr:`Case.timer`) steady the median ratio and its inter-quartile range."""
    settle_rounds: int
    """The most rounds a memory or codec operation runs while a target's inter-quartile
    range still straddles its target (see :class:`Settle`); the first ``rounds`` /
    ``memory_rounds`` decide every other row."""
    ops: int
    """Operations per round for cheap (in-process) operations."""
    remote_ops: int
    """Operations per round against a server (Redis)."""
    aws_ops: int
    """Operations per round against the DynamoDB server (slow: HTTP + moto)."""
    aws_rounds: int
    """Rounds for DynamoDB cases: many short ones, like ``rounds``."""
    batch: int
    """Keys per get_many / put_many call."""
    clear_keys_redis: int
    clear_keys_dynamodb: int
    scale_keys: int
    codec_ops: int

    @classmethod
    def full(cls) -> Config:
        """The sizes the published docs/benchmarks.md is generated with."""
        return cls(
            quick=False,
            rounds=41,
            memory_rounds=41,
            settle_rounds=164,
            ops=2_000,
            remote_ops=500,
            aws_ops=100,
            aws_rounds=41,
            batch=100,
            clear_keys_redis=100_000,
            clear_keys_dynamodb=10_000,
            scale_keys=100_000,
            codec_ops=200,
        )

    @classmethod
    def quick_mode(cls) -> Config:
        """Tiny sizes: checks every section end to end in seconds."""
        return cls(
            quick=True,
            rounds=2,
            memory_rounds=2,
            settle_rounds=4,
            ops=500,
            remote_ops=50,
            aws_ops=5,
            aws_rounds=1,
            batch=50,
            clear_keys_redis=500,
            clear_keys_dynamodb=50,
            scale_keys=5_000,
            codec_ops=10,
        )


@dataclass(slots=True)
class Case:
    """One implementation performing one operation.

    ``run`` performs exactly ``ops`` operations; ``setup`` (untimed) runs before each
    round, e.g. to refill what a clear() removed. ``counter`` returns a monotonic
    request count (HTTP requests, Redis commands) read before and after a round;
    ``timer`` is the clock a round is timed with.
    """

    op: str
    impl: str
    run: Callable[[], object]
    ops: int
    setup: Callable[[], object] | None = None
    counter: Callable[[], int] | None = None
    timer: Callable[[], int] | None = None
    """Nanosecond clock a round is timed with; wall time (``perf_counter_ns``) unless
    set. In-process cases use ``time.thread_time_ns``: CPU time of the measuring
    thread, which time spent descheduled by other processes on a shared machine does
    not inflate (wall time there varies by 2x from round to round)."""


@dataclass(slots=True)
class Measurement:
    """The result of timing a :class:`Case`."""

    op: str
    impl: str
    ns_per_op: float
    rounds_ns: list[float]
    requests_per_op: float | None = None
    cpu_us_per_request: float | None = None
    cpu_us_per_op: float | None = None
    """Client CPU (this thread) per operation."""
    round_trips_per_op: float | None = None
    """Client round trips per operation, counted in a separate untimed pass."""
    skipped: str | None = None
    """Why the case was not measured (missing package, server failure...)."""
    rounds_cpu_ns: list[float] = field(default_factory=list)
    """Client CPU (this thread) per operation in each round, in the order of ``rounds_ns``."""
    wall_rounds_ns: list[float] = field(default_factory=list)
    """Wall-clock ns per operation of each round (``rounds_ns`` is by the case's timer)."""


@dataclass(frozen=True, slots=True)
class Target:
    """A goal checked against a measured ratio (cachehub time / baseline time).

    With ``max_round_trips`` the round trips per operation (a deterministic count) must
    also stay within it: more is "not met" whatever the ratio. A ``max_ratio`` of
    ``inf`` makes the count the only goal.
    """

    label: str
    max_ratio: float
    max_round_trips: float | None = None


Verdict = Literal["met", "not met", "inconclusive"]
"""What a target row says: ``met`` / ``not met`` only when the whole inter-quartile range
of its per-round ratios lies on one side of the target, else ``inconclusive``."""


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """(first quartile, median, third quartile) of ``values`` (at least one value).

    The inclusive method interpolates between observed values, so the range never
    reaches beyond the smallest and largest ratio measured.
    """
    if not values:
        raise ValueError("quartiles of no values")
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def verdict_of(ratios: Sequence[float], max_ratio: float) -> Verdict:
    """The verdict of per-round ratios against a ``max_ratio`` target (the one rule every
    section applies): ``met`` when the whole inter-quartile range is at or below the
    target, ``not met`` when it is all above, else (or without ratios) ``inconclusive``.
    """
    if not ratios:
        return "inconclusive"
    low, _, high = quartiles(ratios)
    if high <= max_ratio:
        return "met"
    if low > max_ratio:
        return "not met"
    return "inconclusive"


@dataclass(frozen=True, slots=True)
class Settle:
    """More rounds for an operation whose target rows are not yet decided.

    A verdict flips between runs when a quartile of the per-round ratios sits near the
    target: the quartiles of 41 rounds move by a few percent from run to run. So when any
    of ``targets`` is *inconclusive* after the first rounds, the operation runs on (every
    implementation again, interleaved as before) until ``max_rounds`` rounds ran, and the
    verdict rests on all of them; one still straddling its target then stays
    *inconclusive*. More rounds do not narrow the range itself (it is the spread of the
    per-round ratios, not an error bar): they pin its ends down. Two looks only, the
    second at the cap: stopping at whichever look first cleared the target would favour
    a lucky stretch, the very flip this is meant to prevent.
    """

    targets: tuple[tuple[str, str, float], ...]
    """``(implementation, baseline implementation, max ratio)`` of each target row."""
    max_rounds: int

    def undecided(self, cases: Sequence[Case], samples: Sequence[Sequence[float]]) -> bool:
        """Whether a target's per-round ratios (``samples`` aligned with ``cases``) straddle it."""
        index = {case.impl: i for i, case in enumerate(cases)}
        for impl, base, max_ratio in self.targets:
            if impl not in index or base not in index:
                continue  # an implementation that was not measured (a missing peer)
            mine, theirs = samples[index[impl]], samples[index[base]]
            if not all(theirs):
                continue  # unpaired, as Row.compare would find it: no verdict to settle
            ratios = [m / b for m, b in zip(mine, theirs, strict=True)]
            if verdict_of(ratios, max_ratio) == "inconclusive":
                return True
        return False


@dataclass(slots=True)
class Row:
    """One line of a section's target table: cachehub against the baseline on one op."""

    op: str
    impl: str
    ns_per_op: float
    baseline: str
    baseline_ns: float
    target: Target | None
    requests_per_op: float | None = None
    paired: float | None = None
    """Median of the per-round ratios, when both were measured in the same rounds."""
    round_trips_per_op: float | None = None
    ratios: list[float] = field(default_factory=list)
    """The per-round ratios (cachehub round r / baseline round r) behind ``paired``."""

    @classmethod
    def compare(
        cls,
        op: str,
        impl: str,
        mine: Measurement,
        baseline: str,
        base: Measurement,
        target: Target | None,
        requests_per_op: float | None = None,
    ) -> Row:
        """``mine`` against ``base``, with the paired ratio when their rounds line up."""
        paired = None
        ratios: list[float] = []
        if mine.rounds_ns and len(mine.rounds_ns) == len(base.rounds_ns) and all(base.rounds_ns):
            ratios = [m / b for m, b in zip(mine.rounds_ns, base.rounds_ns, strict=True)]
            paired = statistics.median(ratios)
        return cls(
            op,
            impl,
            mine.ns_per_op,
            baseline,
            base.ns_per_op,
            target,
            requests_per_op,
            paired,
            mine.round_trips_per_op,
            ratios,
        )

    @property
    def ratio(self) -> float:
        """cachehub time / baseline time (lower is better; 1.0 is parity).

        Rounds of the implementations of one operation run interleaved, so round r of each
        ran at nearly the same time: the median of the per-round ratios cancels the load
        that drifts between rounds, which the ratio of the two medians does not.
        """
        if self.paired is not None:
            return self.paired
        return self.ns_per_op / self.baseline_ns if self.baseline_ns else float("inf")

    @property
    def iqr(self) -> tuple[float, float] | None:
        """The inter-quartile range of the per-round ratios, or None without pairing."""
        if not self.ratios:
            return None
        q1, _, q3 = quartiles(self.ratios)
        return q1, q3

    @property
    def verdict(self) -> Verdict | None:
        """``met`` / ``not met`` where the evidence is clear, else ``inconclusive``.

        A ratio target is decided only when the whole inter-quartile range of the
        per-round ratios lies on one side of it: a median alone flips between runs when
        it sits within the noise of the target. A round-trip target is an exact count.
        None when the row has no target.
        """
        if self.target is None:
            return None
        if self.target.max_round_trips is not None:
            trips = self.round_trips_per_op
            if trips is None or trips > self.target.max_round_trips:
                return "not met"
            if self.target.max_ratio == float("inf"):
                return "met"
        return verdict_of(self.ratios, self.target.max_ratio)

    @property
    def met(self) -> bool | None:
        """The verdict as a bool; None when the row has no target or is inconclusive."""
        return {None: None, "inconclusive": None, "met": True, "not met": False}[self.verdict]


@dataclass(slots=True)
class Section:
    """Everything one section measured, ready for the report."""

    key: str
    title: str
    baseline: str
    measurements: list[Measurement] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra_tables: list[tuple[str, list[str], list[list[str]]]] = field(default_factory=list)
    """Additional ``(caption, header, rows)`` tables (profiles, memory peaks...)."""
    skipped: str | None = None
    request_label: str = "requests/op"
    """What the section's request counter counts (HTTP requests, Redis commands)."""

    def find(self, op: str, impl: str) -> Measurement | None:
        """The measurement of ``impl`` doing ``op``, if it was taken."""
        for m in self.measurements:
            if m.op == op and m.impl == impl and m.skipped is None:
                return m
        return None


def measure(case: Case, rounds: int, *, warmup: bool = True) -> Measurement:
    """Time ``case`` over ``rounds`` rounds; median ns/op, requests/op, client CPU/request."""
    return measure_interleaved([case], rounds, warmup=warmup)[0]


def measure_interleaved(
    cases: Sequence[Case], rounds: int, *, warmup: bool = True, settle: Settle | None = None
) -> list[Measurement]:
    """Time several cases (implementations of one operation) round-robin.

    Round r of every case runs before round r + 1 of any, in an order rotated each
    round, so load that drifts while the suite runs (another process, CPU frequency)
    lands on every implementation alike instead of on whichever ran last; the ratios
    between them are what the report is about.

    Client CPU is ``time.thread_time``: a server running inside this process (a test's
    in-process moto, say) would otherwise be billed to the client. With ``settle``, batches
    of ``rounds`` more rounds follow while a target is undecided (see :class:`Settle`).
    """
    if warmup:
        for case in cases:
            if case.setup is not None:
                case.setup()
            case.run()  # first-call costs: connections, imports, lazy table creation
    # Each round starts with a full collection (see _round). Objects that were alive before
    # the rounds began are never a round's garbage: freezing them keeps that collection
    # proportional to what the rounds allocate, not to the heap of the host process (a
    # pytest session holding a whole suite's objects made it take seconds per round).
    gc.freeze()
    try:
        return _measure_rounds(cases, rounds, settle)
    finally:
        gc.unfreeze()


def _measure_rounds(
    cases: Sequence[Case], rounds: int, settle: Settle | None = None
) -> list[Measurement]:
    samples: list[list[float]] = [[] for _ in cases]
    walls: list[list[float]] = [[] for _ in cases]
    requests: list[list[int]] = [[] for _ in cases]
    cpu: list[list[float]] = [[] for _ in cases]
    order = list(range(len(cases)))
    done, batch = 0, rounds
    while batch > 0:
        for r in range(done, done + batch):
            shift = r % len(cases)
            for i in order[shift:] + order[:shift]:
                elapsed, cpu_s, sent, wall = _round(cases[i])
                samples[i].append(elapsed / cases[i].ops)
                walls[i].append(wall / cases[i].ops)
                requests[i].append(sent)
                cpu[i].append(cpu_s)
        done += batch
        batch = 0
        if settle is not None and done < settle.max_rounds and settle.undecided(cases, samples):
            batch = settle.max_rounds - done  # one more look only: see Settle
    results = []
    for i, case in enumerate(cases):
        result = Measurement(case.op, case.impl, statistics.median(samples[i]), samples[i])
        result.wall_rounds_ns = walls[i]
        result.cpu_us_per_op = statistics.median(cpu[i]) * 1e6 / case.ops
        result.rounds_cpu_ns = [c * 1e9 / case.ops for c in cpu[i]]
        if case.counter is not None:
            per_round = statistics.median(requests[i])
            result.requests_per_op = per_round / case.ops
            if per_round:
                result.cpu_us_per_request = statistics.median(cpu[i]) * 1e6 / per_round
        results.append(result)
    return results


def _round(case: Case) -> tuple[int, float, int, int]:
    """One timed round: (elapsed ns, client CPU seconds, requests counted, wall ns)."""
    if case.setup is not None:
        case.setup()
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()  # a collection landing in one impl's round would skew its ratio
    try:
        before = case.counter() if case.counter is not None else 0
        clock = case.timer or time.perf_counter_ns
        cpu0 = time.thread_time()
        wall0 = time.perf_counter_ns()
        t0 = clock()
        case.run()
        elapsed = clock() - t0
        wall = time.perf_counter_ns() - wall0
        cpu_s = time.thread_time() - cpu0
        after = case.counter() if case.counter is not None else 0
    finally:
        if gc_was_enabled:
            gc.enable()
    return elapsed, cpu_s, after - before, wall


def by_op(cases: Sequence[Case]) -> list[list[Case]]:
    """``cases`` grouped by operation, in first-seen order (for :func:`measure_interleaved`)."""
    groups: dict[str, list[Case]] = {}
    for case in cases:
        groups.setdefault(case.op, []).append(case)
    return list(groups.values())


def skipped(op: str, impl: str, reason: str) -> Measurement:
    """A placeholder measurement for a case that could not run, saying why."""
    return Measurement(op, impl, float("nan"), [], skipped=reason)


_M_TRIM_THRESHOLD: int = -1  # glibc's mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD: int = -3
_STEADY_MMAP: int = 32 << 20  # the largest mmap threshold glibc accepts on 64-bit
_steady: list[str] = []


def steady_allocator() -> str:
    """Keep this process's large allocations out of fresh mmaps; the report's note on it.

    glibc serves an allocation above its mmap threshold (128 KiB at first, then moved by
    what was last freed) with a fresh mapping, and returns freed heap above its trim
    threshold to the system: the next allocation of that size then pays ~250 page faults
    per MiB, in the thread's CPU time. Whether a 1 MB value's copies fault therefore
    depended on what ran before (pickle's round trip of 1 MB bytes measured 627 us in one
    shape and 48 us in the next, the same value), so ratios measured allocator history,
    not the code. Fixed thresholds (32 MiB, and no trimming) keep every implementation in
    the same state: large copies come from the heap. Idempotent; on a C library without
    mallopt (musl, macOS) nothing changes and the note says so.
    """
    if not _steady:
        try:
            mallopt = ctypes.CDLL(None).mallopt
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            done = mallopt(_M_MMAP_THRESHOLD, _STEADY_MMAP) and mallopt(
                _M_TRIM_THRESHOLD, 2 * _STEADY_MMAP
            )
        except (AttributeError, OSError):
            done = 0
        _steady.append(
            "Allocator: glibc mallopt sets the mmap threshold to 32 MiB and the trim threshold "
            "to 64 MiB for the run, so no implementation's large copies pay page faults that "
            "another's do not (see benchmarks.harness.steady_allocator)."
            if done
            else "Allocator: left as it is (no glibc mallopt): large values' rows may include "
            "page faults."
        )
    return _steady[0]


def load_note(load: float) -> str:
    """The report's sentence on the load average a section started under."""
    cpus = os.cpu_count() or 1
    busy = (
        " (above the cpu count: other work, or the section before this one, was running)"
        if load > cpus
        else ""
    )
    return f"Load average when this section started: {load:.1f} on {cpus} cpus{busy}."


def machine_info() -> dict[str, str]:
    """Platform, CPU count and Python version, printed at the top of every report."""
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": str(os.cpu_count()),
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
    }


@dataclass(frozen=True, slots=True)
class Adapter:
    """One cache library seen through the four operations every section compares.

    Each callable is the library's own bound method where possible, so the timing loop
    adds the same (tiny) overhead to every implementation.
    """

    impl: str
    get: Callable[[str], Any]
    put: Callable[[str, Any], Any]
    get_many: Callable[[list[str]], Any]


def op_cases(
    adapter: Adapter,
    *,
    hits: Sequence[str],
    misses: Sequence[str],
    puts: Sequence[str],
    batches: Sequence[list[str]],
    value: Any,
    counter: Callable[[], int] | None = None,
) -> list[Case]:
    """The get hit / get miss / put / get_many cases of ``adapter``.

    ``hits`` must already be stored; ``batches`` are key lists for get_many, all hits.
    """
    get, put, get_many = adapter.get, adapter.put, adapter.get_many

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
        for batch in batches:
            get_many(batch)

    size = len(batches[0]) if batches else 0
    return [
        Case("get hit", adapter.impl, get_hits, len(hits), counter=counter),
        Case("get miss", adapter.impl, get_misses, len(misses), counter=counter),
        Case("put", adapter.impl, put_all, len(puts), counter=counter),
        Case(f"get_many({size})", adapter.impl, get_batches, len(batches), counter=counter),
    ]


@contextmanager
def moto_process() -> Iterator[str]:
    """A DynamoDB endpoint (``cachehub local-dynamodb``) in a child process.

    Out of this process so the server neither competes with the client being measured
    for the GIL (timings) nor bills its table to it (tracemalloc sees every thread).
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "cachehub", "local-dynamodb", "--port", str(port)]
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if child.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("cachehub local-dynamodb did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        # A loaded machine can take longer than the grace period to wind the server down;
        # the measurements are taken by then, so a late exit must not lose them.
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=10)
