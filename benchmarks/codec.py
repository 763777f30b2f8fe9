"""Value codec: cachehub's safe codec against pickle (protocol 5) on seven value shapes.

Issue #17's target: encode+decode within 1.2x of pickle protocol 5 on each shape (with
compression on for the random bytes). Each shape's implementations run interleaved, and
the report gives, per shape, the median of the per-round ratios and their inter-quartile
range; a verdict only where that whole range is on one side of the target.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import pickle
import random
import statistics
import time
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cachehub.codec import make_codec

from .harness import (
    Case,
    Config,
    Row,
    Section,
    Settle,
    load_note,
    measure_interleaved,
    quartiles,
    steady_allocator,
    verdict_of,
)
from .report import fmt_ns, fmt_verdict

__all__ = [
    "BASELINE",
    "CACHEHUB",
    "CACHEHUB_COMPRESSED",
    "SHAPES",
    "TARGET",
    "Shape",
    "Spread",
    "mixed_struct",
    "run",
    "spread",
]

BASELINE = "pickle protocol 5"
CACHEHUB = "cachehub codec 'safe'"
CACHEHUB_COMPRESSED = "cachehub codec 'safe' + compression (cache default)"
JSON = "json"
TARGET = 1.2
"""Issue #17: encode+decode at most this many times pickle's, on every shape."""
_CACHE_DEFAULT_THRESHOLD = 4096
"""BaseCache's default ``compressThreshold``: what a cache with default settings uses."""


def mixed_struct(records: int = 400) -> dict[str, Any]:
    """A deterministic ~100 KB (json) structure of the shapes caches usually hold.

    Only json-compatible types, so all three codecs encode the very same value.
    """
    rows = [
        {
            "id": i,
            "uuid": f"{i:08x}-4b1d-4c8e-9f00-{i * 7919:012x}",
            "name": f"customer number {i}",
            "balance": i * 1.25 - 300.5,
            "active": i % 3 != 0,
            "manager": None if i % 5 else i // 5,
            "tags": ["retail", "eu", f"tier-{i % 4}"],
            "address": {"street": f"{i} Main Street", "zip": f"{10000 + i}", "country": "CH"},
            "history": [i, i + 1, i * 2, -i],
        }
        for i in range(records)
    ]
    return {"version": 3, "generated": "2024-05-01T12:00:00Z", "rows": rows, "total": records}


def _datetime_records(count: int = 500) -> list[dict[str, Any]]:
    """Rows as an ORM returns them: half of the fields are datetimes (naive, UTC, zoned)."""
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    base = dt.datetime(2024, 5, 1, 12, 0, 0)
    return [
        {
            "id": i,
            "name": f"order {i}",
            "created": base + dt.timedelta(minutes=i, microseconds=i),
            "updated": (base + dt.timedelta(hours=i)).replace(tzinfo=dt.UTC),
            "due": (base + dt.timedelta(days=i % 40)).replace(tzinfo=paris),
            "amount": i * 1.25,
        }
        for i in range(count)
    ]


@dataclass(frozen=True, slots=True)
class Shape:
    """One value shape of the target, and how many encode+decode pairs a round does."""

    label: str
    make: Callable[[], Any]
    ops: int
    """Pairs per round in full mode (a round takes ~10 ms for pickle)."""
    compressed: bool = False
    """Whether the target compares the codec with compression on (the cache default)."""
    note: str = ""


_MEGABYTE = 1 << 20


def _random_bytes() -> bytes:
    return random.Random(17).randbytes(_MEGABYTE)


def _ints(count: int) -> list[int]:
    rng = random.Random(3)
    return [rng.randrange(-(2**31), 2**31) for _ in range(count)]


SHAPES: tuple[Shape, ...] = (
    Shape("short str", lambda: "hello, cache", 20_000, note="12 characters"),
    Shape(
        "small dict",
        lambda: {"id": 42, "name": "Alice", "email": "alice@example.com", "active": True},
        5_000,
        note="4 keys",
    ),
    Shape("100 KB nested", mixed_struct, 15, note="400 records, 112 KiB as json"),
    Shape("1 MB bytes", _random_bytes, 40, note="compression off"),
    Shape(
        "1 MB random bytes, compression on",
        _random_bytes,
        40,
        compressed=True,
        note="compressThreshold 4096, the cache default: the probe must skip zlib",
    ),
    Shape("10k ints", lambda: _ints(10_000), 20, note="a list of 10,000 random ints in +-2^31"),
    Shape(
        "datetime records",
        _datetime_records,
        10,
        note="500 rows of 6 fields: id, name, naive, UTC and Europe/Paris datetimes, amount",
    ),
)


@dataclass(frozen=True, slots=True)
class Spread:
    """The per-round ratios of one implementation against the baseline, summarised."""

    median: float
    q1: float
    q3: float


def spread(mine: list[float], base: list[float]) -> Spread:
    """Median and inter-quartile range of the per-round ratios ``mine[r] / base[r]``.

    Rounds ran interleaved, so round r of both ran back to back.
    """
    q1, median, q3 = quartiles([m / b for m, b in zip(mine, base, strict=True)])
    return Spread(median, q1, q3)


class _Roundtrip:
    """``ops`` encode+decode pairs per call; records each call's wall time.

    The harness times each round by the CPU time of this thread (the Case's timer), which
    leaves out the time the process waited for a core on a shared, loaded machine: the
    verdicts rest on it. The wall time of the same rounds is shown beside it.
    """

    def __init__(
        self, dumps: Callable[[Any], bytes], loads: Callable[[bytes], Any], value: Any, ops: int
    ) -> None:
        self.dumps, self.loads, self.value, self.ops = dumps, loads, value, ops
        self.wall_ns: list[float] = []

    def __call__(self) -> None:
        dumps, loads, value = self.dumps, self.loads, self.value
        start = time.perf_counter_ns()
        for _ in range(self.ops):
            loads(dumps(value))
        self.wall_ns.append((time.perf_counter_ns() - start) / self.ops)

    def rounds(self, count: int) -> list[float]:
        """Wall ns per pair of the last ``count`` calls (the timed rounds, not the warm-up)."""
        return self.wall_ns[-count:]


