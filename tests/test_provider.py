"""cachehub.provider.RemoteCache: the pieces every remote provider shares, tested once."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import pytest

from cachehub.errors import (
    CacheBackendError,
    CachePermissionError,
    CacheThrottledError,
    CacheUnavailableError,
    CacheValueError,
    ConfigError,
)
from cachehub.provider import (
    HIT_OPTIONS,
    MISSING,
    CacheError,
    Entry,
    ErrorRule,
    Expiry,
    KeyFilter,
    Option,
    PendingHits,
    RemoteCache,
    causes,
    not_an_int,
    request_id,
    translate_error,
)


class Client:
    """A fake server connection: counts its closes."""

    def __init__(self) -> None:
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


class Boom(Exception):
    """What the fake client library raises; its text holds a secret."""


class FakeRemote(RemoteCache[Client]):
    options: ClassVar[tuple[Option, ...]] = (*HIT_OPTIONS,)
    backend_errors: ClassVar[tuple[type[Exception], ...]] = (Boom,)
    connects: ClassVar[int] = 0
    connect_error: ClassVar[Exception | None] = None

    def __init__(self, settings: Any = None, /, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.entries: dict[str, Entry] = {}  # the "server": outlives the client
        self.written: list[dict[str, PendingHits]] = []
        self.fail_writes = False

    def _connect(self) -> Client:
        type(self).connects += 1
        if self.connect_error is not None:
            raise self.connect_error
        return Client()

    def _translate(self, exc: Exception) -> CacheError:
        return CacheUnavailableError("fake server is down.", hint="start it.")

    def _write_hits(self, pending: dict[str, PendingHits]) -> None:
        self._conn or self._connection()
        if self.fail_writes:
            raise self._translate(Boom("password=hunter22"))
        self.written.append(pending)

    def _server(self) -> FakeRemote:
        self._conn or self._connection()  # every request needs the client
        return self

    # The primitives, over the fake server's dict.
    def _get(self, key: str, now: float) -> Any:
        entry = self._server().entries.get(key)
        if entry is None:
            return MISSING
        self._count_read(key, entry.created, now)
        self._after_write()
        return entry.value

    def _get_entry(self, key: str, now: float) -> Entry | None:
        entry = self._server().entries.get(key)
        if entry is None:
            return None
        copy = Entry(entry.value, entry.created, entry.modified, entry.accessed, entry.hits)
        return self._with_pending(copy, key, entry.created)

    def _set(self, key: str, value: Any, expiry: Expiry, now: float) -> None:
        self._server().entries[key] = Entry.new(value, expiry, now)
        self._forget(key)
        self._after_write()

    def _add(self, key: str, value: Any, expiry: Expiry, now: float) -> bool:
        raise NotImplementedError

    def _delete(self, key: str, now: float) -> bool:
        self._forget(key)
        return self._server().entries.pop(key, None) is not None

    def _delete_if_equal(self, key: str, value: Any, now: float) -> bool:
        raise NotImplementedError

    def _incr(self, key: str, delta: int, now: float) -> int:
        raise not_an_int(self._user_key(key), "str")

    def _touch(self, key: str, expiry: Expiry, now: float) -> bool:
        raise NotImplementedError

    def _scan(self, flt: KeyFilter, now: float) -> Iterator[str]:
        return iter(())


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    FakeRemote.connects = 0
    FakeRemote.connect_error = None
    return


def test_construction_never_connects_and_threads_share_one_client() -> None:
    cache = FakeRemote()
    assert cache._conn is None
    assert FakeRemote.connects == 0
    start = threading.Barrier(16)

    def first_use(_: int) -> int:
        start.wait(5)
        return id(cache._connection())

    with ThreadPoolExecutor(16) as pool:
        assert len(set(pool.map(first_use, range(16)))) == 1
    assert FakeRemote.connects == 1


def test_close_releases_the_client_and_the_next_call_reconnects() -> None:
    cache = FakeRemote()
    first = cache._connection()
    cache.close()
    assert first.closed == 1
    assert cache._conn is None
    cache.close()  # closing twice is harmless
    assert first.closed == 1
    assert cache._connection() is not first
    assert FakeRemote.connects == 2


def test_a_failing_connect_is_translated_and_not_chained() -> None:
    FakeRemote.connect_error = Boom("redis://user:hunter22@host")
    cache = FakeRemote()
    with pytest.raises(CacheUnavailableError) as info:
        cache._connection()
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__
    assert "hunter22" not in str(info.value)
    assert cache._conn is None  # the next call tries again
    FakeRemote.connect_error = None
    assert cache._connection() is not None


def test_errors_outside_backend_errors_are_not_translated() -> None:
    cache = FakeRemote()
    with pytest.raises(ZeroDivisionError):
        cache._guarded(lambda: 1 // 0)
    with pytest.raises(CacheUnavailableError):
        cache._guarded(lambda: (_ for _ in ()).throw(Boom("x")))


def test_reads_are_not_counted_by_default() -> None:
    cache = FakeRemote(hitFlushInterval=0.000001)
    cache.put("k", 1)
    for _ in range(5):
        assert cache.get("k") == 1
    assert cache.pending_hits() == 0
    assert cache.flush_hits() == 0
    cache.close()
    assert cache.metadata("k").hit_count == 0
    assert cache.written == []


def test_counted_reads_are_merged_and_written_back_once() -> None:
    cache = FakeRemote(hitCounts=True, hitFlushInterval=0)
    cache.put_many({"a": 1, "b": 2})
    for _ in range(3):
        cache.get("a")
    cache.get("b")
    assert cache.pending_hits() == 2
    assert cache.metadata("a").hit_count == 3  # this process's pending reads included
    assert cache.flush_hits() == 2
    assert [{k: p.hits for k, p in w.items()} for w in cache.written] == [{"a": 3, "b": 1}]
    assert cache.flush_hits() == 0
    cache.get("a")
    cache.delete("a")  # an overwritten or deleted entry's reads are dropped
    cache.close()
    assert cache.written[1:] == []


def test_close_writes_back_reads_counted_after_an_earlier_close() -> None:
    """A read in another thread counted just after a close's flush, on the client that
    close retired: the cache held no client then, and the next close wrote nothing
    (the count was lost)."""
    cache = FakeRemote(hitCounts=True, hitFlushInterval=60)
    cache.put("k", 1)
    cache.close()
    entry = cache.entries["k"]
    cache._count_read(cache._sk("k"), entry.created, entry.accessed)  # the late read
    assert cache._conn is None
    cache.close()
    assert [{k: p.hits for k, p in w.items()} for w in cache.written] == [{cache._sk("k"): 1}]


def test_a_failing_write_back_is_logged_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    cache = FakeRemote(hitCounts=True, hitFlushInterval=0.000001)
    cache.put("k", 1)
    cache.fail_writes = True
    cache.get("k")
    with caplog.at_level(logging.WARNING, logger="cachehub"):
        assert cache.get("k") == 1  # due: the flush fails, the read does not
        cache.close()
    messages = [r.getMessage() for r in caplog.records]
    assert any("could not flush hit counts" in m for m in messages)
    assert not any("hunter22" in m for m in messages)


def test_warn_once_warns_once_per_topic(caplog: pytest.LogCaptureFixture) -> None:
    cache = FakeRemote()
    with caplog.at_level(logging.WARNING, logger="cachehub"):
        for _ in range(3):
            cache._warn_once("ttl", "native TTL is off")
            cache._warn_once("other", "something else")
    assert [r.getMessage() for r in caplog.records] == [
        "cache 'default': native TTL is off",
        "cache 'default': something else",
    ]


@pytest.mark.parametrize("value", ["often", 2, [True], {"on": 1}])
def test_hit_counts_refuses_nonsense(value: Any) -> None:
    with pytest.raises(ConfigError, match="hitCounts"):
        FakeRemote(hitCounts=value)


@pytest.mark.parametrize("value", [-1, "soon", "1e400", "nan", float("inf"), "-0.5"])
def test_hit_flush_interval_refuses_nonsense(value: Any) -> None:
    """Infinity and NaN too: they would silently mean "never", which 0 already says."""
    with pytest.raises(ConfigError, match="hitFlushInterval"):
        FakeRemote(hitFlushInterval=value)


def test_incr_on_a_non_int_names_the_key_and_the_fix() -> None:
    with pytest.raises(CacheValueError) as info:
        FakeRemote(namespace="ns:").incr("word")
    assert "'word'" in str(info.value)
    assert "holds a str, not an int" in str(info.value)
    assert "incr/decr only work" in str(info.value)


def test_request_ids_are_fresh_128_bit_hex() -> None:
    ids = {request_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


# ---------------------------------------------------------------------- error tables


class Denied(Boom):
    """A client-library error type that a table names."""


TABLE = (
    ErrorRule(CachePermissionError, "{where} refused access.", "check the password.", (Denied,)),
    ErrorRule(
        CacheThrottledError,
        "{where} is busy ({code}).",
        "slow down.",
        codes=frozenset({"Busy", "SlowDown"}),
    ),
    ErrorRule(CacheValueError, "{where}: too big ({text}).", codes=frozenset({"Bad"}), text="size"),
    ErrorRule(CacheValueError, "{where}: bad request ({text}).", codes=frozenset({"Bad"})),
    ErrorRule(CacheBackendError, "{where} failed: {text}"),
)


def test_an_error_table_picks_the_first_rule_whose_every_criterion_holds() -> None:
    denied = translate_error(TABLE, Denied("x"), code="Busy", where="srv")
    assert type(denied) is CachePermissionError  # first match wins over the code rule
    assert str(denied) == "srv refused access. Fix: check the password."
    busy = translate_error(TABLE, Boom("x"), code="SlowDown", where="srv")
    assert type(busy) is CacheThrottledError
    assert busy.message == "srv is busy (SlowDown)."
    # the text criterion narrows its code: searched case-insensitively, else the next row
    big = translate_error(TABLE, Boom("Item SIZE exceeded"), code="Bad", where="srv")
    assert big.message == "srv: too big (Item SIZE exceeded)."
    other = translate_error(TABLE, Boom("syntax"), code="Bad", where="srv")
    assert other.message == "srv: bad request (syntax)."
    assert other.hint is None
    assert translate_error(TABLE, Boom("odd"), where="srv").message == "srv failed: odd"


def test_an_error_table_fills_templates_but_never_parses_the_values() -> None:
    # A hostile server message shaped like a template (or a format attack) stays text.
    hostile = "{where} {0} {code.__class__} {text!r:>99999999}"
    error = translate_error(TABLE, Boom(hostile), code="Bad", where="srv")
    assert error.message == f"srv: bad request ({hostile})."
    assert len(str(error)) < 200


def test_an_error_table_scrubs_and_a_table_without_a_catch_all_shows_only_the_type() -> None:
    leaked = Boom("auth failed for redis://user:hunter2@host:6379/0")
    error = translate_error(TABLE, leaked, where="srv")
    assert "hunter2" not in str(error)
    assert "srv failed" in str(error)
    uncovered = translate_error(TABLE[:2], leaked, code="Other", where="srv")
    assert type(uncovered) is CacheBackendError
    assert str(uncovered) == "the backend failed with Boom."


def test_an_error_table_takes_any_field_name_a_template_uses() -> None:
    # "table" and "rules" are what providers name their fields too (DynamoDB's table).
    rows = (ErrorRule(CacheBackendError, "{table}: {rules} ({code})"),)
    error = translate_error(rows, Boom("x"), code="C", table="t", rules="r")
    assert error.message == "t: r (C)"


def test_causes_walks_cause_before_context_each_once_and_stops_at_a_limit() -> None:
    outer, cause, context, root = Boom("outer"), Boom("cause"), Boom("context"), Boom("root")
    outer.__cause__, outer.__context__ = cause, context  # ``raise ... from cause`` wins
    cause.__context__ = root
    assert list(causes(outer)) == [outer, cause, root]
    assert list(causes(outer, limit=2)) == [outer, cause]
    assert list(causes(outer, limit=0)) == []
    # A hostile cycle (a handler re-raising what it caught as the cause) ends the walk.
    root.__context__ = outer
    assert list(causes(outer)) == [outer, cause, root]
    alone = Boom("alone")
    assert list(causes(alone)) == [alone]
