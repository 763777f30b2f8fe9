"""The core's error policy and operation events, with providers whose primitives fail.

The ``onError`` table itself is asserted by the conformance suite (cachehub.testing.onerror)
on every provider; these tests cover what only the core decides: untyped exceptions become
``CacheBackendError``, iterator events span the whole iteration, operation names.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest

from cachehub.api import BaseCache
from cachehub.errors import (
    CacheBackendError,
    CacheError,
    CacheUnavailableError,
    CacheValueError,
)
from cachehub.filters import KeyFilter
from cachehub.hookspecs import OperationEvent
from cachehub.lock import LockTable
from cachehub.testing.reference import ReferenceBackend, ReferenceCache

SECRET = "SuperSecret-123-signing"

# primitive -> a public call that reaches it
_CALLS: dict[str, Callable[[BaseCache], Any]] = {
    "_get": lambda c: c.get("k"),
    "_get_entry": lambda c: c.metadata("k"),
    "_set": lambda c: c.put("k", 1),
    "_add": lambda c: c.add("k", 1),
    "_delete": lambda c: c.delete("k"),
    "_lock_acquire": lambda c: c.lock("job").acquire(blocking=False),
    "_lock_release": lambda c: _held_lock(c).release(),
    "_lock_extend": lambda c: _held_lock(c).extend(),
    "_lock_holder": lambda c: c.lock("job").busy,
    "_incr": lambda c: c.incr("n"),
    "_touch": lambda c: c.touch("k", 60),
    "_scan": lambda c: list(c.keys()),
    "_exists": lambda c: c.exists("k"),
    "_get_many": lambda c: c.get_many(["a", "b"]),
    "_set_many": lambda c: c.put_many({"a": 1}),
    "_delete_many": lambda c: c.delete_many(["a"]),
    "_count": lambda c: c.count(),
    "_clear": lambda c: c.clear(),
}


def _held_lock(cache: BaseCache) -> Any:
    lock = cache.lock("job")
    assert lock.acquire(blocking=False)
    return lock


def _broken(primitive: str, exc: BaseException) -> type[ReferenceCache]:
    def fail(self: ReferenceCache, *args: Any) -> Any:
        raise exc

    return type("BrokenCache", (ReferenceCache,), {primitive: fail})


@pytest.mark.parametrize("observed", [False, True], ids=["plain", "observed"])
@pytest.mark.parametrize("on_error", ["raise", "miss"])
@pytest.mark.parametrize("primitive", list(_CALLS))
def test_untyped_provider_errors_become_cache_backend_error(
    primitive: str, on_error: str, observed: bool, caplog: pytest.LogCaptureFixture
) -> None:
    # A provider bug (here a KeyError quoting the signing key) must reach the caller as a
    # typed CacheBackendError naming the operation, without the secret, in both modes.
    events: list[OperationEvent] = []
    cls = _broken(primitive, KeyError(f"boom {SECRET}"))
    cache = cls(
        codec="pickle",
        signingKey=SECRET,
        onError=on_error,
        observer=events.append if observed else None,
    )
    caplog.set_level(logging.DEBUG)
    with pytest.raises(CacheBackendError) as info:
        _CALLS[primitive](cache)
    message = str(info.value)
    for part in ("() failed inside BrokenCache", "KeyError", "boom"):
        assert part in message
    assert SECRET not in message
    assert SECRET not in repr(info.value)
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__
    assert all(SECRET not in r.getMessage() for r in caplog.records)
    if observed:
        assert isinstance(events[-1].error, CacheBackendError)


def test_untyped_error_message_is_bounded() -> None:
    cache = _broken("_get", RuntimeError("x" * 1_000_000))()
    with pytest.raises(CacheBackendError) as info:
        cache.get("k")
    assert len(str(info.value)) < 1_000


def test_typed_errors_pass_through_unchanged() -> None:
    original = CacheValueError("bad entry", hint="fix it")
    cache = _broken("_get", original)()
    with pytest.raises(CacheValueError) as info:
        cache.get("k")
    assert info.value is original


def test_base_exceptions_are_never_translated() -> None:
    events: list[OperationEvent] = []
    cache = _broken("_get", KeyboardInterrupt())(observer=events.append)
    with pytest.raises(KeyboardInterrupt):
        cache.get("k")
    assert isinstance(events[-1].error, KeyboardInterrupt)


def test_other_backend_errors_raise_even_under_miss() -> None:
    # onError: miss covers an unreachable backend only, not a refusal or a bad answer.
    cache = _broken("_get", CacheBackendError("denied"))(onError="miss")
    with pytest.raises(CacheBackendError):
        cache.get("k")


# ---------------------------------------------------------------------- iterator events


class _ScanThenFail(ReferenceCache):
    """Yields ``good`` keys, then fails with ``error`` (None: ends normally)."""

    good: ClassVar[int] = 3
    error: ClassVar[BaseException | None] = None
    started: ClassVar[list[int]] = []

    def _scan(self, flt: KeyFilter, now: float) -> Iterator[str]:
        self.started.append(1)
        for i in range(self.good):
            yield f"{self.namespace}k{i}"
        if self.error is not None:
            raise self.error


def _scanner(
    error: BaseException | None, **kwargs: Any
) -> tuple[ReferenceCache, list[OperationEvent]]:
    events: list[OperationEvent] = []
    cls = type("Scanner", (_ScanThenFail,), {"error": error, "started": []})
    return cls(observer=events.append, **kwargs), events


def test_keys_event_spans_the_whole_iteration() -> None:
    cache, events = _scanner(None)
    keys = cache.keys("k*")
    assert events == []  # creating the iterator reads nothing and reports nothing
    assert next(keys) == "k0"
    assert next(keys) == "k1"
    assert events == []  # still iterating
    assert list(keys) == ["k2"]
    assert len(events) == 1
    assert (events[0].operation, events[0].key, events[0].error) == ("keys", "k*", None)


def test_keys_error_after_some_keys_is_reported_typed() -> None:
    cache, events = _scanner(OSError("socket reset"))
    seen: list[str] = []
    keys = cache.keys()
    with pytest.raises(CacheBackendError, match="OSError"):
        for key in keys:
            seen.append(key)
    assert seen == ["k0", "k1", "k2"]
    assert len(events) == 1
    assert events[0].operation == "keys"
    assert isinstance(events[0].error, CacheBackendError)


def test_keys_outage_under_miss_ends_the_iteration(caplog: pytest.LogCaptureFixture) -> None:
    cache, events = _scanner(CacheUnavailableError("gone"), onError="miss")
    with caplog.at_level(logging.WARNING):
        assert list(cache.keys()) == ["k0", "k1", "k2"]
    assert "keys()" in caplog.text
    assert "unavailable" in caplog.text
    assert isinstance(events[0].error, CacheUnavailableError)


def test_keys_outage_under_raise_raises() -> None:
    cache, events = _scanner(CacheUnavailableError("gone"))
    with pytest.raises(CacheUnavailableError):
        list(cache.keys())
    assert isinstance(events[0].error, CacheUnavailableError)


def test_keys_closed_early_reports_once_without_error() -> None:
    cache, events = _scanner(OSError("never reached"))
    keys = cache.keys()
    assert next(keys) == "k0"
    keys.close()  # the consumer stops: not an error, and the failing tail never runs
    assert [(e.operation, e.error) for e in events] == [("keys", None)]


def test_get_all_is_reported_as_get_all() -> None:
    events: list[OperationEvent] = []
    cache = ReferenceCache(observer=events.append)
    cache.put_many({"a": 1, "b": 2})
    events.clear()
    assert cache.get_all("a*") == {"a": 1}
    assert [(e.operation, e.key) for e in events] == [("get_all", "a*")]


def test_get_all_error_after_some_keys_is_one_typed_event() -> None:
    cache, events = _scanner(OSError("socket reset"))
    with pytest.raises(CacheBackendError):
        cache.get_all()
    assert [e.operation for e in events] == ["get_all"]


def test_operation_names() -> None:
    events: list[OperationEvent] = []
    cache = ReferenceCache(observer=events.append)
    cache.incr("n", 5)
    cache.decr("n", 2)
    with cache.lock("job"):
        pass
    assert [e.operation for e in events] == ["incr", "decr", "lock", "lock_release"]


# ---------------------------------------------------------------------- locks, get_or_set


class _RemoteLocks(ReferenceCache):
    """Locks kept with the reference backend, so that its outage reaches them too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.table = LockTable()

    def _lock_acquire(self, name: str, token: str, ttl: float, now: float) -> int | None:
        self.backend.check()
        return self.table.acquire(self._lock_pair(name), token, ttl, now)

    def _lock_release(self, name: str, token: str, now: float) -> bool:
        self.backend.check()
        return self.table.release(self._lock_pair(name), token, now)

    def _lock_extend(self, name: str, token: str, ttl: float, now: float) -> bool:
        self.backend.check()
        return self.table.extend(self._lock_pair(name), token, ttl, now)

    def _lock_holder(self, name: str, now: float) -> str | None:
        self.backend.check()
        return self.table.holder(self._lock_pair(name), now)

    def _clear_internal(self, now: float) -> int:
        self.backend.check()
        return self.table.clear(self.namespace)


