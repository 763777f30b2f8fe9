"""A signal handler's exception never leaves the store's lock held.

CPython runs a signal handler at its eval-breaker checks: at the end of a call, as a
Python function starts, on a loop's jump back. The exception of a handler (KeyboardInterrupt
from SIGINT, a SIGALRM deadline, Celery's ``SoftTimeLimitExceeded``) surfaces there. Taken
as ``acquire()`` then ``try: ... finally: release()``, the store's lock was held from the
end of the acquire() call, and the ``try`` only began after it: a handler's exception at
that check left the lock held by the interrupted thread for good, and every other thread
using the cache (or any cache on the same store) blocked on it forever.

The tests here make an exception land, deterministically and without signals, at each such
point of a call while the calling thread holds the store's lock. A profile function
(``sys.setprofile``) is called at the same points: as a C call returns ('c_return', where
CALL checks for signals), as a Python function starts ('call') and as one returns
('return'); an exception it raises propagates from that point, as a handler's would. For
n = 1, 2, ... each call runs on a fresh cache with the exception raised at the n-th such
event with the lock held, until a run ends before its n-th: so every point is visited once,
in at most ``MAX_POINTS`` runs. After each, the lock must not be held by the interrupted
thread, and another thread must take it within ``BOUND`` seconds.

The hot paths call acquire() inside their ``try``: an exception raised while acquire()
still waits for another thread's hold leaves the lock untaken, and the ``finally`` must
then neither release another thread's hold nor replace the handler's exception. Two tests
check that: one raising just before acquire() runs, one with a real signal while it waits.
The last test interrupts calls with a real timer signal, in a child process (its signal
handler and timer stay apart from pytest-timeout's SIGALRM), in a loop bounded by a number
of interrupts and a time.
"""

from __future__ import annotations

import asyncio
import gc
import json
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from types import FrameType
from typing import Any

import pytest
from cachehub_memory import MemoryCache

pytestmark = pytest.mark.timeout(30)

BOUND = 2.0
"""Seconds another thread waits for the store's lock: a free lock is taken at once."""
MAX_POINTS = 300
"""Injection points per call at most: a call holds the lock across far fewer events, so
reaching this means the walk would not end (the test then fails and says so)."""
EVENTS = frozenset({"c_return", "call", "return"})
"""Profile events at the points where a signal handler's exception may surface."""


class Interrupted(BaseException):
    """What the hook raises: like KeyboardInterrupt, not an Exception, so no error policy
    of the cache takes it for a backend's failure."""


class SoftTimeLimitExceeded(Exception):  # Celery's name
    """As Celery raises it from a signal handler: an Exception, which the cache's own
    ``except Exception`` (the fast paths' error policy) sees first."""


# ------------------------------------------------------------------------- the harness


def _event(frame: FrameType, event: str, arg: Any) -> str:
    where = f"{frame.f_code.co_qualname} line {frame.f_lineno}"
    if event == "c_return":
        owner = getattr(arg, "__self__", None)
        of = type(owner).__name__ + "." if owner is not None else ""
        return f"the return of {of}{getattr(arg, '__name__', arg)}() in {where}"
    return f"the {event} of {where}"


