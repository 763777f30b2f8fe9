"""Redis faults: redis-server killed (SIGKILL) and restarted while threads keep writing.

The server runs with ``appendonly yes`` / ``appendfsync always`` (``RedisServer(persistence=
True)``), so every write Redis acknowledged is on disk before the reply: after the restart
each ``put`` that returned must be readable, through the *same* cache object.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import pytest
from cachehub_redis import RedisCache
from cachehub_redis.server import RedisServer
from redis import exceptions as rx

from cachehub.errors import CacheKeyError, CacheUnavailableError
from cachehub.hookspecs import OperationEvent
from cachehub.testing.onerror import DEGRADED, NEVER_DEGRADED

from .conftest import REDIS_PASSWORD, SECRET_MARK, fresh_namespace, redis_settings, report

WRITERS: Final = 4
BEFORE_KILL: Final = 300
"""Acknowledged writes to reach before the kill."""
AFTER_RESTART: Final = 50
"""Acknowledged writes each writer must make after the restart (recovery)."""
POLL: Final = 0.01
WAIT_ROUNDS: Final = 3000
"""Upper bound of POLL-second waits for a phase (a hung phase fails, never loops forever)."""


@pytest.fixture
def persistent_server(require_redis: None) -> Iterator[RedisServer]:
    """A private redis-server with fsync-always AOF, which this test may kill."""
    with RedisServer(persistence=True, password=REDIS_PASSWORD) as server:
        yield server


def _fault_cache(server: RedisServer, **overrides: Any) -> RedisCache:
    # Short timeouts and one reconnect attempt: an outage surfaces quickly as an error.
    settings = redis_settings(
        server, socketTimeout=1.0, socketConnectTimeout=1.0, retries=1, **overrides
    )
    return RedisCache(settings, namespace=fresh_namespace("fault"))


@dataclass
class Writer:
    """One writer thread's record of what Redis acknowledged and what failed."""

    index: int
    acked: dict[str, int] = field(default_factory=dict)
    unavailable: int = 0
    after_restart: int = 0
    other: list[BaseException] = field(default_factory=list)


def _wait_for(condition: Any, what: str) -> None:
    for _ in range(WAIT_ROUNDS):
        if condition():
            return
        time.sleep(POLL)
    pytest.fail(f"timed out waiting for {what}")


def test_kill_and_restart_under_load_loses_no_acknowledged_write(
    persistent_server: RedisServer,
) -> None:
    cache = _fault_cache(persistent_server)
    writers = [Writer(i) for i in range(WRITERS)]
    stop = threading.Event()
    restarted = threading.Event()

    def write(writer: Writer) -> None:
        step = 0
        while not stop.is_set():
            key = f"w{writer.index}:{step}"
            try:
                cache.put(key, step)
            except CacheUnavailableError:
                writer.unavailable += 1
                time.sleep(POLL)  # an application would back off too
            except Exception as exc:  # anything else is a finding
                writer.other.append(exc)
            else:
                writer.acked[key] = step
                if restarted.is_set():
                    writer.after_restart += 1
            step += 1

    threads = [threading.Thread(target=write, args=(w,), daemon=True) for w in writers]
    for thread in threads:
        thread.start()
    try:
        _wait_for(lambda: sum(len(w.acked) for w in writers) >= BEFORE_KILL, "writes")
        persistent_server.stop()  # SIGKILL: no shutdown save, like a crash
        killed_at = time.perf_counter()
        acked_before_kill = sum(len(w.acked) for w in writers)
        _wait_for(lambda: all(w.unavailable > 0 for w in writers), "outage errors")
        outage_errors = sum(w.unavailable for w in writers)
        persistent_server.start()  # same port and directory: the AOF is replayed
        restarted.set()
        back_at = time.perf_counter()
        _wait_for(lambda: all(w.after_restart >= AFTER_RESTART for w in writers), "recovery")
        recovered_in = time.perf_counter() - back_at
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        outage = time.perf_counter() - killed_at if "killed_at" in locals() else 0.0

    assert [exc for w in writers for exc in w.other] == []
    acked = {key: value for w in writers for key, value in w.acked.items()}
    keys = list(acked)
    found: dict[str, Any] = {}
    for start in range(0, len(keys), 500):
        found.update(cache.get_many(keys[start : start + 500]))
    lost = sorted(set(acked) - set(found))
    report(
        f"redis kill/restart: {acked_before_kill} writes acknowledged before SIGKILL, "
        f"{outage_errors} CacheUnavailableError during the outage, recovery of all "
        f"{WRITERS} writers {recovered_in * 1e3:.0f} ms after restart (outage "
        f"{outage:.2f}s), {len(acked)} acknowledged writes checked, {len(lost)} lost"
    )
    assert lost == [], f"acknowledged writes lost after the restart: {lost[:10]}"
    assert found == acked
    cache.close()