@pytest.mark.parametrize("on_error", ["miss", "raise"])
def test_lock_release_during_an_outage(on_error: str) -> None:
    backend = ReferenceBackend()
    cache = _RemoteLocks(backend=backend, onError=on_error)
    lock = cache.lock("job", ttl=60)
    assert lock.acquire(blocking=False)
    backend.down = True
    if on_error == "miss":
        assert lock.release() is False  # the lock stays until its ttl
    else:
        with pytest.raises(CacheUnavailableError):
            lock.release()
    backend.down = False
    assert cache.lock("job").busy


class _Distributed(_RemoteLocks):
    distributed: ClassVar[bool] = True


def test_distributed_get_or_set_under_miss_computes_without_the_fill_lock() -> None:
    backend = ReferenceBackend(down=True)
    cache = _Distributed(backend=backend, onError="miss")
    assert cache.get_or_set("k", lambda: "v") == "v"
    backend.down = False
    assert backend.entries == {}  # the value was not written
    assert not cache.lock("k").busy  # nor a fill lock kept


def test_distributed_get_or_set_stores_and_releases_the_fill_lock() -> None:
    backend = ReferenceBackend()
    cache = _Distributed(backend=backend)
    assert cache.get_or_set("k", lambda: "v") == "v"
    assert list(backend.entries) == ["k"]
    assert cache.table.clear(cache.namespace) == 0  # the fill lock is gone


def test_distributed_get_or_set_creator_error_releases_the_fill_lock() -> None:
    backend = ReferenceBackend()
    cache = _Distributed(backend=backend)

    def creator() -> str:
        raise ZeroDivisionError("creator bug")

    with pytest.raises(ZeroDivisionError):  # the caller's own error, never translated
        cache.get_or_set("k", creator)
    assert backend.entries == {}
    assert cache.table.clear(cache.namespace) == 0  # the fill lock was released


def test_cache_error_is_the_base_of_everything_raised() -> None:
    assert issubclass(CacheBackendError, CacheError)


def test_a_provider_returning_garbage_from_get_many_is_a_typed_error() -> None:
    class Garbage(ReferenceCache):
        def _get_many(self, keys: list[str], now: float) -> dict[str, Any]:
            return None  # type: ignore[return-value]

    with pytest.raises(CacheBackendError, match=r"get_many\(\) failed .* returned NoneType"):
        Garbage().get_many(["a", "b"])