def _size(size: int) -> str:
    return f"{size} B" if size < 1024 else f"{size / 1024:.1f} KiB"


def _json_dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


def _ops(shape: Shape, cfg: Config) -> int:
    """Pairs per round: the full-mode count, scaled down in quick mode (codec_ops 200)."""
    return max(1, shape.ops * cfg.codec_ops // Config.full().codec_ops)


def run(cfg: Config) -> Section:
    """Measure encode+decode of every shape with pickle and the safe codec."""
    section = Section("codec", "Codec", BASELINE)
    allocator = steady_allocator()
    load = os.getloadavg()[0]  # other jobs on the machine: what the CPU-time ratios exclude
    safe = make_codec("safe")
    compressed = make_codec("safe", compress_threshold=_CACHE_DEFAULT_THRESHOLD)
    codecs: list[tuple[str, Callable[[Any], bytes], Callable[[bytes], Any]]] = [
        (BASELINE, lambda v: pickle.dumps(v, protocol=5), pickle.loads),
        (CACHEHUB, safe.dumps, safe.loads),
        (CACHEHUB_COMPRESSED, compressed.dumps, compressed.loads),
    ]
    targets: list[list[str]] = []
    sizes: list[list[str]] = []
    cpu = time.thread_time_ns  # see _Roundtrip
    for shape in SHAPES:
        value = shape.make()
        op = f"encode+decode: {shape.label}"
        ops = _ops(shape, cfg)
        cases = []
        runs: dict[str, _Roundtrip] = {}
        for impl, dumps, loads in codecs:
            if impl == CACHEHUB and shape.compressed:
                continue  # the same value as the row before, compression off
            back = loads(dumps(value))
            if type(back) is not type(value) or back != value:
                section.notes.append(f"{impl}: does not round-trip '{shape.label}' exactly")
            runs[impl] = _Roundtrip(dumps, loads, value, ops)
            cases.append(Case(op, impl, runs[impl], ops, timer=cpu))
        if shape.label == "100 KB nested":  # the struct is json-compatible: json too
            trip = _Roundtrip(_json_dumps, json.loads, value, ops)
            cases.append(Case(op, JSON, trip, ops, timer=cpu))
        mine = CACHEHUB_COMPRESSED if shape.compressed else CACHEHUB
        settle = Settle(((mine, BASELINE, TARGET),), cfg.settle_rounds)
        measured = measure_interleaved(cases, cfg.rounds, settle=settle)
        section.measurements.extend(measured)
        base = section.find(op, BASELINE)
        assert base is not None
        sizes.append(
            [shape.label, shape.note] + [_size(len(dumps(value))) for _, dumps, _ in codecs]
        )
        for m in measured:
            if m.impl == BASELINE or m.impl == JSON:
                continue
            section.rows.append(Row.compare(op, m.impl, m, BASELINE, base, None))
            if (m.impl == CACHEHUB_COMPRESSED) != shape.compressed:
                continue  # the target names one codec setting per shape
            count = len(m.rounds_ns)  # the timed rounds, settled ones included
            base_cpu, mine_cpu = base.rounds_ns, m.rounds_ns
            s = spread(mine_cpu, base_cpu)
            wall = spread(runs[m.impl].rounds(count), runs[BASELINE].rounds(count))
            ratios = [a / b for a, b in zip(mine_cpu, base_cpu, strict=True)]
            targets.append(
                [
                    shape.label,
                    m.impl,
                    fmt_ns(statistics.median(mine_cpu)),
                    fmt_ns(statistics.median(base_cpu)),
                    f"{s.median:.2f}x",
                    f"{s.q1:.2f}x - {s.q3:.2f}x",
                    f"{wall.median:.2f}x ({wall.q1:.2f}x - {wall.q3:.2f}x)",
                    f"<= {TARGET}x pickle",
                    fmt_verdict(verdict_of(ratios, TARGET)),
                    str(count),
                ]
            )
    section.extra_tables.insert(
        0,
        (
            "Issue #17 targets: median ratio and IQR of the per-round CPU-time ratios",
            [
                "shape",
                "cachehub",
                "cachehub CPU/op",
                "pickle CPU/op",
                "median ratio",
                "IQR",
                "wall-clock ratio (IQR)",
                "target",
                "verdict",
                "rounds",
            ],
            targets,
        ),
    )
    section.extra_tables.append(
        ("Encoded sizes", ["shape", "value", *(impl for impl, _, _ in codecs)], sizes)
    )
    section.notes.append(
        f"{cfg.rounds} interleaved rounds per shape; a shape whose inter-quartile range "
        f"straddles the target after them runs on to {cfg.settle_rounds} rounds and is "
        "decided on all of them (the rounds column). Ratios are per round (round r of "
        "both ran back to back) of the thread CPU time, which leaves out the time the "
        "process waited for a core on a loaded machine; the wall-clock ratio of the same "
        "rounds is shown beside it. The verdict is met only when the whole inter-quartile "
        "range is at or below the target, not met only when it is all above; otherwise "
        "the run cannot tell, and says inconclusive."
    )
    section.notes.append(load_note(load))
    section.notes.append(allocator)
    section.notes.append(
        "The Targets table above lists every shape with and without compression (no target "
        "there): the issue's target is the one in the IQR table."
    )
    return section
