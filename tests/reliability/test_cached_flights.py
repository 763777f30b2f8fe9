"""``get_or_set``'s single flight never makes a caller wait for itself.

Before per-key flights, 64 non-reentrant lock stripes chosen by ``hash(key)`` guarded
the fills: ``@cached`` ``fib`` (a creator needing other keys) hung forever as soon as a
nested key fell on the stripe its caller held. Each case runs bounded in a child process.
"""

from __future__ import annotations

from reliability.cached_attacks import (
    async_fib,
    async_needs_itself,
    sync_fib,
    sync_needs_itself,
    two_threads_needing_each_other,
)
from reliability.sandbox import assert_contained, run_bounded


def test_cached_fib_calls_nested_keys_without_deadlock() -> None:
    outcome = run_bounded(sync_fib, 90, seconds=30)
    assert_contained(outcome)
    assert outcome.kind == "value", outcome.describe()
    assert outcome.value == (2880067194370816120, 91)  # each key computed once


def test_a_function_needing_its_own_result_computes_it() -> None:
    outcome = run_bounded(sync_needs_itself, 3, seconds=30)
    assert outcome.kind == "value", outcome.describe()
    assert outcome.value == (7, 3)


def test_two_threads_needing_each_others_keys_both_finish() -> None:
    outcome = run_bounded(two_threads_needing_each_other, seconds=40)
    assert outcome.kind == "value", outcome.describe()
    results = outcome.value
    assert results["alive"] == [False, False]
    assert (results["a"], results["b"]) in {("aba", "ba"), ("ab", "bab")}
    assert sorted(results["computations"].values()) == [1, 2]


def test_async_cached_fib_awaits_nested_keys_without_deadlock() -> None:
    outcome = run_bounded(async_fib, 90, seconds=30)
    assert outcome.kind == "value", outcome.describe()
    assert outcome.value == (2880067194370816120, 91)


def test_an_async_function_awaiting_its_own_result_computes_it() -> None:
    outcome = run_bounded(async_needs_itself, 3, seconds=30)
    assert outcome.kind == "value", outcome.describe()
    assert outcome.value == (7, 3)
