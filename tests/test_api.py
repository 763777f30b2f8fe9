"""BaseCache's own contract, independent of any real provider.

A tiny dict-backed provider records every primitive call, so these tests can show that
invalid arguments are refused *before* anything reaches a backend.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

import cachehub
from cachehub.api import (
    MAX_KEY_LENGTH,
    MAX_TIME_SPAN,
    MISSING,
    NO_EXPIRY,
    BaseCache,
    CacheMetadata,
    Entry,
    Expiry,
    make_expiry,
)
from cachehub.errors import (
    CacheError,
    CacheKeyError,
    CacheUnavailableError,
    CacheValueError,
    CorruptEntryError,
    InvalidKeyError,
    ReadOnlyCacheError,
)
from cachehub.filters import KeyFilter
from cachehub.hookspecs import OperationEvent
from cachehub.testing import FakeClock

NOW = 1_700_000_000.0


class RecordingCache(BaseCache):
    """A minimal provider: a dict of entries, with every primitive call recorded."""

    def __init__(self, settings: Any = None, /, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.data: dict[str, Entry] = {}
        self.calls: list[tuple[str, Any]] = []
        self.down = False

    def _note(self, name: str, arg: Any) -> None:
        if self.down:
            raise CacheUnavailableError("backend unreachable (test).")
        self.calls.append((name, arg))

    def _live(self, key: str, now: float) -> Entry | None:
        entry = self.data.get(key)
        return entry if entry is not None and entry.alive(now) else None

    def _get(self, key: str, now: float) -> Any:
        self._note("get", key)
        entry = self._live(key, now)
        if entry is None:
            return MISSING
        entry.hits += 1
        entry.accessed = now
        return entry.value

    def _get_entry(self, key: str, now: float) -> Entry | None:
        self._note("get_entry", key)
        return self._live(key, now)

    def _set(self, key: str, value: Any, expiry: Expiry, now: float) -> None:
        self._note("set", key)
        self.data[key] = Entry.new(value, expiry, now)

    def _add(self, key: str, value: Any, expiry: Expiry, now: float) -> bool:
        self._note("add", key)
        if self._live(key, now) is not None:
            return False
        self.data[key] = Entry.new(value, expiry, now)
        return True

    def _delete(self, key: str, now: float) -> bool:
        self._note("delete", key)
        return self.data.pop(key, None) is not None

    def _delete_if_equal(self, key: str, value: Any, now: float) -> bool:
        self._note("delete_if_equal", key)
        entry = self._live(key, now)
        if entry is None or entry.value != value:
            return False
        del self.data[key]
        return True

    def _incr(self, key: str, delta: int, now: float) -> int:
        self._note("incr", key)
        entry = self._live(key, now)
        if entry is None:
            self.data[key] = Entry.new(delta, NO_EXPIRY, now)
            return delta
        if type(entry.value) is not int:
            raise CacheValueError("not an int.")
        entry.value += delta
        return int(entry.value)

    def _touch(self, key: str, expiry: Expiry, now: float) -> bool:
        self._note("touch", key)
        entry = self._live(key, now)
        if entry is None:
            return False
        entry.expires_at, entry.idle = expiry.expires_at, expiry.idle
        return True

    def _scan(self, flt: KeyFilter, now: float) -> Iterator[str]:
        self._note("scan", flt.pattern)
        return iter([k for k in list(self.data) if flt.matches(k) and self._live(k, now)])


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def cache(clock: FakeClock) -> RecordingCache:
    return RecordingCache(clock=clock, name="api-test")


# ---------------------------------------------------------------- make_expiry


class TestMakeExpiry:
    def test_nothing_means_no_expiry(self) -> None:
        assert make_expiry(None, None, None, NOW) is NO_EXPIRY
        assert NO_EXPIRY.deadline(NOW) is None

    @pytest.mark.parametrize(
        "span", [10, 10.0, timedelta(seconds=10)], ids=["int", "float", "timedelta"]
    )
    def test_time_span(self, span: Any) -> None:
        assert make_expiry(span, None, None, NOW) == Expiry(NOW + 10, None)

    def test_fractional_time_span(self) -> None:
        assert make_expiry(0.25, None, None, NOW).expires_at == NOW + 0.25

    def test_idle_only(self) -> None:
        assert make_expiry(None, timedelta(minutes=2), None, NOW) == Expiry(None, 120.0)

    def test_time_span_and_idle(self) -> None:
        expiry = make_expiry(100, 10, None, NOW)
        assert expiry == Expiry(NOW + 100, 10.0)
        assert expiry.deadline(NOW) == NOW + 10
        assert expiry.deadline(NOW + 95) == NOW + 100  # the earlier deadline wins

    def test_until_aware(self) -> None:
        until = datetime.fromtimestamp(NOW + 60, UTC)
        assert make_expiry(None, None, until, NOW).expires_at == NOW + 60

    def test_until_other_offset(self) -> None:
        until = datetime.fromtimestamp(NOW + 60, timezone(timedelta(hours=-5)))
        assert make_expiry(None, None, until, NOW).expires_at == NOW + 60

    def test_until_naive_is_local_time(self) -> None:
        naive = datetime.fromtimestamp(NOW + 60)  # local wall time, no tzinfo
        assert make_expiry(None, None, naive, NOW).expires_at == pytest.approx(NOW + 60)

    def test_until_with_idle(self) -> None:
        until = datetime.fromtimestamp(NOW + 60, UTC)
        assert make_expiry(None, 5, until, NOW) == Expiry(NOW + 60, 5.0)

    @pytest.mark.parametrize("which", ["time_span", "idle_time"])
    @pytest.mark.parametrize(
        "bad",
        [
            -1,
            -0.5,
            0,
            0.0,
            -0.0,
            math.nan,
            math.inf,
            -math.inf,
            True,
            False,
            "10",
            timedelta(0),
            timedelta(seconds=-1),
            [10],
        ],
        ids=lambda v: repr(v),
    )
    def test_bad_duration(self, which: str, bad: Any) -> None:
        args: dict[str, Any] = {"time_span": None, "idle_time": None, "until": None}
        args[which] = bad
        with pytest.raises(CacheValueError) as info:
            make_expiry(args["time_span"], args["idle_time"], None, NOW)
        assert which in str(info.value)
        assert info.value.hint
        assert isinstance(info.value, ValueError)

    def test_huge_but_finite_duration_accepted(self) -> None:
        expiry = make_expiry(timedelta(days=36_500), None, None, NOW)
        assert expiry.expires_at == NOW + 36_500 * 86_400

    def test_the_longest_span_is_accepted(self) -> None:
        expiry = make_expiry(MAX_TIME_SPAN, MAX_TIME_SPAN, None, NOW)
        assert expiry == Expiry(NOW + MAX_TIME_SPAN.total_seconds(), MAX_TIME_SPAN.total_seconds())

    @pytest.mark.parametrize(
        "span",
        [
            timedelta.max,
            MAX_TIME_SPAN + timedelta(seconds=1),
            MAX_TIME_SPAN.total_seconds() * 1.01,
            10**20,
            10**400,  # float() of it overflows
            10**5000,  # beyond str(int) limits too
            1e308,
        ],
        ids=["timedelta_max", "one_second_over", "float_over", "1e20", "1e400", "1e5000", "1e308"],
    )
    @pytest.mark.parametrize("which", ["time_span", "idle_time"])
    def test_spans_beyond_the_limit_are_refused(self, span: Any, which: str) -> None:
        args: dict[str, Any] = {"time_span": None, "idle_time": None, which: span}
        with pytest.raises(CacheValueError, match=f"{which} must be .*at most 365,250 days"):
            make_expiry(args["time_span"], args["idle_time"], None, NOW)

    @pytest.mark.parametrize(
        "until",
        [
            datetime.max.replace(tzinfo=UTC),
            datetime.max,  # naive: local time, timestamp() may overflow
            datetime.fromtimestamp(NOW, UTC) + MAX_TIME_SPAN + timedelta(seconds=1),
        ],
        ids=["aware_max", "naive_max", "one_second_over"],
    )
    def test_until_beyond_the_limit_is_refused(self, until: datetime) -> None:
        with pytest.raises(CacheValueError, match="until="):
            make_expiry(None, None, until, NOW)

    def test_time_span_and_until_conflict(self) -> None:
        until = datetime.fromtimestamp(NOW + 60, UTC)
        with pytest.raises(CacheValueError, match="time_span and until"):
            make_expiry(10, None, until, NOW)

    @pytest.mark.parametrize("offset", [-3600, -0.001, 0], ids=["hour_ago", "just_past", "now"])
    def test_until_not_in_future(self, offset: float) -> None:
        until = datetime.fromtimestamp(NOW + offset, UTC)
        with pytest.raises(CacheValueError, match="in the past"):
            make_expiry(None, None, until, NOW)

    def test_until_naive_in_past(self) -> None:
        with pytest.raises(CacheValueError, match="in the past"):
            make_expiry(None, None, datetime(2000, 1, 1), NOW)

    @pytest.mark.parametrize(
        "bad",
        [NOW + 60, "2099-01-01T00:00:00", datetime(2099, 1, 1).date()],
        ids=["epoch_float", "iso_string", "date"],
    )
    def test_until_must_be_datetime(self, bad: Any) -> None:
        with pytest.raises(CacheValueError, match="until must be a datetime"):
            make_expiry(None, None, bad, NOW)


# ---------------------------------------------------------------- Entry / metadata


class TestEntryAndMetadata:
    def test_entry_alive_until_deadline_exclusive(self) -> None:
        entry = Entry.new("v", Expiry(NOW + 10, None), NOW)
        assert entry.alive(NOW + 9.999)
        assert not entry.alive(NOW + 10)

    def test_idle_deadline_slides_with_access(self) -> None:
        entry = Entry.new("v", Expiry(None, 5.0), NOW)
        assert entry.deadline() == NOW + 5
        entry.accessed = NOW + 4
        assert entry.deadline() == NOW + 9

    def test_metadata_from_entry(self) -> None:
        entry = Entry(
            "v", created=NOW, modified=NOW + 1, accessed=NOW + 2, hits=3, expires_at=NOW + 100
        )
        meta = CacheMetadata.from_entry(entry, NOW + 40)
        assert meta.hit_count == 3
        assert meta.time_to_live == timedelta(seconds=60)
        assert meta.idle_time is None
        assert meta.expires == datetime.fromtimestamp(NOW + 100, UTC)
        assert meta.created == datetime.fromtimestamp(NOW, UTC)
        assert meta.last_modified == datetime.fromtimestamp(NOW + 1, UTC)
        assert meta.last_accessed == datetime.fromtimestamp(NOW + 2, UTC)

    @pytest.mark.parametrize(
        "fields",
        [
            {"created": math.nan},
            {"modified": math.inf},
            {"accessed": 1e300},
            {"expires_at": 1e20},
            {"expires_at": math.nan},
            {"idle": math.inf},
            {"idle": 1e300},
            # Writes refuse it; another program's item had it shown as it was.
            {"idle": -5.0},
        ],
        ids=lambda f: "-".join(f"{k}={v}" for k, v in f.items()),
    )
    def test_metadata_of_impossible_stamps_is_a_corrupt_entry(self, fields: dict[str, Any]) -> None:
        stamps: dict[str, Any] = {"created": NOW, "modified": NOW, "accessed": NOW, **fields}
        entry = Entry("v", **stamps)
        with pytest.raises(CorruptEntryError, match="impossible time or count"):
            CacheMetadata.from_entry(entry, NOW)

    @pytest.mark.parametrize(
        "hits", [-3, -1, math.inf, math.nan, 1.5, 2**53 + 1, 10**38 - 1], ids=repr
    )
    def test_metadata_of_an_impossible_hit_count_names_it(self, hits: Any) -> None:
        """Before: a negative or infinite count was "an impossible time or count
        (ValueError)", naming neither; 10**38 - 1 (DynamoDB's largest) and 1.5 were shown
        as they came, cut or rounded."""
        entry = Entry("v", NOW, NOW, NOW, hits)
        with pytest.raises(CorruptEntryError, match=r"hit count is .*not a whole number"):
            CacheMetadata.from_entry(entry, NOW)
        assert CacheMetadata.from_entry(Entry("v", NOW, NOW, NOW, 2**53), NOW).hit_count == 2**53

    def test_metadata_time_to_live_never_negative(self) -> None:
        entry = Entry.new("v", Expiry(NOW + 1, None), NOW)
        assert CacheMetadata.from_entry(entry, NOW + 5).time_to_live == timedelta(0)


# ---------------------------------------------------------------- keys

_KEYED: dict[str, Callable[[BaseCache, Any], Any]] = {
    "get": lambda c, k: c.get(k),
    "get_throw": lambda c, k: c.get(k, throw_when_not_exist=True),
    "exists": lambda c, k: c.exists(k),
    "put": lambda c, k: c.put(k, 1),
    "add": lambda c, k: c.add(k, 1),
    "delete": lambda c, k: c.delete(k),
    "incr": lambda c, k: c.incr(k),
    "decr": lambda c, k: c.decr(k),
    "touch": lambda c, k: c.touch(k, time_span=5),
    "metadata": lambda c, k: c.metadata(k),
    "get_many": lambda c, k: c.get_many(["fine", k]),
    "put_many": lambda c, k: c.put_many({"fine": 1, k: 2}),
    "delete_many": lambda c, k: c.delete_many(["fine", k]),
    "get_or_set": lambda c, k: c.get_or_set(k, lambda: 1),
}

_BAD_KEYS: dict[str, Any] = {
    "empty": "",
    "int": 42,
    "float": 1.5,
    "none": None,
    "bytes": b"key",
    "tuple": ("a", "b"),
    "too_long": "x" * (MAX_KEY_LENGTH + 1),
    "lone_surrogate": "a\ud800b",
    "lone_low_surrogate": "\udfff",
}


class TestKeys:
    @pytest.mark.parametrize("bad", list(_BAD_KEYS.values()), ids=list(_BAD_KEYS))
    @pytest.mark.parametrize("op", list(_KEYED))
    def test_invalid_key_never_reaches_provider(
        self, cache: RecordingCache, op: str, bad: Any
    ) -> None:
        with pytest.raises(InvalidKeyError) as info:
            _KEYED[op](cache, bad)
        assert cache.calls == []
        assert info.value.hint
        assert isinstance(info.value, ValueError)

    def test_messages_name_the_problem(self, cache: RecordingCache) -> None:
        with pytest.raises(InvalidKeyError, match="empty"):
            cache.get("")
        with pytest.raises(InvalidKeyError, match="must be str, got int"):
            cache.get(5)  # type: ignore[arg-type]
        with pytest.raises(InvalidKeyError, match=f"limit is {MAX_KEY_LENGTH}"):
            cache.get("x" * (MAX_KEY_LENGTH + 1))
        with pytest.raises(InvalidKeyError, match="surrogate"):
            cache.get("\ud800")

    def test_max_length_key_accepted(self, cache: RecordingCache) -> None:
        key = "k" * MAX_KEY_LENGTH
        cache.put(key, 1)
        assert cache.get(key) == 1

    def test_non_ascii_key_accepted(self, cache: RecordingCache) -> None:
        cache.put("ключ 🎉", 1)
        assert list(cache.keys()) == ["ключ 🎉"]

    def test_str_subclass_reaches_provider_as_str(self, cache: RecordingCache) -> None:
        class Key(str):
            pass

        cache.put(Key("k"), 1)
        assert list(cache.data) == ["k"]
        assert type(next(iter(cache.data))) is str

    def test_namespace_prefixes_storage_keys(self, clock: FakeClock) -> None:
        cache = RecordingCache(clock=clock, namespace="app:")
        cache.put("k", 1)
        assert list(cache.data) == ["app:k"]
        assert list(cache.keys()) == ["k"]
        assert cache.get_many(["k"]) == {"k": 1}
        assert cache.get_all() == {"k": 1}

    def test_filter_type_checked(self, cache: RecordingCache) -> None:
        with pytest.raises(CacheValueError, match="filter must be a string"):
            cache.count(5)  # type: ignore[arg-type]


# ---------------------------------------------------------------- TTL arguments via the API

_TIMED: dict[str, Callable[[BaseCache, dict[str, Any]], Any]] = {
    "put": lambda c, kw: c.put("k", 1, **kw),
    "add": lambda c, kw: c.add("k", 1, **kw),
    "touch": lambda c, kw: c.touch("k", **kw),
    "put_many": lambda c, kw: c.put_many({"k": 1}, **kw),
    "get_or_set": lambda c, kw: c.get_or_set("k", lambda: 1, **kw),
}

_BAD_TTL: dict[str, dict[str, Any]] = {
    "negative_span": {"time_span": -5},
    "zero_idle": {"idle_time": 0},
    "nan_span": {"time_span": math.nan},
    "bool_idle": {"idle_time": True},
    "span_and_until": {"time_span": 5, "until": datetime.fromtimestamp(NOW + 60, UTC)},
    "until_past": {"until": datetime.fromtimestamp(NOW - 60, UTC)},
}


class TestTimedArguments:
    @pytest.mark.parametrize("bad", list(_BAD_TTL))
    @pytest.mark.parametrize("op", list(_TIMED))
    def test_bad_ttl_stores_nothing(self, cache: RecordingCache, op: str, bad: str) -> None:
        with pytest.raises(CacheValueError):
            _TIMED[op](cache, _BAD_TTL[bad])
        assert not [call for call in cache.calls if call[0] not in ("get",)]
        assert cache.data == {}

    def test_expiry_uses_the_injected_clock(self, cache: RecordingCache, clock: FakeClock) -> None:
        cache.put("k", 1, time_span=30)
        assert cache.data["k"].expires_at == NOW + 30
        assert cache.data["k"].created == NOW
        clock.advance(31)
        assert cache.get("k", MISSING) is MISSING

    @pytest.mark.parametrize("delta", [1.0, "1", True, None], ids=["float", "str", "bool", "none"])
    @pytest.mark.parametrize("op", ["incr", "decr"])
    def test_bad_delta_never_reaches_provider(
        self, cache: RecordingCache, op: str, delta: Any
    ) -> None:
        with pytest.raises(CacheValueError, match=f"{op} delta must be an int"):
            getattr(cache, op)("n", delta)
        assert cache.calls == []

    def test_decr_is_negative_incr(self, cache: RecordingCache) -> None:
        assert cache.decr("n", 5) == -5
        assert cache.calls == [("incr", "n")]


# ---------------------------------------------------------------- MISSING


class TestMissing:
    def test_is_falsy_with_readable_repr(self) -> None:
        assert not MISSING
        assert repr(MISSING) == "MISSING"

    def test_is_a_singleton_exported_by_the_package(self) -> None:
        assert cachehub.MISSING is MISSING
        from cachehub import api

        assert api.MISSING is MISSING

    def test_distinguishes_cached_none(self, cache: RecordingCache) -> None:
        cache.put("none", None)
        assert cache.get("none", MISSING) is None
        assert cache.get("absent", MISSING) is MISSING
        assert cache.get("absent") is None

    def test_missing_is_not_equal_to_none(self) -> None:
        assert MISSING is not None
        assert MISSING != None  # noqa: E711 - the comparison itself is under test

    def test_get_or_set_uses_missing_not_none(self, cache: RecordingCache) -> None:
        cache.put("none", None)
        assert cache.get_or_set("none", lambda: "computed") is None


# ---------------------------------------------------------------- read-only and outages


class TestGuards:
    @pytest.mark.parametrize(
        "op",
        [
            "put",
            "add",
            "delete",
            "incr",
            "decr",
            "touch",
            "put_many",
            "delete_many",
            "clear",
        ],
    )
    def test_read_only_refuses_before_provider(self, clock: FakeClock, op: str) -> None:
        cache = RecordingCache(clock=clock, read_only=True, name="ro")
        call: dict[str, Callable[[], Any]] = {
            "put": lambda: cache.put("k", 1),
            "add": lambda: cache.add("k", 1),
            "delete": lambda: cache.delete("k"),
            "incr": lambda: cache.incr("k"),
            "decr": lambda: cache.decr("k"),
            "touch": lambda: cache.touch("k"),
            "put_many": lambda: cache.put_many({"k": 1}),
            "delete_many": lambda: cache.delete_many(["k"]),
            "clear": lambda: cache.clear(),
        }
        with pytest.raises(ReadOnlyCacheError, match=rf"'ro' is read-only; {op}\(\)") as info:
            call[op]()
        assert "readOnly" in (info.value.hint or "")
        assert cache.calls == []

    def test_outage_raises_by_default(self, cache: RecordingCache) -> None:
        cache.down = True
        with pytest.raises(CacheUnavailableError):
            cache.get("k")
        with pytest.raises(ConnectionError):
            cache.put("k", 1)

    def test_outage_is_a_miss_with_on_error_miss(self, clock: FakeClock) -> None:
        cache = RecordingCache(clock=clock, onError="miss")
        cache.down = True
        assert cache.get("k", "fallback") == "fallback"
        assert cache.exists("k") is False
        assert cache.get_many(["a", "b"]) == {}
        cache.put("k", 1)  # logged, not raised
        with pytest.raises(CacheKeyError):
            cache.get("k", throw_when_not_exist=True)

    def test_outage_still_raises_for_atomic_operations(self, clock: FakeClock) -> None:
        # add/incr/lock cannot pretend to succeed: their callers rely on the answer.
        cache = RecordingCache(clock=clock, onError="miss")
        cache.down = True
        with pytest.raises(CacheUnavailableError):
            cache.add("k", 1)
        with pytest.raises(CacheUnavailableError):
            cache.incr("k")


# ---------------------------------------------------------------- observer events


class TestObserver:
    @pytest.fixture
    def events(self) -> list[OperationEvent]:
        return []

    @pytest.fixture
    def observed(self, clock: FakeClock, events: list[OperationEvent]) -> RecordingCache:
        return RecordingCache(clock=clock, name="obs", observer=events.append)

    def test_get_hit_and_miss(self, observed: RecordingCache, events: list[OperationEvent]) -> None:
        observed.put("k", "v")
        observed.get("k")
        observed.get("absent")
        assert [(e.operation, e.key, e.hit) for e in events] == [
            ("put", "k", None),
            ("get", "k", True),
            ("get", "absent", False),
        ]
        assert all(e.cache == "obs" and e.provider == "RecordingCache" for e in events)
        assert all(e.duration >= 0 and e.error is None for e in events)

    def test_get_of_cached_none_is_a_hit(
        self, observed: RecordingCache, events: list[OperationEvent]
    ) -> None:
        observed.put("k", None)
        observed.get("k")
        assert events[-1].hit is True

    def test_get_of_cached_false_is_a_hit(
        self, observed: RecordingCache, events: list[OperationEvent]
    ) -> None:
        observed.put("k", False)
        observed.get("k")
        assert events[-1].hit is True

    def test_exists_reports_hit(
        self, observed: RecordingCache, events: list[OperationEvent]
    ) -> None:
        observed.exists("absent")
        observed.put("k", 1)
        observed.exists("k")
        assert [(e.operation, e.hit) for e in events] == [
            ("exists", False),
            ("put", None),
            ("exists", True),
        ]

    def test_writes_and_batches(
        self, observed: RecordingCache, events: list[OperationEvent]
    ) -> None:
        observed.put_many({"a": 1, "b": 2})
        observed.get_many(["a", "b"])
        observed.add("c", 3)
        observed.incr("n")
        observed.touch("a", time_span=5)
        observed.metadata("a")
        observed.delete("a")
        observed.delete_many(["b"])
        observed.count()
        observed.clear()
        assert [(e.operation, e.key) for e in events] == [
            ("put_many", None),
            ("get_many", None),
            ("add", "c"),
            ("incr", "n"),
            ("touch", "a"),
            ("metadata", "a"),
            ("delete", "a"),
            ("delete_many", None),
            ("count", None),
            ("clear", None),
        ]

    def test_error_is_reported_and_raised(
        self, observed: RecordingCache, events: list[OperationEvent]
    ) -> None:
        observed.put("s", "text")
        with pytest.raises(CacheValueError):
            observed.incr("s")
        assert events[-1].operation == "incr"
        assert isinstance(events[-1].error, CacheValueError)

    def test_outage_is_reported(
        self, observed: RecordingCache, events: list[OperationEvent]
    ) -> None:
        observed.down = True
        with pytest.raises(CacheUnavailableError):
            observed.get("k")
        assert events[-1].operation == "get"
        assert events[-1].hit is False
        assert isinstance(events[-1].error, CacheUnavailableError)

    def test_rejected_arguments_emit_nothing(
        self, observed: RecordingCache, events: list[OperationEvent]
    ) -> None:
        with pytest.raises(InvalidKeyError):
            observed.get("")
        with pytest.raises(CacheValueError):
            observed.put("k", 1, time_span=-1)
        assert events == []


# ---------------------------------------------------------------- errors and construction


class TestErrorsAndConstruction:
    def test_cache_error_message_carries_the_fix(self) -> None:
        error = CacheError("it broke.", hint="do this.")
        assert str(error) == "it broke. Fix: do this."
        assert CacheError("plain.").hint is None

    def test_cache_key_error_str_is_not_quoted(self, cache: RecordingCache) -> None:
        with pytest.raises(CacheKeyError) as info:
            cache.get("absent", throw_when_not_exist=True)
        assert str(info.value).startswith("no entry for key 'absent'")

    def test_unknown_base_setting_rejected(self) -> None:
        with pytest.raises(cachehub.ConfigError, match="Did you mean 'namespace'"):
            RecordingCache(namespce="x")

    def test_on_error_choices(self) -> None:
        with pytest.raises(cachehub.ConfigError, match="onError"):
            RecordingCache(onError="ignore")

    def test_repr_masks_secrets(self) -> None:
        key = "repr-masks-this-signing-key-0123456789"
        cache = RecordingCache(codec="pickle", signingKey=key, name="sec")
        assert key not in repr(cache)
        assert "'sec'" in repr(cache)

    def test_default_clock_is_real_time(self) -> None:
        cache = RecordingCache()
        cache.put("k", 1, time_span=60)
        created = cache.data["k"].created
        assert abs(created - datetime.now(UTC).timestamp()) < 60


# ---------------------------------------------------------------- the fake clock


class TestFakeClock:
    def test_plugin_fixture_starts_near_real_time(self, fake_clock: FakeClock) -> None:
        assert abs(fake_clock() - datetime.now(UTC).timestamp()) < 60

    def test_moves_only_when_advanced(self) -> None:
        clock = FakeClock(NOW)
        assert clock() == clock() == NOW
        assert clock.advance(1.5) == NOW + 1.5
        assert clock.advance(timedelta(minutes=1)) == NOW + 61.5
        assert clock.datetime() == datetime.fromtimestamp(NOW + 61.5, UTC)

    @pytest.mark.parametrize("step", [-1, math.nan, math.inf, "1", True], ids=repr)
    def test_refuses_bad_steps(self, step: Any) -> None:
        clock = FakeClock(NOW)
        with pytest.raises(CacheValueError):
            clock.advance(step)
        assert clock() == NOW

    def test_plugin_namespace_fixture_is_unique(self, cache_namespace: str) -> None:
        assert cache_namespace.startswith("chtest-")
        assert cache_namespace.endswith(":")
