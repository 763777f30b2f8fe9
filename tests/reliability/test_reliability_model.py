"""Property-based tests: each provider against a reference model of the cache contract.

:class:`CacheModel` is a ``hypothesis.stateful.RuleBasedStateMachine`` driving a real cache
and a dict-with-expiry model side by side under a :class:`~cachehub.testing.FakeClock`:
put (with optional ``time_span`` / ``idle_time``), get, exists, delete, add, incr, touch,
count, keys and clock advances. Every answer must match the model. The codec's own round
trip property lives in tests/test_codec.py (``test_safe_codec_round_trip_property``);
here :func:`test_values_round_trip_through_the_provider` checks the storage layer around
it (native integers in Redis and DynamoDB, bools, large ints, floats).

Runs are derandomized (reproducible in CI) and sized to the time budget: many examples
on memory, fewer on the real Redis server and on moto.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import pytest
from cachehub_memory import MemoryCache
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from cachehub.api import MISSING, BaseCache
from cachehub.errors import CacheValueError
from cachehub.testing import FakeClock, assert_same

from .conftest import PROVIDERS, Factory, fresh_namespace, report

START: Final = float(math.ceil(time.time()) + 86_400)
"""A whole second one day ahead: exact float arithmetic, and Redis's own PEXPIREAT
(set from the fake deadline) never fires while the test runs."""

LIMITS: Final[dict[str, tuple[int, int]]] = {
    "memory": (60, 40),
    "redis": (30, 30),
    "dynamodb": (8, 20),
}
"""(examples, steps per example) for each provider, sized to the time budget."""
MODEL_TABLE: Final = "cachehub_reliability_model"

keys = st.sampled_from(["a", "b", "c"])
values = st.one_of(
    st.integers(min_value=-1000, max_value=1000),
    st.text(max_size=6),
    st.none(),
    st.lists(st.integers(min_value=0, max_value=9), max_size=3),
)
durations = st.one_of(st.none(), st.sampled_from([1, 2, 3]))


@dataclass
class Expected:
    """The model's entry: value and expiry, decided exactly as the contract says."""

    value: Any
    expires_at: float | None
    idle: float | None
    accessed: float

    def alive(self, now: float) -> bool:
        deadlines = [d for d in (self.expires_at,) if d is not None]
        if self.idle is not None:
            deadlines.append(self.accessed + self.idle)
        return not deadlines or now < min(deadlines)


class CacheModel(RuleBasedStateMachine):
    """A cache and its reference model, compared after every step."""

    factory: ClassVar[Factory]
    steps: ClassVar[list[int]]

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock(START)
        self.cache: BaseCache = self.factory(namespace=fresh_namespace("model"), clock=self.clock)
        self.model: dict[str, Expected] = {}
        self.count_steps = 0

    def _live(self, key: str) -> Expected | None:
        entry = self.model.get(key)
        if entry is not None and not entry.alive(self.clock()):
            del self.model[key]
            entry = None
        return entry

    def _new(self, value: Any, span: int | None, idle: int | None) -> Expected:
        now = self.clock()
        return Expected(value, None if span is None else now + span, idle, now)

    @rule(key=keys, value=values, span=durations, idle=durations)
    def put(self, key: str, value: Any, span: int | None, idle: int | None) -> None:
        self.cache.put(key, value, time_span=span, idle_time=idle)
        self.model[key] = self._new(value, span, idle)

    def _check_get(self, key: str) -> None:
        entry = self._live(key)
        actual = self.cache.get(key, MISSING)
        if entry is None:
            assert actual is MISSING, f"{key!r} should be absent, got {actual!r}"
        else:
            assert_same(entry.value, actual, key)
            entry.accessed = self.clock()  # a read slides an idle expiry

    @rule(key=keys)
    def get(self, key: str) -> None:
        self._check_get(key)

    @rule(key=keys)
    def exists(self, key: str) -> None:
        assert self.cache.exists(key) is (self._live(key) is not None)

    @rule(key=keys)
    def delete(self, key: str) -> None:
        assert self.cache.delete(key) is (self._live(key) is not None)
        self.model.pop(key, None)

    @rule(key=keys, value=values, span=durations, idle=durations)
    def add(self, key: str, value: Any, span: int | None, idle: int | None) -> None:
        expected = self._live(key) is None
        assert self.cache.add(key, value, time_span=span, idle_time=idle) is expected
        if expected:
            self.model[key] = self._new(value, span, idle)

    @rule(key=keys, delta=st.integers(min_value=-5, max_value=5))
    def incr(self, key: str, delta: int) -> None:
        entry = self._live(key)
        if entry is None:
            assert self.cache.incr(key, delta) == delta
            self.model[key] = self._new(delta, None, None)
        elif type(entry.value) is int:
            entry.value += delta  # keeps its expiry and its last access
            assert self.cache.incr(key, delta) == entry.value
        else:
            with pytest.raises(CacheValueError):
                self.cache.incr(key, delta)

    @rule(key=keys, span=durations, idle=durations)
    def touch(self, key: str, span: int | None, idle: int | None) -> None:
        entry = self._live(key)
        assert self.cache.touch(key, time_span=span, idle_time=idle) is (entry is not None)
        if entry is not None:
            renewed = self._new(entry.value, span, idle)
            entry.expires_at, entry.idle, entry.accessed = (
                renewed.expires_at,
                renewed.idle,
                renewed.accessed,
            )

    @rule(seconds=st.sampled_from([0.5, 1, 2]), then_get=st.one_of(st.none(), keys))
    def advance(self, seconds: float, then_get: str | None) -> None:
        # Reading right after time moves is where idle expiry can go wrong; hypothesis
        # picks the plain get rule rarely, so advancing often reads as well.
        self.clock.advance(seconds)
        if then_get is not None:
            self._check_get(then_get)

    @rule()
    def count(self) -> None:
        live = [k for k in list(self.model) if self._live(k) is not None]
        assert self.cache.count() == len(live)

    @rule()
    def keys(self) -> None:
        live = sorted(k for k in list(self.model) if self._live(k) is not None)
        assert sorted(self.cache.keys()) == live

    @invariant()
    def counted(self) -> None:
        self.count_steps += 1

    def teardown(self) -> None:
        self.steps.append(self.count_steps)
        self.cache.clear()
        self.cache.close()


