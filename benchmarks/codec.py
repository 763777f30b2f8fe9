"""Value codec: cachehub's safe codec against pickle (protocol 5) and json."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from typing import Any

from cachehub.codec import make_codec

from .harness import Case, Config, Row, Section, Target, measure_interleaved

__all__ = ["BASELINE", "CACHEHUB", "CACHEHUB_COMPRESSED", "mixed_struct", "run"]

BASELINE = "pickle protocol 5"
CACHEHUB = "cachehub codec 'safe'"
CACHEHUB_COMPRESSED = "cachehub codec 'safe' + compression (cache default)"
JSON = "json"
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


def _roundtrip(
    dumps: Callable[[Any], bytes], loads: Callable[[bytes], Any], value: Any, ops: int
) -> Callable[[], None]:
    def run() -> None:
        for _ in range(ops):
            loads(dumps(value))

    return run


def run(cfg: Config) -> Section:
    """Measure encode+decode of the mixed struct with each codec."""
    section = Section("codec", "Codec", BASELINE)
    value = mixed_struct()
    safe = make_codec("safe")
    compressed = make_codec("safe", compress_threshold=_CACHE_DEFAULT_THRESHOLD)
    codecs: list[tuple[str, Callable[[Any], bytes], Callable[[bytes], Any]]] = [
        (BASELINE, lambda v: pickle.dumps(v, protocol=5), pickle.loads),
        (JSON, lambda v: json.dumps(v).encode(), json.loads),
        (CACHEHUB, safe.dumps, safe.loads),
        (CACHEHUB_COMPRESSED, compressed.dumps, compressed.loads),
    ]
    sizes: list[list[str]] = []
    cases: list[Case] = []
    for impl, dumps, loads in codecs:
        if loads(dumps(value)) != value:
            section.notes.append(f"{impl}: does not round-trip the struct exactly")
        sizes.append([impl, f"{len(dumps(value)) / 1024:.1f} KiB"])
        cases.append(
            Case(
                "encode+decode",
                impl,
                _roundtrip(dumps, loads, value, cfg.codec_ops),
                cfg.codec_ops,
            )
        )
    section.measurements.extend(measure_interleaved(cases, cfg.rounds))

    base = section.find("encode+decode", BASELINE)
    js = section.find("encode+decode", JSON)
    assert base is not None
    assert js is not None
    for impl in (CACHEHUB, CACHEHUB_COMPRESSED):
        m = section.find("encode+decode", impl)
        if m is None:
            continue
        target = Target("<= 1.5x pickle", 1.5) if impl == CACHEHUB else None
        section.rows.append(Row.compare("encode+decode", impl, m, BASELINE, base, target))
        section.rows.append(Row.compare("encode+decode", impl, m, JSON, js, None))
    section.extra_tables.append(("Encoded size of the struct", ["codec", "size"], sizes))
    section.notes.append(
        f"Struct: {len(value['rows'])} records, {len(json.dumps(value)) / 1024:.0f} KiB as json."
    )
    return section