def _raising_at(lock: Any, n: int, exc: type[BaseException], call: Callable[[], object]) -> str:
    """Run ``call`` raising ``exc`` at its n-th event (see EVENTS) with ``lock`` held by
    this thread; the event raised at, or "" if the call ended before its n-th."""
    owned = lock._is_owned  # RLock's own test (threading.Condition relies on it)
    seen = 0
    raised_at = ""

    def hook(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal seen, raised_at
        if event in EVENTS and owned():
            seen += 1
            if seen == n:
                raised_at = _event(frame, event, arg)
                raise exc(raised_at)

    before = sys.getprofile()
    sys.setprofile(hook)
    try:
        call()
    except BaseException:
        if not raised_at:  # not ours: the call failed by itself
            raise
        # Ours, as it left the call: as raised, or as the error policy translated it.
    finally:
        sys.setprofile(before)
    return raised_at


@contextmanager
def _no_collection() -> Iterator[None]:
    """No garbage collection inside the interrupted calls: the finalizers and weakref
    callbacks a collection runs (for a thread object of an earlier check, say) are no part
    of the call, and an exception raised in one is only reported as unraisable."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _owned(lock: Any) -> bool:
    """Whether this thread holds ``lock`` (an RLock's own test, as threading.Condition's)."""
    return bool(lock._is_owned())


def _taken_elsewhere(lock: Any) -> bool:
    """Whether another thread takes ``lock`` within BOUND seconds (and gives it back)."""
    got: list[bool] = []

    def take() -> None:
        if lock.acquire(timeout=BOUND):
            lock.release()
            got.append(True)

    thread = threading.Thread(target=take, daemon=True)
    thread.start()
    thread.join(BOUND + 5)
    return bool(got)


@dataclass(frozen=True)
class Op:
    """A call to interrupt, after a setup that runs uninterrupted on each fresh cache."""

    call: Callable[[MemoryCache], object]
    setup: Callable[[MemoryCache, list[float]], object] = lambda cache, now: None


def _each_point(settings: dict[str, Any], op: Op, exc: type[BaseException]) -> list[str]:
    """Interrupt ``op`` at each of its points in turn; the points, in order."""
    points: list[str] = []
    with _no_collection():
        _walk(settings, op, exc, points)
    assert points, (
        "the call never held the store's lock at an event: nothing was interrupted, "
        "the test has lost its grip on the provider"
    )
    return points


def _walk(settings: dict[str, Any], op: Op, exc: type[BaseException], points: list[str]) -> None:
    for n in range(1, MAX_POINTS + 1):
        raised_at = _interrupt_once(settings, op, exc, n)
        if not raised_at:
            return
        points.append(raised_at)
    pytest.fail(f"the call held the lock across more than {MAX_POINTS} events")


def _interrupt_once(settings: dict[str, Any], op: Op, exc: type[BaseException], n: int) -> str:
    """Interrupt ``op`` at its n-th point on a fresh cache; the point ("" if none)."""
    now = [1_000_000.0]
    cache = MemoryCache(clock=lambda: now[0], **settings)
    op.setup(cache, now)
    lock = cache._store.lock
    raised_at = _raising_at(lock, n, exc, lambda: op.call(cache))
    if raised_at:
        assert not _owned(lock), (
            f"an exception at {raised_at} left the store's lock held by the interrupted "
            "thread: every other thread using the cache now blocks on it for good"
        )
        assert _taken_elsewhere(lock), (
            f"after an exception at {raised_at}, another thread waited {BOUND} s for the "
            "store's lock in vain"
        )
    return raised_at


# ------------------------------------------------------------------------- the calls


def _fill(cache: MemoryCache, now: list[float]) -> None:
    cache.put_many({"k": "v", "k2": 2, "n": 5})


def _expired(cache: MemoryCache, now: list[float]) -> None:
    cache.put("k", "v", 10)
    now[0] += 20


def _idle(cache: MemoryCache, now: list[float]) -> None:
    cache.put("k", "v", idle_time=60)
    now[0] += 1


def _run(coro_of: Callable[[Any], Any]) -> Callable[[MemoryCache], object]:
    return lambda cache: asyncio.run(coro_of(cache.aio()))


def _observed(cache: MemoryCache, now: list[float]) -> None:
    # An operation observer sends get and put down BaseCache's general path (_get, _set).
    _fill(cache, now)
    cache._observer = lambda event: None


OPS: dict[str, Op] = {
    # The fast paths (one frame, the lock bound in a closure).
    "get hit": Op(lambda c: c.get("k"), _fill),
    "get miss": Op(lambda c: c.get("absent")),
    "get expired": Op(lambda c: c.get("k"), _expired),
    "get idle": Op(lambda c: c.get("k"), _idle),
    "put new": Op(lambda c: c.put("new", "v")),
    "put over": Op(lambda c: c.put("k", "w"), _fill),
    "put ttl": Op(lambda c: c.put("k", "w", 60), _fill),
    # The general paths.
    "get observed": Op(lambda c: c.get("k"), _observed),
    "put observed": Op(lambda c: c.put("k", "w"), _observed),
    "put timedelta": Op(lambda c: c.put("k", "w", timedelta(minutes=1)), _fill),
    "get_many": Op(lambda c: c.get_many(["k", "absent", "k2"]), _fill),
    "put_many": Op(lambda c: c.put_many({"k": "w", "new": 1})),
    "add": Op(lambda c: c.add("new", "v")),
    "exists": Op(lambda c: c.exists("k"), _fill),
    "incr new": Op(lambda c: c.incr("counter")),
    "incr": Op(lambda c: c.incr("n", 2), _fill),
    "decr": Op(lambda c: c.decr("n"), _fill),
    "delete": Op(lambda c: c.delete("k"), _fill),
    "delete_many": Op(lambda c: c.delete_many(["k", "absent", "k2"]), _fill),
    "touch": Op(lambda c: c.touch("k", 60), _fill),
    "peek": Op(lambda c: c.peek("k"), _fill),
    "metadata": Op(lambda c: c.metadata("k"), _fill),
    "get_or_set": Op(lambda c: c.get_or_set("new", lambda: "v"), _fill),
    "keys": Op(lambda c: list(c.keys()), _fill),
    "count": Op(lambda c: c.count("k*"), _fill),
    "clear filter": Op(lambda c: c.clear("k*"), _fill),
    "clear": Op(lambda c: c.clear(), _fill),
    "info": Op(lambda c: c.info(), _fill),
    # The async shell runs the same primitives inline.
    "aio get": Op(_run(lambda a: a.get("k")), _fill),
    "aio put": Op(_run(lambda a: a.put("k", "w"))),
    "aio get_many": Op(_run(lambda a: a.get_many(["k", "k2"])), _fill),
}

MODES = [
    pytest.param({}, id="copies"),
    pytest.param({"serialize": False}, id="references"),
    pytest.param({"namespace": "ns:"}, id="copies-namespaced"),
    pytest.param({"serialize": False, "namespace": "ns:"}, id="references-namespaced"),
    pytest.param({"policy": "lfu"}, id="lfu"),  # a cachetools store: store.store()
    pytest.param({"policy": "ttl", "serialize": False}, id="ttl-references"),
]


@pytest.fixture(autouse=True)
def _no_profiler_left() -> Iterator[None]:
    before = sys.getprofile()
    yield
    assert sys.getprofile() is before


@pytest.mark.parametrize("settings", MODES)
@pytest.mark.parametrize("name", list(OPS))
def test_an_exception_at_any_point_with_the_lock_held_releases_it(
    settings: dict[str, Any], name: str
) -> None:
    _each_point(settings, OPS[name], Interrupted)


@pytest.mark.parametrize("settings", MODES[:4])
@pytest.mark.parametrize("name", ["get hit", "get miss", "put new", "put over", "get_many"])
def test_an_exception_the_error_policy_sees_first_releases_the_lock_too(
    settings: dict[str, Any], name: str
) -> None:
    # The fast paths end in `except Exception`: such an exception is handled inside the
    # call (translated, or a miss), and still must not leave the lock behind.
    _each_point(settings, OPS[name], SoftTimeLimitExceeded)


def test_a_forked_child_rebinds_the_fast_paths_to_a_lock_that_is_released_too() -> None:
    # The fork hook gives the store a new lock and rebinds the fast paths to it, which
    # must release it as they did the old one. Simulated in process: the hook runs as in
    # a child whose parent's lock was held (pid differs).
    cache = MemoryCache()
    cache.put("k", "v")
    old = cache._store.lock
    cache._store.pid = -1
    cache._forked()
    lock = cache._store.lock
    assert lock is not old
    assert cache._lock is lock
    with _no_collection():
        raised_at = _raising_at(lock, 1, Interrupted, lambda: cache.get("k"))
    assert raised_at
    assert not _owned(lock), f"an exception at {raised_at} left the new lock held"
    assert _taken_elsewhere(lock)
    assert cache.get("k") == "v"


# --------------------------------------------------- an exception before the lock is taken

ACQUIRING = ["get hit", "get miss", "put new", "put ttl", "get observed", "exists", "put timedelta"]
"""Calls whose path calls the lock's acquire() inside its ``try`` (see _bind_lock)."""


@pytest.mark.parametrize("settings", MODES[:4])
@pytest.mark.parametrize("name", ACQUIRING)
def test_an_exception_before_acquire_takes_the_lock_is_the_callers(
    settings: dict[str, Any], name: str
) -> None:
    # Raised as acquire() is called: the lock is not taken, as when a handler raises while
    # acquire() waits for another thread. The `finally` must not turn the exception into
    # a RuntimeError ("cannot release un-acquired lock"), which the fast paths' error
    # policy would then report as a provider bug, the interrupt lost.
    now = [1_000_000.0]
    cache = MemoryCache(clock=lambda: now[0], **settings)
    OPS[name].setup(cache, now)
    lock = cache._store.lock
    seen: list[str] = []

    def hook(frame: FrameType, event: str, arg: Any) -> None:
        if event == "c_call" and getattr(arg, "__self__", None) is lock and not seen:
            seen.append(_event(frame, event, arg))
            raise Interrupted(seen[0])

    before = sys.getprofile()
    sys.setprofile(hook)
    try:
        with pytest.raises(Interrupted):
            OPS[name].call(cache)
    finally:
        sys.setprofile(before)
    assert seen, "the call made no C call on the store's lock: drop it from ACQUIRING"
    assert not _owned(lock)
    assert _taken_elsewhere(lock)
    cache.put("after", 1)
    assert cache.get("after") == 1


@pytest.mark.skipif(
    not hasattr(signal, "pthread_kill")
    or threading.current_thread() is not threading.main_thread(),
    reason="a signal to the main thread, where Python runs handlers",
)
@pytest.mark.parametrize("name", ["get hit", "put over", "get observed", "exists"])
def test_a_handler_raising_while_acquire_waits_leaves_the_other_threads_hold(name: str) -> None:
    cache = MemoryCache()
    OPS[name].setup(cache, [0.0])
    lock = cache._store.lock
    held, done = threading.Event(), threading.Event()
    report: dict[str, object] = {}
    main = threading.main_thread().ident
    assert main is not None

    def holder() -> None:
        with lock:
            held.set()
            # The main thread is blocked in acquire() well before this: the signal wakes
            # it there, and its handler raises.
            done.wait(0.2)
            signal.pthread_kill(main, signal.SIGUSR1)
            report["still held by this thread"] = done.wait(BOUND) and _owned(lock)
        report["released"] = True  # the `with` released it: no RuntimeError here

    def on_signal(signum: int, frame: Any) -> None:
        raise Interrupted("SIGUSR1")

    before = signal.signal(signal.SIGUSR1, on_signal)
    thread = threading.Thread(target=holder, daemon=True)
    try:
        thread.start()
        assert held.wait(BOUND)
        with pytest.raises(Interrupted):
            OPS[name].call(cache)
        done.set()
        thread.join(BOUND + 5)
    finally:
        done.set()
        signal.signal(signal.SIGUSR1, before)
    assert report == {"still held by this thread": True, "released": True}, report
    assert not _owned(lock)
    assert _taken_elsewhere(lock)


# ------------------------------------------------------------------------- a real signal

_CHILD = textwrap.dedent(
    """
    import json, os, random, signal, sys, threading, time
    from cachehub_memory import MemoryCache

    class Interrupted(BaseException):
        pass

    armed = [False]

    def handler(signum, frame):
        if armed[0]:  # at most once per timer: the loop below catches it
            armed[0] = False
            raise Interrupted

    signal.signal(signal.SIGALRM, handler)
    settings, max_interrupts, seconds = json.loads(sys.argv[1])
    cache = MemoryCache(**settings)
    lock = cache._store.lock
    keys = ["k%d" % i for i in range(40)]
    for key in keys:
        cache.put(key, "v")
    stop, wrong, last = threading.Event(), [], [time.monotonic()]

    def reader():
        while not stop.is_set():
            if cache.get("k7") != "v":
                wrong.append("k7")
            last[0] = time.monotonic()
            time.sleep(0.0005)

    other = threading.Thread(target=reader, daemon=True)
    other.start()
    rng = random.Random(7)
    interrupts, held, start = 0, None, time.monotonic()
    while interrupts < max_interrupts and time.monotonic() - start < seconds:
        key = rng.choice(keys)
        try:
            try:
                armed[0] = True
                signal.setitimer(signal.ITIMER_REAL, rng.uniform(1e-5, 2e-4))
                for _ in range(20):
                    cache.put(key, "v")
                    cache.get(key)
                    cache.get_many([key, "k1"])
                    cache.put("t", 1, 60)
                    cache.incr("c")
                    cache.delete("gone")
            finally:
                armed[0] = False
                signal.setitimer(signal.ITIMER_REAL, 0)
        except Interrupted:
            interrupts += 1
        if lock._is_owned():
            held = interrupts
            break
    got = []

    def take():  # from another thread: the main thread would re-enter its own RLock
        if lock.acquire(timeout=2.0):
            lock.release()
            got.append(True)

    checker = threading.Thread(target=take, daemon=True)
    checker.start()
    checker.join(5)
    stop.set()
    other.join(2)
    print(json.dumps({"interrupts": interrupts, "held_after": held, "taken": bool(got),
                      "reader_blocked": other.is_alive(), "wrong": wrong[:3]}), flush=True)
    os._exit(0)  # a reader blocked on a held lock must not hold up the exit
    """
)


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="POSIX interval timers")
@pytest.mark.parametrize("settings", MODES[:4])
def test_a_timer_signals_exception_never_leaves_the_lock_held(settings: dict[str, Any]) -> None:
    # A child process: its SIGALRM handler and ITIMER_REAL are its own (pytest-timeout
    # uses the parent's), and its main thread is the one Python runs handlers in. The
    # acquire()/try form left the lock held within a few dozen interrupts.
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps([settings, 600, 4.0])],
        capture_output=True,
        text=True,
        timeout=25,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["held_after"] is None, (
        f"after {result['held_after']} interrupts the main thread kept the store's lock "
        f"between calls: {result}"
    )
    assert result["taken"], result
    assert not result["reader_blocked"], result
    assert result["interrupts"] > 0, result
    assert not result["wrong"], result