def _factory(provider: str, request: pytest.FixtureRequest) -> Factory:
    if provider != "dynamodb":
        built: Factory = request.getfixturevalue(f"{provider}_factory")
        return built
    # Its own table: Scan cost grows with the table, and the shared one fills up.
    dynamo: Factory = request.getfixturevalue("dynamodb_factory")
    return lambda **kw: dynamo(settings={"tableName": MODEL_TABLE}, **kw)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_cache_behaves_like_the_model(provider: str, request: pytest.FixtureRequest) -> None:
    steps: list[int] = []
    machine = type(
        f"{provider.title()}Model",
        (CacheModel,),
        {"factory": staticmethod(_factory(provider, request)), "steps": steps},
    )
    started = time.perf_counter()
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=LIMITS[provider][0],
            stateful_step_count=LIMITS[provider][1],
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
    report(
        f"model {provider}: {len(steps)} examples, {sum(steps)} steps checked against the "
        f"reference model in {time.perf_counter() - started:.1f}s"
    )


boundary_values = st.one_of(
    st.booleans(),
    st.integers(),
    st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 10**38 - 1, 10**38, -(10**38)]),
    st.floats(allow_nan=True),
    st.text(max_size=40),
    st.binary(max_size=40),
    st.tuples(st.integers(), st.booleans()),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_values_round_trip_through_the_provider(
    provider: str, request: pytest.FixtureRequest
) -> None:
    cache = _factory(provider, request)()

    @settings(max_examples=40, deadline=None, derandomize=True, database=None)
    @given(value=boundary_values)
    def round_trip(value: Any) -> None:
        cache.put("v", value)
        assert_same(value, cache.get("v", MISSING))
        cache.put_many({"w": value})
        assert_same(value, cache.get_many(["w"])["w"])

    round_trip()


class _NoSlide(MemoryCache):
    """A subtly broken provider: reads do not slide an idle expiry."""

    def _get(self, key: str, now: float) -> Any:
        # _get_entry is the contract's read that neither counts a hit nor slides.
        entry = self._get_entry(key, now)
        return MISSING if entry is None else entry.value


def test_the_model_catches_a_broken_provider() -> None:
    # Drives the machine's own rules through the sequence that exposes the bug, so the
    # proof that the model's checks can fail does not depend on what hypothesis draws.
    machine = type(
        "BrokenModel",
        (CacheModel,),
        {"factory": staticmethod(lambda **kw: _NoSlide(**kw)), "steps": []},
    )()
    machine.put("k", "v", None, 2)  # idle_time 2 s
    machine.advance(1, "k")  # read at 1 s: the model slides the deadline to 3 s
    with pytest.raises(AssertionError, match=r"expected str 'v', got _Missing"):
        machine.advance(1.5, "k")  # 2.5 s: alive by the model, gone in the broken provider
