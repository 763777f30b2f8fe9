"""The bounded child-process runner itself: each way a case can misbehave is reported."""

from __future__ import annotations

import ctypes
import logging
import time

import pytest

from cachehub.errors import CorruptEntryError

from .sandbox import assert_contained, run_bounded


def _returns(value: object) -> object:
    return value


def _raises_cache_error() -> None:
    raise CorruptEntryError("entry 'k' is corrupt: planted; delete it")


def _raises_other() -> None:
    raise ValueError("raw")


def _segfaults() -> None:
    ctypes.string_at(0)


def _allocates(mb: int) -> int:
    return len(bytearray(mb * 1024 * 1024))


def _sleeps(seconds: float) -> None:
    time.sleep(seconds)


def _logs_and_prints(text: str) -> None:
    logging.getLogger("botocore.endpoint").debug("header %s", text)
    print("printed", text)


def test_value_comes_back() -> None:
    outcome = run_bounded(_returns, {"a": [1, 2]})
    assert outcome.kind == "value"
    assert outcome.value == {"a": [1, 2]}
    assert_contained(outcome)


def test_cache_error_is_contained_and_named() -> None:
    outcome = run_bounded(_raises_cache_error)
    assert outcome.kind == "error"
    assert outcome.is_cache_error
    assert outcome.error_type == "cachehub.errors.CorruptEntryError"
    assert_contained(outcome, errors=("CorruptEntryError",))


def test_other_exception_is_not_contained() -> None:
    outcome = run_bounded(_raises_other)
    assert outcome.kind == "error"
    assert not outcome.is_cache_error
    assert outcome.error_type == "builtins.ValueError"


def test_segfault_is_a_crash() -> None:
    outcome = run_bounded(_segfaults)
    assert outcome.kind == "crash"
    assert "SIGSEGV" in outcome.message


def test_allocation_past_the_cap_fails_in_the_child() -> None:
    outcome = run_bounded(_allocates, 200, memory_mb=64)
    assert outcome.kind == "error"
    assert outcome.error_type == "builtins.MemoryError"
    small = run_bounded(_allocates, 16, memory_mb=64)
    assert small.value == 16 * 1024 * 1024


def test_deadline_kills_the_child() -> None:
    outcome = run_bounded(_sleeps, 60, seconds=3)
    assert outcome.kind == "timeout"


def test_logs_and_output_are_captured() -> None:
    outcome = run_bounded(_logs_and_prints, "tok-123")
    joined = "\n".join(outcome.texts)
    assert "header tok-123" in joined
    assert "printed tok-123" in joined
    with pytest.raises(AssertionError, match="leaked"):
        assert_contained(outcome, forbidden=("tok-123",))
