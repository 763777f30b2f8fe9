"""In-process caches: cachehub MemoryCache against raw cachetools and peer libraries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cachetools
from cachehub_memory import MemoryCache

from .harness import (
    Adapter,
    Case,
    Config,
    Measurement,
    Row,
    Section,
    Target,
    by_op,
    measure_interleaved,
    op_cases,
)
from .peers import configure_django, missing, optional

__all__ = ["BASELINE", "CACHEHUB_FAST", "CACHEHUB_DEFAULT", "VALUE", "run"]

BASELINE = "cachetools TTLCache (raw)"
CACHEHUB_FAST = "cachehub memory serialize=false"
CACHEHUB_DEFAULT = "cachehub memory (default)"
COPYING_PEERS = ("cachelib SimpleCache", "Django LocMemCache")
"""Peers that pickle values like cachehub's default (reads return copies)."""

VALUE: dict[str, Any] = {
    "id": 42,
    "name": "user-42",
    "email": "user42@example.com",
    "roles": ["admin", "editor"],
    "score": 3.14,
    "active": True,
}
"""A typical small cached record."""

_MISS = object()


def _cachetools(size: int) -> Adapter:
    data: cachetools.TTLCache[str, Any] = cachetools.TTLCache(maxsize=size, ttl=300)

    def get_many(keys: list[str]) -> dict[str, Any]:
        found = {}
        for key in keys:
            value = data.get(key, _MISS)
            if value is not _MISS:
                found[key] = value
        return found

    return Adapter(BASELINE, data.get, data.__setitem__, get_many)


def _cachehub(size: int, *, serialize: bool) -> Adapter:
    cache = MemoryCache(maxsize=size, serialize=serialize)
    name = CACHEHUB_DEFAULT if serialize else CACHEHUB_FAST
    return Adapter(name, cache.get, cache.put, cache.get_many)


def _cachelib(size: int) -> Adapter | str:
    mod = optional("cachelib")
    if mod is None:
        return missing("cachelib")
    cache = mod.SimpleCache(threshold=size)
    return Adapter("cachelib SimpleCache", cache.get, cache.set, lambda ks: cache.get_many(*ks))


def _dogpile(size: int) -> Adapter | str:
    mod = optional("dogpile.cache")
    if mod is None:
        return missing("dogpile.cache")
    region = mod.make_region().configure("dogpile.cache.memory", expiration_time=300)
    return Adapter("dogpile.cache memory", region.get, region.set, region.get_multi)


def _django(size: int) -> Adapter | str:
    locmem = optional("django.core.cache.backends.locmem") if configure_django() else None
    if locmem is None:
        return missing("django")
    cache = locmem.LocMemCache("cachehub-bench", {"TIMEOUT": 300, "OPTIONS": {"MAX_ENTRIES": size}})
    return Adapter("Django LocMemCache", cache.get, cache.set, cache.get_many)


PEERS: tuple[Callable[[int], Adapter | str], ...] = (_cachelib, _dogpile, _django)


def run(cfg: Config) -> Section:
    """Measure get hit / get miss / put / get_many on every in-process implementation."""
    section = Section("memory", "Memory provider", BASELINE)
    n = cfg.ops
    hits = [f"hit:{i}" for i in range(n)]
    misses = [f"miss:{i}" for i in range(n)]
    puts = [f"put:{i}" for i in range(n)]
    batches = [hits[i : i + cfg.batch] for i in range(0, n, cfg.batch)]
    size = 4 * n  # never evict during the run: eviction is not what is compared

    adapters: list[Adapter] = [
        _cachetools(size),
        _cachehub(size, serialize=False),
        _cachehub(size, serialize=True),
    ]
    peer_names = ["cachelib SimpleCache", "dogpile.cache memory", "Django LocMemCache"]
    for name, make in zip(peer_names, PEERS, strict=True):
        made = make(size)
        if isinstance(made, str):
            section.notes.append(f"{name}: {made}")
            section.measurements.append(Measurement("*", name, float("nan"), [], skipped=made))
        else:
            adapters.append(made)

    cases: list[Case] = []
    for adapter in adapters:
        for key in hits:
            adapter.put(key, VALUE)
        cases.extend(
            op_cases(adapter, hits=hits, misses=misses, puts=puts, batches=batches, value=VALUE)
        )
    for group in by_op(cases):
        section.measurements.extend(measure_interleaved(group, cfg.memory_rounds))

    _targets(section, [a.impl for a in adapters])
    return section


def _targets(section: Section, impls: list[str]) -> None:
    peers = [i for i in impls if i not in (BASELINE, CACHEHUB_FAST, CACHEHUB_DEFAULT)]
    ops = list(dict.fromkeys(m.op for m in section.measurements if m.skipped is None))
    for op in ops:
        base = section.find(op, BASELINE)
        fast = section.find(op, CACHEHUB_FAST)
        default = section.find(op, CACHEHUB_DEFAULT)
        if base is None or fast is None or default is None:
            continue
        two_x = Target("<= 2.0x raw cachetools", 2.0)
        section.rows.append(Row.compare(op, CACHEHUB_FAST, fast, BASELINE, base, two_x))
        section.rows.append(Row.compare(op, CACHEHUB_DEFAULT, default, BASELINE, base, None))
        measured = [m for p in peers if (m := section.find(op, p)) is not None]
        if measured:
            best = min(measured, key=lambda m: m.ns_per_op)
            section.rows.append(
                Row.compare(
                    op,
                    CACHEHUB_FAST,
                    fast,
                    f"fastest peer: {best.impl}",
                    best,
                    Target("faster than every peer", 1.0),
                )
            )
        copying = [m for p in COPYING_PEERS if (m := section.find(op, p)) is not None]
        if copying:
            best = min(copying, key=lambda m: m.ns_per_op)
            section.rows.append(
                Row.compare(
                    op,
                    CACHEHUB_DEFAULT,
                    default,
                    f"fastest copying peer: {best.impl}",
                    best,
                    Target("faster than copying peers", 1.0),
                )
            )
    section.notes.append(
        "serialize=false stores references like cachetools and dogpile; the default "
        "stores encoded copies like cachelib SimpleCache and Django LocMemCache (both pickle), "
        "so the default is also compared with those copying peers."
    )
