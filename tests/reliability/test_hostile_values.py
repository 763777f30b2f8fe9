"""Hostile stored values (issue #15, items 1, 2, 8): no planted entry crashes, exhausts,
stalls or leaks, and signed entries are bound to their storage key.

Each case of :data:`reliability.hostile.CASES` plants bytes under a key, in the memory
cache, in Redis and in DynamoDB, and reads them back, all inside a child process
(:func:`run_bounded`) capped in address space and time, so a SIGSEGV or a memory bomb
fails its own case only. The caches use a small ``maxValueSize`` (``MAX_SIZE``), and the
child's peak RSS must stay within a small multiple of it above a benign read's. Every
outcome is a correct value, a miss or a typed :class:`~cachehub.errors.CorruptEntryError`,
and no secret shows anywhere.
"""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import (
    AWS_ACCESS_KEY_ID,
    AWS_SECRET_KEY,
    PROVIDERS,
    REDIS_PASSWORD,
    SECRET_MARK,
    SHARED_TABLE,
    SIGNING_KEY,
    fresh_namespace,
)
from .hostile import (
    CASES,
    MAX_SIZE,
    OLD_KEY,
    ROGUE_KEY,
    RSS_MULTIPLE,
    Hostile,
    _describe,
    benign_read,
    deepest_values_in_a_small_thread,
    read_planted,
)
from .sandbox import assert_contained, run_bounded

# --------------------------------------------------------------------------- the tests


@pytest.fixture(scope="module")
def conn(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Where the child finds the servers (started once, by the parent's fixtures)."""
    server = request.getfixturevalue("redis_server")
    local = request.getfixturevalue("local_dynamodb")
    request.getfixturevalue("shared_table")
    return {
        "host": server.host,
        "port": server.port,
        "password": REDIS_PASSWORD,
        "endpoint": local.endpoint,
        "table": SHARED_TABLE,
        "access_key": AWS_ACCESS_KEY_ID,
        "secret_key": AWS_SECRET_KEY,
    }


@pytest.fixture(scope="module")
def baseline_mb(conn: dict[str, Any]) -> float:
    """Peak RSS of a child reading a harmless entry from every provider."""
    outcome = run_bounded(benign_read, PROVIDERS, conn, fresh_namespace("hv"), seconds=60)
    assert_contained(outcome)
    assert outcome.value == ["value: dict [('a', [1, 2, 3])]"] * len(PROVIDERS)
    return outcome.peak_rss_mb


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_value_is_contained(
    case: Hostile, conn: dict[str, Any], baseline_mb: float
) -> None:
    outcome = run_bounded(
        read_planted, case.id, PROVIDERS, conn, fresh_namespace("hv"), memory_mb=384, seconds=90
    )
    assert_contained(outcome, forbidden=(SECRET_MARK, SIGNING_KEY, OLD_KEY, ROGUE_KEY))
    assert outcome.kind == "value", outcome.describe()
    assert len(outcome.value) == len(PROVIDERS)
    for provider, line in zip(PROVIDERS, outcome.value, strict=True):
        where = f"{provider}: {line[:300]}"
        if case.expect == "corrupt":
            assert line.startswith("CorruptEntryError: cached entry cannot be decoded"), where
            assert "Fix:" in line, where
        elif case.expect == "miss":
            assert line == "miss", where
        elif case.expect == "either":
            assert line.startswith(("value: ", "CorruptEntryError: cached entry")), where
        else:
            assert line.startswith("value: "), where
            if case.value is not None:
                assert line == f"value: {_describe(case.value)}", where
    allowed = baseline_mb + RSS_MULTIPLE * MAX_SIZE / 2**20
    assert outcome.peak_rss_mb <= allowed, (
        f"peak RSS {outcome.peak_rss_mb:.0f} MB, more than {allowed:.0f} MB "
        f"(baseline {baseline_mb:.0f} MB + {RSS_MULTIPLE} x maxValueSize)"
    )


@pytest.mark.parametrize("stack_kib", [256, 1024])
def test_accepted_values_read_back_in_a_thread_with_a_small_stack(stack_kib: int) -> None:
    outcome = run_bounded(deepest_values_in_a_small_thread, stack_kib, seconds=60)
    assert_contained(outcome)
    assert outcome.kind == "value", outcome.describe()
    assert outcome.value[:4] == ["ok"] * 4
    # lists inside nested extensions cost no stack when read: 1000 of them are fine
    assert outcome.value[4:] == ["corrupt", "corrupt", "read"]