# ------------------------------------------------------------------ the store's key log


def _key_log_points() -> list[int]:
    """Which event of a put to interrupt: each of the first 80, then a spread through a
    compaction of the whole log (one event or more per entry)."""
    return [*range(1, 81), *range(81, 40_000, 331)]


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param({}, id="lru"),  # the log compacts from the store's ordered dict
        pytest.param({"policy": "lfu"}, id="lfu"),  # in place, filtered by the store
        pytest.param({"policy": "rr", "serialize": False}, id="rr-references"),
        pytest.param({"maxBytes": 10_000_000}, id="max-bytes"),
    ],
)
def test_a_put_cut_short_anywhere_leaves_keys_count_and_clear_exact(
    settings: dict[str, Any],
) -> None:
    """The key log appended a key, then its number: cut between the two (or inside a
    compaction), the lists differed in length and keys(), count() and clear(filter)
    failed with CacheBackendError (a ValueError from zip) until the next compaction, and
    under cachetools policies puts of new keys too, for good. The log is now rebuilt by
    the next call that finds a change to it cut short."""
    from cachehub_memory.cursor import SLACK

    with _no_collection():
        for n in _key_log_points():
            cache = MemoryCache(**settings)
            # A log at its compaction limit, half stale: the interrupted put compacts it.
            cache.put_many({f"old{i}": i for i in range(SLACK)})
            cache.delete_many([f"old{i}" for i in range(0, SLACK, 2)])
            lock = cache._store.lock
            raised_at = _raising_at(lock, n, Interrupted, partial(cache.put, "new", "v"))
            stored = {f"old{i}" for i in range(1, SLACK, 2)} | (
                {"new"} if cache.get("new") is not None else set()
            )
            context = f"after an interrupt at {raised_at or 'no point (the put ended)'}"
            assert set(cache.keys()) == stored, context
            assert len(list(cache.keys())) == len(stored), context
            assert cache.count() == len(stored), context
            cache.put("later", 1)
            assert "later" in set(cache.keys()), context
            assert cache.clear("old*") == SLACK // 2, context
            assert set(cache.keys()) == stored - {f"old{i}" for i in range(SLACK)} | {"later"}
            if not raised_at:
                return
    pytest.fail("the put was still being interrupted at the last point tried")
