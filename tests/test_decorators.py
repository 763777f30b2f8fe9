"""@cached: hits, None results, keys, invalidation, expiry, errors."""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import pytest
from cachehub_memory import MemoryCache

from cachehub import registry
from cachehub.decorators import CachedFunction, cached
from cachehub.errors import CacheValueError, InvalidKeyError, SerializationError
from cachehub.registry import configure
from cachehub.testing import FakeClock


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    monkeypatch.setattr(registry, "_current", None)
    clock = FakeClock(1_000_000.0)
    configure(
        {"main": {"class": "memory", "default": True}, "other": {"class": "memory"}}, clock=clock
    )
    return clock


@pytest.mark.usefixtures("clock")
def test_results_are_cached() -> None:
    calls: list[int] = []

    @cached()
    def square(x: int) -> int:
        """Square a number."""
        calls.append(x)
        return x * x

    assert square(3) == 9
    assert square(3) == 9
    assert square(4) == 16
    assert calls == [3, 4]
    assert registry.get_caches()["main"].count() == 2
    assert square.__name__ == "square"
    assert square.__doc__ == "Square a number."
    assert square.__wrapped__(5) == 25


@pytest.mark.usefixtures("clock")
def test_none_results_are_cached() -> None:
    calls: list[int] = []

    @cached("other")
    def nothing(x: int) -> None:
        calls.append(x)

    assert nothing(1) is None
    assert nothing(1) is None
    assert calls == [1]
    assert registry.get_caches()["other"].count() == 1


@pytest.mark.usefixtures("clock")
def test_invalidate_forgets_one_result() -> None:
    calls: list[int] = []

    @cached
    def double(x: int) -> int:
        calls.append(x)
        return 2 * x

    double(1)
    double(2)
    assert double.invalidate(1) is True
    assert double.invalidate(1) is False
    double(1)
    double(2)
    assert calls == [1, 2, 1]


@pytest.mark.usefixtures("clock")
def test_key_shape_and_distinct_arguments() -> None:
    @cached()
    def f(a: Any, b: Any = 0, *args: Any, **kwargs: Any) -> Any:
        return (a, b)

    key = f.cache_key(1)
    assert re.fullmatch(
        rf"{re.escape(__name__)}\.test_key_shape_and_distinct_arguments\.<locals>\.f:[0-9a-f]{{64}}",
        key,
    )
    keys = {
        f.cache_key(1),
        f.cache_key(2),
        f.cache_key("1"),
        f.cache_key(1, 1),
        f.cache_key(1, 0, 5),
        f.cache_key(1, x=1),
        f.cache_key(1, x=2),
        f.cache_key([1, 2]),
    }
    assert len(keys) == 8
    # One call, several spellings: the same key.
    assert f.cache_key(1) == f.cache_key(1, 0) == f.cache_key(a=1) == f.cache_key(1, b=0)
    assert f.cache_key(1, x=1, y=2) == f.cache_key(1, y=2, x=1)


@pytest.mark.usefixtures("clock")
def test_prefix_replaces_the_qualified_name() -> None:
    @cached(prefix="users")
    def load(user_id: int) -> int:
        return user_id

    assert load.cache_key(1).startswith("users:")
    load(1)
    assert list(registry.get_caches()["main"].keys("users:*")) == [load.cache_key(1)]


@pytest.mark.usefixtures("clock")
def test_custom_key_function() -> None:
    @cached(key=lambda user_id: f"user:{user_id}")
    def load(user_id: int) -> dict[str, int]:
        return {"id": user_id}

    @cached(key=lambda user_id: str(user_id), prefix="u")
    def load2(user_id: int) -> int:
        return user_id

    assert load(7) == {"id": 7}
    assert registry.get_caches()["main"].get("user:7") == {"id": 7}
    assert load2.cache_key(7) == "u:7"


@pytest.mark.usefixtures("clock")
def test_key_function_must_return_str() -> None:
    @cached(key=lambda x: x)
    def f(x: int) -> int:
        return x

    with pytest.raises(InvalidKeyError, match="returned int, not str"):
        f(1)


@pytest.mark.usefixtures("clock")
def test_unencodable_argument_is_named() -> None:
    @cached()
    def f(label: str, handle: Any) -> str:
        return label

    with pytest.raises(SerializationError, match=r"argument handle \(lock\)") as info:
        f("ok", threading.Lock())
    assert "key=" in str(info.value)


def test_explicit_cache_object_and_expiry(clock: FakeClock) -> None:
    cache = MemoryCache(name="direct", clock=clock)
    calls: list[int] = []

    @cached(cache, time_span=10)
    def f(x: int) -> int:
        calls.append(x)
        return x

    f(1)
    f(1)
    assert cache.count() == 1
    clock.advance(11)
    f(1)
    assert calls == [1, 1]
    assert f.cache is cache


