"""An attacker's view of ``@cached`` keys: equal arguments, one key in every process;
different functions or arguments, different keys; hostile arguments, typed errors."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from cachehub_memory import MemoryCache
from hypothesis import given, settings
from hypothesis import strategies as st

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


def _key_in_a_new_process(seed: str, script: str = _KEY_SCRIPT) -> str:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    done = subprocess.run(
        [sys.executable, "-c", script],
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


_DICT_SCRIPT = """
from cachehub.decorators import cached
from cachehub_memory import MemoryCache

@cached(MemoryCache(), prefix="p")
def f(*args, **kwargs):
    return None

print(f.cache_key({frozenset({"x", "y", "z"}): 1, ("a", frozenset({"p", "q"})): 2}))
"""


def test_a_dict_keyed_by_sets_has_one_key_in_every_process() -> None:
    # On main a dict's keys were encoded as they were, a frozenset key in its iteration
    # order, which follows the process's str hashes.
    keys = {_key_in_a_new_process(seed, _DICT_SCRIPT) for seed in ("1", "2", "3")}
    assert len(keys) == 1, keys


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}),
        ({2: "x", 1: "y"}, {1: "y", 2: "x"}),
        ({"a": 1, 2: "b", 3.5: None}, {3.5: None, 2: "b", "a": 1}),
        ({"outer": [{"z": 1, "y": {"q", "p"}}]}, {"outer": [{"y": {"p", "q"}, "z": 1}]}),
        ({(1, "t"): 1, (0, "s"): 2}, {(0, "s"): 2, (1, "t"): 1}),
    ],
)
def test_equal_dicts_share_a_key_whatever_their_order(one: Any, other: Any) -> None:
    # On main a dict was encoded in insertion order: f({"a": 1, "b": 2}) missed the result
    # cached by f({"b": 2, "a": 1}), which is the same argument.
    assert one == other
    f = _f()
    assert f.cache_key(one) == f.cache_key(other)
    assert f.cache_key(x=one) == f.cache_key(x=other)


def test_reordering_never_merges_different_arguments() -> None:
    f = _f()
    plain = {"a": 1, "b": 2}
    pairs = [2, 1, "a", 4, "b", 2]  # (tag, key, value) triples: see decorators._tagged
    keys = [
        f.cache_key(plain),
        f.cache_key({"a": 2, "b": 1}),
        f.cache_key({"a": 1}),
        f.cache_key({True: 1}),
        f.cache_key({1: 1}),
        f.cache_key({1.0: 1}),
        f.cache_key({"1": 1}),
        f.cache_key({1: "a", "b": 2}),
        f.cache_key(pairs),  # what a mixed dict becomes, passed as a list
        f.cache_key([("a", 1), ("b", 2)]),
        f.cache_key({}),
        f.cache_key([]),
        f.cache_key({frozenset({"a"}): 1}),
        f.cache_key({("a",): 1}),
    ]
    assert len(set(keys)) == len(keys)


def test_a_sorted_dict_keeps_its_key() -> None:
    # Results cached before this change, under dicts built in key order, stay reachable.
    from cachehub.decorators import _key_codec

    args = [{"a": 1, "b": [{"c": None, "d": 2}]}, {1: "x", 2: "y"}]
    assert _arguments_bytes(args, [("k", {"m": 1})]) == _key_codec().dumps(
        (args, [("k", {"m": 1})])
    )


def test_a_dict_with_an_unencodable_key_names_the_argument() -> None:
    f = _f()
    with pytest.raises(SerializationError, match=r"argument args \(tuple\)"):
        f.cache_key({object(): 1, "a": 2})


_SCALAR = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5), st.floats(-2, 2), st.text(max_size=3)
)
_HASHABLE = st.recursive(
    _SCALAR, lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3), max_leaves=6
)
_ARGUMENT = st.recursive(
    _HASHABLE,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(_HASHABLE, inner, max_size=4)
        | st.sets(_SCALAR, max_size=4)
    ),
    max_leaves=12,
)


def _reordered(value: Any) -> Any:
    """An equal value, every dict and set built in the reverse order."""
    kind = type(value)
    if kind is dict:
        return {_reordered(k): _reordered(value[k]) for k in reversed(list(value))}
    if kind in (set, frozenset):
        return kind(_reordered(item) for item in reversed(list(value)))
    if kind in (list, tuple):
        return kind(_reordered(item) for item in value)
    return value


@settings(max_examples=300, deadline=None)
@given(_ARGUMENT, _ARGUMENT)
def test_keys_follow_equality_not_construction_order(one: Any, other: Any) -> None:
    f = _f()
    assert f.cache_key(one) == f.cache_key(_reordered(one))
    if f.cache_key(one) == f.cache_key(other):
        assert one == other or one != one  # a float nan is not equal to itself


@pytest.mark.parametrize(
    "argument",
    [
        set(range(1_000)),
        frozenset(f"s{i}" for i in range(1_000)),
        {i if i % 2 else str(i): i for i in range(1_000)},  # int and str keys: a mixed dict
        {None, True, 2, 3.5, "x", b"y"},
    ],
    ids=["ints", "strs", "mixed-dict", "one-of-each-scalar"],
)
def test_a_big_set_or_mixed_dict_is_encoded_once_not_once_per_member(
    argument: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scalars order by (type, value) without the codec: a set of 1,000 ints cost 1,000
    encodes (37 ms a key). Counted: one encode for the whole payload."""
    from cachehub import decorators

    codec = decorators._key_codec()
    calls: list[int] = []

    class Counting:
        def dumps(self, value: Any) -> bytes:
            calls.append(1)
            return codec.dumps(value)

    monkeypatch.setattr(decorators, "_key_codec", Counting)
    first = _f().cache_key(argument)
    assert len(calls) == 1
    assert first == _f().cache_key(
        type(argument)(reversed(list(argument)))
        if not isinstance(argument, dict)
        else dict(reversed(list(argument.items())))
    )
