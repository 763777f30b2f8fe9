"""HitBuffer: reads counted in process, per entry version, until written back."""

from __future__ import annotations

import threading
import time

from cachehub.hits import HitBuffer


def test_counts_reads_per_key_and_version() -> None:
    buf: HitBuffer[str] = HitBuffer(0)
    buf.count("a", 1.0, now=10.0)
    buf.count("a", 1.0, now=12.0)
    buf.count("a", 1.0, now=11.0)  # an older read never moves last access back
    buf.count_many([("b", 5.0), ("a", 1.0)], now=13.0)
    pending = buf.peek("a", 1.0)
    assert pending is not None
    assert (pending.hits, pending.accessed) == (4, 13.0)
    assert buf.peek("a", 2.0) is None  # another version of the entry: not its reads
    assert len(buf) == 2


def test_a_new_version_restarts_the_count() -> None:
    buf: HitBuffer[str] = HitBuffer(0)
    buf.count("a", 1.0, now=1.0)
    buf.count("a", 1.0, now=1.0)
    buf.count("a", 2.0, now=2.0)  # the entry was replaced: old reads are dropped
    assert buf.take("a", 2.0) == 1
    assert buf.take("a", 2.0) == 0
    buf.count("a", 2.0, now=3.0)
    assert buf.take("a", 1.0) == 0  # taken, but belonging to another version


def test_forget_clear_and_drain() -> None:
    buf: HitBuffer[str] = HitBuffer(0)
    buf.count_many([("a", 1), ("b", 1), ("c", 1)], now=1.0)
    buf.forget("a", "missing")
    assert sorted(buf.drain()) == ["b", "c"]
    assert len(buf) == 0
    buf.count("d", 1, now=1.0)
    buf.clear()
    assert buf.drain() == {}


def test_due_after_the_interval_or_when_full() -> None:
    assert not HitBuffer[str](0.001).due()  # nothing pending: never due
    buf: HitBuffer[str] = HitBuffer(3600, max_keys=3)
    buf.count_many([("a", 1), ("b", 1)], now=1.0)
    assert not buf.due()
    buf.count("c", 1, now=1.0)
    assert buf.due()  # full, whatever the interval
    buf.drain()
    never: HitBuffer[str] = HitBuffer(0, max_keys=10)
    never.count("a", 1, now=1.0)
    assert not never.due()  # interval 0: only when full
    soon: HitBuffer[str] = HitBuffer(0.01)
    soon.count("a", 1, now=1.0)
    time.sleep(0.02)
    assert soon.due()


def test_concurrent_counts_are_exact() -> None:
    buf: HitBuffer[str] = HitBuffer(0, max_keys=10**6)

    def reader() -> None:
        for i in range(2000):
            buf.count(f"k{i % 10}", 1, now=float(i))

    threads = [threading.Thread(target=reader) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(p.hits for p in buf.drain().values()) == 8 * 2000