def test_idle_time(clock: FakeClock) -> None:
    calls: list[int] = []

    @cached(idle_time=5)
    def f(x: int) -> int:
        calls.append(x)
        return x

    f(1)
    clock.advance(4)
    f(1)
    clock.advance(4)
    f(1)
    assert calls == [1]
    clock.advance(6)
    f(1)
    assert calls == [1, 1]


def test_cache_name_is_looked_up_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_current", None)

    @cached("late")
    def f(x: int) -> int:
        return x

    configure({"late": {"class": "memory"}})
    assert f(1) == 1
    assert registry.get_caches()["late"].count() == 1


def test_invalid_expiry_fails_at_decoration() -> None:
    with pytest.raises(CacheValueError, match="time_span"):
        cached(time_span=-1)


@pytest.mark.usefixtures("clock")
def test_methods_bind_self_and_use_a_key_function() -> None:
    class Repo:
        def __init__(self) -> None:
            self.calls = 0

        @cached(key=lambda self, x: f"repo:{x}")
        def get(self, x: int) -> int:
            self.calls += 1
            return x * 10

    repo = Repo()
    assert repo.get(1) == 10
    assert repo.get(1) == 10
    assert repo.calls == 1
    assert isinstance(Repo.__dict__["get"], CachedFunction)
    assert Repo.get is Repo.__dict__["get"]


@pytest.mark.usefixtures("clock")
def test_concurrent_calls_compute_once() -> None:
    calls: list[int] = []
    barrier = threading.Barrier(6)

    @cached()
    def slow(x: int) -> int:
        calls.append(x)
        time.sleep(0.05)  # widen the race window; the assertion counts calls, not time
        return x

    results: list[int] = []

    def call() -> None:
        barrier.wait()
        results.append(slow(5))

    threads = [threading.Thread(target=call) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [5] * 6
    assert calls == [5]


@pytest.mark.usefixtures("clock")
def test_repr() -> None:
    @cached("other")
    def f() -> int:
        return 1

    assert "cache='other'" in repr(f)


# -- staticmethod, classmethod and the reasons keys fail (probe findings of this stop) -----


def test_cached_over_staticmethod_and_classmethod_binds_as_they_do() -> None:
    # On main K().sm(1) passed the instance as an argument (TypeError), a bare @cached over
    # @classmethod replaced the method by the decorator's inner function, and @cached(c)
    # over @classmethod failed when the class was defined.
    cache = MemoryCache({})
    calls: list[tuple[str, Any]] = []

    class Base:
        @cached(cache)
        @staticmethod
        def sm(x: int) -> tuple[str, int]:
            calls.append(("sm", x))
            return ("sm", x)

        @cached(cache)
        @classmethod
        def cm(cls, x: int) -> tuple[str, int]:
            calls.append((cls.__name__, x))
            return (cls.__name__, x)

    class Child(Base):
        pass

    assert Base.sm(1) == Base().sm(1) == ("sm", 1)
    assert Base.cm(2) == Base().cm(2) == ("Base", 2)
    assert Child.cm(2) == ("Child", 2)  # another class: another key, its own result
    assert calls == [("sm", 1), ("Base", 2), ("Child", 2)]


def test_bare_cached_over_classmethod_is_the_cached_method(clock: FakeClock) -> None:
    configure({"main": {"class": "memory"}})
    calls: list[int] = []

    class K:
        @cached
        @classmethod
        def cm(cls, x: int) -> int:
            calls.append(x)
            return x * 2

    assert isinstance(K.__dict__["cm"], CachedFunction)
    assert K.cm(3) == K.cm(3) == 6
    assert calls == [3]


def test_an_argument_too_large_for_a_key_says_so() -> None:
    # On main: "cannot be encoded into a cache key ... use simple argument types", for a
    # str: the key codec's size limit (16 MiB) was swallowed.
    cache = MemoryCache({})

    @cached(cache)
    def size(x: str) -> int:
        return len(x)

    with pytest.raises(SerializationError, match=r"argument x \(str\).*maxValueSize"):
        size("y" * (17 * 2**20))


def test_a_recursion_that_uses_up_the_stack_is_not_blamed_on_the_arguments(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # On main a RecursionError while encoding the key (a deep @cached recursion, ~150
    # levels) became "argument ? cannot be encoded into a cache key".
    import cachehub.decorators as decorators

    cache = MemoryCache({})

    @cached(cache)
    def f(n: int) -> int:
        return n

    def exhausted(*_: Any) -> bytes:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(decorators, "_arguments_bytes", exhausted)
    with pytest.raises(RecursionError):
        f(1)
