"""An attacker's view of ``@cached`` keys: equal arguments, one key in every process;
different functions or arguments, different keys; hostile arguments, typed errors."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from cachehub_memory import MemoryCache

from cachehub.decorators import _arguments_bytes, cached
from cachehub.errors import SerializationError

_KEY_SCRIPT = """
from cachehub.decorators import cached
from cachehub_memory import MemoryCache

@cached(MemoryCache(), prefix="p")
def f(*args, **kwargs):
    return None

print(f.cache_key({"alpha", "beta", "gamma", "delta"}, [{"k": frozenset({"x", "y", "z"})}],
                  tags={"red", "green", "blue"}))
"""


def _key_in_a_new_process(seed: str) -> str:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    done = subprocess.run(
        [sys.executable, "-c", _KEY_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def test_a_set_argument_has_one_key_in_every_process() -> None:
    # str hashes change from one process to the next, and with them a set's order: the
    # key of f({"alpha", ...}) differed in every worker sharing a Redis or DynamoDB cache.
    keys = {_key_in_a_new_process(seed) for seed in ("1", "2", "3")}
    assert len(keys) == 1, keys


def _f() -> Any:
    @cached(MemoryCache(), prefix="p")
    def f(*args: Any, **kwargs: Any) -> Any:
        return args

    return f


def test_sets_stay_distinct_from_every_other_argument() -> None:
    f = _f()
    items = {"a", "b"}
    replacement = sorted(_arguments_bytes([item], []) for item in items)
    keys = [
        f.cache_key(items),
        f.cache_key(frozenset(items)),
        f.cache_key(sorted(items)),
        f.cache_key(tuple(sorted(items))),
        f.cache_key(replacement),  # what the set is replaced by, passed as a list
        f.cache_key(tuple(replacement)),
        f.cache_key(items, items),
        f.cache_key(set()),
        f.cache_key([]),
        f.cache_key({"a"}),
    ]
    assert len(set(keys)) == len(keys)
    assert f.cache_key({"b", "a"}) == f.cache_key({"a", "b"})


def test_arguments_without_sets_keep_their_keys() -> None:
    # The plain payload, so the keys of existing cached results do not change.
    from cachehub.decorators import _key_codec

    assert _arguments_bytes([1, "x", [2.5]], [("k", None)]) == _key_codec().dumps(
        ([1, "x", [2.5]], [("k", None)])
    )


def test_a_set_with_an_unencodable_item_names_the_argument() -> None:
    f = _f()
    with pytest.raises(SerializationError, match=r"argument args \(tuple\)"):
        f.cache_key({object()})


def test_a_list_containing_itself_is_a_serialization_error() -> None:
    f = _f()
    loop: list[Any] = [{"a"}]
    loop.append(loop)
    with pytest.raises(SerializationError):
        f.cache_key(loop)


def test_two_lambdas_of_one_module_do_not_share_results() -> None:
    cache = MemoryCache()
    square = cached(cache)(lambda x: x * x)
    double = cached(cache)(lambda x: 2 * x)
    assert square(3) == 9
    assert double(3) == 6  # served square's 9 when both were "<module>.<lambda>"
    assert square.cache_key(3) != double.cache_key(3)
    assert "<lambda>@" in square.cache_key(3)


def test_factory_functions_are_told_apart_by_their_prefix() -> None:
    cache = MemoryCache()

    def make(table: str) -> Any:
        @cached(cache, prefix=f"load:{table}")
        def load(i: int) -> str:
            return f"{table}:{i}"

        return load

    users, orders = make("users"), make("orders")
    assert users(1) == "users:1"
    assert orders(1) == "orders:1"