def test_outage_errors_are_typed_and_secret_free(
    persistent_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cache = _fault_cache(persistent_server)
    cache.put("kept", "value")
    persistent_server.stop()
    operations: dict[str, Callable[[], object]] = {
        "get": lambda: cache.get("kept"),
        "put": lambda: cache.put("k", 1),
        "add": lambda: cache.add("k", 1),
        "incr": lambda: cache.incr("n"),
        "delete": lambda: cache.delete("kept"),
        "get_many": lambda: cache.get_many(["kept", "k"]),
        "put_many": lambda: cache.put_many({"a": 1}),
        "count": lambda: cache.count(),
        "keys": lambda: list(cache.keys()),
        "clear": lambda: cache.clear(),
        "lock": lambda: cache.lock("l").acquire(blocking=False),
    }
    for name, operation in operations.items():
        with pytest.raises(CacheUnavailableError) as info:
            operation()
        exc = info.value
        assert not isinstance(exc, rx.RedisError), name
        assert "unavailable" in str(exc), name
        assert f"{persistent_server.host}:{persistent_server.port}" in str(exc), name
        for text in (str(exc), repr(exc), repr(cache)):
            assert SECRET_MARK not in text, name
    assert all(SECRET_MARK not in r.getMessage() for r in caplog.records)
    persistent_server.start()
    assert cache.get("kept") == "value"  # the same object reconnects by itself
    cache.close()


@pytest.mark.parametrize("policy", ["miss", "raise"])
def test_on_error_policy(
    persistent_server: RedisServer, policy: str, caplog: pytest.LogCaptureFixture
) -> None:
    cache = _fault_cache(persistent_server, onError=policy)
    cache.put("kept", "value")
    persistent_server.stop()
    caplog.set_level(logging.DEBUG)
    if policy == "miss":
        assert cache.get("kept", "fallback") == "fallback"
        assert cache.exists("kept") is False
        assert cache.get_many(["kept"]) == {}
        cache.put("dropped", 1)  # dropped, with a log line
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert any("put()" in r.getMessage() and "unavailable" in r.getMessage() for r in warnings)
        assert any("get()" in r.getMessage() for r in warnings)
    else:
        for operation in (
            lambda: cache.get("kept", "fallback"),
            lambda: cache.put("dropped", 1),
            lambda: cache.exists("kept"),
            lambda: cache.get_many(["kept"]),
        ):
            with pytest.raises(CacheUnavailableError):
                operation()
    assert all(SECRET_MARK not in r.getMessage() for r in caplog.records)
    persistent_server.start()
    assert cache.get("kept") == "value"
    assert cache.get("dropped") is None  # the put during the outage never happened
    cache.close()


@pytest.mark.parametrize("policy", ["miss", "raise"])
def test_on_error_every_operation_after_the_server_dies(
    persistent_server: RedisServer, policy: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A cache that was connected when the server died, unlike the conformance cases
    # (which never reach a server): pooled connections break mid-use here.
    events: list[OperationEvent] = []
    settings = redis_settings(
        persistent_server, socketTimeout=1.0, socketConnectTimeout=1.0, retries=1, onError=policy
    )
    cache = RedisCache(settings, namespace=fresh_namespace("fault"), observer=events.append)
    cache.put_many({"a": 1, "b": 2, "k": "v", "n": 5})
    assert sorted(cache.keys()) == ["a", "b", "k", "n"]
    persistent_server.stop()
    caplog.set_level(logging.DEBUG)
    try:
        for name, (operation, call, expected) in DEGRADED.items():
            if policy == "miss":
                assert call(cache) == expected, name
            else:
                with pytest.raises(CacheUnavailableError):
                    call(cache)
            assert events[-1].operation == operation, name
            assert isinstance(events[-1].error, CacheUnavailableError), name
        for name, (operation, call) in NEVER_DEGRADED.items():
            with pytest.raises(CacheUnavailableError):
                call(cache)
            assert events[-1].operation == operation, name
        with pytest.raises(CacheKeyError if policy == "miss" else CacheUnavailableError):
            cache.metadata("k")
        computed = cache.get_or_set("fresh", lambda: "computed") if policy == "miss" else None
        assert computed == ("computed" if policy == "miss" else None)
        assert all(SECRET_MARK not in r.getMessage() for r in caplog.records)
    finally:
        persistent_server.start()
    # Nothing written during the outage reached the server; what was there survived.
    assert cache.get_all() == {"a": 1, "b": 2, "k": "v", "n": 5}
    cache.close()
